"""The checkers of notebooks/00_start_here.ipynb accept right answers and explain wrong ones."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkit.course.exercises import start_here as ex

A = np.array([1.0, 2.0, 2.0])
B = np.array([2.0, 0.0, 1.0])


def naive_cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


def test_cosine_right_answer_in_any_numeric_type(capsys):
    right = naive_cosine(A, B)
    for answer in (right, np.float32(right), torch.tensor(right), np.array([right])):
        ok, out = outcome(capsys, ex.check_cosine_similarity(answer, A, B))
        assert ok and out.startswith("✅"), answer


@pytest.mark.parametrize(
    "answer, words",
    [
        (None, "not answered yet"),
        (float(A @ B), "dot product"),
        (1 - naive_cosine(A, B), "distance"),
        (math.acos(naive_cosine(A, B)), "angle"),
        (float(A @ B) / float(A @ A), "both lengths"),
        ("0.5", "Give a number"),
        ([0.1, 0.2], "one number"),
        (0.123, "expected"),
    ],
)
def test_cosine_wrong_answers_get_a_specific_hint(capsys, answer, words):
    ok, out = outcome(capsys, ex.check_cosine_similarity(answer, A, B))
    assert not ok and out.startswith("❌") and words in out


QUERY = "How do I reset my PIN?"
CANDIDATES = ["The weather is nice today.", "I forgot my card's PIN number.", "My transfer was rejected.",
              "What is the exchange rate?"]


def expected_indices(model):
    emb = model.encode([QUERY, *CANDIDATES])
    sims = [naive_cosine(emb[0], emb[i]) for i in range(1, len(emb))]
    return int(np.argmax(sims)), int(np.argmin(sims))


def test_most_similar_accepts_the_index_or_the_text(capsys, tiny):
    best, _ = expected_indices(tiny)
    for answer in (best, np.int64(best), torch.tensor(best), CANDIDATES[best]):
        ok, out = outcome(capsys, ex.check_most_similar(answer, QUERY, CANDIDATES, tiny))
        assert ok and "Right" in out


def test_most_similar_wrong_answers(capsys, tiny):
    best, worst = expected_indices(tiny)
    assert best != worst
    cases = [(None, "not answered yet"), (worst, "least"), (len(CANDIDATES), "not an index"),
             ("no such text", "not one of the candidates"), (1.5j, "index")]
    other = next(i for i in range(len(CANDIDATES)) if i not in (best, worst)) if len(CANDIDATES) > 2 else None
    cases.append((other, "has cosine"))
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_most_similar(answer, QUERY, CANDIDATES, tiny))
        assert not ok and words in out, (answer, out)


X = np.array([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0], [0.0, -2.0, 5.0], [2.0, 0.5, -1.0]])


def naive_cosine_matrix(x):
    return np.array([[naive_cosine(a, b) for b in x] for a in x])


def test_cosine_matrix_right_answer(capsys):
    ok, out = outcome(capsys, ex.check_cosine_matrix(naive_cosine_matrix(X), X))
    assert ok and "diagonal is 1" in out
    ok, _ = outcome(capsys, ex.check_cosine_matrix(torch.tensor(naive_cosine_matrix(X)), torch.tensor(X)))
    assert ok


def test_cosine_matrix_wrong_answers(capsys):
    columns = X / np.linalg.norm(X, axis=0, keepdims=True)
    cases = [
        (None, "not answered yet"),
        (X @ X.T, "dot products"),
        (X.T @ X, "shape"),
        (columns @ columns.T, "columns"),
        (naive_cosine_matrix(X) + 0.01, "diagonal"),
        ("matrix", "not str"),
    ]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_cosine_matrix(answer, X))
        assert not ok and words in out, (words, out)
