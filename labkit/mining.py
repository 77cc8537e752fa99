"""Which triplets a batch contains, and which ones a loss picks: masks and mining, vectorised.

A *triplet* (a, p, n) is an anchor a, a positive p with the same label and a negative n with another label.
In a batch of B labelled embeddings we never list triplets one by one; we build boolean masks and let
tensor operations do the loops:

* ``anchor_positive_mask(labels)[a, p]``: p is a valid positive for a (same label, p != a);
* ``anchor_negative_mask(labels)[a, n]``: n is a valid negative for a (different label, so n != a);
* ``valid_triplet_mask(labels)[a, p, n]``: both at once (B x B x B: for teaching and small batches).

Mining then chooses, per anchor, from a (B, B) distance matrix ``dist``:

* ``hardest_positive``: the farthest positive (max over the anchor-positive mask);
* ``hardest_negative``: the closest negative (min over the anchor-negative mask);
* ``semi_hard_negative``: for each positive pair, the closest negative that is still farther than the
  positive (FaceNet's semi-hard), falling back to the farthest negative when there is none;
* ``pick_hardest`` (the general form of the first two, for any mask of candidates) and
  ``semi_hard_triplets`` (the semi-hard choice as a list of (anchor, positive, negative)) are the raw forms
  the losses call.

Labels are class ids, checked by `labkit.validation.check_class_labels` (integers, one per embedding).
Every picker returns the chosen *indices* (so a notebook can draw which pairs were chosen), the values,
and a validity mask for anchors that have nothing to choose. The picks are made from values only: wrap the
call in ``torch.no_grad()`` and recompute the distances of the chosen pairs with gradient (that is what the
labkit losses do, and why they are fast).

Kinds of triplets (with margin m, d_ap = d(a, p), d_an = d(a, n)), as in sentence-transformers' docs:

* easy: ``d_an >= d_ap + m`` -- the loss max(d_ap - d_an + m, 0) is already 0;
* semi-hard: ``d_ap < d_an < d_ap + m`` -- the negative is farther than the positive, but not by m;
* hard: ``d_an <= d_ap`` -- the negative is at least as close as the positive.

``classify_triplets(d_ap, d_an, margin)`` labels any distances so; ``triplet_kinds`` labels every (a, p, n) of
a batch and ``count_triplet_kinds`` counts them.

Modelled on Olivier Moindrot's triplet_loss.py (https://omoindrot.github.io/triplet-loss), which
sentence-transformers' batch losses also follow. Taught in notebooks/05_triplet_losses.ipynb.
"""
from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from labkit.validation import check_class_labels

__all__ = [
    "anchor_positive_mask",
    "anchor_negative_mask",
    "label_masks",
    "valid_triplet_mask",
    "Pick",
    "pick_hardest",
    "hardest_positive",
    "hardest_negative",
    "SemiHardPick",
    "semi_hard_negative",
    "semi_hard_choice",
    "semi_hard_triplets",
    "TripletKind",
    "classify_triplets",
    "triplet_kinds",
    "count_triplet_kinds",
]


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------
def _same_label(labels: Tensor) -> Tensor:
    # Broadcasting (B, 1) against (1, B) compares every label with every other: a (B, B) table.
    return labels.unsqueeze(1) == labels.unsqueeze(0)


def anchor_positive_mask(labels: Tensor) -> Tensor:
    """(B, B) bool: ``mask[a, p]`` is True iff a != p and labels[a] == labels[p].

    The diagonal is removed because an embedding is not its own positive (its distance is 0, which would
    make every anchor look perfectly solved). Row a lists the candidates for a's positive:

    >>> anchor_positive_mask(torch.tensor([0, 0, 1, 1, 2])).int()
    tensor([[0, 1, 0, 0, 0],
            [1, 0, 0, 0, 0],
            [0, 0, 0, 1, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 0, 0, 0]], dtype=torch.int32)

    The last row is empty: the only example of class 2 has no positive in this batch.
    """
    labels = check_class_labels(labels)
    return _same_label(labels).fill_diagonal_(False)


