"""Checkers for the exercises of notebooks/08_loss_playground.ipynb.

Each checker takes your answer, computes the right one with `labkit.course.playground` (and labkit's distances),
and prints what is right, or what is off and where to look.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from labkit.distances import euclidean_distance
from labkit.course.exercises import close, describe_difference, report
from labkit.course.playground import Playground

OUTLIER_SETTINGS = {"preset": "one outlier", "seed": 0, "loss": "BatchHardTripletLoss", "distance": "euclidean",
                    "margin": 1.0}


# ----------------------------------------------------------------------------------------------
# Exercise 1: which anchors does the outlier make hard?
# ----------------------------------------------------------------------------------------------
def outlier_playground() -> Playground:
    """The cloud of exercise 1: "one outlier" (seed 0), BatchHardTripletLoss, Euclidean, margin 1."""
    return Playground(**OUTLIER_SETTINGS)


def _hard_anchors() -> list:
    picks = outlier_playground().compute().picks
    return sorted(int(a) for a in picks.anchor[picks.kind == "hard"])


def _as_index_set(answer):
    try:
        values = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer).reshape(-1)
        if values.dtype.kind not in "iu" and not (values.dtype.kind == "f" and np.all(values == np.round(values))):
            return None
        return {int(v) for v in values}
    except (TypeError, ValueError):
        return None


def check_hard_anchors(answer) -> bool:
    """The anchors whose batch-hard triplet is *hard* (hardest negative at least as close as the hardest
    positive) on `outlier_playground()`, as a list of point indices."""
    expected = set(_hard_anchors())
    hint = ("Hint: for each anchor find its farthest classmate and its closest point of another class "
            "(labkit.mining.hardest_positive / hardest_negative on labkit.distances.euclidean_distance); the "
            "triplet is hard when d(a, n) <= d(a, p).")
    if answer is None:
        return report(False, "", "You have not answered yet. " + hint)
    given = _as_index_set(answer)
    if given is None:
        return report(False, "", f"Give a list of point indices such as [0, 5], not {answer!r}. " + hint)
    if given == expected:
        return report(True, f"Right: anchors {sorted(expected)}. The outlier (point 3) is the farthest positive of "
                            "the other class-0 anchors and the closest negative of every class-1 anchor, and its "
                            "own triplet is hard too: one misplaced point makes two whole classes hard.", "")
    missing, extra = sorted(expected - given), sorted(given - expected)
    parts = []
    if missing:
        parts.append(f"you left out {missing}: look at what each of them picked as its hardest positive or negative")
    if extra:
        parts.append(f"{extra} are not hard: their closest negative is farther than their farthest positive")
    return report(False, "", "Not quite: " + "; ".join(parts) + ". " + hint)


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


def check_largest_margin(answer, num_classes: int = 3) -> bool:
    """The largest margin for which BatchHardTripletLoss on normalised points (the unit circle) with
    ``num_classes`` classes can reach a loss of 0, as one number."""
    expected = _best_margin_on_circle(num_classes)
    hint = ("Hint: the best the loss can do is collapse every class to one point (d(a, p) = 0) and spread the "
            f"{num_classes} points as far apart as the circle allows; the margin must fit into the distance "
            "between the two closest classes.")
    if answer is None:
        return report(False, "", "You have not answered yet. " + hint)
    try:
        value = float(np.asarray(answer.detach() if hasattr(answer, "detach") else answer, dtype=float).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return report(False, "", f"Give one number, not {answer!r}. " + hint)
    if math.isclose(value, expected, rel_tol=1e-3):
        return report(True, f"Right: {expected:.6f} (the chord of 120°, √3). With a larger margin every anchor keeps a "
                            "positive term however the points move: the loss can never reach 0 and keeps squeezing "
                            "each class into a single point.", "")
    if math.isclose(value, 2.0, rel_tol=1e-3) and num_classes > 2:
        return report(False, "", "2 is the diameter: only two points can be opposite each other. With three "
                                 "classes the closest two are nearer than that. " + hint)
    return report(False, "", f"Not quite: {describe_difference(value, expected)}. " + hint)


# ----------------------------------------------------------------------------------------------
# Exercise 3: one gradient by hand
# ----------------------------------------------------------------------------------------------
def gradient_cloud() -> tuple:
    """Four points, two classes: ``(points, labels)`` for exercise 3 (float64)."""
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [3.0, 0.0]], dtype=torch.float64)
    return points, torch.tensor([0, 0, 1, 1])


def _gradient_on_point_0() -> torch.Tensor:
    playground = Playground(*gradient_cloud(), loss="BatchHardTripletLoss", distance="euclidean", margin=1.0)
    return playground.compute().gradients[0]


def check_gradient_on_point_0(answer) -> bool:
    """d loss / d point 0 of BatchHardTripletLoss (Euclidean, margin 1) on `gradient_cloud()`: two numbers."""
    expected = _gradient_on_point_0()
    hint = ("Hint: d||x - y|| / dx = (x - y) / ||x - y||. Point 0 appears in several triplets: as an anchor, as "
            "another anchor's hardest positive and as another anchor's hardest negative; add every active term's "
            "derivative, then divide by the 4 anchors.")
    if answer is None:
        return report(False, "", "You have not answered yet. " + hint)
    try:
        given = torch.as_tensor(np.asarray(answer.detach() if hasattr(answer, "detach") else answer, dtype=float))
    except (TypeError, ValueError):
        return report(False, "", f"Give two numbers (x, y), not {answer!r}. " + hint)
    if close(given, expected, atol=1e-4):
        return report(True, f"Right: {expected.tolist()}. Autograd agrees (Playground(...).compute().gradients[0]); "
                            "the playground's arrows are minus these gradients.", "")
    if given.shape == expected.shape and close(given, -expected, atol=1e-4):
        return report(False, "", "The sign is flipped: that is the direction the point *moves* (minus the "
                                 "gradient), not the gradient itself.")
    if given.shape == expected.shape and close(given, 4 * expected, atol=1e-4):
        return report(False, "", "You forgot to divide by the number of anchors: the loss is a mean over 4 anchors.")
    return report(False, "", f"Not quite: {describe_difference(given, expected)}. " + hint)
