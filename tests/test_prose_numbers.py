"""Numbers quoted in a notebook's text must come from that notebook's stored outputs (its full run).

After `make notebooks` re-runs the course, a figure the text quotes but the outputs no longer show is a stale
claim. This test reads every markdown cell, takes each number written with two or more decimals (the way
results are written: 0.5674, 3.2679, 12.21), and looks for it in the same notebook's stored outputs and code,
rounded to the decimals the text uses (0.567 matches an output 0.5674). A number that is not a cell's output
must be declared below, with how it is known:

* ``"= <expression>"``: derived from other numbers by arithmetic (a difference, √3, ln 70); every operand with
  two or more decimals must itself be in the outputs, and the expression must round to the quoted number;
* ``"source: <file>"``: a figure from a benchmark table in the repository (rerun by its script), which must
  contain it;
* ``"cited: <where>"``: a published figure, or a quote of someone else's run, with its reference.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
QUOTED = re.compile(r"(?<![\w.])(\d+\.\d{2,})(?![\w])")  # a result as prose writes it: two or more decimals
ANY_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?")
LINK_TARGET = re.compile(r"\]\([^)]*\)")

DECLARED = {
    "05_triplet_losses": {
        "6.24": "= 3.61 - 9.85",
    },
    "06_similarity_losses": {
        "0.8203": "cited: MTEB's STS-B test result for all-MiniLM-L6-v2 (Spearman, 1,379 pairs); "
                  "also measured in ../shared/DESIGN.md",
    },
    "07_in_batch_negatives": {
        "0.0066": "= 0.5463 - 0.5397",
    },
    "08_loss_playground": {
        "1.732": "= math.sqrt(3)",
    },
    "09_training": {
        "0.567": "source: benchmarks/README.md (benchmarks/recipe_search.py, dev MAP@R)",
        "0.642": "source: benchmarks/README.md (benchmarks/recipe_search.py, dev MAP@R)",
        "0.77": "= math.sqrt(2 - 2 * 0.7)",
        "1.27": "= math.sqrt(2 - 2 * 0.7) + 0.5",
    },
    "14_retrieval_finetuning": {
        "0.0046": "= 0.5841 - 0.5795",
    },
    "12_reproducing_the_article": {
        "4.25": "= math.log(70)",
        "1.04": "cited: the article's own logged training loss (rjnclarke/101_notebooks, notebook 1.7.1)",
        "1.009": "cited: the article's own logged training loss (rjnclarke/101_notebooks, notebook 1.7.1)",
        "1.005": "cited: the article's own logged training loss (rjnclarke/101_notebooks, notebook 1.7.1)",
        "1.006": "cited: the article's own logged training loss (rjnclarke/101_notebooks, notebook 1.7.1)",
        "1.004": "cited: the article's own logged training loss (rjnclarke/101_notebooks, notebook 1.7.1)",
    },
    "13_scaling_up": {
        "0.04": "= 20 * 2 ** -9",
    },
}


def notebook_texts(path: Path) -> tuple[str, str]:
    """(all markdown, all stored outputs and code) of a notebook."""
    markdown, outputs = [], []
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            markdown.append("".join(cell["source"]))
        elif cell["cell_type"] == "code":
            outputs.append("".join(cell["source"]))
            for output in cell.get("outputs", []):
                outputs.append("".join(output.get("text", "")))
                for kind, value in output.get("data", {}).items():
                    if kind.startswith("text/"):
                        outputs.append("".join(value) if isinstance(value, list) else value)
    return LINK_TARGET.sub("]", "\n".join(markdown)), "\n".join(outputs)


def numbers_in(text: str) -> set[float]:
    values = set()
    for match in ANY_NUMBER.findall(text):
        try:
            values.add(abs(float(match.replace(",", ""))))
        except ValueError:
            pass
    return values


def shown(quoted: str, values: set[float]) -> bool:
    decimals = len(quoted.split(".")[1])
    return any(abs(round(value, decimals) - float(quoted)) < 1e-9 for value in values)


def check_declaration(quoted: str, how: str, values: set[float]) -> str | None:
    """None if the declaration holds, else what is wrong."""
    if how.startswith("= "):
        expression = how[2:]
        operands = [operand for operand in QUOTED.findall(expression)]
        missing = [operand for operand in operands if not shown(operand, values)]
        if missing:
            return f"{quoted} = {expression}: operands {missing} are not in the outputs"
        value = eval(expression, {"math": math, "__builtins__": {}})  # noqa: S307 (our own declarations)
        if not shown(quoted, {abs(value)}):
            return f"{quoted} is declared as {expression} = {value:.6g}, which does not round to it"
        return None
    if how.startswith("source: "):
        source = ROOT / how.split(":", 1)[1].strip().split()[0]
        if not source.is_file() or not shown(quoted, numbers_in(source.read_text())):
            return f"{quoted} is declared to come from {source.relative_to(ROOT)}, which does not contain it"
        return None
    if how.startswith("cited: ") and len(how) > 20:
        return None
    return f"{quoted}: declaration {how!r} must start with '= ', 'source: ' or 'cited: ' (with the reference)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_number_in_the_text_comes_from_the_outputs(path):
    markdown, outputs = notebook_texts(path)
    values = numbers_in(outputs)
    declared = DECLARED.get(path.stem, {})
    problems = []
    for quoted in sorted(set(QUOTED.findall(markdown))):
        if quoted in declared:
            problem = check_declaration(quoted, declared[quoted], values)
            if problem:
                problems.append(problem)
        elif not shown(quoted, values):
            context = markdown[max(0, markdown.index(quoted) - 80): markdown.index(quoted) + 40].replace("\n", " ")
            problems.append(f"{quoted} is not in any output: …{context}…")
    assert not problems, f"{path.name}: numbers in the text that its outputs do not show:\n" + "\n".join(problems)


def test_declarations_are_still_needed():
    """A declared number that is no longer in the text (or now is an output) is a stale declaration."""
    stale = []
    for stem, numbers in DECLARED.items():
        markdown, outputs = notebook_texts(ROOT / "notebooks" / f"{stem}.ipynb")
        for quoted in numbers:
            if quoted not in QUOTED.findall(markdown):
                stale.append(f"{stem}: {quoted} is no longer in the text")
    assert not stale, "\n".join(stale)


def test_the_check_catches_a_stale_number():
    values = numbers_in("MAP@R 0.5674, P@1 0.8955")
    assert shown("0.567", values) and shown("0.5674", values)
    assert not shown("0.5676", values) and not shown("0.60", values)
    assert check_declaration("0.0013", "= 0.5171 - 0.5158", numbers_in("0.5171 0.5158")) is None
    assert check_declaration("0.0013", "= 0.5171 - 0.5158", numbers_in("0.5171")) is not None
    assert check_declaration("0.0020", "= 0.5171 - 0.5158", numbers_in("0.5171 0.5158")) is not None
