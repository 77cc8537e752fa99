"""Checkers for the exercises of notebooks/04_pair_losses.ipynb.

`exercise_pairs()` gives the batch the exercises use; each checker takes your answer, computes the right
one with `labkit.losses.pairs`, and prints whether it is right, or which step to recheck (never the answer
itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from labkit.course.exercises import Exercise, Slip, check_indices, check_number
from labkit.losses.pairs import ContrastiveLoss, OnlineContrastiveLoss, SiameseDistanceMetric

MARGIN = 0.5  # the default of both losses


def exercise_pairs() -> tuple:
    """Five 2-D pairs (float64) with labels 1, 1, 0, 0, 0: ``(emb_a, emb_b, labels)``."""
    # Built so that the two losses disagree (cosine distances 0.04, 0.4, 0.2, 0.4624, 1.0): pair 0 is an easy
    # positive (closer than every negative), pair 3 a negative inside the margin (so ContrastiveLoss pushes it)
    # yet farther than every positive (so OnlineContrastiveLoss ignores it), pair 4 a negative beyond the margin.
    emb_a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.28, -0.96], [-0.6, 0.8]], dtype=torch.float64)
    emb_b = torch.tensor([[0.96, 0.28], [0.8, 0.6], [-0.8, -0.6], [0.96, -0.28], [-0.8, -0.6]], dtype=torch.float64)
    labels = torch.tensor([1, 1, 0, 0, 0])
    return emb_a, emb_b, labels


def _pieces():
    emb_a, emb_b, labels = exercise_pairs()
    distance = SiameseDistanceMetric.COSINE_DISTANCE(emb_a, emb_b)
    return emb_a, emb_b, labels, distance, labels.double()


def _contrastive_loss() -> Exercise:
    emb_a, emb_b, labels, distance, y = _pieces()
    expected = float(ContrastiveLoss()(emb_a, emb_b, labels))

    def contrastive(d, half=True, mean=True, clamp=True, swap=False):
        pull, push = (1 - y, y) if swap else (y, 1 - y)
        margin_term = F.relu(MARGIN - d) if clamp else MARGIN - d
        terms = (0.5 if half else 1.0) * (pull * d**2 + push * margin_term**2)
        return float(terms.mean() if mean else terms.sum())

    return Exercise(
        checker="check_contrastive_loss", expected=expected,
        hint="d = 1 − cos(a, b); loss_i = ½·(y·d² + (1 − y)·max(0, 0.5 − d)²); the loss is the mean over the 5 pairs",
        success=f"{expected:.6f}. Pairs 1 (a far positive) and 2 (a close negative) make most of it; pair 4 is "
                "beyond the margin and adds nothing. Same as ContrastiveLoss()(emb_a, emb_b, labels)",
        why="the mean over the 5 pairs of ½·(y·d² + (1 − y)·max(0, 0.5 − d)²), with d the cosine distance",
        slips=(
            Slip(contrastive(distance, mean=False), "the *sum* over the pairs",
                 "the reduction: ContrastiveLoss averages (size_average=True), so divide by the number of pairs"),
            Slip(contrastive(distance, half=False), "the loss without the factor ½", "the factor ½ in front of the bracket"),
            Slip(contrastive(distance, half=False, mean=False), "two slips: no factor ½, and a sum instead of the mean",
                 "the factor ½ and the reduction (the mean over pairs)"),
            Slip(contrastive(distance, clamp=False), "the loss without the max(0, ·)",
                 "the negatives' term: pair 4, a negative already beyond the margin, must add nothing, not (0.5 − d)²"),
            Slip(contrastive(1 - distance), "the loss of the cosine *similarity*",
                 "the distance: the loss needs the cosine *distance* d = 1 − cos"),
            Slip(contrastive(SiameseDistanceMetric.EUCLIDEAN(emb_a, emb_b)), "the loss of the Euclidean distance",
                 "the distance: the default is the cosine distance d = 1 − cos"),
            Slip(contrastive(distance, swap=True), "the loss with the labels swapped",
                 "which term each label pays: label 1 (similar) pays d², label 0 (dissimilar) max(0, margin − d)²"),
        ))


def check_contrastive_loss(answer, reveal: bool = False) -> bool:
    """ContrastiveLoss() (cosine distance, margin 0.5, mean) of `exercise_pairs()`, as one number.

    A wrong answer gets the step to recheck; ``check_contrastive_loss(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _contrastive_loss(), reveal=reveal)


