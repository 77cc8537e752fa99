"""The contract every checker of `labkit.course.exercises` keeps, tested on all of them at once.

For every exercise: the right answer passes; None and ... say "not answered yet" and show nothing;
``reveal=True`` prints the solution; every declared slip is recognised (its text printed) and its message
does not contain the answer (`exercise_checks.assert_hidden`). Here the "right answer" is the one the
checker declares: this file tests the contract, not the arithmetic. The per-notebook test files check that
each declared answer is right, against an independent computation (plain loops, the definitions).

Also: the reading rules shared by all checkers (one number, distinct integer indices), the solutions module,
no public helper that computes an answer, and the notebooks' exercise cells.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exercise_checks import assert_hidden, assert_right, assert_stub_and_reveal, assert_wrong, outcome
from labkit.course.exercises import Exercise, Field, Slip, check_indices, check_number, solutions

pytestmark = pytest.mark.usefixtures("one_thread")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LENGTHS = np.random.default_rng(0).integers(5, 120, size=400)

# Inputs of the exercises whose checker takes them after the answer (`fixture` gets a pytest fixture).
INPUTS = {
    ("start_here", "cosine_similarity"): lambda fixture: {"a": [1.0, 2.0, 2.0], "b": [2.0, 0.0, 1.0]},
    ("start_here", "most_similar"): lambda fixture: {
        "query": "How do I reset my PIN?", "model": fixture("tiny"),
        "candidates": ["The weather is nice today.", "I forgot my card's PIN number.", "My transfer was rejected.",
                       "What is the exchange rate?"]},
    ("start_here", "cosine_matrix"): lambda fixture: {"embeddings": [[3.0, 4.0, 0.0], [1.0, 1.0, 1.0], [0.0, -2.0, 5.0]]},
    ("tokenization", "token_count"): lambda fixture: {"text": "Unbelievably, my contactless payment was declined!",
                                                      "tokenizer": fixture("tokenizer")},
    ("tokenization", "padded_positions"): lambda fixture: {"lengths": [12, 7, 30, 9, 15, 22, 8], "batch_size": 3},
    ("tokenization", "max_length"): lambda fixture: {"lengths": LENGTHS, "coverage": 0.95},
    ("dataset_and_sampler", "epoch_length"): lambda fixture: {"class_sizes": [41, 8, 8, 5], "p": 2, "k": 3},
    ("dataset_and_sampler", "valid_triplets"): lambda fixture: {"batch_labels": list("aaabbcdddd")},
    ("dataset_and_sampler", "pk_loader"): lambda fixture: {"p": 2, "k": 3},
}
CASES = [(module, name) for module in solutions.NOTEBOOKS for name in solutions.exercises(module)]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from labkit.model import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


def setup(request, module: str, name: str):
    """(checker, exercise, inputs) of one exercise, built with the test's inputs."""
    inputs = INPUTS.get((module, name), lambda fixture: {})(request.getfixturevalue)
    exercise = solutions.exercise(module, name, **inputs)
    checker = getattr(importlib.import_module(f"labkit.course.exercises.{module}"), exercise.checker)
    return checker, exercise, inputs


def as_answer(expected):
    """The declared answer as a learner would type it."""
    if isinstance(expected, tuple) and expected and isinstance(expected[0], Field):
        return tuple(field.expected for field in expected)
    if isinstance(expected, frozenset):
        return sorted(expected)
    if isinstance(expected, tuple):
        return list(expected)
    return expected


def is_index(expected) -> bool:
    return isinstance(expected, (int, frozenset))


@pytest.mark.parametrize("module, name", CASES)
def test_declared_answer_passes_and_stubs_say_not_answered(request, capsys, module, name):
    checker, exercise, inputs = setup(request, module, name)
    if exercise.expected is None:  # check_pk_loader: a DataLoader, tested in its own file
        pytest.skip("no value to compare")
    right = as_answer(exercise.expected)
    assert_right(capsys, checker, right, **inputs)
    assert_stub_and_reveal(capsys, checker, right, index=is_index(exercise.expected), **inputs)
    ok, out = outcome(capsys, checker(right, reveal=True, **inputs))  # a right answer with reveal: both lines
    assert ok and out.startswith("✅") and "Solution" in out


