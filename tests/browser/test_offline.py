"""The site as a reader who downloads it meets it: a zip, unpacked, opened from file:// offline.

The pages load their scripts from _static/vendor (book/_ext/course_assets.py), so a chapter must
typeset its formulas and run its widget with no server and every outside request blocked.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import HTML, PageLog
from playwright.sync_api import Page
from test_widgets import WIDGETS, check_widget

ZIP_BUDGET = 20_000_000  # bytes: the whole site, compressed, as a reader downloads it
OFFLINE_PAGES = ["chapters/02_splitting_the_heads.html", "chapters/03_heads_in_parallel.html"]


@pytest.fixture(scope="module")
def site_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("download")
    return Path(shutil.make_archive(str(folder / "site"), "zip", HTML))


@pytest.fixture(scope="module")
def unpacked(site_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(site_zip) as archive:
        archive.extractall(target)
    return target


def test_the_site_loads_nothing_from_a_cdn() -> None:
    for page in HTML.rglob("*.html"):
        text = page.read_text()
        for host in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com"):
            assert f'src="https://{host}' not in text, f"{page.relative_to(HTML)} loads a script from {host}"


def test_the_zipped_site_is_within_budget(site_zip: Path) -> None:
    size = site_zip.stat().st_size
    print(f"site as a zip: {size / 1e6:.1f} MB")
    assert size <= ZIP_BUDGET, f"{size:,} bytes"


@pytest.mark.parametrize("path", OFFLINE_PAGES)
def test_a_chapter_works_from_the_unpacked_zip(page: tuple[Page, PageLog], unpacked: Path, path: str) -> None:
    page, log = page
    page.goto((unpacked / path).as_uri(), wait_until="load")
    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
    page.evaluate("MathJax.startup.promise")
    assert page.locator(".math:not(:has(mjx-container))").count() == 0, "formulas left as raw TeX"
    assert page.locator("mjx-merror").count() == 0
    for hook in WIDGETS[path]:
        check_widget(page, hook)
    assert not log.problems(), log.problems()