def _hard_pairs() -> Exercise:
    emb_a, emb_b, labels = exercise_pairs()
    explanation = OnlineContrastiveLoss().explain(emb_a, emb_b, labels)
    hard_positives = set(explanation.details["hard_positives"])
    hard_negatives = set(explanation.details["hard_negatives"])
    distances = explanation.per_pair["distance"].to_numpy()
    positives = {i for i in range(len(labels)) if labels[i] == 1}
    inside_margin = {i for i in range(len(labels)) if labels[i] == 0 and distances[i] < MARGIN}
    return Exercise(
        checker="check_hard_pairs", expected=frozenset(hard_positives | hard_negatives),
        hint="a positive is hard if it is farther apart than the closest negative; a negative is hard if it is "
             "closer than the farthest positive",
        success=f"pairs {sorted(hard_positives | hard_negatives)}. Positive 0 is already closer than every negative "
                "and negative 4 farther than every positive, so neither is selected; negative 3 is inside the "
                "margin, but farther than every positive, so it is not selected either",
        why="the hard positives are farther apart than the closest negative, the hard negatives closer than the "
            "farthest positive (OnlineContrastiveLoss().explain(...).details)",
        slips=(
            Slip(positives | inside_margin, "every pair ContrastiveLoss penalises (all positives, and the negatives "
                                            "inside the margin)",
                 "the selection: OnlineContrastiveLoss compares each pair with the *other kind's* distances, not "
                 "with the margin"),
            Slip(hard_positives | inside_margin, "the hard positives with every negative inside the margin",
                 "the negatives: a negative is hard only if it is closer than the farthest positive; the margin "
                 "only decides its term"),
            Slip(positives | hard_negatives, "every positive with the hard negatives",
                 "the positives: a positive is hard only if it is farther apart than the closest negative"),
        ))


def check_hard_pairs(answer, reveal: bool = False) -> bool:
    """The indices of the pairs of `exercise_pairs()` that OnlineContrastiveLoss() selects as hard.

    A list of distinct integer indices, any order (or a boolean mask of length 5). A wrong answer gets how
    many of yours are right (never which); ``check_hard_pairs(answer, reveal=True)`` prints the solution.
    """
    return check_indices(answer, _hard_pairs(), count=len(exercise_pairs()[2]), noun="pairs", reveal=reveal)


def _online_contrastive_loss() -> Exercise:
    emb_a, emb_b, labels, distance, y = _pieces()
    explanation = OnlineContrastiveLoss().explain(emb_a, emb_b, labels)
    expected = explanation.loss
    every_pair_terms = y * distance**2 + (1 - y) * F.relu(MARGIN - distance) ** 2
    hard_count = int(explanation.per_pair["hard"].sum())
    return Exercise(
        checker="check_online_contrastive_loss", expected=expected,
        hint="select the hard pairs first (exercise 2); then add d² for each hard positive and max(0, 0.5 − d)² "
             "for each hard negative. A sum, with no ½",
        success=f"{expected:.6f}, from the hard pairs only. Same as OnlineContrastiveLoss()(emb_a, emb_b, labels)",
        why="the sum over the hard pairs of d² (hard positives) and max(0, 0.5 − d)² (hard negatives), no ½",
        slips=(
            Slip(expected / hard_count, "a mean over the hard pairs (or a factor ½)",
                 "the reduction: OnlineContrastiveLoss *sums* the hard pairs' terms, with no ½"),
            Slip(expected / len(labels), "a mean over all pairs",
                 "the reduction: OnlineContrastiveLoss *sums* the hard pairs' terms"),
            Slip(float(every_pair_terms.sum()), "the terms of every pair added up",
                 "the selection: only the hard pairs of exercise 2 count"),
            Slip(float(0.5 * every_pair_terms.mean()), "ContrastiveLoss (every pair, ½, mean)",
                 "the selection and the reduction: the online version sums over the hard pairs only, without ½"),
        ))


def check_online_contrastive_loss(answer, reveal: bool = False) -> bool:
    """OnlineContrastiveLoss() (cosine distance, margin 0.5) of `exercise_pairs()`, as one number.

    A wrong answer gets the step to recheck; ``check_online_contrastive_loss(answer, reveal=True)`` prints
    the solution.
    """
    return check_number(answer, _online_contrastive_loss(), reveal=reveal)


_EXERCISES = {"contrastive_loss": _contrastive_loss, "hard_pairs": _hard_pairs,
              "online_contrastive_loss": _online_contrastive_loss}
