"""Checkers for the notebooks' exercises: call one with your answer, get a helpful message back.

Each notebook has a module here (e.g. `labkit.course.exercises.pooling` for notebooks/03_pooling.ipynb) whose
functions take a learner's answer, compute the right one with labkit, and say what is right, or what is
off and a hint towards the fix — never just "wrong". A checker returns True/False so tests can use it.
"""
from __future__ import annotations

import math

import numpy as np


def report(ok: bool, success: str, hint: str) -> bool:
    """Print ✅ and `success`, or ❌ and `hint`; return `ok`."""
    print(("✅ " + success) if ok else ("❌ " + hint))
    return ok


def as_number(answer) -> float | None:
    """The answer as one float, or None if it is not a single number (None, text, a bool, several values)."""
    if answer is None or isinstance(answer, (str, bytes, bool)):
        return None
    try:
        values = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float)
    except (TypeError, ValueError):
        return None
    return float(values.reshape(-1)[0]) if values.size == 1 else None


def matches(value: float, candidate, rel_tol: float = 1e-4, abs_tol: float = 1e-6) -> bool:
    """Whether two numbers agree to the precision a learner's hand computation can reach."""
    return math.isclose(value, float(candidate), rel_tol=rel_tol, abs_tol=abs_tol)


def numeric_answer(answer, hint: str) -> float | None:
    """The learner's answer as one number; if there is none, or it is not one number, say so with `hint`."""
    if answer is None:
        report(False, "", "You have not answered yet. " + hint)
        return None
    value = as_number(answer)
    if value is None:
        report(False, "", f"Give one number (a float or a one-element tensor), not {type(answer).__name__}. " + hint)
    return value


def first_slip(value: float, slips) -> str | None:
    """The message of the first (number, message) slip that `value` matches, or None."""
    for candidate, message in slips:
        if matches(value, candidate):
            return message
    return None


def close(answer, expected, atol: float = 1e-4) -> bool:
    """Whether `answer` equals `expected` (numbers, arrays, tensors) within `atol`, shapes included."""
    try:
        a = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float)
    except (TypeError, ValueError):
        return False
    b = np.asarray(expected.detach().cpu() if hasattr(expected, "detach") else expected, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, atol=atol))


def describe_difference(answer, expected) -> str:
    """A short, concrete description of how an answer differs from the expected one."""
    a = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float)
    b = np.asarray(expected.detach().cpu() if hasattr(expected, "detach") else expected, dtype=float)
    if a.shape != b.shape:
        return f"your answer has shape {a.shape}, the expected one has shape {b.shape}"
    if a.size == 1:
        return f"you got {a.item():.6g}, expected {b.item():.6g}"
    worst = np.unravel_index(np.argmax(np.abs(a - b)), a.shape)
    return f"largest difference at index {tuple(int(i) for i in worst)}: you got {a[worst]:.6g}, expected {b[worst]:.6g}"
