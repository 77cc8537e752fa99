"""The checkers of notebooks/10_clusters.ipynb accept right answers and explain wrong ones.

Right answers are computed here from the definitions with plain Python loops, not with labkit, so a checker
with a wrong "right answer" fails.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from labkit.course.exercises import clusters as ex


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def naive_pair_confusions():
    points, labels = ex.POINTS.tolist(), ex.LABELS.tolist()
    total = 0
    for i, p in enumerate(points):
        j = max((j for j in range(len(points)) if j != i), key=lambda j: cosine(p, points[j]))
        if {labels[i], labels[j]} == set(ex.PAIR):
            total += 1
    return total


def naive_centroid_cosine():
    def centroid(c):
        rows = [[v / math.sqrt(sum(x * x for x in p)) for v in p] for p, l in zip(ex.POINTS.tolist(), ex.LABELS) if l == c]
        return [sum(col) / len(rows) for col in zip(*rows)]
    return cosine(centroid(ex.PAIR[0]), centroid(ex.PAIR[1]))


def naive_auc():
    wins = 0.0
    for p in ex.POSITIVE_SIMILARITIES:
        for n in ex.NEGATIVE_SIMILARITIES:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(ex.POSITIVE_SIMILARITIES) * len(ex.NEGATIVE_SIMILARITIES))


def test_helpers_match_the_definitions():
    assert ex.pair_confusions() == naive_pair_confusions() > 0
    assert ex.centroid_cosine() == pytest.approx(naive_centroid_cosine(), abs=1e-6)
    assert ex.auc() == pytest.approx(naive_auc())
    # The exercise is only interesting if cosine and Euclidean neighbours disagree, and there is a tie in ex. 3.
    assert ex._euclidean_confusions() != naive_pair_confusions()
    assert set(ex.POSITIVE_SIMILARITIES) & set(ex.NEGATIVE_SIMILARITIES)


# ----------------------------------------------------------------------------------------------------------
# Exercise 1
# ----------------------------------------------------------------------------------------------------------
def test_pair_confusions_right_answer(capsys):
    ok, out = outcome(capsys, ex.check_pair_confusions(naive_pair_confusions()))
    assert ok and "Right" in out
    assert outcome(capsys, ex.check_pair_confusions(np.int64(naive_pair_confusions())))[0]


def test_pair_confusions_slips_are_named(capsys):
    ok, out = outcome(capsys, ex.check_pair_confusions(None))
    assert not ok and "not answered" in out and "-inf" in out
    ok, out = outcome(capsys, ex.check_pair_confusions(ex._euclidean_confusions()))
    assert not ok and "Euclidean" in out
    ok, out = outcome(capsys, ex.check_pair_confusions(0))
    assert not ok and "itself" in out
    one_way = naive_pair_confusions() // 2  # both directions have one confusion here
    ok, out = outcome(capsys, ex.check_pair_confusions(one_way))
    assert not ok and "one direction" in out
    ok, out = outcome(capsys, ex.check_pair_confusions(7))
    assert not ok and "argmax" in out
    ok, out = outcome(capsys, ex.check_pair_confusions("two"))
    assert not ok and "one number" in out


# ----------------------------------------------------------------------------------------------------------
# Exercise 2
# ----------------------------------------------------------------------------------------------------------
def test_centroid_similarity_right_and_slips(capsys):
    ok, out = outcome(capsys, ex.check_centroid_similarity(naive_centroid_cosine()))
    assert ok and "Right" in out

    a = [p for p, l in zip(ex.POINTS.tolist(), ex.LABELS) if l == "A"]
    b = [p for p, l in zip(ex.POINTS.tolist(), ex.LABELS) if l == "B"]
    raw = cosine([sum(c) / len(a) for c in zip(*a)], [sum(c) / len(b) for c in zip(*b)])
    ok, out = outcome(capsys, ex.check_centroid_similarity(raw))
    assert not ok and "raw vectors" in out
    mean_pairwise = sum(cosine(p, q) for p in a for q in b) / (len(a) * len(b))
    ok, out = outcome(capsys, ex.check_centroid_similarity(mean_pairwise))
    assert not ok and "mean cosine over all" in out
    ok, out = outcome(capsys, ex.check_centroid_similarity(0.5))
    assert not ok and "Normalise every row" in out
    ok, out = outcome(capsys, ex.check_centroid_similarity(None))
    assert not ok and "not answered" in out


# ----------------------------------------------------------------------------------------------------------
# Exercise 3
# ----------------------------------------------------------------------------------------------------------
def test_auc_right_and_slips(capsys):
    ok, out = outcome(capsys, ex.check_auc(naive_auc()))
    assert ok and "Right" in out
    comparisons = len(ex.POSITIVE_SIMILARITIES) * len(ex.NEGATIVE_SIMILARITIES)
    strict = sum(p > n for p in ex.POSITIVE_SIMILARITIES for n in ex.NEGATIVE_SIMILARITIES) / comparisons
    loose = sum(p >= n for p in ex.POSITIVE_SIMILARITIES for n in ex.NEGATIVE_SIMILARITIES) / comparisons
    ok, out = outcome(capsys, ex.check_auc(strict))
    assert not ok and "tie as a loss" in out
    ok, out = outcome(capsys, ex.check_auc(loose))
    assert not ok and "tie as a win" in out
    ok, out = outcome(capsys, ex.check_auc(1 - naive_auc()))
    assert not ok and "negative pair wins" in out
    gap = np.mean(ex.POSITIVE_SIMILARITIES) - np.mean(ex.NEGATIVE_SIMILARITIES)
    ok, out = outcome(capsys, ex.check_auc(gap))
    assert not ok and "mean similarities" in out
    ok, out = outcome(capsys, ex.check_auc(0.123))
    assert not ok and "1/2 for a tie" in out
    ok, out = outcome(capsys, ex.check_auc([0.1, 0.2]))
    assert not ok and "one number" in out
