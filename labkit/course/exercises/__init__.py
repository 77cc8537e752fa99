"""Checkers for the notebooks' exercises: call one with your answer, get a helpful message back.

Each notebook has a module here (e.g. `labkit.course.exercises.pooling` for notebooks/03_pooling.ipynb). A
checker computes the right answer with labkit and compares yours with it:

* right: ✅ and a sentence on what the answer means;
* a typical slip (a wrong answer learners often get, computed the way the slip computes it): ❌, what it
  looks like and which step to recheck;
* any other wrong answer: ❌ and a hint (for lists: how many of yours are right, never which);
* ``None`` or ``...`` (a notebook stub): ✏️ "not answered yet" and where to start.

A wrong answer's message never shows the expected answer, not even part of it. Only an explicit
``check_x(answer, reveal=True)`` prints the solution; `labkit.course.exercises.solutions` prints them all for
an instructor. Every checker returns True/False, so tests can use it.

Writing a checker is declaring data: an `Exercise` (the expected answer computed by labkit, a hint, a
success sentence, a one-line reason and a tuple of `Slip`s) handed to one of the ``check_*`` front-ends
below (one number, one index, a set of indices or items, a list of labels, an array, a tuple of counts).
Every message is worded by the ``_say_*`` functions in this file: what a message may reveal is decided here
and nowhere else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np


# ----------------------------------------------------------------------------------------------------------
# What an exercise declares
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slip:
    """A wrong answer learners typically give, and the step to recheck.

    answer: the wrong answer, computed the way the slip computes it (a number, an array, a set, ...), or a
        predicate ``answer(value) -> bool`` for a whole family of wrong answers ("not a multiple of 8").
    looks_like: what such an answer is, printed as "That looks like {looks_like}." ("the sum over the pairs").
    recheck: the step to recheck, printed as "Recheck {recheck}." ("the reduction: the loss is the mean").
    Neither text may contain the expected answer.
    """

    answer: Any
    looks_like: str
    recheck: str


@dataclass(frozen=True)
class Field:
    """One part of a tuple answer, e.g. the optimizer steps of ``(examples, optimizer_steps)``."""

    label: str
    expected: Any
    slips: tuple = ()


@dataclass(frozen=True)
class Exercise:
    """Everything a checker says about one exercise; the ``check_*`` front-ends turn it into messages.

    checker: the checker's name (``"check_margin"``), for the pointer to ``reveal=True``.
    expected: the right answer, computed by labkit (a tuple of `Field` for `check_fields`).
    hint: where to start (printed when not answered, and after an unrecognised wrong answer).
    success: printed after "Right:" (it may name the answer: the learner has just given it).
    why: one line on why the answer is what it is, printed with the solution.
    slips: the typical wrong answers, tried in order.
    shown: the answer as the solution prints it (default: `show(expected)`).
    with_inputs: the checker takes the exercise's inputs after the answer (the pointer then says so).
    """

    checker: str
    expected: Any
    hint: str
    success: str
    why: str
    slips: tuple = ()
    shown: str | None = None
    with_inputs: bool = False

    @property
    def solution(self) -> str:
        """The answer and its reason, as `reveal=True` and `solutions.solution` print them."""
        return f"{self.shown if self.shown is not None else show(self.expected)}. {_sentence(self.why)}"


# ----------------------------------------------------------------------------------------------------------
# Every message, worded in one place
# ----------------------------------------------------------------------------------------------------------
def _sentence(text: str) -> str:
    """`text` as a sentence: a capital first letter and a full stop."""
    text = text.strip()
    if not text:
        return text
    first_word = text.split(" ", 1)[0].rstrip(",:;")
    if first_word.isalpha() and (len(first_word) > 1 or first_word == "a"):  # not "x / ‖x‖", "len(...)"
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ".)")) else text + "."


def _clause(text: str) -> str:
    return text.strip().rstrip(".")


def _pointer(exercise: Exercise) -> str:
    args = "answer, ..." if exercise.with_inputs else "answer"
    return f"(To see the solution: {exercise.checker}({args}, reveal=True).)"


def _say(symbol: str, *parts: str) -> None:
    print(symbol + " " + " ".join(_sentence(p) for p in parts if p))


def _say_right(exercise: Exercise) -> None:
    _say("✅", "Right: " + exercise.success)


def _say_not_answered(exercise: Exercise) -> None:
    _say("✏️", "Not answered yet.", "Hint: " + exercise.hint, _pointer(exercise))


def _say_unreadable(exercise: Exercise, problem: str, reveal: bool) -> None:
    _say("❌", problem, "" if reveal else _pointer(exercise))


def _say_slip(exercise: Exercise, slip: Slip, reveal: bool) -> None:
    _say("❌", f"That looks like {_clause(slip.looks_like)}.", f"Recheck {_clause(slip.recheck)}.",
         "" if reveal else _pointer(exercise))


def _say_off(exercise: Exercise, detail: str | None, reveal: bool) -> None:
    _say("❌", f"Not quite: {_clause(detail)}." if detail else "Not quite.", "Hint: " + exercise.hint,
         "" if reveal else _pointer(exercise))


def _say_fields(exercise: Exercise, verdicts: list, reveal: bool) -> None:
    _say("❌", *verdicts, "Hint: " + exercise.hint, "" if reveal else _pointer(exercise))


def _say_solution(exercise: Exercise) -> None:
    _say("🔑", "Solution: " + exercise.solution)


def show(value) -> str:
    """An answer as a solution prints it: numbers to 6 significant digits, sets sorted, arrays rounded."""
    if isinstance(value, (set, frozenset)):
        return str(sorted(value))
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size == 1:
            value = value.reshape(-1)[0].item()
        else:
            text = np.array2string(np.round(value.astype(float), 4), separator=", ", max_line_width=10**6)
            return " ".join(text.split())  # one line, even for a matrix
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


# ----------------------------------------------------------------------------------------------------------
# The engine every front-end uses
# ----------------------------------------------------------------------------------------------------------
def unanswered(answer) -> bool:
    """Whether `answer` is a stub: None, or ``...`` as student copies of the notebooks have it."""
    return answer is None or answer is Ellipsis


def _matching_slip(value, slips: Iterable[Slip], same: Callable) -> Slip | None:
    for slip in slips:
        try:
            hit = slip.answer(value) if callable(slip.answer) else same(value, slip.answer)
        except (TypeError, ValueError, IndexError, KeyError):
            hit = False
        if hit:
            return slip
    return None


def check(answer, exercise: Exercise, *, read: Callable, is_right: Callable, same: Callable,
          describe: Callable | None = None, reveal: bool = False) -> bool:
    """Read the answer, compare it, print one message (and the solution with ``reveal=True``); return ok.

    read(answer) -> (value, problem): the answer in a comparable form, or a sentence on why it can't be read.
    is_right(value): whether it is the expected answer. same(value, slip_answer): whether it is that slip.
    describe(value): for an unrecognised wrong answer, a detail that does not reveal the answer (counts).
    """
    ok = False
    if unanswered(answer):
        if not reveal:
            _say_not_answered(exercise)
    else:
        try:
            value, problem = read(answer)
        except Exception as error:  # a learner's object we cannot even look at: say so, don't raise
            value, problem = None, f"Could not read your answer ({type(error).__name__}: {error})."
        if problem is not None:
            _say_unreadable(exercise, problem, reveal)
        elif is_right(value):
            _say_right(exercise)
            ok = True
        else:
            slip = _matching_slip(value, exercise.slips, same)
            if slip is not None:
                _say_slip(exercise, slip, reveal)
            else:
                _say_off(exercise, describe(value) if describe else None, reveal)
    if reveal:
        _say_solution(exercise)
    return ok


# ----------------------------------------------------------------------------------------------------------
# Reading answers
# ----------------------------------------------------------------------------------------------------------
def _array(answer) -> np.ndarray:
    if isinstance(answer, (str, bytes)):
        raise TypeError("text")
    values = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer)
    if values.dtype.kind in "cOUSV":  # complex numbers, objects, text: nothing a checker can compare
        raise TypeError(f"not real numbers ({values.dtype})")
    return values


def read_number(answer, whole: bool = False) -> tuple:
    """One number: a float, an int, a 0-d or one-element array/tensor. Lists of several values are refused."""
    kind = "whole number" if whole else "number"
    if isinstance(answer, (str, bytes, bool, np.bool_)):
        return None, f"Give one {kind} (an int, a float or a one-element tensor), not {type(answer).__name__}."
    try:
        values = _array(answer).astype(float)
    except (TypeError, ValueError):
        return None, f"Give one {kind} (an int, a float or a one-element tensor), not {type(answer).__name__}."
    if values.size != 1:
        return None, (f"Give one {kind}: your answer holds {values.size} values, and a checker does not pick one "
                      "of several for you.")
    value = float(values.reshape(-1)[0])
    if whole and not value.is_integer():
        return None, f"Give a whole number; {value:g} is not one."
    return value, None


def read_index(answer, count: int, items: str = "items") -> tuple:
    """One integer index in ``range(count)`` (3.0 is accepted; 3.5, True and lists are not)."""
    value, problem = read_number(answer, whole=True)
    if problem:
        return None, f"Give one index, an int from 0 to {count - 1}, not {type(answer).__name__} {answer!r}."
    if not 0 <= value < count:
        return None, f"There are {count} {items}, numbered 0 to {count - 1}; {value:g} is not one of them."
    return int(value), None


def read_indices(answer, count: int, allow_mask: bool = True) -> tuple:
    """Distinct integer indices in ``range(count)``, as a frozenset; or a boolean mask of length `count`."""
    if isinstance(answer, (str, bytes, bool)) or not hasattr(answer, "__len__") and not hasattr(answer, "detach"):
        return None, f"Give a list of distinct integer indices, not {type(answer).__name__}."
    if isinstance(answer, (set, frozenset)):
        answer = sorted(answer, key=repr)
    try:
        values = _array(list(answer) if isinstance(answer, (list, tuple)) else answer).reshape(-1)
    except (TypeError, ValueError):
        return None, "Give a list of distinct integer indices."
    if values.dtype == bool:
        if not allow_mask or len(values) != count:
            return None, f"A boolean mask needs one entry per item ({count}); give a list of indices instead."
        return frozenset(int(i) for i in np.flatnonzero(values)), None
    if values.size and values.dtype.kind not in "iu":
        return None, "Indices must be distinct integers: no floats, not even whole ones."
    indices = [int(v) for v in values]
    if len(set(indices)) != len(indices):
        return None, "Indices must be distinct integers: your list has a repeated index."
    outside = sorted(i for i in indices if not 0 <= i < count)
    if outside:
        return None, f"There are {count} items, numbered 0 to {count - 1}; {outside} are not among them."
    return frozenset(indices), None


def read_array(answer) -> tuple:
    """A numeric array (NumPy, tensor or nested lists)."""
    try:
        return _array(answer).astype(float), None
    except (TypeError, ValueError):
        return None, f"Give a tensor or an array of numbers, not {type(answer).__name__}."


# ----------------------------------------------------------------------------------------------------------
# Front-ends: one per kind of answer
# ----------------------------------------------------------------------------------------------------------
def check_number(answer, exercise: Exercise, *, reveal: bool = False, rel_tol: float = 1e-4, abs_tol: float = 1e-6,
                 whole: bool = False, accept: Callable[[float], bool] | None = None) -> bool:
    """One number, right within `rel_tol`/`abs_tol` of ``exercise.expected`` (or when ``accept(value)``).

    Slips are matched with the same tolerance. ``whole=True`` asks for a whole number and compares exactly.
    """
    if whole:
        rel_tol, abs_tol = 0.0, 1e-9

    def near(value, target) -> bool:
        return math.isclose(value, float(target), rel_tol=rel_tol, abs_tol=abs_tol)

    expected = float(exercise.expected)
    return check(answer, exercise, read=lambda a: read_number(a, whole), reveal=reveal, same=near,
                 is_right=accept or (lambda value: near(value, expected)))


def check_index(answer, exercise: Exercise, *, count: int, reveal: bool = False, items: str = "items",
                read: Callable | None = None) -> bool:
    """One index into `count` items. Slips are indices or predicates on the index."""
    return check(answer, exercise, read=read or (lambda a: read_index(a, count, items)), reveal=reveal,
                 is_right=lambda value: value == exercise.expected, same=lambda value, slip: value == slip)


def count_right(given: frozenset, expected: frozenset, noun: str) -> str:
    """How many of the given items are right, and whether some are missing: never which ones."""
    if not given:
        return f"your answer is empty, and some {noun} do belong in it"
    right = len(given & expected)
    text = f"{right} of your {len(given)} {noun} {'is' if right == 1 else 'are'} right"
    if expected - given:
        text += ", and at least one is missing"
    elif given - expected:
        text += ", and none is missing: some should not be there"
    return text


def check_set(answer, exercise: Exercise, *, read: Callable, noun: str, reveal: bool = False) -> bool:
    """A collection in any order (indices, index pairs, names). Slips are sets or predicates on the set."""
    expected = frozenset(exercise.expected)
    return check(answer, exercise, read=read, reveal=reveal, is_right=lambda value: value == expected,
                 same=lambda value, slip: value == frozenset(slip),
                 describe=lambda value: count_right(value, expected, noun))


def check_indices(answer, exercise: Exercise, *, count: int, noun: str = "indices", reveal: bool = False,
                  allow_mask: bool = True) -> bool:
    """Distinct integer indices into `count` items, any order (a boolean mask of length `count` too)."""
    return check_set(answer, exercise, read=lambda a: read_indices(a, count, allow_mask), noun=noun, reveal=reveal)


def check_labels(answer, exercise: Exercise, *, spellings: Mapping[str, str], noun: str = "labels",
                 reveal: bool = False) -> bool:
    """A list of labels, one per item, in order. `spellings` maps accepted spellings (lower case) to labels."""
    expected = tuple(exercise.expected)
    count = len(expected)
    example = sorted(set(spellings.values()))

    def read(answer):
        if isinstance(answer, str) or not hasattr(answer, "__len__") or len(answer) != count:
            return None, f"Give a list of {count} {noun}, one per item, in order, e.g. {example[:count]}."
        labels = [spellings.get(str(value).strip().lower()) for value in answer]
        unknown = [value for value, label in zip(answer, labels) if label is None]
        if unknown:
            return None, f"Use the words {', '.join(map(repr, example))}; did not understand {unknown}."
        return tuple(labels), None

    def describe(value):
        right = sum(a == b for a, b in zip(value, expected))
        return f"{right} of the {count} {noun} {'is' if right == 1 else 'are'} right"

    return check(answer, exercise, read=read, reveal=reveal, is_right=lambda value: value == expected,
                 same=lambda value, slip: value == tuple(slip), describe=describe)


def where_off(value: np.ndarray, expected: np.ndarray, atol: float) -> str:
    """How many entries of an array are off, and where the first one is: never what it should be."""
    off = ~np.isclose(value, expected, rtol=0, atol=atol)
    first = tuple(int(i) for i in np.argwhere(off)[0])
    return (f"{int(off.sum())} of the {off.size} entries are off, the first at index "
            f"{first if len(first) > 1 else first[0]}")


def check_array(answer, exercise: Exercise, *, atol: float = 1e-4, shape_hint: str = "",
                reveal: bool = False) -> bool:
    """An array (or tensor) equal to ``exercise.expected`` within `atol`, shape included.

    Slips are arrays (of any shape) or predicates on the array; an unrecognised answer of the wrong shape
    gets `shape_hint` (what the shape is made of), one of the right shape how many entries are off.
    """
    expected = read_array(exercise.expected)[0]

    def same(value, target):
        target = read_array(target)[0]
        return value.shape == target.shape and bool(np.allclose(value, target, rtol=0, atol=atol))

    def describe(value):
        if value.shape != expected.shape:
            return f"your answer has shape {value.shape}. {shape_hint}".strip()
        return where_off(value, expected, atol)

    return check(answer, exercise, read=read_array, reveal=reveal, same=same, is_right=lambda v: same(v, expected),
                 describe=describe)


def check_fields(answer, exercise: Exercise, *, reveal: bool = False) -> bool:
    """A tuple of whole numbers, one per `Field` of ``exercise.expected``; each part gets its own verdict."""
    fields = exercise.expected
    labels = ", ".join(field.label for field in fields)

    def read(answer):
        if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") or len(answer) != len(fields):
            return None, f"Give a tuple ({labels}), not {type(answer).__name__} {answer!r}."
        values = [read_number(value, whole=True) for value in answer]
        if any(problem for _, problem in values):
            return None, f"Give a tuple of whole numbers ({labels})."
        return tuple(int(value) for value, _ in values), None

    ok = False
    if unanswered(answer):
        if not reveal:
            _say_not_answered(exercise)
    else:
        values, problem = read(answer)
        if problem is not None:
            _say_unreadable(exercise, problem, reveal)
        elif all(value == field.expected for value, field in zip(values, fields)):
            _say_right(exercise)
            ok = True
        else:
            verdicts = []
            for value, field in zip(values, fields):
                label = field.label[:1].upper() + field.label[1:]
                slip = None if value == field.expected else _matching_slip(value, field.slips, lambda v, s: v == s)
                verdicts.append(f"{label}: right" if value == field.expected else
                                f"{label}: that looks like {_clause(slip.looks_like)}; recheck "
                                f"{_clause(slip.recheck)}" if slip else f"{label}: not quite")
            _say_fields(exercise, verdicts, reveal)
    if reveal:
        _say_solution(exercise)
    return ok


def show_fields(fields) -> str:
    """A tuple answer as a solution prints it: ``(468, 5625)``."""
    return "(" + ", ".join(show(field.expected) for field in fields) + ")"


def check_with(answer, exercise: Exercise, *, problem_of: Callable[[Any], str | None], reveal: bool = False) -> bool:
    """For answers no value can be compared with (a DataLoader): ``problem_of(answer)`` says what is off.

    It returns None for a right answer, else a sentence about the learner's answer (which must not reveal
    the solution); this prints the verdict like every other front-end.
    """
    ok = False
    if unanswered(answer):
        if not reveal:
            _say_not_answered(exercise)
    else:
        problem = problem_of(answer)
        if problem is None:
            _say_right(exercise)
            ok = True
        else:
            _say_unreadable(exercise, problem, reveal)
    if reveal:
        _say_solution(exercise)
    return ok
