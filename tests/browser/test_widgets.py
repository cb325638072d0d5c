"""Every widget on every page responds in the browser without a kernel (run from test_pages).

Each widget builder gives its box a CSS class; WIDGETS lists them per page. For every control in
a widget, the test moves a slider one step with the keyboard, clicks a toggle button that is not
selected, or picks the next dropdown option, and checks that what the widget displays changed: its visible text, or the bytes of its visible images (an image's src is a fresh blob:
URL on every render, so the bytes are hashed in the page).
"""

from __future__ import annotations

import re
import time

from conftest import HTML, SCREENSHOTS
from playwright.sync_api import Locator, Page, expect

WIDGETS = {
    "chapters/01_why_multiple_heads.html": ["run-viewer"],
    "chapters/02_splitting_the_heads.html": ["shape-explorer"],
    "chapters/03_heads_in_parallel.html": ["head-viewer"],
    "chapters/04_concatenation_and_wo.html": ["head-switches"],
    "chapters/05_the_complete_module.html": ["module-calculator"],
    "chapters/06_what_the_heads_learn.html": ["learned-heads"],
    "chapters/07_heads_of_a_real_model.html": ["real-heads"],
    "chapters/08_how_many_heads.html": ["sweep-viewer"],
    "chapters/09_pytorch_in_practice.html": ["torch-options"],
    "chapters/10_beyond_the_classic_module.html": ["grouping-explorer"],
    "chapters/11_heads_across_devices.html": ["parallel-explorer"],
}

SIGNATURE = """async (root) => {
  const parts = [];
  for (const el of root.querySelectorAll('.widget-html-content, img')) {
    if (!el.checkVisibility()) continue;
    if (el.tagName === 'IMG') {
      const bytes = await (await fetch(el.src)).arrayBuffer();
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
      parts.push('img:' + Array.from(digest.slice(0, 8)).join('.'));
    } else {
      parts.push(el.innerText);
    }
  }
  return parts.join(' | ');
}"""


def signature(root: Locator) -> str:
    return root.evaluate(SIGNATURE)


def wait_for_change(page: Page, root: Locator, before: str, timeout_s: float = 20.0) -> str:
    """Poll the widget's signature until it differs from `before`; fail after timeout_s.

    The deadline is on the clock, so a slow signature on a loaded machine does not shorten it.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        now = signature(root)
        if now != before:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"the widget still shows the same content: {before[:200]}")
        page.wait_for_timeout(100)


def test_every_page_with_widgets_is_listed() -> None:
    for page in HTML.glob("**/*.html"):
        relative = page.relative_to(HTML).as_posix()
        views = len(re.findall(r'type="application/vnd.jupyter.widget-view\+json"', page.read_text()))
        assert views == len(WIDGETS.get(relative, [])), f"{relative} has {views} widget view(s); list them in WIDGETS"


def check_widget(page: Page, hook: str) -> None:
    """Move every control of the widget with CSS class `hook`; each move must change what it shows.

    Called by test_pages for every widget of every page, on the page it has already loaded.
    """
    root = page.locator(f".{hook}")
    expect(root).to_have_count(1, timeout=20_000)
    expect(root.locator(".widget-html-content:visible, img:visible").first).to_be_visible(timeout=20_000)
    sliders = root.locator(".widget-slider")
    toggles = root.locator(".widget-toggle-buttons")
    dropdowns = root.locator(".widget-dropdown select")
    assert sliders.count() + toggles.count() + dropdowns.count() >= 1, "no control found"
    for i in range(sliders.count()):
        handle = sliders.nth(i).locator(".noUi-handle")
        before = signature(root)
        handle.focus()
        at_end = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        handle.press("ArrowLeft" if at_end else "ArrowRight")
        wait_for_change(page, root, before)
    for i in range(toggles.count()):
        before = signature(root)
        toggles.nth(i).locator("button:not(.mod-active)").first.click()
        wait_for_change(page, root, before)
    for i in range(dropdowns.count()):
        before = signature(root)
        select = dropdowns.nth(i)
        current = select.evaluate("s => s.selectedIndex")
        select.select_option(index=(current + 1) % select.locator("option").count())
        wait_for_change(page, root, before)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    root.screenshot(path=SCREENSHOTS / f"{hook}.png")
