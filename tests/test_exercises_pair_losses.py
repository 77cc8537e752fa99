"""The checkers of notebooks/04_pair_losses.ipynb accept right answers and explain wrong ones.

Right answers are computed here with plain Python loops from the formulas (not with labkit), so a checker
that computed the wrong "right answer" would fail these tests.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from labkit.course.exercises import pair_losses as ex

MARGIN = 0.5


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


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
    ok, out = outcome(capsys, ex.check_contrastive_loss(right))
    assert ok and "ContrastiveLoss()" in out
    assert ex.check_contrastive_loss(torch.tensor(right))
    assert ex.check_contrastive_loss(np.array([right]))
    distances, labels = naive_distances()
    cosine_as_distance = sum(0.5 * ((1 - d) ** 2 if y == 1 else max(0.0, MARGIN - (1 - d)) ** 2)
                             for d, y in zip(distances, labels)) / 5
    cases = [(None, "not answered yet"), ("0.03", "one number"), ([0.1, 0.2], "one number"),
             (naive_contrastive(mean=False), "*sum*"), (naive_contrastive(half=False), "factor ½"),
             (naive_contrastive(half=False, mean=False), "Two slips"), (naive_contrastive(clamp=False), "max(0, ·)"),
             (cosine_as_distance, "*similarity*"), (naive_contrastive(swap=True), "swapped the labels"),
             (right + 0.01, "Not quite")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_contrastive_loss(answer))
        assert not ok and words in out, (answer, words, out)


def test_hard_pairs_checker(capsys):
    right = naive_hard_pairs()
    assert right == [1, 2]
    ok, out = outcome(capsys, ex.check_hard_pairs(right))
    assert ok and "negative 3 is inside the margin" in out
    assert ex.check_hard_pairs(torch.tensor(right))
    assert ex.check_hard_pairs({2, 1})
    assert ex.check_hard_pairs([False, True, True, False, False])
    cases = [(None, "not answered yet"), ("1, 2", "list of pair indices"), ([1.5], "list of pair indices"),
             ([True, False], "list of pair indices"), ([1, 2, 7], "numbered 0 to 4"),
             ([0, 1, 2, 3], "other kind's"), ([1, 2, 3], "pair 3 (negative"), ([1], "pair 2 is hard but missing"),
             ([0, 1, 2], "pair 0 (positive")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_hard_pairs(answer))
        assert not ok and words in out, (answer, words, out)


def test_online_contrastive_loss_checker(capsys):
    right = naive_online()
    ok, out = outcome(capsys, ex.check_online_contrastive_loss(right))
    assert ok and "two hard pairs" in out
    cases = [(None, "not answered yet"), (object(), "one number"), (right / 2, "averaged over the hard pairs"),
             (right / 5, "averaged over all pairs"), (naive_online(range(5)), "every pair"),
             (naive_contrastive(), "That is ContrastiveLoss"), (right + 0.1, "Not quite")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_online_contrastive_loss(answer))
        assert not ok and words in out, (answer, words, out)
