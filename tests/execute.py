"""Re-run notebooks in place with nbclient, top to bottom, storing widget state: `make execute`.

Per-cell timing metadata is not recorded, so re-running a notebook changes only its outputs.
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # stores widget state in nb.metadata.widgets (store_widget_state is on by default)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"executing {name}", flush=True)
        execute(Path(name))
