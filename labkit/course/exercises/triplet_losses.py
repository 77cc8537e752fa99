"""Checkers for the exercises of notebooks/05_triplet_losses.ipynb.

`exercise_batch()` gives the labelled 2-D batch the exercises use; each checker takes your answer, computes
the right one with `labkit.mining` and `labkit.losses.triplets`, and prints what is right or a hint at what
is off (and, for the usual slips, which slip it looks like).
"""
from __future__ import annotations

import torch

from labkit.distances import euclidean_distance
from labkit.course.exercises import as_number, first_slip, matches, numeric_answer, report
from labkit.losses.triplets import BatchAllTripletLoss, BatchHardTripletLoss
from labkit.mining import TripletKind, classify_triplets, hardest_negative, label_masks

MARGIN = 5.0  # the default of every triplet loss
QUESTION_ANCHOR = 2  # exercise 1: which negative does this anchor pick?
# Exercise 2: classify these (anchor, positive, negative) triplets of `exercise_batch()`.
TRIPLETS_TO_CLASSIFY = ((3, 2, 5), (0, 1, 4), (2, 3, 1))


def exercise_batch() -> tuple:
    """Six labelled 2-D points (float64): labels 0, 0, 1, 1, 2, 2.

    Built with traps: anchor 2's nearest point is its own positive (not a candidate negative), some anchors
    are easy (their batch-hard term is 0, which a forgotten max(·, 0) would make negative) and 9 of the 24
    valid triplets are easy (batch-all divides by the 15 others, not by 24).
    """
    points = torch.tensor([[1.0, 7.0], [7.0, 9.0], [0.0, 0.0], [0.0, 2.0], [3.0, 8.0], [4.0, 7.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return points, labels


def _distances() -> tuple:
    points, labels = exercise_batch()
    return points, labels, euclidean_distance(points)


def _as_index(answer) -> int | None:
    """The answer as one integer index, or None if it is not one (a float such as 3.0 is accepted)."""
    value = as_number(answer)
    if value is None or not float(value).is_integer():
        return None
    return int(value)


# ----------------------------------------------------------------------------------------------
# Exercise 1: which negative does anchor 2 pick?
# ----------------------------------------------------------------------------------------------
def check_hardest_negative(answer) -> bool:
    """The index of the negative that `BatchHardTripletLoss` picks for anchor 2 of `exercise_batch()`."""
    points, labels, dist = _distances()
    a = QUESTION_ANCHOR
    expected = int(hardest_negative(dist, labels).indices[a])
    hint = (f"Hint: anchor {a} has label {int(labels[a])}; its negatives are the points with another label. "
            f"Batch-hard takes the *closest* of them: the smallest entry of row {a} of the distance matrix "
            "among the negative candidates.")
    if answer is None:
        return report(False, "", "You have not answered yet. Give one point index, e.g. 4. " + hint)
    index = _as_index(answer)
    if index is None:
        return report(False, "", f"Give one point index (an int from 0 to {len(labels) - 1}), not "
                                 f"{type(answer).__name__} {answer!r}. " + hint)
    if index == expected:
        return report(True, f"Right: point {expected}, at distance {dist[a, expected].item():.4f}, the closest point "
                            f"with a label other than {int(labels[a])}.", "")
    if not 0 <= index < len(labels):
        return report(False, "", f"The batch has {len(labels)} points, numbered 0 to {len(labels) - 1}; "
                                 f"you gave {index}.")
    if index == a:
        return report(False, "", f"Point {a} is the anchor itself, never its own negative. " + hint)
    if labels[index] == labels[a]:
        return report(False, "", f"Point {index} has the anchor's label {int(labels[a])}: it is a *positive* "
                                 f"(the closest point of all, at {dist[a, index].item():.4f}, but not a candidate "
                                 "negative). " + hint)
    _, negative_mask = label_masks(labels)
    farthest = int(torch.where(negative_mask[a], dist[a], float("-inf")).argmax())
    if index == farthest:
        return report(False, "", f"Point {index} is the *farthest* negative ({dist[a, index].item():.4f}): the "
                                 "easiest one. Batch-hard wants the hardest: the closest negative.")
    return report(False, "", f"Point {index} is a negative, at {dist[a, index].item():.4f}, but not the closest "
                             f"one. Compare all negatives in row {a} of the distance matrix. " + hint)


# ----------------------------------------------------------------------------------------------
# Exercise 2: easy, semi-hard or hard?
# ----------------------------------------------------------------------------------------------
_KIND_SPELLINGS = {"easy": TripletKind.EASY, "semi-hard": TripletKind.SEMI_HARD, "semihard": TripletKind.SEMI_HARD,
                   "semi hard": TripletKind.SEMI_HARD, "semi_hard": TripletKind.SEMI_HARD, "hard": TripletKind.HARD}


def _as_kind(value) -> TripletKind | None:
    if isinstance(value, TripletKind):
        return value
    if isinstance(value, str):
        return _KIND_SPELLINGS.get(value.strip().lower())
    return None


def expected_kinds() -> list[str]:
    """The kinds of `TRIPLETS_TO_CLASSIFY` with margin 5 (what `check_triplet_kinds` compares with)."""
    _, _, dist = _distances()
    anchor, positive, negative = (torch.tensor(x) for x in zip(*TRIPLETS_TO_CLASSIFY))
    kinds = classify_triplets(dist[anchor, positive], dist[anchor, negative], MARGIN)
    return [TripletKind(int(k)).label for k in kinds]


def check_triplet_kinds(answer) -> bool:
    """The kinds ("easy", "semi-hard" or "hard", margin 5) of the three triplets in `TRIPLETS_TO_CLASSIFY`."""
    _, labels, dist = _distances()
    expected = expected_kinds()
    hint = ("Hint: for each (a, p, n) read d_ap = d(a, p) and d_an = d(a, n) in the distance matrix. Hard: "
            "d_an <= d_ap. Semi-hard: d_ap < d_an < d_ap + margin. Easy: d_an >= d_ap + margin (loss 0).")
    count = len(TRIPLETS_TO_CLASSIFY)
    if answer is None:
        return report(False, "", f"You have not answered yet. Give a list of {count} kinds, e.g. "
                                 "['easy', 'hard', 'semi-hard']. " + hint)
    if isinstance(answer, str) or not hasattr(answer, "__len__") or len(answer) != count:
        return report(False, "", f"Give a list of {count} kinds, one per triplet in TRIPLETS_TO_CLASSIFY, e.g. "
                                 "['easy', 'hard', 'semi-hard']. " + hint)
    kinds = [_as_kind(value) for value in answer]
    unknown = [value for value, kind in zip(answer, kinds) if kind is None]
    if unknown:
        return report(False, "", f"Use the words 'easy', 'semi-hard' or 'hard'; did not understand {unknown}.")
    given = [kind.label for kind in kinds]
    if given == expected:
        return report(True, f"Right: {expected}. The margin {MARGIN:g} is what separates semi-hard from easy: a "
                            "negative farther than the positive still costs something until it is margin farther.", "")
    reasons = []
    for (a, p, n), mine, right in zip(TRIPLETS_TO_CLASSIFY, given, expected):
        if mine != right:
            d_ap, d_an = dist[a, p].item(), dist[a, n].item()
            reasons.append(f"triplet ({a}, {p}, {n}) is {right}, not {mine}: d_ap = {d_ap:.4f}, d_an = {d_an:.4f}, "
                           f"d_ap + margin = {d_ap + MARGIN:.4f}")
    return report(False, "", "Not quite: " + "; ".join(reasons) + ".")


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


def check_batch_hard_loss(answer) -> bool:
    """`BatchHardTripletLoss()` (Euclidean, margin 5, mean over anchors) of `exercise_batch()`, one number."""
    points, labels, dist = _distances()
    expected = float(BatchHardTripletLoss()(points, labels))
    hint = ("Hint: for each anchor take d_ap = its largest distance to a positive and d_an = its smallest "
            "distance to a negative; its term is max(d_ap − d_an + 5, 0); the loss is the mean over all 6 anchors.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected:.6f}. Anchor 2 is easy (term 0); anchors 0 and 1 are hard and make "
                            "most of the loss. Same as BatchHardTripletLoss()(points, labels).", "")
    pieces = _batch_hard_variants(dist, labels)
    terms = pieces["hinge"].clamp_min(0)
    active = terms > 0
    squared = euclidean_distance(points, squared=True)
    squared_terms = _batch_hard_variants(squared, labels)["hinge"].clamp_min(0)
    slips = [
        (terms.sum(), "That is the *sum* of the per-anchor terms; the loss is their mean over all 6 anchors."),
        (pieces["hinge"].mean(), "You dropped the max(·, 0): an easy anchor (d_an beyond d_ap + margin) adds 0, "
                                 "not a negative number."),
        (terms[active].mean(), "You averaged over the anchors with a positive term only; BatchHardTripletLoss "
                               "averages over all anchors (easy ones count as 0)."),
        (pieces["easiest"].clamp_min(0).mean(), "You took each anchor's *closest* positive and *farthest* negative "
                                                "(the easiest triplet). Batch-hard takes the farthest positive and "
                                                "the closest negative."),
        (squared_terms.mean(), "You used squared distances; the default is the Euclidean distance (take the "
                               "square root)."),
        ((pieces["hinge"] - MARGIN + 1.0).clamp_min(0).mean(), "You used margin 1 (the article's "
                                                               "nn.TripletMarginLoss default); the default here is 5."),
    ]
    message = first_slip(value, slips)
    if message:
        return report(False, "", message)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Compare your per-anchor "
                             "terms with BatchHardTripletLoss().explain(points, labels).to_frame(). " + hint)


# ----------------------------------------------------------------------------------------------
# Exercise 4: the batch-all loss of the batch
# ----------------------------------------------------------------------------------------------
def check_batch_all_loss(answer) -> bool:
    """`BatchAllTripletLoss()` (Euclidean, margin 5) of `exercise_batch()`, as one number."""
    points, labels, dist = _distances()
    expected = float(BatchAllTripletLoss()(points, labels))
    hint = ("Hint: list every valid triplet (a, p, n): p has a's label (p != a), n another label. Add up "
            "max(d_ap − d_an + 5, 0) over all of them, then divide by the number of triplets whose term is > 0.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    positive_mask, negative_mask = label_masks(labels)
    valid = positive_mask.unsqueeze(2) & negative_mask.unsqueeze(1)
    raw = dist.unsqueeze(2) - dist.unsqueeze(1) + MARGIN  # [a, p, n] = d(a, p) - d(a, n) + margin
    terms = raw.clamp_min(0)[valid]
    total, num_valid, num_positive = terms.sum(), int(valid.sum()), int((terms > 0).sum())
    if matches(value, expected):
        return report(True, f"Right: {expected:.6f}: the sum over the {num_valid} valid triplets divided by the "
                            f"{num_positive} with a positive loss. Same as BatchAllTripletLoss()(points, labels).", "")
    batch_hard = float(BatchHardTripletLoss()(points, labels))
    slips = [
        (total / num_valid, f"You divided by all {num_valid} valid triplets; batch-all divides by the "
                            f"{num_positive} with a positive loss, so that easy triplets do not dilute the loss."),
        (total, f"That is the sum; divide by the number of triplets with a positive loss ({num_positive})."),
        (raw[valid].sum() / num_valid, "You dropped the max(·, 0) and averaged over every valid triplet: easy "
                                       "triplets must add 0, and the mean is over the triplets with a positive loss."),
        (raw[valid].clamp_min(0).sum() / len(labels), "You divided by the number of anchors; batch-all divides by "
                                                      "the number of triplets with a positive loss."),
        (batch_hard, "That is the batch-hard loss (one triplet per anchor). Batch-all uses every valid triplet."),
    ]
    message = first_slip(value, slips)
    if message:
        return report(False, "", message)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Compare your triplets with "
                             "BatchAllTripletLoss().explain(points, labels).to_frame(). " + hint)
