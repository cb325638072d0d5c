"""The chapters as a reader who runs `make lab` meets them: JupyterLab with jupyterlab-myst.

A JupyterLab server from the course's environment serves a copy of chapters/ (a test must never
save into the repository). Each chapter opens in Chromium, every outside request blocked. Its
markdown must show no raw MyST: exercises are rendered boxes, solutions are folded, references
are links. The solution code cells are folded too, so no solution is in plain sight.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import OUTSIDE, ROOT, PageLog, block, watch
from playwright.sync_api import Browser, Page, expect

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
JUPYTER = Path(sys.executable).parent / "jupyter"
TOKEN = "course-lab-test"
START_TIMEOUT = 90  # seconds for the server to answer /api/status on a busy 2-core machine
RAW_MYST = ("{exercise", "{solution", "{numref}", "{eq}", "{ref}", ":label:", ":class:")
EXERCISE_TITLE = re.compile(r"^(Start of )?Exercise \d")  # not "End of Exercise" nor a solution's title
ROLE = re.compile(r"\{(?:numref|eq|ref)\}`([^`<]*)`")
SETTINGS = {  # render every cell (not only those in view), and ask nothing of the reader
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_status(url: str, server: subprocess.Popen, log: Path) -> None:
    """Return once the server answers its status API; fail with its log if it dies or never does."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`make lab`'s server, on a free port, over a copy of the chapters."""
    base = tmp_path_factory.mktemp("lab")
    notebooks = base / "chapters"
    shutil.copytree(ROOT / "chapters", notebooks)
    for name, value in SETTINGS.items():
        path = base / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
    }
    port, log = free_port(), base / "server.log"
    command = [str(JUPYTER), "lab", "--no-browser", "--allow-root", f"--port={port}", "--ServerApp.ip=127.0.0.1"]
    command += [f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={notebooks}"]
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_status(url, server, log)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def lab_page(browser: Browser) -> tuple[Page, PageLog]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    log = PageLog()
    context.route(OUTSIDE, lambda route: block(route, log.blocked))
    page = context.new_page()
    watch(page, log)
    yield page, log
    context.close()


def unseen_figure(problem: str, figures: set[str]) -> bool:
    """jupyterlab-myst reads markdown cells only, so a figure named in a code cell's metadata (MyST-NB)
    is no target for it: it logs each reference to one, and shows the reference's own text."""
    messages = problem.rsplit(" [", 1)[0].splitlines()
    return all(m.removeprefix("Cross reference target was not found: ") in figures for m in messages)


def counts(nb: nbformat.NotebookNode) -> dict[str, int]:
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return {
        "exercises": len(re.findall(r"^`{3,}\{exercise(?:-start)?\}", text, re.M)),
        "folds": text.count("<details>"),
    }


def solution_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells between a {solution-start} and its {solution-end}."""
    inside, found = False, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            inside = "{solution-start}" in cell.source or (inside and "{solution-end}" not in cell.source)
        elif inside:
            found.append(cell)
    return found


def solution_code(nb: nbformat.NotebookNode) -> list[str]:
    """For every code cell inside a solution, its longest line that no other code cell shows."""
    solutions = solution_cells(nb)
    others_cells = [c for c in nb.cells if c.cell_type == "code" and not any(c is s for s in solutions)]
    shown = [c.source + "".join(o.get("text", "") for o in c.outputs) for c in others_cells]
    others = {line.strip() for text in shown for line in text.splitlines()}
    found = []
    for cell in solutions:
        own = [line.strip() for line in cell.source.splitlines() if line.strip() not in others | {"# Solution"}]
        found += [max(own, key=len)] if own else []
    return found


def test_jupyterlab_myst_is_installed_and_compatible() -> None:
    listing = subprocess.run([str(JUPYTER), "labextension", "list"], capture_output=True, text=True, check=True)
    report = listing.stdout + listing.stderr
    assert re.search(r"jupyterlab-myst v\S+ \S*enabled\S* \S*OK", report), report
    assert "is not compatible" not in report, report


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_reads_well_in_jupyterlab(lab: str, lab_page: tuple[Page, PageLog], path: Path) -> None:
    page, log = lab_page
    nb = nbformat.read(path, as_version=4)
    expected = counts(nb)
    page.goto(f"{lab}/lab/tree/{path.name}?token={TOKEN}&reset")
    markdown = page.locator(".jp-Notebook .jp-MarkdownCell")
    expect(markdown).to_have_count(sum(c.cell_type == "markdown" for c in nb.cells), timeout=60_000)
    titles = page.locator(".jp-MarkdownCell .myst-exercise-title", has_text=EXERCISE_TITLE)
    expect(titles).to_have_count(expected["exercises"], timeout=60_000)
    folds = page.locator(".jp-MarkdownCell summary", has_text="Show the solution").locator("xpath=..")
    expect(folds).to_have_count(expected["folds"])

    shown = "\n".join(markdown.all_inner_texts())
    for raw in RAW_MYST:
        assert raw not in shown, f"{path.name} shows raw MyST {raw!r}"
    for label in set(ROLE.findall("\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))):
        assert page.locator(f'.jp-MarkdownCell a[href="#{label}"]').count(), f"{path.name}: no link to {label}"

    for fold in folds.all():
        assert fold.get_attribute("open") is None, f"{path.name}: a solution opens unfolded"
        for part in fold.locator(":scope > :not(summary)").all():
            assert not part.is_visible(), f"{path.name}: solution text in plain sight"
    code = "\n".join(page.locator(".jp-Notebook .jp-CodeCell").all_inner_texts())
    for line in solution_code(nb):
        assert line not in code, f"{path.name}: solution code in plain sight: {line}"
    figures = {c.metadata["mystnb"]["figure"]["name"] for c in nb.cells if "figure" in c.metadata.get("mystnb", {})}
    assert not [p for p in log.problems() if not unseen_figure(p, figures)], log.problems()
