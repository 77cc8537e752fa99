"""Checkers for the exercises of notebooks/15_smaller_and_cheaper.ipynb.

Exercise 1: the cosine of two embeddings after truncating both to their first dimensions (what a Matryoshka
model's user computes). Exercise 2: MarginMSELoss of one (query, positive, negative) row by hand. Each checker
computes the right answer with labkit (`labkit.losses.matryoshka.shrink` and `labkit.distances`;
`MarginMSELoss`) and says what is right, or which slip the answer looks like and which step to recheck (never
the answer itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import math

import torch

from labkit.course.exercises import Exercise, Slip, check_number

# Exercise 1: two 4-dimensional embeddings, truncated to their first KEEP dimensions.
VECTOR_A = (3.0, 4.0, 1.0, 2.0)
VECTOR_B = (4.0, 3.0, -2.0, 0.0)
KEEP = 2
# Exercise 2: the student's embeddings of one query, its positive and a negative (unit length), and the
# teacher's scores of (query, positive) and (query, negative).
QUERY, POSITIVE, NEGATIVE = (1.0, 0.0), (0.8, 0.6), (0.6, 0.8)
TEACHER_SCORES = (0.9, 0.4)


def _cosine(a, b) -> float:
    from labkit.distances import cosine_similarity

    return float(cosine_similarity(torch.tensor([a]), torch.tensor([b]))[0, 0])


def _truncated_cosine(a=VECTOR_A, b=VECTOR_B, keep: int = KEEP) -> float:
    from labkit.losses.matryoshka import shrink

    a_short, b_short = (shrink(torch.tensor([v]), keep) for v in (a, b))
    return float((a_short * b_short).sum())


def _truncation_exercise(a=VECTOR_A, b=VECTOR_B, keep: int = KEEP) -> Exercise:
    expected = _truncated_cosine(a, b, keep)
    dot = sum(x * y for x, y in zip(a[:keep], b[:keep]))
    full_norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return Exercise(
        checker="check_truncated_cosine", expected=expected,
        hint=f"keep the first {keep} numbers of each vector, make each of the two short vectors unit length again, "
             "then take their dot product",
        success=f"{expected:.4f}: against {_cosine(a, b):.4f} with all {len(a)} dimensions; the short vectors answer "
                "a slightly different question, and Matryoshka training teaches the first dimensions to answer it well",
        why=f"a[:{keep}] / ||a[:{keep}]|| · b[:{keep}] / ||b[:{keep}]|| (labkit.losses.matryoshka.shrink, then a dot "
            "product; cosine similarity renormalises the same way)",
        slips=(
            Slip(_cosine(a, b), f"the cosine of the full {len(a)}-dimensional vectors",
                 f"the first step: truncate both vectors to {keep} dimensions"),
            Slip(dot, "the dot product of the truncated vectors, not normalised",
                 "the normalisation: divide each short vector by its own length"),
            Slip(dot / full_norms, "the truncated dot product divided by the full vectors' lengths",
                 "which lengths: the short vectors' own, so they are unit length again"),
        ))


def check_truncated_cosine(answer, reveal: bool = False) -> bool:
    """Exercise 1: the cosine of `VECTOR_A` and `VECTOR_B` truncated to their first `KEEP` dimensions.

    A wrong answer gets the step to recheck; ``check_truncated_cosine(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _truncation_exercise(), reveal=reveal)


def _margin_mse(query=QUERY, positive=POSITIVE, negative=NEGATIVE, teacher=TEACHER_SCORES) -> float:
    from labkit.losses.distillation import MarginMSELoss

    columns = (torch.tensor([v]) for v in (query, positive, negative))
    return float(MarginMSELoss()(*columns, torch.tensor([teacher])))


def _margin_exercise(query=QUERY, positive=POSITIVE, negative=NEGATIVE, teacher=TEACHER_SCORES) -> Exercise:
    expected = _margin_mse(query, positive, negative, teacher)
    student_pos = sum(q * p for q, p in zip(query, positive))
    student_neg = sum(q * n for q, n in zip(query, negative))
    student_margin, teacher_margin = student_pos - student_neg, teacher[0] - teacher[1]
    return Exercise(
        checker="check_margin_mse", expected=expected,
        hint="the student's margin is q·p − q·n, the teacher's is its positive score minus its negative score; "
             "the loss is the squared difference of the two margins",
        success=f"{expected:.4f}: the student separates the positive from the negative by {student_margin:.1f}, the "
                f"teacher by {teacher_margin:.1f}; the gradient widens the student's margin",
        why="(q·p − q·n − (teacher_pos − teacher_neg))², averaged over rows and negatives "
            "(labkit.losses.distillation.MarginMSELoss, dot-product scores)",
        slips=(
            Slip(student_margin - teacher_margin, "the difference of the margins, not squared",
                 "the last step: square the difference"),
            Slip(abs(student_margin - teacher_margin), "the size of the margins' difference, not squared",
                 "the last step: square the difference"),
            Slip(((student_pos - teacher[0]) ** 2 + (student_neg - teacher[1]) ** 2) / 2,
                 "the mean squared error of the scores themselves",
                 "what is matched: the margins (differences of scores), not the scores; the student may sit on "
                 "another scale"),
            Slip(((student_pos - teacher[0]) ** 2 + (student_neg - teacher[1]) ** 2),
                 "the squared errors of the two scores added up",
                 "what is matched: the margins (differences of scores), not the scores"),
        ))


def check_margin_mse(answer, reveal: bool = False) -> bool:
    """Exercise 2: MarginMSELoss of (`QUERY`, `POSITIVE`, `NEGATIVE`) with the teacher's `TEACHER_SCORES`.

    A wrong answer gets the step to recheck; ``check_margin_mse(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _margin_exercise(), reveal=reveal)


_EXERCISES = {"truncated_cosine": _truncation_exercise, "margin_mse": _margin_exercise}
