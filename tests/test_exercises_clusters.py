"""The checkers of notebooks/10_clusters.ipynb accept right answers and explain wrong ones without revealing them.

Right answers are computed here from the definitions with plain Python loops, not with labkit, so a checker
with a wrong "right answer" fails.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import clusters as ex


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
    assert ex._pair_confusions() == naive_pair_confusions() > 0
    assert ex._centroid_cosine() == pytest.approx(naive_centroid_cosine(), abs=1e-6)
    assert ex._auc() == pytest.approx(naive_auc())
    # The exercise is only interesting if cosine and Euclidean neighbours disagree, and there is a tie in ex. 3.
    assert ex._euclidean_confusions() != naive_pair_confusions()
    assert set(ex.POSITIVE_SIMILARITIES) & set(ex.NEGATIVE_SIMILARITIES)


def test_pair_confusions(capsys):
    right = naive_pair_confusions()
    check = ex.check_pair_confusions
    assert_right(capsys, check, right)
    assert_right(capsys, check, np.int64(right))
    assert_stub_and_reveal(capsys, check, right)
    one_way = right // 2  # both directions have one confusion here
    cases = [(ex._euclidean_confusions(), "Euclidean"), (0, "itself"), (one_way, "one direction"),
             (7, "Not quite"), ("two", "whole number"), (2.5, "whole number")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_centroid_similarity(capsys):
    right = naive_centroid_cosine()
    check = ex.check_centroid_similarity
    assert_right(capsys, check, right)
    assert_stub_and_reveal(capsys, check, right)
    a = [p for p, l in zip(ex.POINTS.tolist(), ex.LABELS) if l == "A"]
    b = [p for p, l in zip(ex.POINTS.tolist(), ex.LABELS) if l == "B"]
    raw = cosine([sum(c) / len(a) for c in zip(*a)], [sum(c) / len(b) for c in zip(*b)])
    mean_pairwise = sum(cosine(p, q) for p in a for q in b) / (len(a) * len(b))
    for answer, words in [(raw, "raw vectors"), (mean_pairwise, "mean cosine over all"), (0.5, "normalise every row")]:
        assert_wrong(capsys, check, answer, words, right)


def test_auc(capsys):
    right = naive_auc()
    check = ex.check_auc
    assert_right(capsys, check, right)
    assert_stub_and_reveal(capsys, check, right)
    comparisons = len(ex.POSITIVE_SIMILARITIES) * len(ex.NEGATIVE_SIMILARITIES)
    strict = sum(p > n for p in ex.POSITIVE_SIMILARITIES for n in ex.NEGATIVE_SIMILARITIES) / comparisons
    loose = sum(p >= n for p in ex.POSITIVE_SIMILARITIES for n in ex.NEGATIVE_SIMILARITIES) / comparisons
    gap = np.mean(ex.POSITIVE_SIMILARITIES) - np.mean(ex.NEGATIVE_SIMILARITIES)
    cases = [(strict, "tie counted as a loss"), (loose, "tie counted as a win"), (1 - right, "negative pair wins"),
             (gap, "mean similarities"), (0.123, "1/2 for a tie"), ([0.1, 0.2], "one number")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
