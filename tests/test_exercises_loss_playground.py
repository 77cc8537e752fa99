"""The checkers of notebooks/08_loss_playground.ipynb accept right answers and explain wrong ones without revealing
them. (They used to be tested in test_loss_lab.py, with the playground itself.)

References are computed here independently: the hard anchors with `labkit.mining` on the cloud's distances, the
largest margin from the geometry of the circle, the gradient by hand from d||x - y|| / dx.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import loss_playground as exercises
from labkit.distances import euclidean_distance
from labkit.mining import hardest_negative, hardest_positive


def test_check_hard_anchors(capsys):
    playground = exercises.outlier_playground()
    dist = euclidean_distance(playground.points)
    positive, negative = hardest_positive(dist, playground.labels), hardest_negative(dist, playground.labels)
    hard = (negative.values <= positive.values).nonzero().flatten().tolist()
    count = len(playground.labels)
    assert 0 < len(hard) < count
    check = exercises.check_hard_anchors
    assert_right(capsys, check, hard, "point 3")
    assert_right(capsys, check, torch.tensor(hard))
    assert_stub_and_reveal(capsys, check, hard, index=True)
    labels = playground.labels.tolist()
    one_class = [i for i in hard if labels[i] == labels[hard[-1]]]
    cases = [(hard[:3], "3 of your 3 anchors are right, and at least one is missing"),
             (hard + [11], "none is missing: some should not be there"), (list(range(count)), "every anchor"),
             ([i for i in hard if i != 3], "without the outlier"), (one_class, "one class only"),
             ("all", "list of distinct integer indices"), ([0, 0, 1], "distinct integers"),
             ([0.0, 1.0], "distinct integers"), ([count], f"numbered 0 to {count - 1}")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, hard, index=True)


def test_check_largest_margin(capsys):
    chord = 2 * math.sin(math.pi / 3)  # the chord of 120 degrees: three classes as far apart as a circle allows
    check = exercises.check_largest_margin
    assert_right(capsys, check, chord)
    assert_right(capsys, check, 3 ** 0.5)
    assert_right(capsys, check, 2.0, num_classes=2)
    assert_right(capsys, check, math.sqrt(2), num_classes=4)
    assert_stub_and_reveal(capsys, check, chord)
    cases = [([3 ** 0.5, 99], "2 values"), ((3 ** 0.5, 1.0), "2 values"), (2.0, "diameter"),
             (2 * math.pi / 3, "arc length"), (1.0, "Not quite"), ("sqrt(3)", "one number")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, chord)


def test_check_gradient_on_point_0(capsys):
    # By hand: anchor 0 pulls to 1 and pushes from 2; point 0 is anchor 1's positive and anchor 2's negative.
    points, _ = exercises.gradient_cloud()
    x0, x1, x2 = points[0], points[1], points[2]
    unit = lambda a, b: (a - b) / (a - b).norm()  # noqa: E731  d||a - b|| / da
    by_hand = (unit(x0, x1) - unit(x0, x2) + unit(x0, x1) - unit(x0, x2)) / 4
    check = exercises.check_gradient_on_point_0
    assert_right(capsys, check, by_hand)
    assert_right(capsys, check, by_hand.tolist())
    assert_stub_and_reveal(capsys, check, by_hand)
    cases = [(-by_hand, "*moves*"), (4 * by_hand, "divide by 4"), (by_hand / 2, "2 of the 2 entries are off"),
             (np.zeros(3), "shape (3,)"), ("up", "tensor or an array")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, by_hand)