@pytest.mark.parametrize("module, name", CASES)
def test_every_declared_slip_is_recognised_and_hides_the_answer(request, capsys, module, name):
    checker, exercise, inputs = setup(request, module, name)
    if exercise.expected is None:
        pytest.skip("no value to compare")
    right = as_answer(exercise.expected)
    if isinstance(exercise.expected, tuple) and isinstance(exercise.expected[0], Field):
        for position, field in enumerate(exercise.expected):
            for slip in field.slips:
                answer = list(right)
                answer[position] = slip.answer
                assert_wrong(capsys, checker, tuple(answer), f"that looks like {slip.looks_like}", right, **inputs)
        return
    for slip in exercise.slips:
        if callable(slip.answer):  # a family of answers: the notebook's own test file gives members of it
            continue
        out = assert_wrong(capsys, checker, as_answer(slip.answer), f"That looks like {slip.looks_like}", right,
                           index=is_index(exercise.expected), **inputs)
        assert slip.recheck.rstrip(".") in out


@pytest.mark.parametrize("module, name", CASES)
def test_texts_of_the_exercise_do_not_contain_the_answer(request, capsys, module, name):
    """What a learner reads before and while being wrong: the hint and every slip's texts."""
    _, exercise, _ = setup(request, module, name)
    if exercise.expected is None:
        pytest.skip("no value to compare")
    slips = [slip for field in exercise.expected for slip in field.slips] \
        if isinstance(exercise.expected, tuple) and isinstance(exercise.expected[0], Field) else exercise.slips
    for text in [exercise.hint] + [t for slip in slips for t in (slip.looks_like, slip.recheck)]:
        assert_hidden(text, as_answer(exercise.expected), statement=exercise.hint, index=is_index(exercise.expected))


# ----------------------------------------------------------------------------------------------------------
# The reading rules every checker shares
# ----------------------------------------------------------------------------------------------------------
def toy_number_exercise(expected=2.5, slips=()) -> Exercise:
    return Exercise(checker="check_toy", expected=expected, hint="add the two numbers", success="well done",
                    why="because", slips=slips)


def test_one_number_refuses_lists_and_extra_items(capsys):
    exercise = toy_number_exercise()
    for answer in ([2.5, 99], (2.5, 1.0), np.array([2.5, 0.0]), torch.tensor([2.5, 3.0])):
        ok, out = outcome(capsys, check_number(answer, exercise))
        assert not ok and "Give one number" in out and "2 values" in out, out
    for answer in (2.5, np.float32(2.5), torch.tensor(2.5), [2.5], np.array([2.5])):
        assert outcome(capsys, check_number(answer, exercise))[0]
    for answer in ("2.5", True, object()):
        ok, out = outcome(capsys, check_number(answer, exercise))
        assert not ok and "Give one number" in out


def test_a_slip_is_matched_with_the_tolerance_of_the_answer(capsys):
    exercise = toy_number_exercise(slips=(Slip(7.0, "the product", "the operation: add"),
                                          Slip(lambda v: v < 0, "a negative number", "the signs")))
    ok, out = outcome(capsys, check_number(7.0 + 1e-7, exercise))
    assert not ok and "That looks like the product. Recheck the operation: add." in out
    ok, out = outcome(capsys, check_number(-1, exercise))
    assert not ok and "That looks like a negative number." in out
    ok, out = outcome(capsys, check_number(1.0, exercise))
    assert not ok and "Not quite. Hint: add the two numbers." in out and "check_toy(answer, reveal=True)" in out


def test_indices_must_be_distinct_integers(capsys):
    exercise = Exercise(checker="check_toy", expected=frozenset({1, 2}), hint="h", success="s", why="w")
    for answer in ([1, 1, 2], [2, 2], [1.0, 2.0], [1.5], torch.tensor([1.0, 2.0]), {1.0, 2.0}):
        ok, out = outcome(capsys, check_indices(answer, exercise, count=5))
        assert not ok and "Indices must be distinct integers" in out, (answer, out)
    assert outcome(capsys, check_indices([2, 1], exercise, count=5))[0]
    assert outcome(capsys, check_indices(torch.tensor([1, 2]), exercise, count=5))[0]
    assert outcome(capsys, check_indices([False, True, True, False, False], exercise, count=5))[0]
    ok, out = outcome(capsys, check_indices([1, 3], exercise, count=5))
    assert not ok and "1 of your 2 indices is right, and at least one is missing" in out
    ok, out = outcome(capsys, check_indices([], exercise, count=5))
    assert not ok and "your answer is empty" in out
    ok, out = outcome(capsys, check_indices([1, 2, 3], exercise, count=5))
    assert not ok and "2 of your 3 indices are right, and none is missing" in out


