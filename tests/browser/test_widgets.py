"""Every widget on every page responds in the browser without a kernel (run from test_pages).

Each widget builder gives its box a CSS class; WIDGETS lists them per page. For every control in
a widget, the test moves it from the keyboard, as a reader without a mouse would: a slider one
step with an arrow key, a toggle button that is not selected with Space, a dropdown to its next
option with the down arrow. It checks that what the widget displays changed (its visible text,
or the bytes of its visible images, hashed in the page); that the focused control has a visible
outline; that each control is named by its visible label, a slider says the value shown and a
toggle whether it is pressed; that a changed image's alt text changed with it; and that axe-core
finds no serious or critical violation in the new state (accessibility.py).
"""

from __future__ import annotations

import re
import time

from accessibility import audit
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


FOCUS_RING = """el => {
  const style = getComputedStyle(el);
  return style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
}"""
# What a screen reader is told about each control, and the alt of each visible image.
SPOKEN = """root => ({
  sliders: [...root.querySelectorAll('.widget-slider')].map(s => {
    const handle = s.querySelector('.noUi-handle');
    const label = document.getElementById(handle.getAttribute('aria-labelledby'));
    return [label && label.textContent, s.querySelector('.widget-readout').textContent,
            handle.getAttribute('aria-valuetext')];
  }),
  toggles: [...root.querySelectorAll('.widget-toggle-buttons')].map(t => {
    const group = t.querySelector('[role=group]');
    const label = group && document.getElementById(group.getAttribute('aria-labelledby'));
    return [label && label.textContent, [...t.querySelectorAll('button')].map(
      b => [b.textContent, b.classList.contains('mod-active'), b.getAttribute('aria-pressed')])];
  }),
  alts: [...root.querySelectorAll('img')].filter(i => i.checkVisibility()).map(i => i.alt),
})"""


def check_speech(root: Locator) -> list[str]:
    """Each control says its visible label and value or state; return the visible images' alt."""
    spoken = root.evaluate(SPOKEN)
    for label, readout, valuetext in spoken["sliders"]:
        assert label, "a slider handle is not labelled by its visible label"
        assert valuetext and readout in valuetext and valuetext != readout, (label, readout, valuetext)
    for label, buttons in spoken["toggles"]:
        assert label, "a group of toggle buttons is not labelled by its visible label"
        for text, active, pressed in buttons:
            assert pressed == str(active).lower(), f"{label}: button {text} is pressed={pressed}"
    for alt in spoken["alts"]:
        assert len(alt.split()) >= 5, f"a widget image has alt {alt!r}"
    return spoken["alts"]


def check_moved(page: Page, root: Locator, hook: str, before: str, alts: list[str]) -> None:
    """After a move: the widget shows something else, says it, its images' alt follows, and axe passes."""
    wait_for_change(page, root, before)
    if alts:
        assert check_speech(root) != alts, "the image changed but its alt text did not"
    check_speech(root)
    problems = audit(page, f".{hook}")
    assert not problems, "\n".join(problems)


def wait_rendered(page: Page, hook: str) -> Locator:
    root = page.locator(f".{hook}")
    expect(root).to_have_count(1, timeout=20_000)
    expect(root.locator(".widget-html-content:visible, img:visible").first).to_be_visible(timeout=20_000)
    return root


def check_widget(page: Page, hook: str) -> None:
    """Move every control of the widget with CSS class `hook` from the keyboard; each move must
    change what it shows, what it says, and leave no accessibility violation.

    Called by test_pages for every widget of every page, on the page it has already loaded.
    """
    root = wait_rendered(page, hook)
    sliders = root.locator(".widget-slider")
    toggles = root.locator(".widget-toggle-buttons")
    dropdowns = root.locator(".widget-dropdown select")
    assert sliders.count() + toggles.count() + dropdowns.count() >= 1, "no control found"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for i in range(sliders.count()):
        handle = sliders.nth(i).locator(".noUi-handle")
        before, alts = signature(root), check_speech(root)
        handle.focus()
        at_end = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        handle.press("ArrowLeft" if at_end else "ArrowRight")
        assert handle.evaluate(FOCUS_RING), "the focused slider handle has no visible outline"
        if i == 0:
            root.screenshot(path=SCREENSHOTS / f"{hook}-focused-slider.png")
        check_moved(page, root, hook, before, alts)
    for i in range(toggles.count()):
        before, alts = signature(root), check_speech(root)
        buttons = toggles.nth(i).locator("button")
        off = buttons.evaluate_all("bs => bs.findIndex(b => !b.classList.contains('mod-active'))")
        button = buttons.nth(off)  # by position: once pressed, it is the active one
        button.focus()
        button.press("Space")
        assert button.evaluate(FOCUS_RING), "the focused toggle button has no visible outline"
        check_moved(page, root, hook, before, alts)
    for i in range(dropdowns.count()):
        before, alts = signature(root), check_speech(root)
        select = dropdowns.nth(i)
        select.focus()
        select.press("ArrowDown")
        assert select.evaluate(FOCUS_RING), "the focused dropdown has no visible outline"
        check_moved(page, root, hook, before, alts)
    root.screenshot(path=SCREENSHOTS / f"{hook}.png")
