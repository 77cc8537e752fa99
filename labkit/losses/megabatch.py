"""MegaBatchMarginLoss: a margin loss on each anchor's positive and its hardest in-batch negative (Wieting &
Gimpel 2018, ParaNMT).

Same name, parameters (those that concern the loss), defaults and values as sentence-transformers 6.3, on
embedding tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.distances import cos_sim, in_fp32
from labkit.validation import check_embedding_columns

__all__ = ["MegaBatchMarginLoss", "MegaBatchMarginExplanation"]


@dataclass
class MegaBatchMarginExplanation:
    """MegaBatchMarginLoss on one batch, row i = anchor i.

    ``similarity`` is the (B, B) cosine matrix of anchors against positives; ``positive_similarity[i]`` its
    diagonal; ``hardest_negative[i]`` the column of the most similar *other* positive and
    ``negative_similarity[i]`` its cosine; ``positive_term[i] = relu(positive_margin - positive_similarity[i])``,
    ``negative_term[i] = relu(negative_similarity[i] - negative_margin)``; ``per_anchor`` their sum and
    ``loss`` its mean.
    """

    similarity: Tensor
    positive_similarity: Tensor
    hardest_negative: Tensor
    negative_similarity: Tensor
    positive_term: Tensor
    negative_term: Tensor
    per_anchor: Tensor
    loss: Tensor


class MegaBatchMarginLoss(nn.Module):
    r"""Each anchor must be close to its positive and far from the hardest other positive of the batch.

    Definitions, for anchors a_i and positives p_i (i = 1..B), with cosine similarity::

        hardest_i = max_{j != i} cos(a_i, p_j)              # the most confusable other positive
        loss = mean_i  relu(positive_margin - cos(a_i, p_i)) + relu(hardest_i - negative_margin)

    Two absolute targets rather than a difference: a positive counts as close enough above
    ``positive_margin``, a negative as far enough below ``negative_margin``. The "mega batch" of the
    paper is a large batch to mine the hardest negative from; the bigger the batch, the harder it is.

    Inputs:
        ``loss(anchor, positive)``: two (B, D) tensors. No negative columns: the negatives are mined from
        the other rows' positives.

    Args:
        positive_margin: the cosine every positive should reach, default 0.8.
        negative_margin: the cosine the hardest negative should stay under, default 0.3.

    sentence-transformers' ``use_mini_batched_version`` / ``mini_batch_size`` run the model in mini-batches
    (GradCache) for the same value and gradients; here the training loop runs the model, so they do not apply.

    Requirements:
        (anchor, positive) pairs; batches without duplicates (a duplicate positive is its own hardest negative).

    Recommendations:
        Large batches (the paper's "mega batches"), so the hardest negative is informative; with small batches
        `MultipleNegativesRankingLoss` learns from every negative instead of one.

    References:
        Wieting & Gimpel, "ParaNMT-50M: Pushing the Limits of Paraphrastic Sentence Embeddings with Millions
        of Machine Translations", ACL 2018; sentence-transformers' MegaBatchMarginLoss.

    Example:
        >>> import torch
        >>> from labkit.losses.megabatch import MegaBatchMarginLoss
        >>> MegaBatchMarginLoss()(torch.randn(4, 8), torch.randn(4, 8)).dim()
        0

    A worked example to check by hand: a0 = (1, 0), a1 = (0, 1), p0 = (0.6, 0.8), p1 = (0, 1). Anchor 0: its
    positive's cosine is 0.6, 0.2 short of 0.8; its hardest negative p1 has cosine 0 < 0.3: row loss 0.2.
    Anchor 1: positive cosine 1 (no penalty), hardest negative p0 at 0.8, 0.5 above 0.3: row loss 0.5.
    The loss is the mean, 0.35:

        >>> a, p = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.6, 0.8], [0.0, 1.0]])
        >>> explanation = MegaBatchMarginLoss().explain(a, p)
        >>> [round(x, 4) for x in explanation.per_anchor.tolist()], round(explanation.loss.item(), 4)
        ([0.2, 0.5], 0.35)
    """

    def __init__(self, positive_margin: float = 0.8, negative_margin: float = 0.3) -> None:
        super().__init__()
        self.positive_margin = positive_margin
        self.negative_margin = negative_margin

    def forward(self, anchor: Tensor, positive: Tensor) -> Tensor:
        return self._terms(anchor, positive).per_anchor.mean()

    @torch.no_grad()
    def explain(self, anchor: Tensor, positive: Tensor) -> MegaBatchMarginExplanation:
        """Every intermediate quantity of `forward`: cosines, each anchor's hardest negative, the two hinges."""
        return self._terms(anchor, positive)

    def _terms(self, anchor: Tensor, positive: Tensor) -> MegaBatchMarginExplanation:
        check_embedding_columns(type(self).__name__, anchor, positive, names=("anchor", "positive"))
        similarity = in_fp32(cos_sim, anchor, positive)  # fp32 under autocast
        rows = torch.arange(similarity.shape[0], device=similarity.device)
        positive_similarity = similarity[rows, rows]
        # The own positive is not a negative: hide it from max().
        negative_similarity, hardest = similarity.masked_fill(
            torch.eye(len(rows), dtype=torch.bool, device=similarity.device), -math.inf).max(dim=1)
        positive_term = F.relu(self.positive_margin - positive_similarity)
        negative_term = F.relu(negative_similarity - self.negative_margin)
        per_anchor = positive_term + negative_term
        return MegaBatchMarginExplanation(similarity, positive_similarity, hardest, negative_similarity,
                                          positive_term, negative_term, per_anchor, per_anchor.mean())

    def get_config_dict(self) -> dict:
        return {"positive_margin": self.positive_margin, "negative_margin": self.negative_margin}
