"""MatryoshkaLoss: train the first d dimensions of every embedding to work on their own (Kusupati et al. 2022).

A modifier: it wraps any labkit loss, the cached (GradCache) ones and GIST included, and applies it to the
embeddings truncated to each of several sizes. Same name, parameters, defaults and values as
sentence-transformers 6.3.
"""
from __future__ import annotations

import inspect
import random
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MatryoshkaLoss", "MatryoshkaExplanation", "shrink"]


def shrink(embeddings: Tensor, dim: int) -> Tensor:
    """The first `dim` dimensions of each embedding, L2-normalised (in fp32 for half-precision input)."""
    if dim > embeddings.shape[-1]:
        raise ValueError(f"Dimension {dim} in matryoshka_dims cannot be greater than the embedding dimension "
                         f"{embeddings.shape[-1]}.")
    truncated = embeddings[..., :dim]
    dtype = truncated.dtype
    if dtype in (torch.float16, torch.bfloat16):
        truncated = truncated.float()
    return F.normalize(truncated, p=2, dim=-1).to(dtype)


@dataclass
class MatryoshkaExplanation:
    """The inner loss at each size for one batch: ``total = sum(weights[k] * losses[k])``."""

    dims: tuple[int, ...]
    weights: tuple[float, ...]
    losses: tuple[float, ...]
    total: float

    def table(self) -> str:
        rows = [f"{'dim':>5}  {'weight':>6}  {'loss':>8}  {'weight × loss':>13}"]
        rows += [f"{d:>5}  {w:>6g}  {l:>8.4f}  {w * l:>13.4f}" for d, w, l in zip(self.dims, self.weights, self.losses)]
        rows.append(f"{'total':>5}  {'':>6}  {'':>8}  {self.total:>13.4f}")
        return "\n".join(rows)


def _takes_labels(loss: nn.Module) -> bool:
    return "labels" in inspect.signature(loss.forward).parameters


