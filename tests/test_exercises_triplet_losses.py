"""The checkers of notebooks/05_triplet_losses.ipynb accept right answers and explain wrong ones without revealing them.

Right answers are computed here with plain Python loops from the definitions (not with labkit), so a checker
that computed the wrong "right answer" would fail these tests.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import triplet_losses as ex

MARGIN = 5.0


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
    check = ex.check_hardest_negative
    for answer in (right, torch.tensor(right), np.int64(right), float(right)):
        assert_right(capsys, check, answer, f"point {right}")
    assert_stub_and_reveal(capsys, check, right, index=True)
    cases = [("zero", "one index"), (1.5, "one index"), ([0, 1], "one index"), (positive, "*positive*"),
             (farthest, "*farthest*"), (a, "anchor itself"), (other, "not the closest"), (len(labels), "numbered 0 to")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right, index=True)


def test_triplet_kinds_checker(capsys):
    right = [naive_kind(*t) for t in ex.TRIPLETS_TO_CLASSIFY]
    check = ex.check_triplet_kinds
    assert_right(capsys, check, right)
    assert_right(capsys, check, tuple(k.upper().replace("-", " ") for k in right))  # spellings are forgiven
    assert_stub_and_reveal(capsys, check, right)
    one_off = list(right)
    one_off[-1] = "hard" if right[-1] != "hard" else "semi-hard"
    dist, _ = naive_batch()
    no_margin = [naive_kind(*t) if naive_kind(*t) != "semi-hard" else "easy" for t in ex.TRIPLETS_TO_CLASSIFY]
    cases = [("easy", "list of 3"), (["easy"], "list of 3"), (5, "list of 3"),
             (["easy", "medium", "hard"], "did not understand ['medium']"), (no_margin, "without the margin"),
             (one_off, "2 of the 3 kinds are right")]
    for answer, words in cases:
        out = assert_wrong(capsys, check, answer, words, right)
        for a, p, n in ex.TRIPLETS_TO_CLASSIFY:  # no distance that would give a kind away
            assert f"{dist[a][p]:.4f}" not in out and f"{dist[a][n]:.4f}" not in out


def test_batch_hard_loss_checker(capsys):
    right = naive_batch_hard()
    check = ex.check_batch_hard_loss
    assert_right(capsys, check, right, "BatchHardTripletLoss()")
    assert_right(capsys, check, torch.tensor(right))
    assert_right(capsys, check, np.array([right]))
    assert_stub_and_reveal(capsys, check, right)
    cases = [("4.38", "one number"), ([1.0, 2.0], "one number"),
             (naive_batch_hard(reduce="sum"), "*sum*"), (naive_batch_hard(hinge=False), "max(·, 0)"),
             (naive_batch_hard(reduce="active"), "positive term only"),
             (naive_batch_hard(easiest=True), "*closest* positive"),
             (naive_batch_hard(squared=True), "squared distances"), (naive_batch_hard(margin=1.0), "margin 1"),
             (right + 0.01, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_batch_all_loss_checker(capsys):
    right = naive_batch_all()
    check = ex.check_batch_all_loss
    assert_right(capsys, check, right, "24 valid triplets")
    assert_right(capsys, check, torch.tensor(right), "15 with a positive loss")
    assert_stub_and_reveal(capsys, check, right)
    terms = naive_triplet_terms()
    raw = naive_triplet_terms(hinge=False)
    cases = [("3.9", "one number"), (sum(terms) / len(terms), "mean over all the valid triplets"),
             (sum(terms), "the sum of the terms"), (sum(raw) / len(raw), "without the max"),
             (sum(terms) / 6, "number of anchors"), (naive_batch_hard(), "batch-hard loss"),
             (right * 1.01, "Not quite")]
    for answer, words in cases:
        out = assert_wrong(capsys, check, answer, words, right)
        assert "15" not in out  # the count to divide by is the exercise's step, not the message's
