"""The checkers of notebooks/06_similarity_losses.ipynb accept right answers and explain wrong ones.

Right answers are computed here with plain Python loops from the formulas (not with labkit)."""
from __future__ import annotations

import math

import numpy as np
import torch

from labkit.course.exercises import similarity_losses as ex


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


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
    ok, out = outcome(capsys, ex.check_cosine_similarity_loss(right))
    assert ok and "gold / 5" in out
    assert ex.check_cosine_similarity_loss(torch.tensor(right))
    cases = [(None, "not answered yet"), ("0.1", "one number"),
             (sum((c - g) ** 2 for c, g in zip(cosines, gold)) / 4, "raw 0–5"),
             (sum(abs(c - s) for c, s in zip(cosines, scaled)) / 4, "*absolute*"),
             (sum((c - s) ** 2 for c, s in zip(cosines, scaled)), "sum over pairs"),
             (sum((1 - c - s) ** 2 for c, s in zip(cosines, scaled)) / 4, "cosine distance"),
             (right * 1.5, "Not quite")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_cosine_similarity_loss(answer))
        assert not ok and words in out, (answer, words, out)


def test_cosent_pairs_of_pairs_checker(capsys):
    right = naive_pairs_of_pairs()
    ok, out = outcome(capsys, ex.check_cosent_pairs_of_pairs(right))
    assert ok and "5 terms" in out
    assert ex.check_cosent_pairs_of_pairs(list(reversed(right)))
    assert ex.check_cosent_pairs_of_pairs(torch.tensor(right))
    cosines, _ = naive_cosines()
    misordered = [(i, j) for i, j in right if cosines[j] > cosines[i]]
    cases = [(None, "not answered yet"), ("(1, 3)", "list of (i, j) tuples"), ([1, 2, 3], "list of (i, j) tuples"),
             ([(j, i) for i, j in right], "wrong way round"), (right + [(0, 3), (3, 0)], "tied pairs"),
             (naive_pairs_of_pairs(strict=False), "tied pairs"), (misordered, "*misordered*"),
             ([(min(i, j), max(i, j)) for i, j in right], "Order matters"), (right[:-1], "missing [(3, 2)]")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_cosent_pairs_of_pairs(answer))
        assert not ok and words in out, (answer, words, out)


def test_cosent_loss_checker(capsys):
    right = naive_cosent()
    ok, out = outcome(capsys, ex.check_cosent_loss(right))
    assert ok and "(1, 3)" in out
    cosines, _ = naive_cosines()
    separate_logs = sum(math.log1p(math.exp(20 * (cosines[j] - cosines[i]))) for i, j in naive_pairs_of_pairs())
    cases = [(None, "not answered yet"), ([1.0, 2.0], "one number"), (naive_cosent(one=False), "1 inside log"),
             (naive_cosent(scale=1.0), "forgot the scale"), (naive_cosent(sign=-1.0), "Wrong sign"),
             (naive_cosent(strict=False), "included ties"), (separate_logs, "one log(1 + Σ"),
             (right + 0.5, "Not quite")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_cosent_loss(answer))
        assert not ok and words in out, (answer, words, out)


def test_softmax_features_checker(capsys):
    emb_a, emb_b, _ = ex.exercise_scored_pairs()
    rows = [a + b + [abs(x - y) for x, y in zip(a, b)] for a, b in zip(emb_a.tolist(), emb_b.tolist())]
    ok, out = outcome(capsys, ex.check_softmax_features(np.array(rows)))
    assert ok and "|u − v|" in out
    assert ex.check_softmax_features(torch.tensor(rows, dtype=torch.float32))
    u, v = emb_a, emb_b
    cases = [(None, "not answered yet"), ("features", "tensor or array"),
             (torch.cat([u, v, u - v], 1), "absolute difference"),
             (torch.cat([u, v, (u - v).abs(), u * v], 1), "u * v"),
             (torch.cat([(u - v).abs(), u, v], 1), "wrong order"),
             (torch.cat([u, v, (u - v).abs()], 0), "stacked the pieces as rows"),
             (torch.cat([u, v], 1), "shape (4, 4)"),
             (np.array(rows) + 1, "Not quite")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_softmax_features(answer))
        assert not ok and words in out, (answer, words, out)
