"""Execute notebooks in place and store their outputs (what a reader sees on the repository page).

    python scripts/run_notebooks.py notebooks/*.ipynb            # full mode (LABKIT_FAST=0)
    LABKIT_FAST=1 python scripts/run_notebooks.py notebooks/03_pooling.ipynb   # quick check

Each notebook runs top to bottom with its folder as the working directory, like JupyterLab runs it.
Widget state is dropped (it bloats files and means nothing on a static page).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: Path, timeout: int = 1800) -> float:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)  # per-cell timestamps: noise in every diff
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def main(paths: list[str]) -> int:
    os.environ.setdefault("LABKIT_FAST", "0")
    for name in paths:
        seconds = run(Path(name))
        print(f"{name}: {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
