"""Checkers for the notebooks' exercises: call one with your answer, get a helpful message back.

Each notebook has a module here (e.g. `labkit.exercises.pooling` for notebooks/03_pooling.ipynb) whose
functions take a learner's answer, compute the right one with labkit, and say what is right, or what is
off and a hint towards the fix — never just "wrong". A checker returns True/False so tests can use it.
"""
from __future__ import annotations

import numpy as np


def report(ok: bool, success: str, hint: str) -> bool:
    """Print ✅ and `success`, or ❌ and `hint`; return `ok`."""
    print(("✅ " + success) if ok else ("❌ " + hint))
    return ok


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
