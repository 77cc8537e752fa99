"""The triplet family: TripletLoss and the batch losses that mine triplets from labelled batches.

Names, parameters, defaults and reductions are those of sentence-transformers 6.2, but the losses take
embedding tensors instead of a model: ``TripletLoss()(anchor, positive, negative)`` and
``BatchHardTripletLoss()(embeddings, labels)``. Values and gradients equal sentence-transformers' (the tests
check it); the batch losses are faster because they *choose* triplets without gradient and differentiate only
the distances they chose.

Every loss has ``.explain(...)``: the triplets it used, their distances, kinds and loss terms, and the same
loss value recomputed from those terms -- what notebooks and the loss playground draw.

Shared conventions (and where they differ from sentence-transformers, deliberately):

* labels must be a 1-D integer tensor of length B (a list or NumPy array of ints also works); floats, a
  (B, 1) column or a wrong length raise a clear error.
* An anchor whose class has no other member in the batch has no positive; as in sentence-transformers the
  batch-hard losses count it with d(a, p) = 0, so it still pushes its closest negative beyond the margin.
* A batch with a single label has no negative and therefore no triplet at all: every batch loss returns 0
  (a tensor that still has a ``grad_fn``, so ``loss.backward()`` works and training goes on).
  sentence-transformers returns artefacts of its masking there -- the margin (BatchHard), log 2 (SoftMargin),
  a pull-the-class-together term (SemiHard) -- with no useful gradient for the first two.
* Identical embeddings give finite gradients (distances of 0 have gradient 0, see `labkit.distances`).

Taught in notebooks/05_triplet_losses.ipynb.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.distances import (
    BatchDistance,
    BatchHardTripletLossDistanceFunction,
    TripletDistanceMetric,
    resolve_batch_distance,
    resolve_paired_distance,
)
from labkit.mining import (
    TripletKind,
    anchor_positive_mask,
    classify_triplets,
    label_masks,
    pick_hardest,
    semi_hard_triplets,
)
from labkit.validation import check_class_labels, check_embedding_matrix

__all__ = [
    "TripletDistanceMetric",
    "BatchHardTripletLossDistanceFunction",
    "TripletExplanation",
    "TripletLoss",
    "BatchAllTripletLoss",
    "BatchHardTripletLoss",
    "BatchHardSoftMarginTripletLoss",
    "BatchSemiHardTripletLoss",
]

_CITATION = """
@misc{hermans2017defense,
    title={In Defense of the Triplet Loss for Person Re-Identification},
    author={Alexander Hermans and Lucas Beyer and Bastian Leibe},
    year={2017},
    eprint={1703.07737},
    archivePrefix={arXiv},
    primaryClass={cs.CV}
}
"""


# ----------------------------------------------------------------------------------------------
# What a loss did on one batch
# ----------------------------------------------------------------------------------------------
@dataclass
class TripletExplanation:
    """The triplets a loss used on one batch, one row each, and how they add up to the loss.

    Row t is the triplet (anchor[t], positive[t], negative[t]) with distances d_ap[t], d_an[t], its loss
    term[t] and its kind (`labkit.mining.TripletKind` codes: easy / semi-hard / hard; invalid when the
    anchor had no positive or no negative -- index -1). ``per_anchor[a]`` sums the terms of anchor a, and

        ``loss == per_anchor.sum() / denominator``  (equal to the loss's forward on the same batch).

    ``denominator`` is what the loss averages over: B anchors (batch-hard losses, TripletLoss), the number of
    positive pairs (semi-hard), the number of triplets with a positive loss (batch-all).
    """

    anchor: Tensor
    positive: Tensor
    negative: Tensor
    d_ap: Tensor
    d_an: Tensor
    term: Tensor
    kind: Tensor
    per_anchor: Tensor
    denominator: float
    loss: Tensor

    def to_frame(self):
        """The rows as a pandas DataFrame (kind as text), for display in a notebook."""
        import pandas as pd

        return pd.DataFrame(
            {
                "anchor": self.anchor.tolist(),
                "positive": self.positive.tolist(),
                "negative": self.negative.tolist(),
                "d_ap": self.d_ap.tolist(),
                "d_an": self.d_an.tolist(),
                "term": self.term.tolist(),
                "kind": [TripletKind(int(k)).label for k in self.kind],
            }
        )


def _explanation(anchor, positive, negative, d_ap, d_an, term, kind, batch_size, denominator) -> TripletExplanation:
    per_anchor = torch.zeros(batch_size, dtype=term.dtype, device=term.device).index_add_(0, anchor, term)
    return TripletExplanation(
        anchor, positive, negative, d_ap, d_an, term, kind, per_anchor, float(denominator),
        per_anchor.sum() / denominator,
    )


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------
def _check_batch(embeddings: Tensor, labels) -> tuple[Tensor, Tensor]:
    embeddings = check_embedding_matrix(embeddings)
    return embeddings, check_class_labels(labels, embeddings.shape[0], device=embeddings.device)


def _distance_name(distance_metric) -> str:
    return getattr(distance_metric, "__name__", str(distance_metric))


# How the batch losses differentiate only what they chose. The triplets are chosen on the (B, B) distance
# matrix computed *without* gradient. Then, when the metric has a row-by-row form, only the chosen pairs are
# measured again with gradient: O(pairs x D) work and memory in backward instead of O(B^2 x D) for the whole
# matrix. For a custom matrix function, or when there are so many pairs that the matrix is cheaper, the matrix
# itself is computed with gradient and the chosen entries are gathered from it. Same values and gradients.

# Above this many chosen pairs per matrix entry, differentiating the matrix is cheaper (measured on CPU).
_MAX_PAIRS_PER_ENTRY = 1 / 64


def _matrix_to_choose_from(embeddings: Tensor, distance: BatchDistance, num_pairs: int = 0):
    """``(selection, matrix)``: the (B, B) distances to choose from, without gradient, and the same matrix
    with gradient when the chosen pairs will be gathered from it (None when they will be re-measured)."""
    if distance.paired is None or num_pairs > _MAX_PAIRS_PER_ENTRY * embeddings.shape[0] ** 2:
        matrix = distance.matrix(embeddings)
        return matrix.detach(), matrix
    with torch.no_grad():
        return distance.matrix(embeddings), None


def _measure_pairs(embeddings: Tensor, distance: BatchDistance, matrix: Optional[Tensor], rows, *columns) -> tuple:
    """``d(embeddings[rows[i]], embeddings[c[i]])`` with gradient, for each index vector c in ``columns``.

    ``rows=None`` means every row in order. Re-measured in one batched row-by-row call, or gathered
    from ``matrix`` when it was computed with gradient.
    """
    if matrix is not None:
        if rows is None:
            return matrix.gather(1, torch.stack(columns, dim=1)).unbind(1)
        return tuple(matrix[rows, c] for c in columns)
    anchors = embeddings if rows is None else embeddings.index_select(0, rows)
    others = embeddings.index_select(0, torch.cat(columns)).view(len(columns), *anchors.shape)
    return distance.paired(anchors, others).unbind(0)  # (N, D) against (k, N, D): one call


# ----------------------------------------------------------------------------------------------
# TripletLoss: triplets given explicitly
# ----------------------------------------------------------------------------------------------
class TripletLoss(nn.Module):
    r"""Triplet loss on given (anchor, positive, negative) triplets.

    Definition: for the i-th triplet with distances :math:`d_{ap} = d(a_i, p_i)` and :math:`d_{an} = d(a_i, n_i)`,

    .. math::  \mathcal{L} = \frac{1}{B} \sum_i \max(d(a_i, p_i) - d(a_i, n_i) + m,\ 0)

    It pulls the positive closer than the negative by at least the margin m; triplets that already satisfy
    this contribute 0 (and no gradient). The mean is over all B triplets, as in sentence-transformers.

    Args:
        distance_metric: row-by-row distance ``(a, b) -> (B,)``. Default ``TripletDistanceMetric.EUCLIDEAN``
            (also ``COSINE``, ``MANHATTAN``, sentence-transformers' own, any such function, or a string:
            "euclidean", "cosine", "manhattan", "squared_euclidean").
        triplet_margin: how much farther the negative must be than the positive. Default 5, which suits
            *unnormalised* Euclidean distances of a transformer's pooled outputs (norms of order 5-10, as in
            the FaceNet / Hermans et al. setups, which do not normalise); with cosine distance (in [0, 2]) or
            normalised embeddings use a much smaller margin, e.g. 0.1-0.5.

    Inputs: ``forward(anchor, positive, negative)``, three (B, D) tensors. Returns a scalar.

    When to use: your data already comes as triplets (e.g. a query, a relevant and an irrelevant passage).
    With class labels instead, prefer the batch losses below, which mine triplets for you.

    Identical anchor and positive give a zero gradient for that distance, not NaN.

    References:
        Schroff, Kalenichenko, Philbin. "FaceNet: A Unified Embedding for Face Recognition and
        Clustering", CVPR 2015, https://arxiv.org/abs/1503.03832.
        Hermans, Beyer, Leibe. "In Defense of the Triplet Loss for Person Re-Identification", 2017,
        https://arxiv.org/abs/1703.07737.

    Taught in notebooks/05_triplet_losses.ipynb.

    Example::

        >>> import torch
        >>> from labkit.losses.triplets import TripletLoss, TripletDistanceMetric
        >>> anchor, positive, negative = torch.randn(3, 4, 8).unbind(0)
        >>> loss = TripletLoss(distance_metric=TripletDistanceMetric.EUCLIDEAN, triplet_margin=5)
        >>> value = loss(anchor, positive, negative)   # a scalar tensor
        >>> loss.explain(anchor, positive, negative).to_frame()  # doctest: +SKIP
    """

    def __init__(
        self,
        distance_metric: Union[str, Callable[[Tensor, Tensor], Tensor]] = TripletDistanceMetric.EUCLIDEAN,
        triplet_margin: float = 5,
    ) -> None:
        super().__init__()
        self.distance_metric = distance_metric
        self.triplet_margin = triplet_margin
        self._paired = resolve_paired_distance(distance_metric)

    def _distances(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> tuple[Tensor, Tensor]:
        anchor = check_embedding_matrix(anchor, "anchor")
        for name, other in (("positive", positive), ("negative", negative)):
            if check_embedding_matrix(other, name).shape != anchor.shape:
                raise ValueError(
                    f"anchor, positive and negative must have the same shape, got anchor {tuple(anchor.shape)} "
                    f"and {name} {tuple(other.shape)}."
                )
        return self._paired(anchor, positive), self._paired(anchor, negative)

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        distance_positive, distance_negative = self._distances(anchor, positive, negative)
        return F.relu(distance_positive - distance_negative + self.triplet_margin).mean()

    @torch.no_grad()
    def explain(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> TripletExplanation:
        """Row i is triplet i (indices index the three tensors); the loss is the mean of the terms."""
        d_ap, d_an = self._distances(anchor, positive, negative)
        term = F.relu(d_ap - d_an + self.triplet_margin)
        index = torch.arange(anchor.shape[0], device=anchor.device)
        kind = classify_triplets(d_ap, d_an, self.triplet_margin)
        return _explanation(index, index, index, d_ap, d_an, term, kind, anchor.shape[0], anchor.shape[0])

    def get_config_dict(self) -> dict:
        name = _distance_name(self.distance_metric)
        for member in ("EUCLIDEAN", "COSINE", "MANHATTAN"):
            if self.distance_metric is getattr(TripletDistanceMetric, member):
                name = f"TripletDistanceMetric.{member}"
        return {"distance_metric": name, "triplet_margin": self.triplet_margin}

    @property
    def citation(self) -> str:
        return _CITATION


# ----------------------------------------------------------------------------------------------
# Batch-hard: the hardest positive and hardest negative of each anchor
# ----------------------------------------------------------------------------------------------
class _BatchHardBase(nn.Module):
    """Mining shared by BatchHardTripletLoss and BatchHardSoftMarginTripletLoss."""

    def __init__(self, distance_metric) -> None:
        super().__init__()
        self.distance_metric = distance_metric
        self._distance = resolve_batch_distance(distance_metric)

    def _hardest_triplets(self, embeddings: Tensor, labels):
        """Pick each anchor's hardest positive and negative without gradient, then measure them with it."""
        embeddings, labels = _check_batch(embeddings, labels)
        selection, matrix = _matrix_to_choose_from(embeddings, self._distance)
        with torch.no_grad():
            positive_mask, negative_mask = label_masks(labels)
            positive = pick_hardest(selection, positive_mask, farthest=True)
            negative = pick_hardest(selection, negative_mask, farthest=False)
        # An anchor without a candidate gets an arbitrary index; its value is replaced below.
        d_ap, d_an = _measure_pairs(embeddings, self._distance, matrix, None, positive.indices, negative.indices)
        d_ap = torch.where(positive.valid, d_ap, 0.0)  # no positive: d(a, p) = 0, as in sentence-transformers
        return positive, negative, d_ap, d_an

    def _terms(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        positive, negative, d_ap, d_an = self._hardest_triplets(embeddings, labels)
        # No negative means a single-label batch: no triplet, the anchor contributes 0.
        return torch.where(negative.valid, self._terms(d_ap, d_an), 0.0).mean()

    @torch.no_grad()
    def explain(self, embeddings: Tensor, labels: Tensor) -> TripletExplanation:
        """One row per anchor: its hardest positive and negative, distances, kind and loss term.

        Anchors without a positive show positive -1 and d_ap 0 (their term still counts, as in forward);
        in a single-label batch every negative is -1 and every term 0. The loss is the mean of the terms.
        """
        positive, negative, d_ap, d_an = self._hardest_triplets(embeddings, labels)
        terms = self._terms(d_ap, d_an)
        terms = torch.where(negative.valid, terms, 0.0)
        kind = classify_triplets(d_ap, d_an, getattr(self, "triplet_margin", 0.0))
        kind = kind.masked_fill(~(positive.valid & negative.valid), int(TripletKind.INVALID))
        batch_size = d_ap.shape[0]
        anchor = torch.arange(batch_size, device=d_ap.device)
        positive_index = torch.where(positive.valid, positive.indices, -1)
        negative_index = torch.where(negative.valid, negative.indices, -1)
        return _explanation(anchor, positive_index, negative_index, d_ap, d_an, terms, kind, batch_size, batch_size)

    @property
    def citation(self) -> str:
        return _CITATION


class BatchHardTripletLoss(_BatchHardBase):
    r"""Batch-hard triplet loss: each anchor against its hardest positive and its hardest negative.

    Definition: in a batch of B labelled embeddings, for each anchor a take the farthest embedding with the
    same label and the closest one with another label (Hermans et al., 2017):

    .. math::  \mathcal{L} = \frac{1}{B} \sum_{a=1}^{B}
               \max\Big(\max_{p:\,y_p = y_a,\,p \neq a} d(a, p) \;-\; \min_{n:\,y_n \neq y_a} d(a, n) + m,\ 0\Big)

    Definitions (sentence-transformers'): easy triplets have loss 0 (d(a,n) >= d(a,p) + m); hard ones have
    the negative at least as close as the positive (d(a,n) <= d(a,p)); semi-hard ones lie in between.

    Args:
        distance_metric: matrix distance ``embeddings (B, D) -> (B, B)``. Default
            ``BatchHardTripletLossDistanceFunction.euclidean_distance`` (also ``cosine_distance``,
            sentence-transformers' own, a string "euclidean" / "cosine" / "squared_euclidean", or any function).
        margin: how much farther the hardest negative must be than the hardest positive. Default 5, for
            unnormalised Euclidean distances (the original papers do not normalise); use ~0.1-0.5 with cosine
            distance or normalised embeddings.

    Inputs: ``forward(embeddings, labels)``: (B, D) embeddings, (B,) integer labels. Returns a scalar: the
    mean over all B anchors.

    Requirements and edge cases: batches need several classes with >= 2 examples each (use
    ``labkit.sampling``'s P x K sampler). An anchor without a positive counts with d(a, p) = 0 (as in
    sentence-transformers). A single-label batch gives 0 (sentence-transformers gives the margin, with zero
    gradient). Identical embeddings give finite gradients.

    How it is computed: the hardest positive and negative are *chosen* on the (B, B) distance matrix
    without gradient; only the 2B chosen distances are recomputed with gradient. Same value and gradients
    as sentence-transformers, but the backward pass costs O(B D) instead of O(B^2 D).

    When to use: the standard choice for labelled data (intents, topics, identities) with P x K batches;
    focuses on the most informative triplet per anchor. Outliers and label noise hurt it more than
    `BatchAllTripletLoss`; `BatchHardSoftMarginTripletLoss` removes the margin to tune.

    References:
        Hermans, Beyer, Leibe. "In Defense of the Triplet Loss for Person Re-Identification", 2017,
        https://arxiv.org/abs/1703.07737.
        Schroff, Kalenichenko, Philbin. "FaceNet", CVPR 2015, https://arxiv.org/abs/1503.03832.
        Moindrot, "Triplet Loss and Online Triplet Mining in TensorFlow", https://omoindrot.github.io/triplet-loss.

    Taught in notebooks/05_triplet_losses.ipynb.

    Example::

        >>> import torch
        >>> from labkit.losses.triplets import BatchHardTripletLoss, BatchHardTripletLossDistanceFunction
        >>> embeddings = torch.randn(8, 16, requires_grad=True)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = BatchHardTripletLoss(distance_metric=BatchHardTripletLossDistanceFunction.euclidean_distance, margin=5)
        >>> loss(embeddings, labels).backward()
        >>> loss.explain(embeddings, labels).to_frame()  # doctest: +SKIP
    """

    def __init__(
        self,
        distance_metric: Union[str, Callable[[Tensor], Tensor]] = BatchHardTripletLossDistanceFunction.euclidean_distance,
        margin: float = 5,
    ) -> None:
        super().__init__(distance_metric)
        self.triplet_margin = margin

    def _terms(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        # clamp_min, like sentence-transformers' `tl[tl < 0] = 0`, lets the gradient through at exactly 0.
        return (d_ap - d_an + self.triplet_margin).clamp_min(0)

    def get_config_dict(self) -> dict:
        return {"distance_metric": _distance_name(self.distance_metric), "margin": self.triplet_margin}


class BatchHardSoftMarginTripletLoss(_BatchHardBase):
    r"""Batch-hard triplet loss with a soft margin: no margin to tune.

    Definition: with the hardest positive and negative of each anchor chosen as in `BatchHardTripletLoss`,

    .. math::  \mathcal{L} = \frac{1}{B} \sum_{a=1}^{B} \log\big(1 + \exp(d(a, p^*_a) - d(a, n^*_a))\big)

    The softplus replaces the hinge max(x + m, 0): it never reaches 0, so already-separated triplets keep
    pulling gently (Hermans et al. found this works better than a fixed margin in their setting).

    Args:
        distance_metric: matrix distance, default ``BatchHardTripletLossDistanceFunction.euclidean_distance``
            (see `BatchHardTripletLoss`).

    Inputs: ``forward(embeddings, labels)``. Returns the mean over the B anchors.

    Edge cases: an anchor without a positive counts with d(a, p) = 0, as in sentence-transformers; a
    single-label batch gives 0 (sentence-transformers gives log 2 with zero gradient).

    When to use: like `BatchHardTripletLoss` when you do not want to choose a margin; with unnormalised
    embeddings the scale of the distances then matters (softplus is nearly linear above ~5).

    References:
        Hermans, Beyer, Leibe. "In Defense of the Triplet Loss for Person Re-Identification", 2017,
        https://arxiv.org/abs/1703.07737 (section 2, "soft margin").

    Taught in notebooks/05_triplet_losses.ipynb.

    Example::

        >>> import torch
        >>> from labkit.losses.triplets import BatchHardSoftMarginTripletLoss
        >>> embeddings = torch.randn(8, 16, requires_grad=True)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> BatchHardSoftMarginTripletLoss()(embeddings, labels).backward()
    """

    def __init__(
        self,
        distance_metric: Union[str, Callable[[Tensor], Tensor]] = BatchHardTripletLossDistanceFunction.euclidean_distance,
    ) -> None:
        super().__init__(distance_metric)

    def _terms(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        return F.softplus(d_ap - d_an)

    def get_config_dict(self) -> dict:
        return {"distance_metric": _distance_name(self.distance_metric)}


# ----------------------------------------------------------------------------------------------
# Batch-all: every valid triplet
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def _batch_all_weights(dist: Tensor, labels: Tensor, margin: float, max_elements: int = 2**22):
    """Batch-all as a weighted sum of the (B, B) distances: returns ``weights, constant`` such that

        ``loss = (weights * dist).sum() + constant``  has sentence-transformers' value and gradient.

    Why it works: the hinge max(x, 0) is linear where it is active (x >= 0), so the sum over active triplets
    ``sum (d_ap - d_an + m)`` is ``sum_ij count[i, j] * dist[i, j] + m * num_active`` where count[a, p] is
    +(number of active negatives of the pair (a, p)) and count[a, n] is -(number of active triplets with
    anchor a and negative n). Divided by the number of triplets with a loss > 1e-16. Autograd then keeps only
    the (B, B) distance matrix instead of a (pairs, B) or B x B x B table of triplet losses.

    Triplets are enumerated as (anchor-positive pair) x (every candidate n): a (pairs, B) table built in
    chunks of at most `max_elements`, without gradient. "Active" is loss >= 0, as in sentence-transformers
    (``tl[tl < 0] = 0`` lets the gradient through at exactly 0).
    """
    batch_size = labels.shape[0]
    anchors, positives = anchor_positive_mask(labels).nonzero(as_tuple=True)
    counts = torch.zeros_like(dist)
    num_active, num_positive = 0, 0
    chunk = max(1, max_elements // batch_size)
    for start in range(0, anchors.shape[0], chunk):
        a, p = anchors[start : start + chunk], positives[start : start + chunk]
        # d_ap - d_an + m for every candidate n: (pairs, B), row = pair. Built in place in one buffer (a new
        # (pairs, B) tensor per step would cost fresh memory pages), in sentence-transformers' order of
        # operations: (-d_an + d_ap) + m is bit for bit (d_ap - d_an) + m.
        losses = dist.index_select(0, a).neg_().add_(dist[a, p].unsqueeze(1)).add_(margin)
        losses.masked_fill_(labels[a].unsqueeze(1) == labels.unsqueeze(0), float("-inf"))  # n is no negative
        num_positive = num_positive + (losses > 1e-16).sum()
        active = losses.ge_(0)  # in place: 1.0 where the hinge is active (it gets a gradient), else 0.0
        active_per_pair = active.sum(dim=1)
        num_active = num_active + active_per_pair.sum()
        counts.index_put_((a, p), active_per_pair, accumulate=True)  # +d(a, p) once per active negative
        counts.index_add_(0, a, active, alpha=-1)  # -d(a, n) once per active triplet
    denominator = torch.as_tensor(num_positive, dtype=torch.float64, device=dist.device) + 1e-16  # exact count
    return counts / denominator, (margin * num_active / denominator).to(dist.dtype)


class BatchAllTripletLoss(nn.Module):
    r"""Batch-all triplet loss: every valid triplet in the batch, averaged over those with a positive loss.

    Definition: over all valid triplets T = {(a, p, n): y_p = y_a, p != a, y_n != y_a} of the batch,

    .. math::  \ell_{apn} = \max(d(a, p) - d(a, n) + m,\ 0), \qquad
               \mathcal{L} = \frac{\sum_{T} \ell_{apn}}{\#\{(a,p,n) \in T: \ell_{apn} > 10^{-16}\} + 10^{-16}}

    Dividing by the number of *positive* (non-easy) triplets, not by |T|, keeps the loss from shrinking as
    most triplets become easy during training (Hermans et al.); it is sentence-transformers' reduction.

    Args:
        distance_metric: matrix distance, default ``BatchHardTripletLossDistanceFunction.euclidean_distance``
            (see `BatchHardTripletLoss`).
        margin: default 5, for unnormalised Euclidean distances (see `BatchHardTripletLoss`).

    Inputs: ``forward(embeddings, labels)``. Returns a scalar.

    Edge cases: no valid triplet (single label, or no class with two members) or only easy ones: 0, with a
    ``grad_fn`` (same as sentence-transformers).

    How it is computed: never as a B x B x B tensor. The triplets are enumerated as anchor-positive pairs
    against all candidates, in chunks and without gradient, to count how often each distance appears in an
    active triplet; the loss is then a weighted sum of the (B, B) distance matrix (see
    `_batch_all_weights`). Same value and gradients as sentence-transformers, far less memory.

    When to use: labelled batches, early in training or with noisy labels: every triplet contributes, so it
    is more stable than batch-hard but gives a weaker signal once most triplets are easy.

    References:
        Hermans, Beyer, Leibe. "In Defense of the Triplet Loss for Person Re-Identification", 2017,
        https://arxiv.org/abs/1703.07737.
        Moindrot, "Triplet Loss and Online Triplet Mining in TensorFlow", https://omoindrot.github.io/triplet-loss.

    Taught in notebooks/05_triplet_losses.ipynb.

    Example::

        >>> import torch
        >>> from labkit.losses.triplets import BatchAllTripletLoss
        >>> embeddings = torch.randn(8, 16, requires_grad=True)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> BatchAllTripletLoss(margin=5)(embeddings, labels).backward()
    """

    def __init__(
        self,
        distance_metric: Union[str, Callable[[Tensor], Tensor]] = BatchHardTripletLossDistanceFunction.euclidean_distance,
        margin: float = 5,
    ) -> None:
        super().__init__()
        self.distance_metric = distance_metric
        self.triplet_margin = margin
        self._distance = resolve_batch_distance(distance_metric)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        embeddings, labels = _check_batch(embeddings, labels)
        dist = self._distance.matrix(embeddings)
        weights, constant = _batch_all_weights(dist.detach(), labels, self.triplet_margin)
        return (weights * dist).sum() + constant

    @torch.no_grad()
    def explain(self, embeddings: Tensor, labels: Tensor) -> TripletExplanation:
        """One row per valid triplet (B^3 at most: for small batches); loss = sum of terms / denominator."""
        embeddings, labels = _check_batch(embeddings, labels)
        dist = self._distance.matrix(embeddings)
        pair_anchor, pair_positive = anchor_positive_mask(labels).nonzero(as_tuple=True)
        is_negative = labels[pair_anchor].unsqueeze(1) != labels.unsqueeze(0)
        pair, negative = is_negative.nonzero(as_tuple=True)
        anchor, positive = pair_anchor[pair], pair_positive[pair]
        d_ap, d_an = dist[anchor, positive], dist[anchor, negative]
        term = (d_ap - d_an + self.triplet_margin).clamp_min(0)
        denominator = float((term > 1e-16).sum()) + 1e-16
        kind = classify_triplets(d_ap, d_an, self.triplet_margin)
        return _explanation(anchor, positive, negative, d_ap, d_an, term, kind, labels.shape[0], denominator)

    def get_config_dict(self) -> dict:
        return {"distance_metric": _distance_name(self.distance_metric), "margin": self.triplet_margin}

    @property
    def citation(self) -> str:
        return _CITATION


# ----------------------------------------------------------------------------------------------
# Batch-semi-hard: for each positive pair, the closest negative that is farther than the positive
# ----------------------------------------------------------------------------------------------
class BatchSemiHardTripletLoss(nn.Module):
    r"""Semi-hard triplet loss (FaceNet): each positive pair against its closest negative beyond the positive.

    Definition: for every positive pair (a, p) choose

    .. math::  n^*(a, p) = \arg\min_{n:\, y_n \neq y_a,\ d(a, n) > d(a, p)} d(a, n)
               \quad (\text{if no such } n:\ \arg\max_{n:\, y_n \neq y_a} d(a, n))

    .. math::  \mathcal{L} = \frac{1}{\#\{(a, p)\}} \sum_{(a, p)} \max(d(a, p) - d(a, n^*) + m,\ 0)

    Semi-hard negatives (farther than the positive, but within the margin) give a useful gradient without
    the collapse that always taking the hardest negative can cause early in training (Schroff et al.). The
    rule and the fallback are TensorFlow Addons' ``triplet_semihard_loss``, as in sentence-transformers.

    Args:
        distance_metric: matrix distance, default ``BatchHardTripletLossDistanceFunction.euclidean_distance``
            (see `BatchHardTripletLoss`).
        margin: default 5, for unnormalised Euclidean distances (see `BatchHardTripletLoss`).

    Inputs: ``forward(embeddings, labels)``. Returns the mean over all positive pairs.

    Edge cases: no positive pair: 0 (as in sentence-transformers). A single-label batch has no negative:
    0 (sentence-transformers' fallback turns it into a term that pulls the class together).

    How it is computed: the negatives are chosen without gradient on the (B, B) matrix: each row's negative
    distances are sorted once and ``torch.searchsorted`` finds, for each positive, the first negative beyond
    it (`labkit.mining.semi_hard_triplets`); then only the chosen pair distances are differentiated. Same
    value and gradients as sentence-transformers.

    When to use: labelled batches with many classes; a common default for training from scratch
    (FaceNet). Needs large enough batches for semi-hard negatives to exist.

    References:
        Schroff, Kalenichenko, Philbin. "FaceNet: A Unified Embedding for Face Recognition and
        Clustering", CVPR 2015, https://arxiv.org/abs/1503.03832.
        Hermans, Beyer, Leibe. "In Defense of the Triplet Loss for Person Re-Identification", 2017,
        https://arxiv.org/abs/1703.07737.

    Taught in notebooks/05_triplet_losses.ipynb.

    Example::

        >>> import torch
        >>> from labkit.losses.triplets import BatchSemiHardTripletLoss
        >>> embeddings = torch.randn(8, 16, requires_grad=True)
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> BatchSemiHardTripletLoss(margin=5)(embeddings, labels).backward()
    """

    def __init__(
        self,
        distance_metric: Union[str, Callable[[Tensor], Tensor]] = BatchHardTripletLossDistanceFunction.euclidean_distance,
        margin: float = 5,
    ) -> None:
        super().__init__()
        self.distance_metric = distance_metric
        self.margin = margin
        self._distance = resolve_batch_distance(distance_metric)

    def _semi_hard_triplets(self, embeddings: Tensor, labels):
        """Choose a negative for every positive pair without gradient, then measure the pairs with it."""
        embeddings, labels = _check_batch(embeddings, labels)
        positive_mask, negative_mask = label_masks(labels)
        num_pairs = int(positive_mask.sum())  # the denominator, as in sentence-transformers
        selection, matrix = _matrix_to_choose_from(embeddings, self._distance, num_pairs=2 * num_pairs)
        with torch.no_grad():
            anchor, positive, negative = semi_hard_triplets(selection, positive_mask, negative_mask)
        d_ap, d_an = _measure_pairs(embeddings, self._distance, matrix, anchor, positive, negative)
        return anchor, positive, negative, d_ap, d_an, max(num_pairs, 1e-16)

    def _terms(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        # torch.maximum (not relu) as in sentence-transformers: identical gradients even at exactly 0.
        return torch.maximum(d_ap - d_an + self.margin, d_ap.new_zeros(()))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        _, _, _, d_ap, d_an, denominator = self._semi_hard_triplets(embeddings, labels)
        return self._terms(d_ap, d_an).sum() / denominator

    @torch.no_grad()
    def explain(self, embeddings: Tensor, labels: Tensor) -> TripletExplanation:
        """One row per positive pair (a, p) with its chosen negative; loss = sum of terms / #positive pairs."""
        anchor, positive, negative, d_ap, d_an, denominator = self._semi_hard_triplets(embeddings, labels)
        term = self._terms(d_ap, d_an)
        kind = classify_triplets(d_ap, d_an, self.margin)
        return _explanation(anchor, positive, negative, d_ap, d_an, term, kind, embeddings.shape[0], denominator)

    def get_config_dict(self) -> dict:
        return {"distance_metric": _distance_name(self.distance_metric), "margin": self.margin}

    @property
    def citation(self) -> str:
        return _CITATION
