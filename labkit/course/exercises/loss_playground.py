"""Checkers for the exercises of notebooks/08_loss_playground.ipynb.

Each checker takes your answer, computes the right one with `labkit.course.playground` (and labkit's distances),
and prints whether it is right, or which step to recheck (never the answer itself). Add ``reveal=True`` to see
the solution.
"""
from __future__ import annotations

import math

import torch

from labkit.course.exercises import Exercise, Slip, check_array, check_indices, check_number
from labkit.course.playground import Playground
from labkit.distances import euclidean_distance

OUTLIER_SETTINGS = {"preset": "one outlier", "seed": 0, "loss": "BatchHardTripletLoss", "distance": "euclidean",
                    "margin": 1.0}
_OUTLIER = 3  # the class-0 point of the "one outlier" preset that sits among class 1


# ----------------------------------------------------------------------------------------------
# Exercise 1: which anchors does the outlier make hard?
# ----------------------------------------------------------------------------------------------
def outlier_playground() -> Playground:
    """The cloud of exercise 1: "one outlier" (seed 0), BatchHardTripletLoss, Euclidean, margin 1."""
    return Playground(**OUTLIER_SETTINGS)


def _hard_anchors() -> Exercise:
    playground = outlier_playground()
    picks = playground.compute().picks
    expected = frozenset(int(a) for a in picks.anchor[picks.kind == "hard"])
    labels = playground.labels.tolist()
    classes = [frozenset(i for i, label in enumerate(labels) if label == c) for c in sorted(set(labels))]
    return Exercise(
        checker="check_hard_anchors", expected=expected,
        hint="for each anchor find its farthest classmate and its closest point of another class "
             "(labkit.mining.hardest_positive / hardest_negative on labkit.distances.euclidean_distance); the "
             "triplet is hard when d(a, n) <= d(a, p)",
        success=f"anchors {sorted(expected)}. The outlier (point 3) is the farthest positive of the other class-0 "
                "anchors and the closest negative of every class-1 anchor, and its own triplet is hard too: one "
                "misplaced point makes two whole classes hard",
        why="the anchors whose hardest negative is at least as close as their hardest positive (Playground(...)"
            ".compute().picks, kind 'hard')",
        slips=(
            Slip(frozenset(range(len(playground.labels))), "every anchor",
                 "each anchor's pair of picks: an anchor is hard only when d(a, n) <= d(a, p)"),
            Slip(expected - {_OUTLIER}, "the hard anchors without the outlier itself",
                 "the outlier's own triplet: compare its farthest classmate with its closest point of another class"),
            *(Slip(expected & one_class, "the hard anchors of one class only",
                   "the other classes: the outlier can be another class's closest negative")
              for one_class in classes if expected & one_class and expected - one_class),
        ))


def check_hard_anchors(answer, reveal: bool = False) -> bool:
    """The anchors whose batch-hard triplet is *hard* (hardest negative at least as close as the hardest
    positive) on `outlier_playground()`, as a list of distinct point indices, any order.

    A wrong answer gets how many of yours are right (never which); ``check_hard_anchors(answer, reveal=True)``
    prints the solution.
    """
    return check_indices(answer, _hard_anchors(), count=len(outlier_playground().labels), noun="anchors",
                         reveal=reveal)


# ----------------------------------------------------------------------------------------------
# Exercise 2: the largest margin three classes on the unit circle can satisfy
# ----------------------------------------------------------------------------------------------
def _best_margin_on_circle(num_classes: int) -> float:
    """Each class collapsed to one point, the classes evenly spread: then d(a, p) = 0 and d(a, n) is the
    smallest distance between two classes, the largest margin batch-hard can still satisfy."""
    angles = torch.arange(num_classes, dtype=torch.float64) * (2 * math.pi / num_classes)
    points = torch.stack([angles.cos(), angles.sin()], dim=1)
    distances = euclidean_distance(points)
    return float(distances[~torch.eye(num_classes, dtype=torch.bool)].min())


