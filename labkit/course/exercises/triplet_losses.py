"""Checkers for the exercises of notebooks/05_triplet_losses.ipynb.

`exercise_batch()` gives the labelled 2-D batch the exercises use; each checker takes your answer, computes
the right one with `labkit.mining` and `labkit.losses.triplets`, and prints whether it is right, or which
slip it looks like and which step to recheck (never the answer itself). Add ``reveal=True`` to see the
solution.
"""
from __future__ import annotations

import torch

from labkit.distances import euclidean_distance
from labkit.course.exercises import Exercise, Slip, check_index, check_labels, check_number
from labkit.losses.triplets import BatchAllTripletLoss, BatchHardTripletLoss
from labkit.mining import TripletKind, classify_triplets, hardest_negative, label_masks

MARGIN = 5.0  # the default of every triplet loss
QUESTION_ANCHOR = 2  # exercise 1: which negative does this anchor pick?
# Exercise 2: classify these (anchor, positive, negative) triplets of `exercise_batch()`.
TRIPLETS_TO_CLASSIFY = ((3, 2, 5), (0, 1, 4), (2, 3, 1))


def exercise_batch() -> tuple:
    """Six labelled 2-D points (float64): labels 0, 0, 1, 1, 2, 2. Returns ``(points, labels)``."""
    # Built with traps: anchor 2's nearest point is its own positive (not a candidate negative), some anchors
    # are easy (their batch-hard term is 0, which a forgotten max(·, 0) would make negative) and 9 of the 24
    # valid triplets are easy (batch-all divides by the 15 others, not by 24).
    points = torch.tensor([[1.0, 7.0], [7.0, 9.0], [0.0, 0.0], [0.0, 2.0], [3.0, 8.0], [4.0, 7.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return points, labels


def _distances() -> tuple:
    points, labels = exercise_batch()
    return points, labels, euclidean_distance(points)



# ----------------------------------------------------------------------------------------------
# Exercise 1: which negative does anchor 2 pick?
# ----------------------------------------------------------------------------------------------
def _hardest_negative() -> Exercise:
    points, labels, dist = _distances()
    a = QUESTION_ANCHOR
    expected = int(hardest_negative(dist, labels).indices[a])
    _, negative_mask = label_masks(labels)
    farthest = int(torch.where(negative_mask[a], dist[a], float("-inf")).argmax())
    return Exercise(
        checker="check_hardest_negative", expected=expected,
        hint=f"anchor {a} has label {int(labels[a])}; its negatives are the points with another label. Batch-hard "
             f"takes the *closest* of them: the smallest entry of row {a} of the distance matrix among the "
             "negative candidates",
        success=f"point {expected}, at distance {dist[a, expected].item():.4f}, the closest point with a label "
                f"other than {int(labels[a])}",
        why=f"among the points whose label is not {int(labels[a])}, point {expected} has the smallest distance to "
            f"anchor {a} ({dist[a, expected].item():.4f})",
        slips=(
            Slip(a, "the anchor itself", "the candidates: a point is never its own negative"),
            Slip(lambda index: index != a and labels[index] == labels[a], "a *positive*: it has the anchor's label",
                 "the candidates: only points with another label are negatives, however close a positive is"),
            Slip(farthest, "the *farthest* negative, the easiest one",
                 "the pick: batch-hard wants the hardest negative, the closest one"),
            Slip(lambda index: True, "a negative, but not the closest one",
                 f"row {a} of the distance matrix: compare all the negatives"),
        ))


def check_hardest_negative(answer, reveal: bool = False) -> bool:
    """The index of the negative that `BatchHardTripletLoss` picks for anchor 2 of `exercise_batch()`.

    A wrong answer gets the step to recheck; ``check_hardest_negative(answer, reveal=True)`` prints the solution.
    """
    return check_index(answer, _hardest_negative(), count=len(exercise_batch()[1]), items="points", reveal=reveal)


# ----------------------------------------------------------------------------------------------
# Exercise 2: easy, semi-hard or hard?
# ----------------------------------------------------------------------------------------------
_KIND_SPELLINGS = {"easy": "easy", "semi-hard": "semi-hard", "semihard": "semi-hard", "semi hard": "semi-hard",
                   "semi_hard": "semi-hard", "hard": "hard"}
_KIND_SPELLINGS.update({f"tripletkind.{kind.name.lower()}": kind.label for kind in TripletKind})


def _kinds(dist: torch.Tensor, margin: float = MARGIN, swap: bool = False) -> tuple:
    anchor, positive, negative = (torch.tensor(x) for x in zip(*TRIPLETS_TO_CLASSIFY))
    d_ap, d_an = dist[anchor, positive], dist[anchor, negative]
    if swap:
        d_ap, d_an = d_an, d_ap
    return tuple(TripletKind(int(k)).label for k in classify_triplets(d_ap, d_an, margin))


def _triplet_kinds() -> Exercise:
    points, _, dist = _distances()
    expected = _kinds(dist)
    return Exercise(
        checker="check_triplet_kinds", expected=expected, shown=str(list(expected)),
        hint="for each (a, p, n) read d_ap = d(a, p) and d_an = d(a, n) in the distance matrix. Hard: d_an <= d_ap. "
             "Semi-hard: d_ap < d_an < d_ap + margin. Easy: d_an >= d_ap + margin (loss 0)",
        success=f"{list(expected)}. The margin {MARGIN:g} is what separates semi-hard from easy: a negative farther "
                "than the positive still costs something until it is margin farther",
        why="compare each d_an with d_ap and with d_ap + 5 (labkit.mining.classify_triplets)",
        slips=_distinct(expected, (
            Slip(_kinds(dist, margin=0.0), "the kinds without the margin",
                 "the margin: a negative farther than the positive is only easy once it is margin (5) farther"),
            Slip(_kinds(euclidean_distance(points, squared=True)), "the kinds of squared distances",
                 "the distances: read the Euclidean distances themselves, not their squares"),
            Slip(_kinds(dist, margin=1.0), "the kinds for margin 1", "the margin: it is 5 here"),
            Slip(_kinds(dist, swap=True), "the kinds with d(a, p) and d(a, n) swapped",
                 "which point is which: in (a, p, n) the second index is the positive, the third the negative"),
        )))


def _distinct(expected: tuple, slips: tuple) -> tuple:
    """The slips whose kinds differ from the answer and from every earlier slip (for these triplets, several
    slips give the same kinds: only the first is said)."""
    seen = {expected}
    kept = []
    for slip in slips:
        if slip.answer not in seen:
            seen.add(slip.answer)
            kept.append(slip)
    return tuple(kept)


def check_triplet_kinds(answer, reveal: bool = False) -> bool:
    """The kinds ("easy", "semi-hard" or "hard", margin 5) of the three triplets in `TRIPLETS_TO_CLASSIFY`.

    A list of three words, in order. A wrong answer gets how many are right (never which);
    ``check_triplet_kinds(answer, reveal=True)`` prints the solution.
    """
    return check_labels(answer, _triplet_kinds(), spellings=_KIND_SPELLINGS, noun="kinds", reveal=reveal)


# ----------------------------------------------------------------------------------------------
# Exercise 3: the batch-hard loss of the batch
# ----------------------------------------------------------------------------------------------
def _batch_hard_variants(dist: torch.Tensor, labels: torch.Tensor) -> dict:
    """Per-anchor pieces of batch-hard and of its usual slips, as tensors of B values."""
    positive_mask, negative_mask = label_masks(labels)
    farthest_positive = torch.where(positive_mask, dist, float("-inf")).max(dim=1).values
    closest_positive = torch.where(positive_mask, dist, float("inf")).min(dim=1).values
    closest_negative = torch.where(negative_mask, dist, float("inf")).min(dim=1).values
    farthest_negative = torch.where(negative_mask, dist, float("-inf")).max(dim=1).values
    return {"hinge": farthest_positive - closest_negative + MARGIN,
            "easiest": closest_positive - farthest_negative + MARGIN}


def _batch_hard_loss() -> Exercise:
    points, labels, dist = _distances()
    expected = float(BatchHardTripletLoss()(points, labels))
    pieces = _batch_hard_variants(dist, labels)
    terms = pieces["hinge"].clamp_min(0)
    squared_terms = _batch_hard_variants(euclidean_distance(points, squared=True), labels)["hinge"].clamp_min(0)
    return Exercise(
        checker="check_batch_hard_loss", expected=expected,
        hint="for each anchor take d_ap = its largest distance to a positive and d_an = its smallest distance to a "
             "negative; its term is max(d_ap − d_an + 5, 0); the loss is the mean over all 6 anchors",
        success=f"{expected:.6f}. Anchor 2 is easy (term 0); anchors 0 and 1 are hard and make most of the loss. "
                "Same as BatchHardTripletLoss()(points, labels)",
        why="the mean over the 6 anchors of max(farthest positive − closest negative + 5, 0)",
        slips=(
            Slip(float(terms.sum()), "the *sum* of the per-anchor terms", "the reduction: the mean over all 6 anchors"),
            Slip(float(pieces["hinge"].mean()), "the loss without the max(·, 0)",
                 "the hinge: an easy anchor (d_an beyond d_ap + margin) adds 0, not a negative number"),
            Slip(float(terms[terms > 0].mean()), "a mean over the anchors with a positive term only",
                 "the reduction: BatchHardTripletLoss averages over all anchors, easy ones count as 0"),
            Slip(float(pieces["easiest"].clamp_min(0).mean()), "each anchor's *closest* positive and *farthest* "
                                                               "negative (the easiest triplet)",
                 "the mining: batch-hard takes the farthest positive and the closest negative"),
            Slip(float(squared_terms.mean()), "the loss of squared distances",
                 "the distance: the default is the Euclidean distance (take the square root)"),
            Slip(float((pieces["hinge"] - MARGIN + 1.0).clamp_min(0).mean()), "the loss with margin 1 (the "
                                                                              "article's nn.TripletMarginLoss default)",
                 "the margin: the default here is 5"),
        ))


def check_batch_hard_loss(answer, reveal: bool = False) -> bool:
    """`BatchHardTripletLoss()` (Euclidean, margin 5, mean over anchors) of `exercise_batch()`, one number.

    A wrong answer gets the step to recheck; ``check_batch_hard_loss(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _batch_hard_loss(), reveal=reveal)


# ----------------------------------------------------------------------------------------------
# Exercise 4: the batch-all loss of the batch
# ----------------------------------------------------------------------------------------------
def _batch_all_loss() -> Exercise:
    points, labels, dist = _distances()
    expected = float(BatchAllTripletLoss()(points, labels))
    positive_mask, negative_mask = label_masks(labels)
    valid = positive_mask.unsqueeze(2) & negative_mask.unsqueeze(1)
    raw = dist.unsqueeze(2) - dist.unsqueeze(1) + MARGIN  # [a, p, n] = d(a, p) - d(a, n) + margin
    terms = raw.clamp_min(0)[valid]
    total, num_valid, num_positive = float(terms.sum()), int(valid.sum()), int((terms > 0).sum())
    return Exercise(
        checker="check_batch_all_loss", expected=expected,
        hint="list every valid triplet (a, p, n): p has a's label (p != a), n another label. Add up "
             "max(d_ap − d_an + 5, 0) over all of them, then divide by the number of triplets whose term is > 0",
        success=f"{expected:.6f}: the sum over the {num_valid} valid triplets divided by the {num_positive} with a "
                "positive loss. Same as BatchAllTripletLoss()(points, labels)",
        why=f"the sum of max(d_ap − d_an + 5, 0) over the {num_valid} valid triplets, divided by the {num_positive} "
            "with a positive term",
        slips=(
            Slip(total / num_valid, "a mean over all the valid triplets",
                 "the count you divide by: batch-all divides by the triplets with a positive loss only, so that "
                 "easy triplets do not dilute the loss"),
            Slip(total, "the sum of the terms", "the last step: divide by the number of triplets with a positive loss"),
            Slip(float(raw[valid].sum()) / num_valid, "a mean of the terms without the max(·, 0)",
                 "the hinge (easy triplets add 0) and the count (the triplets with a positive loss)"),
            Slip(total / len(labels), "the sum divided by the number of anchors",
                 "the count: batch-all divides by the number of triplets with a positive loss"),
            Slip(float(BatchHardTripletLoss()(points, labels)), "the batch-hard loss (one triplet per anchor)",
                 "the mining: batch-all uses every valid triplet"),
        ))


def check_batch_all_loss(answer, reveal: bool = False) -> bool:
    """`BatchAllTripletLoss()` (Euclidean, margin 5) of `exercise_batch()`, as one number.

    A wrong answer gets the step to recheck; ``check_batch_all_loss(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _batch_all_loss(), reveal=reveal)


_EXERCISES = {"hardest_negative": _hardest_negative, "triplet_kinds": _triplet_kinds,
              "batch_hard_loss": _batch_hard_loss, "batch_all_loss": _batch_all_loss}
