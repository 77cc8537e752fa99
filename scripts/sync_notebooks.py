"""Write the derived parts of every notebook and of the README from their one source.

    python scripts/sync_notebooks.py          # rewrite them
    python scripts/sync_notebooks.py --check  # exit 1 and list what is out of date (CI runs the tests instead)

* each notebook's first code cell: `labkit.course.colab.setup_cell_source()` (its stored output is kept);
* the README's "Open in Colab" column: `labkit.course.colab.colab_link()`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labkit.course.colab import colab_link, setup_cell_source  # noqa: E402

COLAB_BADGE = "[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})"


def first_code_cell(notebook):
    return next(cell for cell in notebook.cells if cell.cell_type == "code")


def sync_notebook(path: Path, check: bool) -> bool:
    notebook = nbformat.read(path, as_version=4)
    cell = first_code_cell(notebook)
    wanted = setup_cell_source()
    if cell.source == wanted:
        return False
    if not check:
        cell.source = wanted
        nbformat.write(notebook, path)
    return True


def readme_with_links(text: str) -> str:
    """Each course-table row `| [NN — Title](notebooks/NN_x.ipynb) | ... |` gets its Colab badge as last column."""
    def row(match):
        notebook = match["notebook"]
        return f"{match['head']} {COLAB_BADGE.format(link=colab_link(notebook))} |"
    pattern = r"(?P<head>\| \[\d\d — [^]]+\]\(notebooks/(?P<notebook>\d\d_[a-z_]+\.ipynb)\) \|[^|\n]*\|)(?: [^|\n]*\|)?"
    return re.sub(pattern, row, text)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = [path.name for path in sorted((ROOT / "notebooks").glob("*.ipynb")) if sync_notebook(path, check)]
    readme = ROOT / "README.md"
    text = readme.read_text()
    if readme_with_links(text) != text:
        stale.append("README.md")
        if not check:
            readme.write_text(readme_with_links(text))
    print(("out of date: " if check else "rewrote: ") + (", ".join(stale) or "nothing"))
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