def _largest_margin(num_classes: int = 3) -> Exercise:
    expected = _best_margin_on_circle(num_classes)
    angle = 360 / num_classes
    slips = [Slip(2 * math.pi / num_classes, "the arc length between two neighbouring classes",
                  "the distance: the loss uses the straight line between the points (the chord), not the arc")]
    if num_classes > 2:
        slips.insert(0, Slip(2.0, "the diameter: only two points can be opposite each other",
                             f"how far apart {num_classes} classes can be: the closest two are nearer than that"))
    return Exercise(
        checker="check_largest_margin", with_inputs=True, expected=expected, slips=tuple(slips),
        hint=f"the best the loss can do is collapse every class to one point (d(a, p) = 0) and spread the "
             f"{num_classes} points as far apart as the circle allows; the margin must fit into the distance "
             "between the two closest classes",
        success=f"{expected:.6f} (the chord of {angle:g}°). With a larger margin every anchor keeps a positive term "
                "however the points move: the loss can never reach 0 and keeps squeezing each class into a single "
                "point",
        why=f"classes collapsed to {num_classes} evenly spread points: the closest two are a chord of {angle:g}° apart")


def check_largest_margin(answer, num_classes: int = 3, reveal: bool = False) -> bool:
    """The largest margin for which BatchHardTripletLoss on normalised points (the unit circle) with
    ``num_classes`` classes can reach a loss of 0, as one number (a list of several is refused).

    A wrong answer gets the step to recheck; ``check_largest_margin(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _largest_margin(num_classes), rel_tol=1e-3, reveal=reveal)


# ----------------------------------------------------------------------------------------------
# Exercise 3: one gradient by hand
# ----------------------------------------------------------------------------------------------
def gradient_cloud() -> tuple:
    """Four points, two classes: ``(points, labels)`` for exercise 3 (float64)."""
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [3.0, 0.0]], dtype=torch.float64)
    return points, torch.tensor([0, 0, 1, 1])


def _gradient_on_point_0() -> Exercise:
    playground = Playground(*gradient_cloud(), loss="BatchHardTripletLoss", distance="euclidean", margin=1.0)
    expected = playground.compute().gradients[0]
    return Exercise(
        checker="check_gradient_on_point_0", expected=expected,
        hint="d||x - y|| / dx = (x - y) / ||x - y||. Point 0 appears in several triplets: as an anchor, as another "
             "anchor's hardest positive and as another anchor's hardest negative; add every active term's "
             "derivative, then divide by the 4 anchors",
        success=f"{expected.tolist()}. Autograd agrees (Playground(...).compute().gradients[0]); the playground's "
                "arrows are minus these gradients",
        why="the derivatives of every active term in which point 0 appears, added up and divided by the 4 anchors "
            "(autograd: Playground(...).compute().gradients[0])",
        slips=(
            Slip(-expected, "the direction the point *moves* (minus the gradient)",
                 "the sign: the gradient itself points uphill"),
            Slip(4 * expected, "the gradient of the sum of the terms",
                 "the reduction: the loss is a mean over 4 anchors, so divide by 4"),
        ))


def check_gradient_on_point_0(answer, reveal: bool = False) -> bool:
    """d loss / d point 0 of BatchHardTripletLoss (Euclidean, margin 1) on `gradient_cloud()`: two numbers.

    A wrong answer gets the step to recheck; ``check_gradient_on_point_0(answer, reveal=True)`` prints the
    solution.
    """
    return check_array(answer, _gradient_on_point_0(), atol=1e-4, reveal=reveal,
                       shape_hint="Give the two coordinates (x, y) of the gradient.")


_EXERCISES = {"hard_anchors": _hard_anchors, "largest_margin": _largest_margin,
              "gradient_on_point_0": _gradient_on_point_0}
