"""Chapter 2 as a reader without a kernel meets it: the shape explorer responds in the browser."""

from __future__ import annotations

import json
import re

from conftest import HTML, SCREENSHOTS, PageLog
from playwright.sync_api import Page, expect

CHAPTER = "chapters/02_splitting_the_heads.html"
SHOWN = ".shape-explorer .widget-html-content:visible"


def heads_slider(page: Page):
    """The 'heads h' control's draggable handle (noUiSlider, keyboard-operable)."""
    return page.locator(".shape-explorer .widget-slider", has_text="heads h").locator(".noUi-handle")


def test_every_widget_view_has_embedded_state() -> None:
    html = (HTML / CHAPTER).read_text()
    state = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', html, re.S)
    assert state, "no widget state in the page: widgets would render as empty boxes"
    models = json.loads(state.group(1))["state"]
    views = re.findall(r'<script type="application/vnd.jupyter.widget-view\+json">(.*?)</script>', html, re.S)
    assert views, "no widget view in the page"
    for view in views:
        assert json.loads(view)["model_id"] in models


def test_shape_explorer_responds_without_a_kernel(page: tuple[Page, PageLog], site: str) -> None:
    page, log = page
    page.goto(f"{site}/{CHAPTER}")
    shown = page.locator(SHOWN)
    expect(shown).to_have_count(1, timeout=20_000)
    expect(shown).to_contain_text("d_k = 512 / 4 = 128")
    expect(shown).to_contain_text("(4, 4, 16, 128)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".shape-explorer").screenshot(path=SCREENSHOTS / "chapter2-explorer-h4.png")

    handle = heads_slider(page)
    handle.focus()
    handle.press("ArrowLeft")  # h: 4 -> 3, which does not divide 512
    expect(shown).to_contain_text("d_model=512 is not divisible by num_heads=3")
    handle.press("ArrowRight")
    handle.press("ArrowRight")  # h: 3 -> 4 -> 6, which does not divide 512 either
    expect(shown).to_contain_text("d_model=512 is not divisible by num_heads=6")
    handle.press("ArrowRight")  # h: 6 -> 8
    expect(shown).to_contain_text("d_k = 512 / 8 = 64")
    expect(shown).to_contain_text("(4, 8, 16, 64)")
    page.locator(".shape-explorer").screenshot(path=SCREENSHOTS / "chapter2-explorer-h8.png")

    assert not log.problems(), log.problems()
