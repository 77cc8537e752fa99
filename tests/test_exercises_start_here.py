"""The checkers of notebooks/00_start_here.ipynb accept right answers and explain wrong ones without revealing them.

Right answers are computed here from the definitions with plain Python (not with labkit)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import start_here as ex

A = np.array([1.0, 2.0, 2.0])
B = np.array([2.0, 0.0, 1.0])


def naive_cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def check_cosine(answer, **kw):
    return ex.check_cosine_similarity(answer, A, B, **kw)


def test_cosine_right_answer_in_any_numeric_type(capsys):
    right = naive_cosine(A, B)
    for answer in (right, np.float32(right), torch.tensor(right), np.array([right])):
        assert_right(capsys, check_cosine, answer)
    assert_stub_and_reveal(capsys, check_cosine, right)


@pytest.mark.parametrize(
    "answer, words",
    [
        (float(A @ B), "dot product"),
        (1 - naive_cosine(A, B), "*distance*"),
        (math.acos(naive_cosine(A, B)), "angle"),
        (math.degrees(math.acos(naive_cosine(A, B))), "degrees"),
        (float(A @ B) / float(A @ A), "both lengths"),
        ("0.5", "Give one number"),
        ([0.1, 0.2], "one number"),
        (0.123, "Not quite"),
    ],
)
def test_cosine_wrong_answers_get_a_specific_hint(capsys, answer, words):
    assert_wrong(capsys, check_cosine, answer, words, naive_cosine(A, B))


QUERY = "How do I reset my PIN?"
CANDIDATES = ["The weather is nice today.", "I forgot my card's PIN number.", "My transfer was rejected.",
              "What is the exchange rate?"]


def expected_indices(model):
    emb = model.encode([QUERY, *CANDIDATES])
    sims = [naive_cosine(emb[0], emb[i]) for i in range(1, len(emb))]
    return int(np.argmax(sims)), int(np.argmin(sims))


def test_most_similar_accepts_the_index_or_the_text(capsys, tiny):
    best, _ = expected_indices(tiny)

    def check(answer, **kw):
        return ex.check_most_similar(answer, QUERY, CANDIDATES, tiny, **kw)

    for answer in (best, np.int64(best), torch.tensor(best), CANDIDATES[best]):
        assert_right(capsys, check, answer)
    assert_stub_and_reveal(capsys, check, best, index=True)


def test_most_similar_wrong_answers(capsys, tiny):
    best, worst = expected_indices(tiny)
    assert best != worst

    def check(answer, **kw):
        return ex.check_most_similar(answer, QUERY, CANDIDATES, tiny, **kw)

    other = next(i for i in range(len(CANDIDATES)) if i not in (best, worst))
    cases = [(worst, "*least*"), (len(CANDIDATES), "numbered 0 to 3"), ("no such text", "not one of the candidates"),
             (1.5j, "one index"), (float(best) + 0.5, "one index"), ([best, other], "one index"), (other, "Not quite"),
             (CANDIDATES[other], "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, best, index=True)


X = np.array([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0], [0.0, -2.0, 5.0], [2.0, 0.5, -1.0]])


def naive_cosine_matrix(x):
    return np.array([[naive_cosine(a, b) for b in x] for a in x])


def check_matrix(answer, **kw):
    return ex.check_cosine_matrix(answer, X, **kw)


def test_cosine_matrix_right_answer(capsys):
    assert_right(capsys, check_matrix, naive_cosine_matrix(X), "diagonal is 1")
    assert_right(capsys, lambda a, **kw: ex.check_cosine_matrix(a, torch.tensor(X), **kw),
                 torch.tensor(naive_cosine_matrix(X)))
    assert_stub_and_reveal(capsys, check_matrix, naive_cosine_matrix(X))


def test_cosine_matrix_wrong_answers(capsys):
    columns = X / np.linalg.norm(X, axis=0, keepdims=True)
    off = naive_cosine_matrix(X)
    off[1, 2] += 0.01
    cases = [
        (X @ X.T, "dot products"),
        (columns @ columns.T, "*columns*"),
        (X.T @ X, "shape (3, 3)"),
        (off, "1 of the 16 entries are off, the first at index (1, 2)"),
        ("matrix", "not str"),
    ]
    for answer, words in cases:
        assert_wrong(capsys, check_matrix, answer, words, naive_cosine_matrix(X))
