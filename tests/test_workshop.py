"""Workshop mode: student copies and the course bundle (`labkit.course.workshop`)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from labkit.course import workshop

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def exercise_cells(notebook):
    return [cell for cell in notebook.cells if workshop.is_exercise_cell(cell)]


def test_every_notebook_has_exercises():
    for path in NOTEBOOKS:
        assert exercise_cells(nbformat.read(path, as_version=4)), f"{path.name} has no exercise cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_student_copy_blanks_answers_and_keeps_the_rest(path):
    original = nbformat.read(path, as_version=4)
    student = workshop.student_notebook(original)
    assert len(student.cells) == len(original.cells)
    for before, after in zip(original.cells, student.cells):
        if workshop.is_exercise_cell(before):
            assert after.outputs == [] and after.execution_count is None
            assert workshop.STUB in after.source and "# your code here" not in after.source, after.source
        else:
            assert after == before
    assert nbformat.read(path, as_version=4) == original  # the original is untouched


def test_bundle_holds_the_package_the_notebooks_and_the_data_card(tmp_path, monkeypatch):
    bundle = workshop.write_bundle(tmp_path / "course.zip", student=True)
    names = set(zipfile.ZipFile(bundle).namelist())
    assert {"labkit/__init__.py", "labkit/course/__init__.py", "data/README.md", "pyproject.toml"} <= names
    assert {f"notebooks/{path.name}" for path in NOTEBOOKS} <= names
    assert not any(name.endswith(".partial") for name in os.listdir(tmp_path))
    notebook = nbformat.reads(zipfile.ZipFile(bundle).read(f"notebooks/{NOTEBOOKS[5].name}").decode(), as_version=4)
    assert all(cell.outputs == [] for cell in exercise_cells(notebook))


# A student copy differs from its notebook only in the exercise cells (test above), nbval runs every notebook
# top to bottom in `make test`, and tests/test_exercises_shared.py checks that every checker answers the stub's
# `...` with "not answered yet". So three student copies run here end to end, as a workshop would, rather than
# all of them (which would run the course twice: six minutes of the suite on two cores).
RUN_END_TO_END = ("00_start_here", "03_pooling", "07_in_batch_negatives")


def test_the_copies_run_end_to_end_are_notebooks():
    assert set(RUN_END_TO_END) <= {path.stem for path in NOTEBOOKS}


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem in RUN_END_TO_END], ids=lambda path: path.stem)
def test_student_copy_runs_and_every_exercise_says_not_answered(path, tmp_path, data_dir):
    """Fast mode, top to bottom: no cell fails, and every checker reports 'not answered yet'."""
    student = workshop.student_notebook(nbformat.read(path, as_version=4))
    NotebookClient(student, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    for cell in student.cells:
        assert not [output for output in cell.get("outputs", []) if output.output_type == "error"], cell.source
    for cell in exercise_cells(student):
        printed = "".join(output.get("text", "") for output in cell.outputs)
        assert "not answered yet" in printed.lower(), (cell.source, printed)
