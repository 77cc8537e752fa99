"""The checkers of notebooks/15_smaller_and_cheaper.ipynb accept right answers and explain wrong ones without revealing them.

Right answers are computed here independently, in plain Python: the truncated vectors' cosine from their
coordinates, MarginMSE from the dot products and the teacher's scores.
"""
from __future__ import annotations

import math

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import smaller_and_cheaper as ex


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def naive_truncated_cosine(a, b, keep):
    a, b = a[:keep], b[:keep]
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def naive_margin_mse(query, positive, negative, teacher):
    return ((dot(query, positive) - dot(query, negative)) - (teacher[0] - teacher[1])) ** 2


def test_check_truncated_cosine(capsys):
    right = naive_truncated_cosine(ex.VECTOR_A, ex.VECTOR_B, ex.KEEP)
    check = ex.check_truncated_cosine
    assert_right(capsys, check, right)
    assert_right(capsys, check, round(right, 3))
    assert_stub_and_reveal(capsys, check, right)
    full = naive_truncated_cosine(ex.VECTOR_A, ex.VECTOR_B, len(ex.VECTOR_A))
    short_dot = dot(ex.VECTOR_A[:ex.KEEP], ex.VECTOR_B[:ex.KEEP])
    full_norms = math.sqrt(dot(ex.VECTOR_A, ex.VECTOR_A) * dot(ex.VECTOR_B, ex.VECTOR_B))
    cases = [(full, "full"), (short_dot, "not normalised"), (short_dot / full_norms, "full vectors' lengths"),
             (0.5, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_check_margin_mse(capsys):
    right = naive_margin_mse(ex.QUERY, ex.POSITIVE, ex.NEGATIVE, ex.TEACHER_SCORES)
    check = ex.check_margin_mse
    assert_right(capsys, check, right)
    assert_stub_and_reveal(capsys, check, right)
    student = dot(ex.QUERY, ex.POSITIVE) - dot(ex.QUERY, ex.NEGATIVE)
    teacher = ex.TEACHER_SCORES[0] - ex.TEACHER_SCORES[1]
    score_errors = [(dot(ex.QUERY, ex.POSITIVE) - ex.TEACHER_SCORES[0]) ** 2,
                    (dot(ex.QUERY, ex.NEGATIVE) - ex.TEACHER_SCORES[1]) ** 2]
    cases = [(student - teacher, "not squared"), (abs(student - teacher), "not squared"),
             (sum(score_errors) / 2, "scores themselves"), (sum(score_errors), "added up"), (0.4, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