def anchor_negative_mask(labels: Tensor) -> Tensor:
    """(B, B) bool: ``mask[a, n]`` is True iff labels[a] != labels[n] (which already implies a != n).

    >>> anchor_negative_mask(torch.tensor([0, 0, 1])).int()
    tensor([[0, 0, 1],
            [0, 0, 1],
            [1, 1, 0]], dtype=torch.int32)
    """
    labels = check_class_labels(labels)
    return ~_same_label(labels)


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Both (B, B) masks from one label comparison: ``(anchor_positive_mask, anchor_negative_mask)``."""
    same_label = _same_label(check_class_labels(labels))
    anchor_negative = ~same_label
    return same_label.fill_diagonal_(False), anchor_negative


def valid_triplet_mask(labels: Tensor) -> Tensor:
    """(B, B, B) bool: ``mask[a, p, n]`` is True iff (a, p, n) is a valid triplet.

    Valid means: p is a positive of a (same label, p != a) and n is a negative of a (other label). Then
    a, p, n are automatically distinct: n differs in label from a, hence from p too. It is the product
    of the two 2-D masks, broadcast as ``positive[a, p, None] & negative[a, None, n]``.

    B^3 booleans: fine for teaching and batches of a few hundred; the losses never build it.

    >>> valid_triplet_mask(torch.tensor([0, 0, 1])).nonzero().tolist()  # (a, p, n) of every triplet
    [[0, 1, 2], [1, 0, 2]]
    """
    labels = check_class_labels(labels)
    return anchor_positive_mask(labels).unsqueeze(2) & anchor_negative_mask(labels).unsqueeze(1)


# ----------------------------------------------------------------------------------------------
# Mining: which positive / negative each anchor uses
# ----------------------------------------------------------------------------------------------
class Pick(NamedTuple):
    """One choice per anchor: ``values[a] = dist[a, indices[a]]``; ``valid[a]`` False if a had no candidate.

    From `hardest_positive` / `hardest_negative`: where ``valid`` is False the index is -1 and the value 0.
    """

    values: Tensor
    indices: Tensor
    valid: Tensor


def _check_dist(dist: Tensor, labels: Tensor) -> Tensor:
    if not isinstance(dist, Tensor) or dist.dim() != 2 or dist.shape[0] != dist.shape[1]:
        shape = tuple(dist.shape) if isinstance(dist, Tensor) else type(dist).__name__
        raise ValueError(f"dist must be a square (B, B) distance matrix, got {shape}.")
    return check_class_labels(labels, dist.shape[0], device=dist.device)


def pick_hardest(dist: Tensor, candidates: Tensor, farthest: bool) -> Pick:
    """For each row a, the candidate with the largest (``farthest=True``) or smallest ``dist[a, j]``.

    ``candidates`` is a (B, B) bool mask of allowed columns per row. The others are replaced by -inf (for a
    max) or +inf (for a min), so they can never win. This raw form is what the losses use: for a row
    without any candidate the winner is that -inf / +inf itself, so ``valid`` is False and the index is
    meaningless. `hardest_positive` and `hardest_negative` apply it to the two label masks and tidy those
    rows up.
    """
    fill = float("-inf") if farthest else float("inf")
    scores = torch.where(candidates, dist, fill)
    values, indices = scores.max(dim=1) if farthest else scores.min(dim=1)
    return Pick(values, indices, values != fill)


def _tidy(pick: Pick) -> Pick:
    """Index -1 and value 0 where there was no candidate (easier to print and to draw)."""
    return Pick(torch.where(pick.valid, pick.values, 0.0), torch.where(pick.valid, pick.indices, -1), pick.valid)


def hardest_positive(dist: Tensor, labels: Tensor) -> Pick:
    """For each anchor, its farthest positive: ``max_p dist[a, p]`` over ``anchor_positive_mask``.

    An anchor whose class has no other member in the batch has no positive: ``valid`` is False, index -1,
    value 0 (sentence-transformers counts such an anchor with d(a, p) = 0, and so do the labkit losses).
    """
    labels = _check_dist(dist, labels)
    return _tidy(pick_hardest(dist, anchor_positive_mask(labels), farthest=True))


def hardest_negative(dist: Tensor, labels: Tensor) -> Pick:
    """For each anchor, its closest negative: ``min_n dist[a, n]`` over ``anchor_negative_mask``.

    An anchor has no negative only when the whole batch has one label: ``valid`` is False, index -1,
    value 0.
    """
    labels = _check_dist(dist, labels)
    return _tidy(pick_hardest(dist, anchor_negative_mask(labels), farthest=False))


class SemiHardPick(NamedTuple):
    """One negative per (anchor, positive) pair, as (B, B) tables indexed [a, p].

    ``indices[a, p]`` is the chosen negative and ``values[a, p] = dist[a, indices[a, p]]``.
    ``semi_hard[a, p]``: True if a negative farther than the positive was found, False if the fallback
    (the farthest negative) was used. ``valid[a, p]``: (a, p) is a positive pair and a has negatives;
    elsewhere index -1, value 0. ``in_margin[a, p]`` (only when a margin is given): the pick is semi-hard
    in FaceNet's strict sense, d_ap < d_an < d_ap + margin.
    """

    values: Tensor
    indices: Tensor
    semi_hard: Tensor
    valid: Tensor
    in_margin: Optional[Tensor] = None


def semi_hard_negative(dist: Tensor, labels: Tensor, margin: Optional[float] = None) -> SemiHardPick:
    """For each positive pair (a, p): the closest negative farther than p, else the farthest negative.

    This is the rule of FaceNet as implemented by TensorFlow Addons' ``triplet_semihard_loss`` and
    sentence-transformers' ``BatchSemiHardTripletLoss``:

    1. among a's negatives with ``dist[a, n] > dist[a, p]`` take the one with the smallest distance
       (it lies just outside the positive: the most informative negative that is not "hard");
    2. if every negative is at least as close as p (all are hard), fall back to the farthest negative,
       the least hard one.

    Vectorised with a sort: each row's negative distances are sorted once (same-label entries set to
    +inf go last), and ``torch.searchsorted`` finds, for every d(a, p) at once, the first sorted negative
    strictly greater. The choice does not depend on the margin (as in TF-Addons); pass ``margin`` only to
    get ``in_margin``. Ties go to the lower index, as in sentence-transformers (stable sort).
    """
    labels = _check_dist(dist, labels)
    positive_mask, negative_mask = label_masks(labels)
    values_only = dist.detach()
    indices, semi_hard = semi_hard_choice(values_only, negative_mask, values_only)  # every (a, j) at once

    valid = positive_mask & negative_mask.any(dim=1, keepdim=True)
    values = torch.where(valid, dist.gather(1, indices), 0.0)  # gathered from `dist`: keeps its gradient
    in_margin = None
    if margin is not None:
        in_margin = valid & semi_hard & (values_only.gather(1, indices) < values_only + margin)
    return SemiHardPick(values, torch.where(valid, indices, -1), semi_hard & valid, valid, in_margin)


def semi_hard_choice(dist: Tensor, negative_mask: Tensor, d_ap: Tensor) -> tuple[Tensor, Tensor]:
    """The semi-hard rule for a table of positive distances: ``(indices, semi_hard)``, shaped like ``d_ap``.

    ``d_ap[a, m]`` is a distance from anchor a to one of its positives (any number m of them per row; pass
    ``dist`` itself for every (a, j)). ``indices[a, m]`` is the negative chosen for it: the closest negative
    of a strictly farther than ``d_ap[a, m]``, or, where there is none (``semi_hard`` False), a's farthest
    negative. Rows without any negative get meaningless indices. No gradient.
    """
    not_negative = ~negative_mask
    sorted_negatives, order = dist.masked_fill(not_negative, float("inf")).sort(dim=1, stable=True)
    # How many negatives are <= d_ap: the position of the first one strictly farther.
    first_farther = torch.searchsorted(sorted_negatives, d_ap.contiguous(), right=True)
    semi_hard = first_farther < negative_mask.sum(dim=1, keepdim=True)  # past the count: only +inf is left
    candidate = order.gather(1, first_farther.clamp(max=dist.shape[1] - 1))
    farthest = dist.masked_fill(not_negative, float("-inf")).argmax(dim=1, keepdim=True)
    return torch.where(semi_hard, candidate, farthest), semi_hard


def semi_hard_triplets(dist: Tensor, positive_mask: Tensor, negative_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchor, positive, negative)`` index vectors: every positive pair with its semi-hard negative.

    What `BatchSemiHardTripletLoss` uses: instead of searching all B x B distances (as `semi_hard_negative`
    does, to fill its tables), each anchor searches only for its own positives, gathered into a (B, M) table
    (M = the most positives any anchor has; shorter rows padded with -inf and dropped at the end). Pairs
    whose anchor has no negative (a single-label batch) have no triplet and are left out. No gradient.
    """
    num_positives = positive_mask.sum(dim=1)
    most = int(num_positives.max()) if num_positives.numel() else 0
    d_ap, positive = torch.where(positive_mask, dist, float("-inf")).topk(most, dim=1)  # (B, M): all positives
    negative, _ = semi_hard_choice(dist, negative_mask, d_ap)
    is_pair = torch.arange(most, device=dist.device) < num_positives.unsqueeze(1)
    is_pair &= negative_mask.any(dim=1, keepdim=True)
    anchor = torch.arange(dist.shape[0], device=dist.device).unsqueeze(1).expand_as(positive)
    return anchor[is_pair], positive[is_pair], negative[is_pair]