class MatryoshkaLoss(nn.Module):
    r"""Apply a loss at several embedding sizes at once, so that truncated embeddings stay useful.

    Definitions, for an inner loss L, sizes d_1 > d_2 > ... and weights w_k::

        shrink(e, d) = e[:d] / ||e[:d]||                       # the first d dimensions, unit length
        loss = sum_k  w_k * L(shrink(columns, d_k), labels)

    Labels that are embeddings of the full size (the teacher's, for `MSELoss`) are truncated to d_k too
    (not normalised), as in sentence-transformers. With ``n_dims_per_step > 0`` each step uses that many
    sizes drawn at random (Python's `random`, as sentence-transformers), which makes a step cheaper.

    The inner loss is computed once per size on the same embeddings: the model runs once (for the
    cached losses and GIST, the model the inner loss runs; the guide's embeddings are never truncated).

    Inputs:
        Whatever the inner loss takes: ``loss(*columns[, labels])`` for an embedding loss,
        ``loss(features)`` for one that runs the model.

    Args:
        loss: the labkit loss to apply at every size.
        matryoshka_dims: the sizes, e.g. ``(384, 256, 128, 64)``; include the full size.
        matryoshka_weights: one weight per size (default all 1).
        n_dims_per_step: sizes per step, -1 (default) for all.

    Requirements:
        A model whose embeddings have at least ``max(matryoshka_dims)`` dimensions.

    Recommendations:
        Include the model's full dimension; the smallest size around 1/8 of it. Evaluate at each size
        (``labkit.evaluate`` on ``embeddings[:, :d]``) to see the trade-off.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022; sentence-transformers'
        MatryoshkaLoss.

    Example:
        >>> import torch
        >>> from labkit.losses import MatryoshkaLoss, MultipleNegativesRankingLoss
        >>> loss_fn = MatryoshkaLoss(MultipleNegativesRankingLoss(), matryoshka_dims=(8, 4, 2))
        >>> loss_fn(torch.randn(4, 8), torch.randn(4, 8)).dim()
        0

    A worked example to check by hand: with the inner loss `CosineSimilarityLoss` (squared error between
    the cosine and the score), a = (1, 1), b = (1, -1) and score 0: at size 2 the cosine is 0 (no loss); at
    size 1 both are (1), cosine 1, loss (1 - 0)² = 1. With weights (1, 1) the loss is 1:

        >>> from labkit.losses import CosineSimilarityLoss
        >>> a, b = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, -1.0]])
        >>> MatryoshkaLoss(CosineSimilarityLoss(), (2, 1))(a, b, torch.tensor([0.0])).item()
        1.0
    """

    def __init__(
        self,
        loss: nn.Module,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Sequence[float] | None = None,
        n_dims_per_step: int = -1,
    ) -> None:
        super().__init__()
        if not isinstance(loss, nn.Module):
            raise TypeError(f"MatryoshkaLoss wraps a labkit loss, got {type(loss).__name__}.")
        if not matryoshka_dims:
            raise ValueError("You must provide at least one dimension in matryoshka_dims.")
        if any(int(dim) <= 0 for dim in matryoshka_dims):
            raise ValueError("All dimensions passed to a matryoshka loss must be > 0.")
        if matryoshka_weights is None:
            matryoshka_weights = [1] * len(matryoshka_dims)
        elif len(matryoshka_weights) != len(matryoshka_dims):
            raise ValueError("matryoshka_weights must be the same length as matryoshka_dims.")
        pairs = sorted(zip(matryoshka_dims, matryoshka_weights), key=lambda pair: pair[0], reverse=True)
        self.matryoshka_dims, self.matryoshka_weights = map(tuple, zip(*pairs))
        self.loss = loss
        self.n_dims_per_step = n_dims_per_step
        self.runs_the_model = getattr(loss, "runs_the_model", False)
        self._takes_labels = _takes_labels(loss)

    def dims_this_step(self, sort: bool = True) -> list[int]:
        """The indices of the sizes this step trains (all, or ``n_dims_per_step`` drawn at random)."""
        indices = list(range(len(self.matryoshka_dims)))
        if 0 < self.n_dims_per_step < len(indices):
            indices = random.sample(indices, self.n_dims_per_step)
            if sort:
                indices.sort()
        return indices

    def forward(self, *inputs, **kwargs) -> Tensor:
        if self.runs_the_model:
            return self._forward_through_the_model(*inputs, **kwargs)
        labels = kwargs.pop("labels", None)
        if labels is None and self._takes_labels and len(inputs) > 1:
            inputs, labels = inputs[:-1], inputs[-1]  # labkit.train passes the labels last
        full = inputs[0].shape[-1]
        total = 0.0
        for index in self.dims_this_step():
            dim, weight = self.matryoshka_dims[index], self.matryoshka_weights[index]
            columns = [shrink(column, dim) for column in inputs]
            if labels is None:
                total = total + weight * self.loss(*columns, **kwargs)
            else:
                total = total + weight * self.loss(*columns, _truncated_labels(labels, full, dim), **kwargs)
        return total

    @torch.no_grad()
    def explain(self, *inputs, **kwargs) -> MatryoshkaExplanation:
        """The inner loss at every size for one batch of embeddings (all sizes, whatever ``n_dims_per_step``).

        >>> from labkit.losses import CosineSimilarityLoss
        >>> a, b = torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0, 1.0]])
        >>> print(MatryoshkaLoss(CosineSimilarityLoss(), [4, 2]).explain(a, b, torch.tensor([1.0])).table())
          dim  weight      loss  weight × loss
            4       1    0.2500         0.2500
            2       1    0.0000         0.0000
        total                           0.2500
        """
        if self.runs_the_model:
            raise TypeError("explain() takes embeddings; this inner loss runs the model. Explain the plain loss.")
        keep, self.n_dims_per_step = self.n_dims_per_step, -1
        try:
            losses = []
            for dim in self.matryoshka_dims:  # one size at a time: the inner loss alone, weight 1
                single = MatryoshkaLoss(self.loss, [dim])
                losses.append(float(single(*inputs, **kwargs)))
        finally:
            self.n_dims_per_step = keep
        weights = tuple(float(w) for w in self.matryoshka_weights)
        return MatryoshkaExplanation(self.matryoshka_dims, weights, tuple(losses),
                                     sum(w * l for w, l in zip(weights, losses)))

    def _forward_through_the_model(self, features, labels=None) -> Tensor:
        """Losses that run the model: truncate the model's embeddings where the inner loss receives them.

        GIST and the GIST GradCache loss compute from `compute_loss_from_embeddings(embeddings, guide)`, the
        other cached losses from `loss_from_embeddings(embeddings, features)`; the first argument is the
        model's embeddings either way. Both are called during the forward pass only (GradCache's second pass
        replays the model, not the loss), so patching them for the duration of the call is enough.
        """
        name = "compute_loss_from_embeddings" if hasattr(self.loss, "compute_loss_from_embeddings") \
            else "loss_from_embeddings"
        inner = getattr(self.loss, name)
        indices = self.dims_this_step(sort=False)

        def matryoshka(embeddings, *rest):
            return sum(self.matryoshka_weights[i] * inner([shrink(e, self.matryoshka_dims[i]) for e in embeddings],
                                                          *rest) for i in indices)

        setattr(self.loss, name, matryoshka)
        try:
            return self.loss(features) if labels is None else self.loss(features, labels)
        finally:
            delattr(self.loss, name)  # the class's method again

    def get_config_dict(self) -> dict:
        return {"loss": type(self.loss).__name__, "matryoshka_dims": self.matryoshka_dims,
                "matryoshka_weights": self.matryoshka_weights, "n_dims_per_step": self.n_dims_per_step}


def _truncated_labels(labels, full: int, dim: int):
    """Labels that are full-size embeddings (a teacher's) are truncated with the columns; others pass through."""
    if isinstance(labels, Tensor) and labels.is_floating_point() and labels.dim() in (2, 3) and labels.shape[-1] == full:
        return labels[..., :dim]
    return labels
