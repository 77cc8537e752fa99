"""GlobalOrthogonalRegularizationLoss: spread the embeddings of unrelated texts over the space (Zhang et al. 2017).

Same name, parameters, defaults and values as sentence-transformers 6.3, on embedding tensors; where
sentence-transformers returns its two terms as a dict (its trainer adds them up), ``forward`` returns their
sum and ``terms`` the dict.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from labkit.distances import cos_sim, in_fp32
from labkit.validation import check_embedding_matrix

__all__ = ["GlobalOrthogonalRegularizationLoss"]

AGGREGATIONS = ("mean", "sum")


class GlobalOrthogonalRegularizationLoss(nn.Module):
    r"""A regulariser: the similarities of different texts of a batch should look like those of random directions.

    Definitions, for one column of B embeddings in D dimensions and s_ij = sim(e_i, e_j) over the
    B(B - 1) pairs i != j (B(B - 1) is taken as 1 for a batch of one)::

        M1 = mean_{i != j} s_ij                  mean term     = M1 ** 2
        M2 = mean_{i != j} s_ij ** 2             second moment = relu(M2 - 1 / D)

    Independent random unit vectors in D dimensions have M1 = 0 and M2 = 1 / D: the regulariser pushes
    the batch towards that spread and leaves it alone once it is there. Each column (queries,
    documents, ...) is regularised on its own; the columns' terms are averaged (``aggregation="mean"``)
    or summed (``"sum"``), then weighted::

        loss = mean_weight * agg(mean terms) + second_moment_weight * agg(second moments)

    Inputs:
        ``loss(*columns)``: any number of (B, D) tensors (anchors, positives, ...); no labels.
        ``terms(*columns)`` returns the two weighted terms as sentence-transformers does,
        ``{"gor_mean": ..., "gor_second_moment": ...}`` (a disabled term is left out).

    Args:
        similarity_fct: all-pairs similarity, default `cos_sim`.
        mean_weight: weight of the mean term; 0 or None leaves it out. Default 1.
        second_moment_weight: weight of the second-moment term; 0 or None leaves it out. Default 1.
        aggregation: ``"mean"`` (default) or ``"sum"`` over the columns (EmbeddingGemma uses "sum").

    Requirements:
        Any data: it looks at each column on its own.

    Recommendations:
        Add it to a main loss (e.g. ``MultipleNegativesRankingLoss()(a, p) + gor(a, p)``) rather than training
        on it alone: on its own it only spreads the embeddings, with nothing to say what should be close.

    References:
        Zhang et al., "Learning Spread-out Local Feature Descriptors", ICCV 2017; Schechter Vera et al.,
        "EmbeddingGemma", 2025 (``mean_weight=0``, ``aggregation="sum"``);
        sentence-transformers' GlobalOrthogonalRegularizationLoss.

    Example:
        >>> import torch
        >>> from labkit.losses.regularization import GlobalOrthogonalRegularizationLoss
        >>> anchor, positive = torch.randn(8, 16), torch.randn(8, 16)
        >>> sorted(GlobalOrthogonalRegularizationLoss().terms(anchor, positive))
        ['gor_mean', 'gor_second_moment']

    A worked example to check by hand: e0 = (1, 0), e1 = (0, 1), e2 = (0.6, 0.8) (D = 2). The pairs' cosines
    are 0, 0.6 and 0.8, each counted twice among the 6 ordered pairs: M1 = 2.8 / 6 = 0.4667, so the mean term
    is 0.2178; M2 = 2 (0 + 0.36 + 0.64) / 6 = 0.3333 is below 1 / D = 0.5, so the second-moment term is 0:

        >>> e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
        >>> {name: round(term.item(), 4) for name, term in GlobalOrthogonalRegularizationLoss().terms(e).items()}
        {'gor_mean': 0.2178, 'gor_second_moment': 0.0}
    """

    def __init__(
        self,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        mean_weight: float | None = 1.0,
        second_moment_weight: float | None = 1.0,
        aggregation: str = "mean",
    ) -> None:
        super().__init__()
        if not mean_weight and not second_moment_weight:
            raise ValueError("At least one of mean_weight or second_moment_weight must be non-zero.")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be 'mean' or 'sum', got {aggregation!r}.")
        self.similarity_fct = similarity_fct
        self.mean_weight = mean_weight
        self.second_moment_weight = second_moment_weight
        self.aggregation = aggregation

    def forward(self, *columns: Tensor) -> Tensor:
        return sum(self.terms(*columns).values())

    def terms(self, *columns: Tensor) -> dict[str, Tensor]:
        """The weighted, aggregated terms, by sentence-transformers' names."""
        if not columns:
            raise ValueError("GlobalOrthogonalRegularizationLoss needs at least one column of embeddings.")
        mean_terms, second_moments = zip(*(self.column_terms(column) for column in columns))
        aggregate = torch.sum if self.aggregation == "sum" else torch.mean
        results = {}
        if self.mean_weight:
            results["gor_mean"] = self.mean_weight * aggregate(torch.stack(mean_terms))
        if self.second_moment_weight:
            results["gor_second_moment"] = self.second_moment_weight * aggregate(torch.stack(second_moments))
        return results

    def column_terms(self, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """(mean term, second-moment term) of one column, unweighted."""
        embeddings = check_embedding_matrix(embeddings)
        batch_size, dim = embeddings.shape
        similarity = in_fp32(self.similarity_fct, embeddings, embeddings)  # fp32 under autocast
        off_diagonal = similarity.masked_fill(torch.eye(batch_size, dtype=torch.bool, device=similarity.device), 0.0)
        pairs = max(batch_size * (batch_size - 1), 1)  # a batch of one: a differentiable 0, not nan
        mean_term = (off_diagonal.sum() / pairs).pow(2)
        second_moment_term = torch.relu(off_diagonal.pow(2).sum() / pairs - 1.0 / dim)
        return mean_term, second_moment_term

    def get_config_dict(self) -> dict:
        return {"similarity_fct": getattr(self.similarity_fct, "__name__", repr(self.similarity_fct)),
                "mean_weight": self.mean_weight, "second_moment_weight": self.second_moment_weight,
                "aggregation": self.aggregation}
