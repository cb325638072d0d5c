"""The book as one PDF (`make pdf`), read back with poppler's pdftotext and pdfinfo.

Every chapter's title is there, a numbered formula and a widget's first state are there, the
figures are embedded, and the page count is that of a book, not of a stub or a runaway.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PDF = ROOT / "_build" / "latex" / "multihead-attention.pdf"
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.fixture(scope="module")
def text() -> str:
    if not PDF.exists():
        pytest.fail(f"no {PDF.relative_to(ROOT)}: run `make pdf` first")
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(PDF), "-"], capture_output=True, text=True, check=True).stdout


def title(notebook: Path) -> str:
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            first = "".join(cell["source"]).lstrip().splitlines()[0]
            if first.startswith("# "):
                return first[2:].strip()
    raise AssertionError(f"{notebook.name} has no title")


def plain(words: str) -> str:
    """Text as pdftotext gives it: MyST code spans and emphasis markers gone, one space."""
    return re.sub(r"\s+", " ", re.sub(r"[`*]", "", words))


def test_every_chapter_title_is_in_the_pdf(text: str) -> None:
    flat = plain(text)
    assert len(CHAPTERS) == 11
    for number, notebook in enumerate(CHAPTERS, start=1):  # numbered as on the web: 1 to 11
        assert f"{number} {plain(title(notebook))}" in flat, f"{notebook.name}: {title(notebook)!r}"


def test_formulas_are_typeset_and_numbered(text: str) -> None:
    assert "Concat(head1 , . . . , headh )" in text or re.search(r"Concat\(head\s*1", text), "Concat(head_1, ...) formula"
    labelled = sum(len(re.findall(r"\$\$ *\([\w-]+\)", n.read_text())) for n in CHAPTERS)
    numbers = re.findall(r"^\((\d+)\.(\d+)\)$", text, re.M)
    assert labelled >= 3 and len(numbers) == labelled, f"{len(numbers)} equation numbers for {labelled} labels"
    assert {int(chapter) for chapter, _ in numbers} == {3, 4, 11}, "numbered by chapter, as on the web"


def test_outputs_and_the_first_widget_states_are_printed(text: str) -> None:
    assert "216 precomputed states" in text, "chapter 2's printed output"
    assert "[batch B = 4, tokens T = 16, d_model = 512, heads h = 4]" in text, "chapter 2's widget, as text"
    assert "merge .transpose(1, 2).contiguous().view(B, T, d_model)" in plain(text)
    assert "注意力" in text, "the glossary's Chinese column (xeCJK)"


def test_figures_are_embedded() -> None:
    listing = subprocess.run(["pdfimages", "-list", str(PDF)], capture_output=True, text=True, check=True).stdout
    images = [line for line in listing.splitlines()[2:] if line.strip()]
    figures = sum(
        "image/png" in output.get("data", {})
        for notebook in CHAPTERS
        for cell in json.loads(notebook.read_text())["cells"]
        for output in cell.get("outputs", [])
    )
    assert figures >= 20 and len(images) >= figures, f"{len(images)} images in the PDF for {figures} PNG outputs"


def test_page_count_is_that_of_the_book() -> None:
    info = subprocess.run(["pdfinfo", str(PDF)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M)[1])
    size = PDF.stat().st_size
    print(f"{PDF.name}: {pages} pages, {size / 1e6:.2f} MB")
    assert 100 <= pages <= 300, pages
    assert size <= 10_000_000, size


def test_no_table_runs_off_the_page() -> None:
    """LaTeX reports a table wider than the text as an overfull alignment; its last column is cut off."""
    log = PDF.with_suffix(".log").read_text(errors="replace")
    wide = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\) in alignment", log)
    assert not wide, f"{len(wide)} table rows too wide, by up to {max(map(float, wide)):.0f} pt"


def test_solutions_are_printed_without_the_notebooks_colab_folds(text: str) -> None:
    assert "Solution to Exercise 1.1" in plain(text)
    assert "Show the solution" not in plain(text)
