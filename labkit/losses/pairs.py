"""Pair losses: two embeddings and a 0/1 label that says "same meaning" (1) or "different meaning" (0).

`ContrastiveLoss` (Hadsell et al. 2006) pulls every positive pair together and pushes every negative pair
apart until it is `margin` away. `OnlineContrastiveLoss` does the same on the hard pairs of the batch only.
Both follow sentence-transformers 6.2 (same names, parameters, defaults and reduction) but take embedding
tensors instead of a model, so they can be studied on hand-made vectors.

Every loss checks its batch first (`labkit.validation`: one embedding column per text column, one label per
pair), so that a wrong batch fails with a message instead of a broadcasting error. `LossExplanation` and
`as_float_list`, shared by the pair losses' `explain` methods, live here too.

Taught in notebooks/04_pair_losses.ipynb.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.distances import in_fp32
from labkit.validation import check_binary_labels, check_embedding_columns, check_pair_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SiameseDistanceMetric", "ContrastiveLoss", "OnlineContrastiveLoss", "LossExplanation"]


# --------------------------------------------------------------------------------------------------
# Input checks (labkit.validation)
# --------------------------------------------------------------------------------------------------
def _check_pair_batch(loss_name: str, emb_a: Tensor, emb_b: Tensor, labels) -> Tensor:
    check_embedding_columns(loss_name, emb_a, emb_b, names=("emb_a", "emb_b"))
    labels = check_pair_labels(loss_name, labels, emb_a.shape[0], emb_a.device)
    check_binary_labels(loss_name, labels)
    return labels


# --------------------------------------------------------------------------------------------------
# Explanations: every intermediate quantity of one loss evaluation, for worked examples
# --------------------------------------------------------------------------------------------------
@dataclass(repr=False)
class LossExplanation:
    """What a pair loss computed on one batch, step by step: returned by the losses' `explain` methods.

    * `per_pair`: a DataFrame with one row per pair (label, distance or similarity, which pairs were
      selected, the pair's term of the loss);
    * `loss`: the reduction of those terms: equal to the loss's forward value on the same batch;
    * `reduction`: the reduction in words ("mean of loss_i over 6 pairs");
    * `details`: what is not per pair (thresholds, CoSENT's pairs of pairs, SoftmaxLoss's features).

    ``print(explanation)`` shows the table and the reduction. Taught in notebooks/04_pair_losses.ipynb
    and notebooks/06_similarity_losses.ipynb.
    """

    per_pair: pd.DataFrame
    loss: float
    reduction: str
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        table = self.per_pair.to_string(float_format=_six_decimals)
        return f"{table}\nloss = {self.reduction} = {_six_decimals(self.loss)}"

    __repr__ = __str__


def _six_decimals(value: float) -> str:
    text = f"{value:.6f}"
    return "0.000000" if text == "-0.000000" else text  # -0.0 and 0.0 are the same number to a reader


def as_float_list(values: Tensor) -> list[float]:
    """A tensor's values as Python floats: one column of an explanation's `per_pair` table."""
    return [float(v) for v in values.detach().cpu().tolist()]


# --------------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------------
class SiameseDistanceMetric:
    """Row-wise distances for the contrastive losses: `metric(x, y)[i]` is the distance of x[i] to y[i].

    The same three functions as sentence-transformers' `SiameseDistanceMetric`, with the same values:

    * EUCLIDEAN: ``||x - y + eps||_2`` (torch's `F.pairwise_distance`, eps = 1e-6),
    * MANHATTAN: ``||x - y + eps||_1``,
    * COSINE_DISTANCE: ``1 - cos(x, y)`` (the default: in [0, 2], so `margin=0.5` has a fixed meaning).

    The tiny `eps` inside the norm is why identical embeddings (x == y) still get finite gradients:
    the derivative of ``sqrt(s)`` at ``s = 0`` is infinite, and ``0 * inf`` is NaN.
    Any callable ``(x, y) -> Tensor of shape (B,)`` can be used instead.
    """

    @staticmethod
    def EUCLIDEAN(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802 (sentence-transformers' name)
        return F.pairwise_distance(x, y, p=2)

    @staticmethod
    def MANHATTAN(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802
        return F.pairwise_distance(x, y, p=1)

    @staticmethod
    def COSINE_DISTANCE(x: Tensor, y: Tensor) -> Tensor:  # noqa: N802
        return 1 - F.cosine_similarity(x, y)


def _distance_metric_name(metric: Callable) -> str:
    for name in ("EUCLIDEAN", "MANHATTAN", "COSINE_DISTANCE"):
        if metric is getattr(SiameseDistanceMetric, name):
            return f"SiameseDistanceMetric.{name}"
    return getattr(metric, "__name__", repr(metric))


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------
class ContrastiveLoss(nn.Module):
    r"""Contrastive loss (Hadsell, Chopra & LeCun 2006): pull similar pairs together, push dissimilar ones apart.

    Definition, for pairs :math:`(a_i, b_i)` with label :math:`y_i \in \{0, 1\}` and distance
    :math:`d_i = d(a_i, b_i)`::

        loss_i = 0.5 * ( y_i * d_i**2  +  (1 - y_i) * max(0, margin - d_i)**2 )
        loss   = mean_i loss_i        (sum_i loss_i if size_average=False)

    A positive pair (y = 1) costs its squared distance; a negative pair (y = 0) costs nothing once it is at
    least `margin` apart, so the model is not asked to push unrelated texts infinitely far away.

    Inputs:
        ``loss(emb_a, emb_b, labels)``: two (B, D) embedding tensors (row i of each is pair i) and B labels,
        1 if the pair is similar, 0 if not.

    Args:
        distance_metric: a function ``(x, y) -> (B,)`` distances; default
            ``SiameseDistanceMetric.COSINE_DISTANCE`` (bounded in [0, 2], independent of embedding scale).
        margin: negative pairs closer than this are penalised. 0.5 with cosine distance means "cosine
            similarity below 0.5 is far enough". Rescale it if you switch to Euclidean distance.
        size_average: average over the batch (default) instead of summing, so the learning rate does not
            depend on the batch size.

    When to use:
        Data with (text, text, 0/1) rows, e.g. duplicate-question pairs (Quora) or paraphrase pairs.
        `OnlineContrastiveLoss` usually trains better on the same data.

    References:
        Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006.
        Reimers & Gurevych, "Sentence-BERT", EMNLP 2019 (sentence-transformers' ContrastiveLoss).

    Example:
        >>> import torch
        >>> from labkit.losses.pairs import ContrastiveLoss
        >>> emb_a, emb_b = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = ContrastiveLoss()(emb_a, emb_b, torch.tensor([1, 0, 1, 0]))
        >>> loss.shape
        torch.Size([])

    Taught in notebooks/04_pair_losses.ipynb.
    """

    def __init__(
        self,
        distance_metric: Callable[[Tensor, Tensor], Tensor] = SiameseDistanceMetric.COSINE_DISTANCE,
        margin: float = 0.5,
        size_average: bool = True,
    ) -> None:
        super().__init__()
        if not callable(distance_metric):
            raise TypeError(
                "distance_metric must be a function (x, y) -> distances, e.g. SiameseDistanceMetric.EUCLIDEAN."
            )
        self.distance_metric = distance_metric
        self.margin = margin
        self.size_average = size_average

    def forward(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> Tensor:
        labels = _check_pair_batch(type(self).__name__, emb_a, emb_b, labels)
        distances = in_fp32(self.distance_metric, emb_a, emb_b)  # fp32 under autocast: fp16 overflows, bf16 rounds
        # Labels are 0 or 1 (checked), so each pair has exactly one of the two terms of the definition: pick it.
        # Same values and gradients as y·d² + (1 − y)·max(0, margin − d)², with half the tensor operations.
        kept = torch.where(labels.bool(), distances, F.relu(self.margin - distances))
        losses = 0.5 * kept.pow(2)
        return losses.mean() if self.size_average else losses.sum()

    @torch.no_grad()
    def explain(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> LossExplanation:
        """Every step of `forward` on this batch, as numbers you can check by hand.

        `per_pair` columns: ``label`` y, ``distance`` d, ``positive_term`` y·d², ``negative_term``
        (1 − y)·max(0, margin − d)², ``loss_i`` = ½(positive_term + negative_term). `loss` is their mean
        (or sum, if ``size_average=False``) and equals ``forward(emb_a, emb_b, labels)``.

        Taught in notebooks/04_pair_losses.ipynb.
        """
        import pandas as pd

        labels = _check_pair_batch(type(self).__name__, emb_a, emb_b, labels)
        distances = self.distance_metric(emb_a, emb_b)
        y = labels.to(distances.dtype)
        positive_term = y * distances.pow(2)
        negative_term = (1 - y) * F.relu(self.margin - distances).pow(2)
        losses = 0.5 * (positive_term + negative_term)
        loss = losses.mean() if self.size_average else losses.sum()
        per_pair = pd.DataFrame({
            "label": labels.int().cpu().tolist(),
            "distance": as_float_list(distances),
            "positive_term": as_float_list(positive_term),
            "negative_term": as_float_list(negative_term),
            "loss_i": as_float_list(losses),
        })
        per_pair.index.name = "pair"
        how = "mean" if self.size_average else "sum"
        return LossExplanation(per_pair, float(loss), f"{how} of loss_i over {len(losses)} pairs",
                               {"margin": self.margin, "distance_metric": _distance_metric_name(self.distance_metric)})

    def get_config_dict(self) -> dict:
        return {
            "distance_metric": _distance_metric_name(self.distance_metric),
            "margin": self.margin,
            "size_average": self.size_average,
        }


class OnlineContrastiveLoss(nn.Module):
    r"""Contrastive loss on the hard pairs of the batch only (sentence-transformers' OnlineContrastiveLoss).

    Definition: with distances :math:`d_i` of the positive pairs P (label 1) and negative pairs N (label 0),

    * hard positives: positives farther apart than the closest negative, ``d_p > min_{n in N} d_n``;
    * hard negatives: negatives closer than the farthest positive, ``d_n < max_{p in P} d_p``;

    ::

        loss = sum_{hard p} d_p**2  +  sum_{hard n} max(0, margin - d_n)**2

    Note the *sum* (not a mean) and no factor 0.5, as in sentence-transformers. Easy pairs, already on the
    right side of every pair of the other kind, add nothing, so the gradient concentrates on the pairs
    that still break the ranking.

    Edge cases (as in sentence-transformers): a batch with no negative pairs compares positives to the
    mean positive distance instead (positives farther than average are "hard"); a batch with no positive
    pairs keeps negatives closer than the mean negative distance. A batch with no hard pair returns 0.

    Inputs:
        ``loss(emb_a, emb_b, labels)``: two (B, D) embedding tensors and B labels in {0, 1}.

    Args:
        distance_metric: ``(x, y) -> (B,)`` distances; default ``SiameseDistanceMetric.COSINE_DISTANCE``.
        margin: hard negatives closer than this are pushed apart (0.5 in cosine distance by default).

    When to use:
        Same data as `ContrastiveLoss` ((text, text, 0/1) rows, e.g. Quora duplicates); it usually trains
        better because it spends the gradient on the pairs that are still wrong. Use larger batches so each
        batch holds some hard pairs.

    References:
        Hadsell, Chopra & LeCun, CVPR 2006 (the contrastive loss); sentence-transformers'
        OnlineContrastiveLoss (Reimers & Gurevych 2019).

    Example:
        >>> import torch
        >>> from labkit.losses.pairs import OnlineContrastiveLoss
        >>> emb_a, emb_b = torch.randn(6, 8), torch.randn(6, 8)
        >>> OnlineContrastiveLoss(margin=0.5)(emb_a, emb_b, torch.tensor([1, 1, 1, 0, 0, 0])).dim()
        0

    Taught in notebooks/04_pair_losses.ipynb.
    """

    def __init__(
        self,
        distance_metric: Callable[[Tensor, Tensor], Tensor] = SiameseDistanceMetric.COSINE_DISTANCE,
        margin: float = 0.5,
    ) -> None:
        super().__init__()
        if not callable(distance_metric):
            raise TypeError(
                "distance_metric must be a function (x, y) -> distances, e.g. SiameseDistanceMetric.EUCLIDEAN."
            )
        self.distance_metric = distance_metric
        self.margin = margin

    def forward(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> Tensor:
        labels = _check_pair_batch(type(self).__name__, emb_a, emb_b, labels)
        distances = in_fp32(self.distance_metric, emb_a, emb_b)  # fp32 under autocast: fp16 overflows, bf16 rounds
        positive_distances = distances[labels == 1]
        negative_distances = distances[labels == 0]
        has_positives, has_negatives = len(positive_distances) > 0, len(negative_distances) > 0

        # Thresholds are compared, never differentiated: they only choose which pairs count.
        farthest_positive = positive_distances.max() if has_positives else negative_distances.mean()
        closest_negative = negative_distances.min() if has_negatives else positive_distances.mean()
        hard_negatives = negative_distances[negative_distances < farthest_positive]
        hard_positives = positive_distances[positive_distances > closest_negative]

        positive_loss = hard_positives.pow(2).sum()
        negative_loss = F.relu(self.margin - hard_negatives).pow(2).sum()
        return positive_loss + negative_loss

    @torch.no_grad()
    def explain(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> LossExplanation:
        """Which pairs `forward` selects as hard on this batch, and what each one adds.

        `per_pair` columns: ``label``, ``distance`` d, ``threshold`` (what the pair was compared with: the
        closest negative's distance for a positive, the farthest positive's for a negative), ``hard``
        (selected or not), ``loss_i`` (d² for a hard positive, max(0, margin − d)² for a hard negative,
        0 otherwise). `loss` is the sum of ``loss_i`` and equals ``forward(emb_a, emb_b, labels)``.
        `details` holds both thresholds, the rule that produced each, and the hard pairs' indices.

        Taught in notebooks/04_pair_losses.ipynb.
        """
        import pandas as pd

        labels = _check_pair_batch(type(self).__name__, emb_a, emb_b, labels)
        distances = self.distance_metric(emb_a, emb_b)
        is_positive = labels == 1
        positive_distances, negative_distances = distances[is_positive], distances[~is_positive]
        has_positives, has_negatives = len(positive_distances) > 0, len(negative_distances) > 0
        if has_positives:
            farthest_positive, negative_rule = positive_distances.max(), "the farthest positive's distance"
        else:
            farthest_positive, negative_rule = negative_distances.mean(), "the mean negative distance (no positives)"
        if has_negatives:
            closest_negative, positive_rule = negative_distances.min(), "the closest negative's distance"
        else:
            closest_negative, positive_rule = positive_distances.mean(), "the mean positive distance (no negatives)"

        threshold = torch.where(is_positive, closest_negative, farthest_positive)
        hard = torch.where(is_positive, distances > closest_negative, distances < farthest_positive)
        terms = torch.where(is_positive, distances.pow(2), F.relu(self.margin - distances).pow(2))
        losses = torch.where(hard, terms, torch.zeros_like(terms))
        per_pair = pd.DataFrame({
            "label": labels.int().cpu().tolist(),
            "distance": as_float_list(distances),
            "threshold": as_float_list(threshold),
            "hard": hard.cpu().tolist(),
            "loss_i": as_float_list(losses),
        })
        per_pair.index.name = "pair"
        indices = torch.arange(len(labels), device=labels.device)
        details = {
            "margin": self.margin,
            "distance_metric": _distance_metric_name(self.distance_metric),
            "positive_threshold": float(closest_negative),
            "positive_threshold_is": positive_rule,
            "negative_threshold": float(farthest_positive),
            "negative_threshold_is": negative_rule,
            "hard_positives": indices[hard & is_positive].tolist(),
            "hard_negatives": indices[hard & ~is_positive].tolist(),
        }
        return LossExplanation(per_pair, float(losses.sum()), f"sum of loss_i over the {int(hard.sum())} hard pairs",
                               details)

    def get_config_dict(self) -> dict:
        return {"distance_metric": _distance_metric_name(self.distance_metric), "margin": self.margin}
