"""Workshop mode: student copies of the notebooks, and one zip an instructor can hand out or upload.

* `student_notebook(notebook)`: a copy in which every exercise answer cell (a code cell that calls an
  ``exercises.check_…`` checker) has each ``answer = None  # your code here`` line blanked to the marked stub
  ``answer = ...  # ✎ your answer here`` and its outputs removed. Everything else (text, worked examples,
  their outputs) is kept, so the copy reads like the course and runs top to bottom: each checker then
  prints "not answered yet".
* `write_bundle(path, student=True)`: ``labkit/`` + the notebooks (student copies or the full ones) + the
  data card + README/pyproject/requirements, as one zip. On Colab, upload it to /content: the notebooks'
  first cell unpacks it instead of cloning (`labkit.course.colab`). No git hosting needed.

The solutions are not in the notebooks: an instructor opens ``labkit.course.exercises.solutions``.

    make student    # build/student/notebooks/*.ipynb
    make bundle     # build/labkit-course.zip (student copies); `make bundle FULL=1` for the full notebooks
"""
from __future__ import annotations

import copy
import re
import zipfile
from pathlib import Path

import nbformat

from labkit.course.colab import BUNDLE_NAME

__all__ = ["STUB", "is_exercise_cell", "student_notebook", "write_student_copies", "write_bundle"]

ROOT = Path(__file__).resolve().parents[2]
STUB = "...  # ✎ your answer here"
_CHECKER_CALL = re.compile(r"\bexercises\.check_\w+\(")
# The course's answer lines: `answer = None  # your code here[, e.g. 4]` (any variable name).
_ANSWER_LINE = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*=[^#\n]*#\s*your code here(?P<hint>.*)$", flags=re.MULTILINE)
BUNDLE_FILES = ("README.md", "pyproject.toml", "requirements.txt", "data/README.md")


def is_exercise_cell(cell) -> bool:
    return cell.cell_type == "code" and bool(_CHECKER_CALL.search(cell.source))


def _stub(match) -> str:
    hint = match["hint"].strip(" ,")
    return f"{match['name']} = {STUB}" + (f" ({hint})" if hint else "")


def student_notebook(notebook):
    """A student copy of `notebook` (an nbformat node; the original is not changed)."""
    copy_ = copy.deepcopy(notebook)
    for cell in copy_.cells:
        if is_exercise_cell(cell):
            cell.source = _ANSWER_LINE.sub(_stub, cell.source)
            cell.outputs = []
            cell.execution_count = None
    return copy_


def write_student_copies(out_dir: Path, notebooks_dir: Path = ROOT / "notebooks") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(notebooks_dir.glob("*.ipynb")):
        target = out_dir / path.name
        nbformat.write(student_notebook(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def write_bundle(path: Path, student: bool = True) -> Path:
    """Write the course zip to `path` (atomically: a failed write leaves nothing behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for source in sorted((ROOT / "labkit").rglob("*.py")):
                archive.write(source, source.relative_to(ROOT).as_posix())
            for name in BUNDLE_FILES:
                archive.write(ROOT / name, name)
            for notebook_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
                notebook = nbformat.read(notebook_path, as_version=4)
                if student:
                    notebook = student_notebook(notebook)
                archive.writestr(f"notebooks/{notebook_path.name}", nbformat.writes(notebook))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def main(argv: list[str]) -> int:
    """``python -m labkit.course.workshop student|bundle [--full]``"""
    if argv[:1] == ["student"]:
        written = write_student_copies(ROOT / "build" / "student" / "notebooks")
        print(f"wrote {len(written)} student notebooks to build/student/notebooks/")
        return 0
    if argv[:1] == ["bundle"]:
        path = write_bundle(ROOT / "build" / BUNDLE_NAME, student="--full" not in argv)
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:.1f} MB, "
              f"{'full' if '--full' in argv else 'student'} notebooks)")
        return 0
    print("usage: python -m labkit.course.workshop student | bundle [--full]")
    return 2


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
