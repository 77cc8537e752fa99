"""The checkers of notebooks/06_similarity_losses.ipynb accept right answers and explain wrong ones without
revealing them.

Right answers are computed here with plain Python loops from the formulas (not with labkit)."""
from __future__ import annotations

import math

import numpy as np
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import similarity_losses as ex


def naive_cosines():
    emb_a, emb_b, gold = ex.exercise_scored_pairs()
    cosines = []
    for a, b in zip(emb_a.tolist(), emb_b.tolist()):
        cosines.append(sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b)))
    return cosines, gold.tolist()


def naive_pairs_of_pairs(strict=True):
    _, gold = naive_cosines()
    n = len(gold)
    return [(i, j) for i in range(n) for j in range(n) if (gold[i] > gold[j] if strict else gold[i] >= gold[j])]


def naive_cosent(scale=20.0, sign=1.0, one=True, strict=True):
    cosines, _ = naive_cosines()
    exponents = [sign * scale * (cosines[j] - cosines[i]) for i, j in naive_pairs_of_pairs(strict)]
    return math.log((1.0 if one else 0.0) + sum(math.exp(e) for e in exponents))


def test_exercise_pairs_have_the_promised_traps():
    cosines, gold = naive_cosines()
    assert np.allclose(cosines, [0.6, 0.8, 0.28, 0.96]) and gold == [2.0, 5.0, 0.0, 2.0]
    # unsorted gold scores: the ordered pairs of pairs are not just i < j
    assert naive_pairs_of_pairs() != [(i, j) for i in range(4) for j in range(i + 1, 4) if gold[i] != gold[j]]


def test_cosine_similarity_loss_checker(capsys):
    cosines, gold = naive_cosines()
    scaled = [g / 5 for g in gold]
    right = sum((c - s) ** 2 for c, s in zip(cosines, scaled)) / 4
    check = ex.check_cosine_similarity_loss
    assert_right(capsys, check, right, "gold / 5")
    assert_right(capsys, check, torch.tensor(right))
    assert_stub_and_reveal(capsys, check, right)
    cases = [("0.1", "one number"),
             (sum((c - g) ** 2 for c, g in zip(cosines, gold)) / 4, "raw 0–5"),
             (sum(abs(c - s) for c, s in zip(cosines, scaled)) / 4, "*absolute*"),
             (sum((c - s) ** 2 for c, s in zip(cosines, scaled)), "sum over the pairs"),
             (sum((1 - c - s) ** 2 for c, s in zip(cosines, scaled)) / 4, "cosine distance"),
             (right * 1.5, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_cosent_pairs_of_pairs_checker(capsys):
    right = naive_pairs_of_pairs()
    check = ex.check_cosent_pairs_of_pairs
    assert_right(capsys, check, right, "5 terms")
    assert_right(capsys, check, list(reversed(right)))
    assert_right(capsys, check, torch.tensor(right))
    assert_right(capsys, check, set(right))
    assert_stub_and_reveal(capsys, check, right, index=True)
    cosines, _ = naive_cosines()
    misordered = [(i, j) for i, j in right if cosines[j] > cosines[i]]
    cases = [("(1, 3)", "list of (i, j) tuples"), ([1, 2, 3], "list of (i, j) tuples"),
             ([(0.0, 1.0)], "must be integers"), (right + right[:1], "repeated pair"),
             ([(j, i) for i, j in right], "wrong way round"), (right + [(0, 3), (3, 0)], "tied pairs"),
             (naive_pairs_of_pairs(strict=False), "ties and i = j"), (misordered, "*misordered*"),
             ([(min(i, j), max(i, j)) for i, j in right], "smaller index first"),
             (right[:-1], f"{len(right) - 1} of your {len(right) - 1} pairs of pairs are right, and at least one"),
             ([], "your answer is empty")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right, index=True)


def test_cosent_loss_checker(capsys):
    right = naive_cosent()
    check = ex.check_cosent_loss
    assert_right(capsys, check, right, "(1, 3)")
    assert_stub_and_reveal(capsys, check, right)
    cosines, _ = naive_cosines()
    separate_logs = sum(math.log1p(math.exp(20 * (cosines[j] - cosines[i]))) for i, j in naive_pairs_of_pairs())
    cases = [([1.0, 2.0], "one number"), (naive_cosent(one=False), "1 inside log"),
             (naive_cosent(scale=1.0), "without the scale"), (naive_cosent(sign=-1.0), "sign of the exponent"),
             (naive_cosent(strict=False), "ties (and i = j) included"), (separate_logs, "separate log(1 + exp(·))"),
             (right + 0.5, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_softmax_features_checker(capsys):
    emb_a, emb_b, _ = ex.exercise_scored_pairs()
    rows = np.array([a + b + [abs(x - y) for x, y in zip(a, b)] for a, b in zip(emb_a.tolist(), emb_b.tolist())])
    check = ex.check_softmax_features
    assert_right(capsys, check, rows, "|u − v|")
    assert_right(capsys, check, torch.tensor(rows, dtype=torch.float32))
    assert_stub_and_reveal(capsys, check, rows)
    u, v = emb_a, emb_b
    cases = [("features", "tensor or an array"),
             (torch.cat([u, v, u - v], 1), "with u − v"),
             (torch.cat([u, v, (u - v).abs(), u * v], 1), "u * v added"),
             (torch.cat([(u - v).abs(), u, v], 1), "wrong order"),
             (torch.cat([u, v, (u - v).abs()], 0), "stacked as rows"),
             (torch.cat([u, v], 1), "shape (4, 4)"),
             (rows + 1, "24 of the 24 entries are off")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, rows)
