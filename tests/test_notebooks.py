"""Notebook hygiene: what nbval cannot see.

nbval compares fresh outputs with committed ones, so a notebook with unexecuted cells, or with
outputs it never compares, passes vacuously. These checks close those gaps.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from install_cell import TAG, install_cell, source_for

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
ALLOWED_TAGS = {"nbval-ignore-output", "hide-input", "hide-output", "remove-input", "remove-output", "remove-cell"}
MACHINE_PATH = re.compile(r"/(work|tmp|root|home|Users)/|site-packages|\.venv/")
MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]{6,}")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def output_text(output: nbformat.NotebookNode) -> str:
    return output.get("text", "") + json.dumps(output.get("data", {}).get("text/plain", ""))


def test_there_are_notebooks_and_the_toc_lists_exactly_them() -> None:
    assert NOTEBOOKS, "no notebooks in chapters/"
    listed = {f for f in toc_files() if f.startswith("chapters/")}
    assert listed == {f"chapters/{nb.stem}" for nb in NOTEBOOKS}


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def nb_path(request: pytest.FixtureRequest) -> Path:
    return request.param


@pytest.fixture
def nb(nb_path: Path) -> nbformat.NotebookNode:
    return nbformat.read(nb_path, as_version=4)


def test_the_first_code_cell_installs_the_package_where_it_is_missing(nb_path: Path) -> None:
    """Colab opens a chapter without the package: the hidden first cell installs it, from the
    repository and branch of _config.yml. Where the package is present it prints nothing."""
    nb = nbformat.read(nb_path, as_version=4)
    cell = install_cell(nb)
    assert cell is not None, f"the first code cell has no {TAG!r} tag: run python tests/install_cell.py"
    assert cell.source == source_for(nb_path), "the install cell is out of date: run python tests/install_cell.py"
    assert cell.outputs == [], "the install cell printed something where the package is installed"
    assert [t for c in nb.cells for t in c.metadata.get("tags", [])].count(TAG) == 1, "only the install cell is removed"


def test_every_code_cell_ran_once_in_order(nb: nbformat.NotebookNode) -> None:
    counts = [c.execution_count for c in code_cells(nb)]
    assert None not in counts, "a code cell was never executed: nbval would pass it without checking"
    assert counts == list(range(1, len(counts) + 1)), f"not executed top to bottom in one run: {counts}"


def test_outputs_are_clean(nb: nbformat.NotebookNode) -> None:
    for i, cell in enumerate(code_cells(nb)):
        for output in cell.outputs:
            assert output.output_type != "error", f"code cell {i} has an error output"
            assert output.get("name") != "stderr", f"code cell {i} wrote to stderr: {output.text[:200]}"
            text = output_text(output)
            assert not MACHINE_PATH.search(text), f"code cell {i} shows a path of the build machine"
            assert not MEMORY_ADDRESS.search(text), f"code cell {i} shows a memory address"


def test_only_known_tags_and_no_magic_comments(nb: nbformat.NotebookNode) -> None:
    for i, cell in enumerate(nb.cells):
        tags = set(cell.metadata.get("tags", []))
        assert tags <= ALLOWED_TAGS, f"cell {i} has tags {tags - ALLOWED_TAGS}"
        assert "NBVAL" not in cell.source, f"cell {i}: use a cell tag, not an NBVAL comment"


def test_most_outputs_are_compared(nb: nbformat.NotebookNode) -> None:
    cells = code_cells(nb)
    ignored = [c for c in cells if "nbval-ignore-output" in c.metadata.get("tags", [])]
    with_output = [c for c in cells if c.outputs and c not in ignored]
    assert len(ignored) <= 3, "only benchmark and environment cells may ignore their output"
    assert len(with_output) >= len(cells) // 2, "most code cells should print what they prove"


def test_every_widget_view_has_saved_state(nb: nbformat.NotebookNode) -> None:
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for i, cell in enumerate(code_cells(nb)):
        for output in cell.outputs:
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view:
                assert view["model_id"] in state, f"code cell {i}: the widget would render empty on the static page"


def test_chapter_skeleton(nb: nbformat.NotebookNode) -> None:
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# "), "the first heading is the chapter title"
    assert "you will be able to" in nb.cells[0].source, "the first cell states what the reader will be able to do"
    assert "## Summary" in headings and "## Exercises" in headings
    assert sum(1 for c in nb.cells if "{exercise" in c.source) >= 2


def test_lines_fit_the_page(nb: nbformat.NotebookNode) -> None:
    """The rendered page shows about 80 characters of code or output; longer lines are cut off."""
    for i, cell in enumerate(code_cells(nb)):
        texts = [cell.source] + [o.text for o in cell.outputs if o.output_type == "stream"]
        for line in "\n".join(texts).splitlines():
            assert len(line) <= 80, f"code cell {i}: a line of {len(line)} characters: {line[:60]}..."


def test_notebooks_stay_lean() -> None:
    for path in NOTEBOOKS:
        assert path.stat().st_size < 3_000_000, f"{path.name} is {path.stat().st_size // 1000} kB"


FOLD = re.compile(r"^<details><summary>Show the solution</summary>\n\n.*?\n\n</details>$", re.M | re.S)
SOLUTION_START = re.compile(r"\s*(`{3,})\{solution-start\}[^\n]*\n(:[^\n]*\n)*\1\s*")


def test_no_solution_in_plain_sight_in_the_raw_notebook(nb: nbformat.NotebookNode) -> None:
    """Colab shows the raw MyST: every solution must be folded there, in a <details> or a hidden cell.

    The book drops the <details> lines (book/_ext/course_assets.py) and folds solutions itself.
    """
    inside = False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if inside:
                assert cell.source.startswith("# Solution\n"), f"cell {i}: a solution cell says so first"
                assert cell.metadata.get("cellView") == "form", f"cell {i}: Colab folds a solution cell as a form"
                hidden = cell.metadata.get("jupyter", {})
                assert hidden.get("source_hidden") and hidden.get("outputs_hidden"), f"cell {i}: JupyterLab folds it"
            continue
        plain = FOLD.sub("", cell.source)
        assert "<details>" not in plain and "</details>" not in plain, f"cell {i}: a fold that is not a solution's"
        if "{solution-start}" in cell.source:
            assert SOLUTION_START.fullmatch(plain), f"cell {i}: solution text after solution-start is not folded"
            inside = True
        elif "{solution-end}" in cell.source:
            inside = False
        elif inside:
            assert not plain.strip(), f"cell {i}: text inside a solution is not folded"
        else:
            assert "{solution}" not in plain, f"cell {i}: a solution that Colab would show"
    assert not inside, "a solution-start without its solution-end"