# ----------------------------------------------------------------------------------------------
# Kinds of triplets
# ----------------------------------------------------------------------------------------------
class TripletKind(IntEnum):
    """Codes used by `classify_triplets` / `triplet_kinds`; ``TripletKind(code).label`` is a readable name."""

    INVALID = -1
    EASY = 0
    SEMI_HARD = 1
    HARD = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


def classify_triplets(d_ap: Tensor, d_an: Tensor, margin: float) -> Tensor:
    """Kind of each triplet from its distances (any broadcastable shapes): a tensor of `TripletKind` codes.

    easy: d_an >= d_ap + margin (exactly the triplets whose loss max(d_ap - d_an + margin, 0) is 0);
    hard: d_an <= d_ap (and not easy); semi-hard: d_ap < d_an < d_ap + margin.
    """
    d_ap, d_an = torch.broadcast_tensors(torch.as_tensor(d_ap), torch.as_tensor(d_an))
    kinds = torch.full(d_ap.shape, int(TripletKind.SEMI_HARD), dtype=torch.long, device=d_ap.device)
    kinds = kinds.masked_fill(d_an <= d_ap, int(TripletKind.HARD))
    # Easy last: a zero loss is "easy" even at margin 0, where d_an == d_ap would otherwise read as hard.
    return kinds.masked_fill(d_an >= d_ap + margin, int(TripletKind.EASY))


def triplet_kinds(dist: Tensor, labels: Tensor, margin: float) -> Tensor:
    """(B, B, B) codes: ``kinds[a, p, n]`` is the `TripletKind` of (a, p, n), INVALID if not a triplet.

    Built from ``dist[a, p, None]`` against ``dist[a, None, n]`` and `valid_triplet_mask`: B^3 entries,
    meant for teaching on small batches.
    """
    labels = _check_dist(dist, labels)
    dist = dist.detach()
    kinds = classify_triplets(dist.unsqueeze(2), dist.unsqueeze(1), margin)
    return kinds.masked_fill(~valid_triplet_mask(labels), int(TripletKind.INVALID))


def count_triplet_kinds(dist: Tensor, labels: Tensor, margin: float) -> dict:
    """How many valid triplets of each kind the batch holds: ``{"easy": .., "semi-hard": .., "hard": ..}``."""
    kinds = triplet_kinds(dist, labels, margin)
    return {kind.label: int((kinds == kind).sum()) for kind in (TripletKind.EASY, TripletKind.SEMI_HARD, TripletKind.HARD)}
