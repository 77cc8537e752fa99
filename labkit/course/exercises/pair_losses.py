"""Checkers for the exercises of notebooks/04_pair_losses.ipynb.

`exercise_pairs()` gives the batch the exercises use; each checker takes your answer, computes the right
one with `labkit.losses.pairs`, and prints what is right or a hint at what is off.
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from labkit.course.exercises import first_slip, matches, numeric_answer, report
from labkit.losses.pairs import ContrastiveLoss, OnlineContrastiveLoss, SiameseDistanceMetric

MARGIN = 0.5  # the default of both losses


def exercise_pairs() -> tuple:
    """Five 2-D pairs (float64) with labels 1, 1, 0, 0, 0 and cosine distances 0.04, 0.4, 0.2, 0.4624, 1.0.

    Built so that the two losses disagree: pair 0 is an easy positive (closer than every negative), pair 3 is
    a negative inside the margin (so ContrastiveLoss pushes it) yet farther than every positive (so
    OnlineContrastiveLoss ignores it), and pair 4 is a negative beyond the margin.
    """
    emb_a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.28, -0.96], [-0.6, 0.8]], dtype=torch.float64)
    emb_b = torch.tensor([[0.96, 0.28], [0.8, 0.6], [-0.8, -0.6], [0.96, -0.28], [-0.8, -0.6]], dtype=torch.float64)
    labels = torch.tensor([1, 1, 0, 0, 0])
    return emb_a, emb_b, labels


def _pieces():
    """Distances and the per-pair pieces of both losses, for recognising common slips."""
    emb_a, emb_b, labels = exercise_pairs()
    distance = SiameseDistanceMetric.COSINE_DISTANCE(emb_a, emb_b)
    y = labels.double()
    return emb_a, emb_b, labels, distance, y


def check_contrastive_loss(answer) -> bool:
    """ContrastiveLoss() (cosine distance, margin 0.5, mean) of `exercise_pairs()`, as one number."""
    emb_a, emb_b, labels, distance, y = _pieces()
    expected = float(ContrastiveLoss()(emb_a, emb_b, labels))
    hint = ("Hint: d = 1 − cos(a, b); loss_i = ½·(y·d² + (1 − y)·max(0, 0.5 − d)²); the loss is the mean "
            "over the 5 pairs.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected:.6f}. Pairs 1 (a far positive) and 2 (a close negative) make most "
                            "of it; pair 4 is beyond the margin and adds nothing. Same as "
                            "ContrastiveLoss()(emb_a, emb_b, labels).", "")

    def contrastive(d, half=True, mean=True, clamp=True):
        push = F.relu(MARGIN - d) if clamp else MARGIN - d
        terms = (0.5 if half else 1.0) * (y * d**2 + (1 - y) * push**2)
        return float(terms.mean() if mean else terms.sum())

    similarity = 1 - distance
    slips = [
        (contrastive(distance, mean=False), "That is the *sum* over pairs; ContrastiveLoss averages "
                                            "(size_average=True): divide by the number of pairs."),
        (contrastive(distance, half=False), "You left out the factor ½ in front of the bracket."),
        (contrastive(distance, half=False, mean=False), "Two slips: no factor ½, and a sum instead of the mean."),
        (contrastive(distance, clamp=False), "You dropped the max(0, ·): pair 4 (a negative already 1.0 apart, "
                                             "beyond the margin) must add nothing, not (0.5 − 1.0)²."),
        (contrastive(similarity), "You used the cosine *similarity* where the loss needs the cosine *distance* "
                                  "d = 1 − cos."),
        (contrastive(SiameseDistanceMetric.EUCLIDEAN(emb_a, emb_b)), "That is the Euclidean distance; the default "
                                                                      "is the cosine distance d = 1 − cos."),
    ]
    swapped = float((0.5 * ((1 - y) * distance**2 + y * F.relu(MARGIN - distance) ** 2)).mean())
    slips.append((swapped, "You swapped the labels: label 1 (similar) pays d², label 0 (dissimilar) pays "
                           "max(0, margin − d)²."))
    message = first_slip(value, slips)
    if message:
        return report(False, "", message)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Print your per-pair terms "
                             "and compare them with ContrastiveLoss().explain(emb_a, emb_b, labels). " + hint)


def _hard_pair_indices(answer, num_pairs: int) -> list[int] | None:
    """Accept a list/set/tensor of indices or a boolean mask of length `num_pairs`; None if neither."""
    if answer is None or isinstance(answer, (str, bytes)):
        return None
    try:
        values = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else list(answer)).reshape(-1)
    except TypeError:
        return None
    if values.dtype == bool:
        return [int(i) for i in np.flatnonzero(values)] if len(values) == num_pairs else None
    if values.size and not np.all(np.equal(np.mod(values.astype(float), 1), 0)):
        return None
    return sorted({int(v) for v in values})


def check_hard_pairs(answer) -> bool:
    """The indices of the pairs of `exercise_pairs()` that OnlineContrastiveLoss() selects as hard."""
    emb_a, emb_b, labels = exercise_pairs()
    explanation = OnlineContrastiveLoss().explain(emb_a, emb_b, labels)
    expected = sorted(explanation.details["hard_positives"] + explanation.details["hard_negatives"])
    table = explanation.per_pair
    hint = ("Hint: a positive is hard if it is farther apart than the closest negative; a negative is hard if it "
            "is closer than the farthest positive.")
    if answer is None:
        return report(False, "", "You have not answered yet. Give the pair indices, e.g. [0, 3]. " + hint)
    chosen = _hard_pair_indices(answer, len(labels))
    if chosen is None:
        return report(False, "", f"Give a list of pair indices (e.g. [0, 3]) or a boolean mask of length "
                                 f"{len(labels)}. " + hint)
    if chosen == expected:
        return report(True, f"Right: pairs {expected}. Positive 0 is already closer than every negative and "
                            "negative 4 farther than every positive, so neither is selected; negative 3 is inside "
                            "the margin, but farther than every positive, so it is not selected either.", "")
    outside = [i for i in chosen if not 0 <= i < len(labels)]
    if outside:
        return report(False, "", f"There are {len(labels)} pairs, numbered 0 to {len(labels) - 1}; you gave {outside}.")
    distances = table["distance"].to_numpy()
    inside_margin = [i for i in range(len(labels)) if labels[i] == 1 or distances[i] < MARGIN]
    if chosen == inside_margin:
        return report(False, "", "That is every pair ContrastiveLoss penalises (all positives, and negatives inside "
                                 "the margin). OnlineContrastiveLoss compares with the *other kind's* distances, not "
                                 "with the margin. " + hint)
    missing, extra = sorted(set(expected) - set(chosen)), sorted(set(chosen) - set(expected))
    reasons = []
    for i in extra:
        kind = "positive" if labels[i] == 1 else "negative"
        compared = "closest negative" if labels[i] == 1 else "farthest positive"
        reasons.append(f"pair {i} ({kind}, distance {distances[i]:.4f}) is not hard: compare it with the {compared} "
                       f"({table.loc[i, 'threshold']:.4f})")
    for i in missing:
        reasons.append(f"pair {i} is hard but missing from your answer")
    return report(False, "", "Not quite: " + "; ".join(reasons) + ". " + hint)


def check_online_contrastive_loss(answer) -> bool:
    """OnlineContrastiveLoss() (cosine distance, margin 0.5) of `exercise_pairs()`, as one number."""
    emb_a, emb_b, labels, distance, y = _pieces()
    explanation = OnlineContrastiveLoss().explain(emb_a, emb_b, labels)
    expected = explanation.loss
    hint = ("Hint: select the hard pairs first; then add d² for each hard positive and max(0, 0.5 − d)² for "
            "each hard negative. A sum, with no ½.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected:.6f}, from the two hard pairs only. Same as "
                            "OnlineContrastiveLoss()(emb_a, emb_b, labels).", "")
    every_pair_terms = y * distance**2 + (1 - y) * F.relu(MARGIN - distance) ** 2
    hard_count = int(explanation.per_pair["hard"].sum())
    slips = [
        (expected / hard_count, "You averaged over the hard pairs (or added a factor ½); OnlineContrastiveLoss "
                                "*sums* the hard pairs' terms, with no ½."),
        (expected / len(labels), "You averaged over all pairs; OnlineContrastiveLoss *sums* the hard pairs' terms."),
        (float(every_pair_terms.sum()), "You added the terms of every pair. Only the hard pairs count: positive 0 "
                                        "and negative 3 are not hard (see exercise 2)."),
        (float(0.5 * every_pair_terms.mean()), "That is ContrastiveLoss (every pair, ½, mean). The online version "
                                               "sums over the hard pairs only, without ½."),
    ]
    message = first_slip(value, slips)
    if message:
        return report(False, "", message)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Compare your terms with "
                             "OnlineContrastiveLoss().explain(emb_a, emb_b, labels). " + hint)
