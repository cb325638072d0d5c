"""Every page of the book, as a reader without a kernel meets it.

For each page in _toc.yml: it loads with no console error, failed request or blocked outside
request (beyond the known icon-font 404s); every code output and image is present; MathJax
typesets every formula without error; axe-core finds no serious or critical accessibility
violation (accessibility.py); every widget responds to every control (test_widgets);
the page stays within the weight budget. A full-page screenshot of each lands in
_build/screenshots/.
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
import yaml
from accessibility import audit
from conftest import HTML, ROOT, SCREENSHOTS, PageLog
from playwright.sync_api import Page, expect
from test_widgets import WIDGETS, check_widget, wait_rendered

PAGE_BUDGET = 1_500_000  # bytes: HTML with embedded widget state, plus its own images (COURSE.md)


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f"{f}.html" for f in files]


PAGES = toc_pages()


def page_weight(path: str) -> int:
    """Bytes of the page and of the images it links from _images (shared theme assets excluded)."""
    html_file = HTML / path
    text = html_file.read_text()
    images = set(re.findall(r'src="((?:\.\./)*_images/[^"]+)"', text))
    return html_file.stat().st_size + sum((html_file.parent / src).resolve().stat().st_size for src in images)


def test_every_toc_page_was_built() -> None:
    for path in PAGES:
        assert (HTML / path).exists(), path


class _Images(HTMLParser):
    """The src and alt of every <img> in a page's static HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            named = dict(attrs)
            self.images.append((named.get("src") or "", named.get("alt")))


@pytest.mark.parametrize("path", PAGES)
def test_every_figure_has_alt_text(path: str) -> None:
    """A screen reader reads a figure's alt; MyST-NB takes it from the cell's `mystnb.image.alt`,
    and without it writes the image's file path there."""
    parser = _Images()
    parser.feed((HTML / path).read_text())
    figures = [(src, alt) for src, alt in parser.images if "_images/" in src]
    for src, alt in figures:
        assert alt and "_images/" not in alt and len(alt.split()) >= 5, f"{path}: {src} has alt {alt!r}"


@pytest.mark.parametrize("path", PAGES)
def test_page_weight_within_budget(path: str) -> None:
    assert page_weight(path) <= PAGE_BUDGET, f"{path}: {page_weight(path):,} bytes"


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_cleanly_with_outputs_and_math(page: tuple[Page, PageLog], site: str, path: str) -> None:
    page, log = page
    start = time.perf_counter()
    page.goto(f"{site}/{path}", wait_until="load")
    load_seconds = time.perf_counter() - start
    html = (HTML / path).read_text()

    if "math notranslate" in html:  # the page has formulas: all typeset, none in error
        page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
        page.evaluate("MathJax.startup.promise")
        raw = page.locator(".math:not(:has(mjx-container))")
        assert raw.count() == 0, f"{raw.count()} formulas left as raw TeX"
        assert page.locator("mjx-merror").count() == 0, "MathJax reported an error"
    visible = page.locator("body").inner_text()
    assert "\\(" not in visible and "$$" not in visible, "raw TeX is visible (in the text or the navigation)"

    images = page.locator("article img")
    for i in range(images.count()):
        ok = images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
        assert ok, f"image {i} of {path} did not load"
    outputs_in_source = html.count('class="cell_output')
    assert page.locator(".cell_output").count() == outputs_in_source

    for hook in WIDGETS.get(path, []):
        wait_rendered(page, hook)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"page-{Path(path).stem}.png", full_page=True)
    problems = audit(page)  # the whole page, once formulas and widgets are drawn
    assert not problems, "\n".join(problems)
    for hook in WIDGETS.get(path, []):  # every control of every widget changes what it shows and says
        check_widget(page, hook)
    assert not log.problems(), log.problems()
    print(f"{path}: loaded in {load_seconds:.2f} s, {page_weight(path):,} bytes")


def test_search_finds_w_o_in_chapter_4(page: tuple[Page, PageLog], site: str) -> None:
    page, log = page
    page.goto(f"{site}/search.html?q=W_o")
    results = page.locator("#search-results ul.search li a")
    expect(results.first).to_be_visible(timeout=20_000)
    targets = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any("04_concatenation_and_wo" in (t or "") for t in targets), targets
    assert not log.problems(), log.problems()


def test_next_and_previous_links_walk_the_chapters(page: tuple[Page, PageLog], site: str) -> None:
    page, log = page
    page.goto(f"{site}/chapters/01_why_multiple_heads.html")
    log.leave()  # what chapter 1 still loads when "next" is clicked is cancelled by the click
    page.locator("a.right-next").click()
    expect(page).to_have_url(re.compile(r"02_splitting_the_heads\.html"))
    expect(page.locator("h1").first).to_contain_text("Splitting the heads")
    log.leave()
    page.locator("a.left-prev").click()
    expect(page).to_have_url(re.compile(r"01_why_multiple_heads\.html"))
    expect(page.locator("h1").first).to_contain_text("Why multiple heads")
    page.wait_for_load_state("load")
    assert not log.problems(), log.problems()


def test_reading_features_are_on_every_chapter() -> None:
    for path in (p for p in PAGES if p.startswith("chapters/")):
        html = (HTML / path).read_text()
        notebook = Path(path).with_suffix(".ipynb").as_posix()
        assert f"_sources/{notebook}" in html, f"{path}: no .ipynb download"
        assert "mybinder.org/v2/gh/" in html and "colab.research.google.com/github/" in html, path
        assert "thebe-launch-button" in html or "initThebe" in html, f"{path}: no live-code button"
        assert "/issues/new" in html, f"{path}: no issue button"


def test_every_solution_is_one_dropdown_with_no_colab_fold_left() -> None:
    """The notebooks fold solutions for Colab in <details>; the book drops those lines and folds them itself."""
    for path in (p for p in PAGES if p.startswith("chapters/")):
        html = (HTML / path).read_text()
        nb = nbformat.read(ROOT / Path(path).with_suffix(".ipynb"), as_version=4)
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        solutions = len(re.findall(r"^`{3,}\{solution(?:-start)?\}", markdown, re.M))
        assert html.count('<div class="solution dropdown admonition"') == solutions, path
        assert "Show the solution" not in html, f"{path}: a Colab fold is left"
