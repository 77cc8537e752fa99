"""The checkers of notebooks/04_pair_losses.ipynb accept right answers and explain wrong ones without revealing them.

Right answers are computed here with plain Python loops from the formulas (not with labkit), so a checker
that computed the wrong "right answer" would fail these tests.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import pair_losses as ex

MARGIN = 0.5


def naive_distances():
    emb_a, emb_b, labels = ex.exercise_pairs()
    distances = []
    for a, b in zip(emb_a.tolist(), emb_b.tolist()):
        dot = sum(x * y for x, y in zip(a, b))
        distances.append(1 - dot / (math.hypot(*a) * math.hypot(*b)))
    return distances, labels.tolist()


def naive_contrastive(half=True, mean=True, clamp=True, swap=False):
    distances, labels = naive_distances()
    terms = []
    for d, y in zip(distances, labels):
        y = 1 - y if swap else y
        push = max(0.0, MARGIN - d) if clamp else MARGIN - d
        terms.append((0.5 if half else 1.0) * (d * d if y == 1 else push * push))
    return sum(terms) / len(terms) if mean else sum(terms)


def naive_hard_pairs():
    distances, labels = naive_distances()
    closest_negative = min(d for d, y in zip(distances, labels) if y == 0)
    farthest_positive = max(d for d, y in zip(distances, labels) if y == 1)
    return [i for i, (d, y) in enumerate(zip(distances, labels))
            if (y == 1 and d > closest_negative) or (y == 0 and d < farthest_positive)]


def naive_online(indices=None):
    distances, labels = naive_distances()
    indices = naive_hard_pairs() if indices is None else indices
    return sum(distances[i] ** 2 if labels[i] == 1 else max(0.0, MARGIN - distances[i]) ** 2 for i in indices)


def test_exercise_pairs_have_the_promised_traps():
    distances, labels = naive_distances()
    assert labels == [1, 1, 0, 0, 0]
    assert np.allclose(distances, [0.04, 0.4, 0.2, 0.4624, 1.0])
    # pair 3: inside the margin, yet not hard; the two losses disagree on it
    assert distances[3] < MARGIN and 3 not in naive_hard_pairs()


def test_contrastive_loss_checker(capsys):
    right = naive_contrastive()
    check = ex.check_contrastive_loss
    assert_right(capsys, check, right, "ContrastiveLoss()")
    assert_right(capsys, check, torch.tensor(right))
    assert_right(capsys, check, np.array([right]))
    assert_stub_and_reveal(capsys, check, right)
    distances, labels = naive_distances()
    cosine_as_distance = sum(0.5 * ((1 - d) ** 2 if y == 1 else max(0.0, MARGIN - (1 - d)) ** 2)
                             for d, y in zip(distances, labels)) / 5
    cases = [("0.03", "one number"), ([0.1, 0.2], "one number"), ([right, 99], "2 values"),
             (naive_contrastive(mean=False), "*sum*"), (naive_contrastive(half=False), "factor ½"),
             (naive_contrastive(half=False, mean=False), "two slips"), (naive_contrastive(clamp=False), "max(0, ·)"),
             (cosine_as_distance, "*similarity*"), (naive_contrastive(swap=True), "labels swapped"),
             (0, "Not quite"), (right + 0.01, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_hard_pairs_checker(capsys):
    right = naive_hard_pairs()
    check = ex.check_hard_pairs
    assert_right(capsys, check, right, "negative 3 is inside the margin")
    assert_right(capsys, check, torch.tensor(right))
    assert_right(capsys, check, set(right))
    assert_right(capsys, check, [i in right for i in range(5)])
    assert_stub_and_reveal(capsys, check, right, index=True)
    distances, labels = naive_distances()
    inside = [i for i in range(5) if labels[i] == 1 or distances[i] < MARGIN]
    others = [i for i in range(5) if i not in right]
    cases = [("1, 2", "list of distinct integer indices"), ([1.5], "distinct integers"),
             ([float(i) for i in right], "distinct integers"), (right + right[:1], "distinct integers"),
             ([True, False], "one entry per item"), (right + [7], "numbered 0 to 4"),
             (inside, "every pair ContrastiveLoss penalises"),
             ([], "your answer is empty"), (right[:1], "1 of your 1 pairs is right, and at least one is missing"),
             (right + others[-1:], f"{len(right)} of your {len(right) + 1} pairs are right, and none is missing"),
             (others, f"0 of your {len(others)} pairs are right")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right, index=True)


def test_online_contrastive_loss_checker(capsys):
    right = naive_online()
    check = ex.check_online_contrastive_loss
    assert_right(capsys, check, right, "hard pairs only")
    assert_stub_and_reveal(capsys, check, right)
    cases = [(object(), "one number"), (right / 2, "mean over the hard pairs"),
             (right / 5, "mean over all pairs"), (naive_online(range(5)), "every pair"),
             (naive_contrastive(), "ContrastiveLoss (every pair"), (right + 0.1, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
