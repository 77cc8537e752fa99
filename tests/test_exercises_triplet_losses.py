"""The checkers of notebooks/05_triplet_losses.ipynb accept right answers and explain wrong ones.

Right answers are computed here with plain Python loops from the definitions (not with labkit), so a checker
that computed the wrong "right answer" would fail these tests.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from labkit.course.exercises import triplet_losses as ex

MARGIN = 5.0


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


def naive_batch():
    points, labels = ex.exercise_batch()
    points, labels = points.tolist(), labels.tolist()
    n = len(points)
    dist = [[math.dist(points[i], points[j]) for j in range(n)] for i in range(n)]
    return dist, labels


def naive_batch_hard(margin=MARGIN, hinge=True, reduce="mean", easiest=False, squared=False):
    dist, labels = naive_batch()
    if squared:
        dist = [[d * d for d in row] for row in dist]
    terms = []
    for a in range(len(labels)):
        positives = [dist[a][p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [dist[a][n] for n in range(len(labels)) if labels[n] != labels[a]]
        d_ap = min(positives) if easiest else max(positives)
        d_an = max(negatives) if easiest else min(negatives)
        term = d_ap - d_an + margin
        terms.append(max(term, 0.0) if hinge else term)
    if reduce == "sum":
        return sum(terms)
    if reduce == "active":
        active = [t for t in terms if t > 0]
        return sum(active) / len(active)
    return sum(terms) / len(terms)


def naive_triplet_terms(hinge=True):
    dist, labels = naive_batch()
    n = len(labels)
    terms = []
    for a in range(n):
        for p in range(n):
            for k in range(n):
                if p != a and labels[p] == labels[a] and labels[k] != labels[a]:
                    term = dist[a][p] - dist[a][k] + MARGIN
                    terms.append(max(term, 0.0) if hinge else term)
    return terms


def naive_batch_all():
    terms = naive_triplet_terms()
    return sum(terms) / (sum(1 for t in terms if t > 1e-16) + 1e-16)


def naive_kind(a, p, n):
    dist, _ = naive_batch()
    d_ap, d_an = dist[a][p], dist[a][n]
    if d_an >= d_ap + MARGIN:
        return "easy"
    return "hard" if d_an <= d_ap else "semi-hard"


def test_exercise_batch_has_the_promised_traps():
    dist, labels = naive_batch()
    assert labels == [0, 0, 1, 1, 2, 2]
    a = ex.QUESTION_ANCHOR
    others = [j for j in range(len(labels)) if j != a]
    nearest = min(others, key=lambda j: dist[a][j])
    assert labels[nearest] == labels[a]  # anchor 2's nearest point is its positive
    kinds = [naive_kind(*t) for t in ex.TRIPLETS_TO_CLASSIFY]
    assert sorted(kinds) == ["easy", "hard", "semi-hard"]  # one of each
    terms = naive_triplet_terms()
    assert len(terms) == 24 and sum(1 for t in terms if t > 0) == 15
    assert naive_batch_hard(hinge=False) < naive_batch_hard()  # some anchor is easy


def test_hardest_negative_checker(capsys):
    dist, labels = naive_batch()
    a = ex.QUESTION_ANCHOR
    negatives = [n for n in range(len(labels)) if labels[n] != labels[a]]
    right = min(negatives, key=lambda n: dist[a][n])
    farthest = max(negatives, key=lambda n: dist[a][n])
    other = next(n for n in negatives if n not in (right, farthest))
    positive = next(p for p in range(len(labels)) if p != a and labels[p] == labels[a])
    ok, out = outcome(capsys, ex.check_hardest_negative(right))
    assert ok and f"point {right}" in out
    assert ex.check_hardest_negative(torch.tensor(right))
    assert ex.check_hardest_negative(np.int64(right))
    assert ex.check_hardest_negative(float(right))
    capsys.readouterr()
    cases = [(None, "not answered yet"), ("zero", "one point index"), (1.5, "one point index"),
             ([0, 1], "one point index"), (positive, "*positive*"), (farthest, "*farthest*"), (a, "anchor itself"), (other, "not the closest"),
             (len(labels), "numbered 0 to")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_hardest_negative(answer))
        assert not ok and words in out, (answer, words, out)
        assert "Right" not in out


def test_triplet_kinds_checker(capsys):
    right = [naive_kind(*t) for t in ex.TRIPLETS_TO_CLASSIFY]
    assert ex.expected_kinds() == right
    ok, out = outcome(capsys, ex.check_triplet_kinds(right))
    assert ok and "Right" in out
    assert ex.check_triplet_kinds(tuple(k.upper().replace("-", " ") for k in right))  # spellings are forgiven
    wrong = list(right)
    wrong[0] = "easy" if right[0] != "easy" else "hard"
    ok, out = outcome(capsys, ex.check_triplet_kinds(wrong))
    a, p, n = ex.TRIPLETS_TO_CLASSIFY[0]
    dist, _ = naive_batch()
    assert not ok and f"({a}, {p}, {n}) is {right[0]}, not {wrong[0]}" in out
    assert f"{dist[a][p]:.4f}" in out and f"{dist[a][n]:.4f}" in out
    for answer, words in [(None, "not answered yet"), ("easy", "list of 3"), (["easy"], "list of 3"),
                          (["easy", "medium", "hard"], "did not understand ['medium']"), (5, "list of 3")]:
        ok, out = outcome(capsys, ex.check_triplet_kinds(answer))
        assert not ok and words in out, (answer, words, out)


def test_batch_hard_loss_checker(capsys):
    right = naive_batch_hard()
    ok, out = outcome(capsys, ex.check_batch_hard_loss(right))
    assert ok and "BatchHardTripletLoss()" in out
    assert ex.check_batch_hard_loss(torch.tensor(right))
    assert ex.check_batch_hard_loss(np.array([right]))
    cases = [(None, "not answered yet"), ("4.38", "one number"), ([1.0, 2.0], "one number"),
             (naive_batch_hard(reduce="sum"), "*sum*"), (naive_batch_hard(hinge=False), "max(·, 0)"),
             (naive_batch_hard(reduce="active"), "positive term only"),
             (naive_batch_hard(easiest=True), "*closest* positive"),
             (naive_batch_hard(squared=True), "squared distances"), (naive_batch_hard(margin=1.0), "margin 1"),
             (right + 0.01, "Not quite")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_batch_hard_loss(answer))
        assert not ok and words in out, (answer, words, out)


def test_batch_all_loss_checker(capsys):
    right = naive_batch_all()
    ok, out = outcome(capsys, ex.check_batch_all_loss(right))
    assert ok and "24 valid triplets" in out and "15 with a positive loss" in out
    assert ex.check_batch_all_loss(torch.tensor(right))
    terms = naive_triplet_terms()
    raw = naive_triplet_terms(hinge=False)
    cases = [(None, "not answered yet"), ("3.9", "one number"), (sum(terms) / len(terms), "all 24 valid triplets"),
             (sum(terms), "That is the sum"), (sum(raw) / len(raw), "dropped the max"),
             (sum(terms) / 6, "number of anchors"), (naive_batch_hard(), "batch-hard loss"),
             (right * 1.01, "Not quite")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_batch_all_loss(answer))
        assert not ok and words in out, (answer, words, out)