def test_the_leak_detector_catches_the_usual_ways_of_writing_an_answer():
    for leaky in ("you got 0, expected 0.0253014", "expected 0.025301", "about 0.03 (0.0253)", "a loss of 2.5%"):
        with pytest.raises(AssertionError):
            assert_hidden(leaky, 0.0253014, given=0)
    assert_hidden("you got 0.0251, not quite", 0.0253014, given=0.0251)  # the learner's own number is fine
    assert_hidden("margin 0.5, 3 columns", 0.0253014)
    with pytest.raises(AssertionError):
        assert_hidden("missing [(3, 2)]", frozenset({(0, 2), (3, 2)}), index=True)
    with pytest.raises(AssertionError):
        assert_hidden("pair 2 is hard but missing", frozenset({1, 2}), index=True)
    assert_hidden("1 of your 2 pairs is right", frozenset({1, 2}), given=[1, 3], index=True)
    with pytest.raises(AssertionError):
        assert_hidden("missing: OnlineContrastiveLoss", frozenset({"ContrastiveLoss", "OnlineContrastiveLoss"}))


# ----------------------------------------------------------------------------------------------------------
# Where the solutions live, and what is public
# ----------------------------------------------------------------------------------------------------------
def test_solutions_module_names_and_lines(capsys):
    assert len(solutions.NOTEBOOKS) == len(list(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
    for number, module in enumerate(solutions.NOTEBOOKS):
        assert (NOTEBOOKS / f"{number:02d}_{module}.ipynb").exists()
    for notebook in ("05", 5, "05_triplet_losses", "triplet_losses", "notebooks/05_triplet_losses.ipynb"):
        assert solutions.exercises(notebook) == ["hardest_negative", "triplet_kinds", "batch_hard_loss",
                                                 "batch_all_loss"]
    line = solutions.solution("05", "check_batch_hard_loss")
    assert line.startswith("check_batch_hard_loss: ") and line == solutions.solution("triplet_losses", "batch_hard_loss")
    assert "epoch_length" in solutions.solution("02", "epoch_length", class_sizes=[10, 7], p=2, k=3)
    with pytest.raises(KeyError, match="No notebook"):
        solutions.exercises("99")
    with pytest.raises(KeyError, match="No exercise"):
        solutions.solution("05", "nothing")
    solutions.print_all("08", "13")
    out = capsys.readouterr().out
    assert "## 08_loss_playground" in out and "## 13_scaling_up" in out
    assert out.count("\n- check_") == len(solutions.exercises("08")) + len(solutions.exercises("13"))


def test_print_all_prints_every_checker_of_every_notebook(capsys, data_dir):
    solutions.print_all()
    out = capsys.readouterr().out
    for module in solutions.NOTEBOOKS:
        for name in solutions.exercises(module):
            assert f"\n- check_{name}: " in out


INPUT_HELPERS = {"exercise_batch", "exercise_pairs", "exercise_scored_pairs", "tension_batch", "outlier_playground",
                 "gradient_cloud"}


@pytest.mark.parametrize("module", solutions.NOTEBOOKS)
def test_no_public_helper_computes_an_answer(module):
    """Public: the checkers, the functions that give an exercise's inputs, and constants. Nothing else."""
    mod = importlib.import_module(f"labkit.course.exercises.{module}")
    public = {name for name, value in vars(mod).items() if not name.startswith("_") and callable(value)
              and getattr(value, "__module__", None) == mod.__name__}
    checkers = {name for name in public if name.startswith("check_")}
    assert public - checkers <= INPUT_HELPERS, public - checkers - INPUT_HELPERS
    assert checkers == {f"check_{name}" for name in solutions.exercises(module)}
    for name in checkers:
        function = getattr(mod, name)
        assert "reveal" in inspect.signature(function).parameters
        assert "reveal=True" in function.__doc__, name


def test_messages_are_worded_in_one_place():
    """Only labkit/course/exercises/__init__.py prints: the checkers hand it data."""
    folder = Path(importlib.import_module("labkit.course.exercises").__file__).parent
    for path in folder.glob("*.py"):
        if path.name not in ("__init__.py", "solutions.py"):
            assert "print(" not in path.read_text(), path.name


# ----------------------------------------------------------------------------------------------------------
# The notebooks' exercise cells
# ----------------------------------------------------------------------------------------------------------
def notebook_cells(module: str) -> list[dict]:
    number = solutions.NOTEBOOKS.index(module)
    return json.loads((NOTEBOOKS / f"{number:02d}_{module}.ipynb").read_text(encoding="utf-8"))["cells"]


def exercise_cells(module: str):
    for cell in notebook_cells(module):
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "exercises.check_" in source:
            yield source


@pytest.mark.parametrize("module", solutions.NOTEBOOKS)
def test_notebooks_use_only_checkers_and_inputs(module):
    """A notebook never calls a helper that computes an exercise's answer, and no exercise cell's output is
    compared by nbval (the checkers' wording may change)."""
    mod = importlib.import_module(f"labkit.course.exercises.{module}")
    for cell in notebook_cells(module):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("\n".join(line for line in source.splitlines()
                                                 if not line.lstrip().startswith(("%", "!"))))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "exercises":
                value = getattr(mod, node.attr)
                assert node.attr.startswith("check_") or node.attr in INPUT_HELPERS or not callable(value), node.attr
    for source in exercise_cells(module):
        assert "NBVAL_CHECK_OUTPUT" not in source


def cell_inputs(module: str) -> list[dict]:
    """Each exercise cell's variables and the checker call's literal arguments."""
    found = []
    for source in exercise_cells(module):
        namespace = {"np": np}
        tree = ast.parse(source)
        for node in tree.body:
            if isinstance(node, ast.Assign):
                try:
                    exec(compile(ast.Module([node], []), "<cell>", "exec"), namespace)
                except NameError:
                    pass  # a variable of an earlier cell (model, lengths)
            call = node.value if isinstance(node, ast.Expr) else None
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "").startswith("check_"):
                namespace["call"] = call.func.attr
                namespace["args"] = [ast.literal_eval(a) for a in call.args if isinstance(a, ast.Constant)]
                namespace["kwargs"] = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        found.append(namespace)
    return found


def test_solutions_use_the_notebooks_inputs():
    from labkit.course.exercises import dataset_and_sampler as ds
    from labkit.course.exercises import start_here as sh
    from labkit.course.exercises import tokenization as tk

    cells = {c["call"]: c for module in ("start_here", "tokenization", "dataset_and_sampler") for c in cell_inputs(module)}
    assert tuple(cells["check_cosine_similarity"]["u"]) == sh.NOTEBOOK_U
    assert tuple(cells["check_cosine_similarity"]["v"]) == sh.NOTEBOOK_V
    assert cells["check_most_similar"]["query"] == sh.NOTEBOOK_QUERY
    assert tuple(cells["check_most_similar"]["candidates"]) == sh.NOTEBOOK_CANDIDATES
    assert np.array_equal(cells["check_cosine_matrix"]["X"], np.array(sh.NOTEBOOK_X))
    assert cells["check_token_count"]["text"] == tk.NOTEBOOK_TEXT
    assert tuple(cells["check_padded_positions"]["toy_lengths"]) == tk.NOTEBOOK_LENGTHS
    assert cells["check_padded_positions"]["kwargs"] == {"batch_size": tk.NOTEBOOK_BATCH_SIZE}
    assert cells["check_max_length"]["kwargs"] == {"coverage": 0.95}
    assert tuple(cells["check_epoch_length"]["class_sizes"]) == ds.NOTEBOOK_CLASS_SIZES
    assert cells["check_epoch_length"]["kwargs"] == {"p": ds.NOTEBOOK_P, "k": ds.NOTEBOOK_K}
    assert tuple(cells["check_valid_triplets"]["exercise_labels"]) == ds.NOTEBOOK_BATCH_LABELS
    assert cells["check_pk_loader"]["kwargs"] == {"p": ds.NOTEBOOK_LOADER_P, "k": ds.NOTEBOOK_LOADER_K}


def test_notebooks_say_how_to_see_a_solution():
    """No notebook sends a learner to labkit's losses or explain() to find the answer; 00 says reveal=True."""
    for module in solutions.NOTEBOOKS:
        for cell in notebook_cells(module):
            source = "".join(cell["source"])
            if cell["cell_type"] == "markdown" and "## Exercises" in source:
                exercises_text = source[source.index("## Exercises"):]
                assert "afterwards to check" not in exercises_text and "only afterwards" not in exercises_text
    intro = next("".join(c["source"]) for c in notebook_cells("start_here") if "## Exercises" in "".join(c["source"]))
    assert "reveal=True" in intro and "solutions.print_all()" in intro
