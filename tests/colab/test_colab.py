"""A chapter runs to the end where only what Colab has is installed: `make test-colab`.

Colab gives a notebook Python, torch, ipykernel, matplotlib and ipywidgets, and not the course's
package. The chapter's hidden first cell must install the rest. Here a fresh virtual environment
holds only those packages, and the cell installs the package from this checkout instead of from
the repository (MULTIHEAD_SOURCE), so the test checks the code as it is now.
"""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = ROOT / "chapters" / "02_splitting_the_heads.ipynb"  # widgets, glue and an exercise
PINS = {line.split("==")[0]: line.split()[0] for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
COLAB = [PINS["torch"], "ipykernel", "matplotlib", PINS["ipywidgets"]]  # the pins the book is built with


def compared_text(nb: nbformat.NotebookNode) -> list[str]:
    """The stream text of every cell that nbval compares (the install cell aside)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "nbval-ignore-output" not in c.metadata.get("tags", [])]
    return ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in cells[1:]]


def test_a_chapter_runs_where_only_colabs_packages_are(tmp_path: Path, monkeypatch) -> None:
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", *COLAB], check=True, timeout=1200)
    missing = subprocess.run([python, "-c", "import multihead"], capture_output=True)
    assert missing.returncode != 0, "the Colab-like environment already has the package"

    spec = tmp_path / "jupyter" / "kernels" / "colab"
    spec.mkdir(parents=True)
    argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Colab-like", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MULTIHEAD_SOURCE", (ROOT / "code").as_uri())

    committed = nbformat.read(CHAPTER, as_version=4)
    ran = nbformat.read(CHAPTER, as_version=4)
    client = NotebookClient(ran, kernel_name="colab", timeout=900, resources={"metadata": {"path": str(CHAPTER.parent)}})
    client.execute()  # raises CellExecutionError if any cell fails

    installed = subprocess.run([python, "-c", "import multihead, myst_nb"], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    assert compared_text(ran) == compared_text(committed), "the chapter printed other results than the book"
