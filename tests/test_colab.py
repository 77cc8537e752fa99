"""The Colab cell: every notebook has it, its URL comes from the project's metadata, and its code works.

The cell's code runs here in a fresh Python process with a stubbed ``google.colab`` module and a temporary
folder standing in for /content (``LABKIT_COLAB_ROOT``): a clone that fails must stop with the message and
the two ways out; an uploaded course bundle must make ``import labkit`` work from the bundle.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from labkit.course import colab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def first_code_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(cell for cell in cells if cell["cell_type"] == "code")["source"])


def test_the_url_is_named_once_in_the_metadata():
    url = colab.repository_url()
    assert url.startswith("https://github.com/")
    assert f'Source = "{url}"' in (ROOT / "pyproject.toml").read_text()
    assert url in colab.setup_cell_source()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_notebook_starts_with_the_colab_cell(path):
    assert first_code_cell(path) == colab.setup_cell_source(), (
        f"{path.name}'s first cell is not the generated Colab cell: run `python scripts/sync_notebooks.py`.")


def test_the_cell_has_no_swallowed_errors():
    source = colab.setup_cell_source()
    assert "|| true" not in source and "2>/dev/null" not in source
    assert "pip install" in source and "torch" not in source.split("pip install")[1].split("\n")[0]


def test_readme_links_every_notebook_to_colab():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert colab.colab_link(path.name) in readme, f"README lacks the Colab link of {path.name}"


def run_cell_as_on_colab(tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    """Run the cell's code with `google.colab` importable and `labkit` not, in a clean process."""
    stubs = tmp_path / "stubs"
    (stubs / "google" / "colab").mkdir(parents=True)
    (stubs / "google" / "__init__.py").write_text("")
    (stubs / "google" / "colab" / "__init__.py").write_text("")
    # Hide the checkout's labkit: only what the cell fetches may provide it.
    script = tmp_path / "cell.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:] = [p for p in sys.path if p not in ({str(ROOT)!r}, '')]\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]\n"
        "import google.colab\n"
        + colab.setup_cell_source().replace("lab = labkit.setup()", "print('labkit from', labkit.__file__)")
    )
    environment = {**os.environ, "PYTHONPATH": str(stubs), "LABKIT_COLAB_ROOT": str(tmp_path / "content"), **env}
    (tmp_path / "content").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=environment,
                          cwd=tmp_path, timeout=120)


def test_a_failing_clone_stops_with_the_ways_out(tmp_path):
    result = run_cell_as_on_colab(tmp_path, {"LABKIT_REPO": str(tmp_path / "no-such-repository"),
                                             "GIT_TERMINAL_PROMPT": "0"})
    assert result.returncode != 0
    assert "Could not fetch the course: git clone" in result.stderr
    assert "LABKIT_REPO" in result.stderr and colab.BUNDLE_NAME in result.stderr
    assert "ModuleNotFoundError" not in result.stderr


def test_an_uploaded_bundle_makes_labkit_importable(tmp_path):
    bundle = tmp_path / "content" / colab.BUNDLE_NAME
    bundle.parent.mkdir()
    with zipfile.ZipFile(bundle, "w") as archive:
        for path in (ROOT / "labkit").rglob("*.py"):
            archive.write(path, path.relative_to(ROOT).as_posix())
    result = run_cell_as_on_colab(tmp_path, {"LABKIT_REPO": str(tmp_path / "no-such-repository")})
    assert result.returncode == 0, result.stderr
    assert f"labkit from {tmp_path / 'content' / 'labkit' / 'labkit' / '__init__.py'}" in result.stdout
