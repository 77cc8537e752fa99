"""Execute notebooks in place and store their outputs (what a reader sees on the repository page).

    python scripts/run_notebooks.py notebooks/*.ipynb            # full mode (LABKIT_FAST=0)
    LABKIT_FAST=1 python scripts/run_notebooks.py notebooks/03_pooling.ipynb   # quick check

Each notebook runs top to bottom with its folder as the working directory, like JupyterLab runs it.
Widget state is dropped (it bloats files and means nothing on a static page), progress bars are turned off
(a tqdm widget is stored as a stuck "0%" on GitHub and nbviewer), and every notebook gets the Python 3 kernelspec.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def is_progress_bar(output) -> bool:
    """A tqdm widget: a widget view whose plain-text fallback is a progress bar."""
    data = output.get("data", {})
    return "application/vnd.jupyter.widget-view+json" in data and "%|" in str(data.get("text/plain", ""))


def clean(notebook) -> None:
    """What `run` does to a notebook after executing it (also applied to notebooks stored before it did)."""
    notebook.metadata.pop("widgets", None)
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)  # per-cell timestamps: noise in every diff
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if not is_progress_bar(output)]


def run(path: Path, timeout: int = 1800) -> float:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    clean(notebook)
    nbformat.write(notebook, path)
    return time.perf_counter() - start


def main(paths: list[str]) -> int:
    os.environ.setdefault("LABKIT_FAST", "0")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernels inherit it: no progress bars in stored outputs
    for name in paths:
        seconds = run(Path(name))
        print(f"{name}: {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
