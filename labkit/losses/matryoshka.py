"""Matryoshka: train one embedding whose first d dimensions are a good embedding on their own, for several d.

`MatryoshkaLoss` is a loss *modifier*: it wraps any labkit loss and adds up that loss computed on the embeddings
truncated to each of ``matryoshka_dims`` (and re-normalised), with a weight per dimension. After training, a user
can keep only the first 128 of 384 numbers per text (3× less memory, 3× faster search) and lose little quality.

Same name, parameters, defaults and arithmetic as sentence-transformers 6 (``MatryoshkaLoss``), except that labkit's
losses take embeddings rather than a model, so there is no ``model`` argument.

Taught in notebooks/15_smaller_and_cheaper.ipynb (when it lands); tested against sentence-transformers in
tests/test_matryoshka_loss.py.
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
    """The first `dim` numbers of each embedding, scaled back to unit length (in fp32 for fp16/bf16 input).

    Re-normalising matters for losses that use dot products or Euclidean distances: a truncated unit vector is
    shorter than 1, and more so the fewer dimensions are kept.
    """
    if dim > embeddings.shape[-1]:
        raise ValueError(
            f"matryoshka dimension {dim} is larger than the embeddings' dimension {embeddings.shape[-1]}; "
            "keep matryoshka_dims at most the model's embedding size (e.g. 384 for MiniLM)."
        )
    truncated = embeddings[..., :dim]
    if truncated.dtype in (torch.float16, torch.bfloat16):
        return F.normalize(truncated.float(), p=2, dim=-1).to(truncated.dtype)
    return F.normalize(truncated, p=2, dim=-1)


@dataclass
class MatryoshkaExplanation:
    """The wrapped loss at each dimension of one batch: ``total = sum(weights[d] * losses[d])``."""

    dims: tuple[int, ...]
    weights: tuple[float, ...]
    losses: tuple[float, ...]
    total: float

    def table(self) -> str:
        rows = [f"{'dim':>5}  {'weight':>6}  {'loss':>8}  {'weight × loss':>13}"]
        rows += [f"{d:>5}  {w:>6g}  {l:>8.4f}  {w * l:>13.4f}" for d, w, l in zip(self.dims, self.weights, self.losses)]
        rows.append(f"{'total':>5}  {'':>6}  {'':>8}  {self.total:>13.4f}")
        return "\n".join(rows)


class MatryoshkaLoss(nn.Module):
    r"""Any loss, computed on the embeddings truncated to several sizes, weighted and summed.

    Definitions, for a wrapped loss L, dimensions d_1 > d_2 > ... and weights w_k::

        shrink(e, d) = e[:d] / ||e[:d]||               (the first d numbers, back to unit length)
        loss = sum_k  w_k * L(shrink(embeddings, d_k), labels)

    Every embedding argument of L is shrunk; its ``labels`` are left as they are, except labels that are
    embeddings themselves (distillation: a (B, D) or (B, n, D) tensor of the full width D), which are cut to d_k
    without re-normalising, as sentence-transformers does. ``n_dims_per_step > 0`` uses a random subset of that
    many dimensions per step (Python's `random`, as sentence-transformers), which makes a step cheaper.

    Requirements:
        A labkit loss whose embedding arguments are tensors of the full width. Cached (GradCache) losses work too:
        the truncation happens inside their full-batch loss, so the model is still run once per mini-batch (the
        wrapped cached loss's inner loss is replaced by a Matryoshka one; wrap a fresh instance).

    Recommendations:
        Include the model's full dimension in ``matryoshka_dims`` (otherwise the full embedding is not trained).
        Halving steps such as [384, 256, 128, 64, 32] for MiniLM; equal weights are the common default.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022 (arXiv 2205.13147);
        sentence-transformers' ``MatryoshkaLoss`` (same arithmetic, including the re-normalisation).

    Example (numbers you can check by hand):
        >>> import torch
        >>> from labkit.losses import CosineSimilarityLoss
        >>> from labkit.losses.matryoshka import MatryoshkaLoss
        >>> a, b = torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0, 1.0]])
        >>> loss = MatryoshkaLoss(CosineSimilarityLoss(), matryoshka_dims=[4, 2])
        >>> print(loss.explain(a, b, torch.tensor([1.0])).table())   # cos 0.5 at 4 dims, 1.0 at 2 dims
          dim  weight      loss  weight × loss
            4       1    0.2500         0.2500
            2       1    0.0000         0.0000
        total                           0.2500
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
            raise TypeError(f"MatryoshkaLoss wraps a loss module, e.g. MultipleNegativesRankingLoss(); got {type(loss).__name__}.")
        dims = [int(d) for d in matryoshka_dims] if matryoshka_dims is not None else []
        if not dims:
            raise ValueError("matryoshka_dims needs at least one dimension, e.g. [384, 256, 128, 64].")
        if any(d <= 0 for d in dims):
            raise ValueError(f"every matryoshka dimension must be > 0, got {dims}.")
        weights = [1] * len(dims) if matryoshka_weights is None else list(matryoshka_weights)
        if len(weights) != len(dims):
            raise ValueError(f"matryoshka_weights must have one weight per dimension: {len(weights)} weights for {len(dims)} dims.")
        # largest first, as sentence-transformers sorts them
        self.matryoshka_dims, self.matryoshka_weights = zip(*sorted(zip(dims, weights), key=lambda x: x[0], reverse=True))
        self.n_dims_per_step = n_dims_per_step
        self.loss = loss
        self.runs_the_model = bool(getattr(loss, "runs_the_model", False))
        if self.runs_the_model:
            # A cached loss embeds everything first, then calls its full-batch loss `.loss` on the embeddings:
            # truncating there gives Matryoshka gradients while the model still runs once per mini-batch.
            loss.loss = MatryoshkaLoss(loss.loss, self.matryoshka_dims, self.matryoshka_weights, n_dims_per_step)
        else:
            self._signature = inspect.signature(loss.forward)

    def __getattr__(self, name: str):
        # a cached loss reads knobs such as `scale` from its inner loss, which is now this wrapper
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "loss":
                raise
            return getattr(super().__getattr__("loss"), name)

    def _dims_this_step(self) -> list[int]:
        indices = list(range(len(self.matryoshka_dims)))
        if 0 < self.n_dims_per_step < len(indices):
            indices = sorted(random.sample(indices, self.n_dims_per_step))
        return indices

    def _arguments_at(self, dim: int, full_width: int, args: tuple) -> list:
        """The wrapped loss's arguments at `dim`: embeddings shrunk, embedding-shaped labels cut, other labels kept."""
        bound = self._signature.bind(*args)
        truncated = []
        for name, value in bound.arguments.items():
            kind = self._signature.parameters[name].kind
            values = value if kind is inspect.Parameter.VAR_POSITIONAL else (value,)
            for item in values:
                if name == "labels" or not (isinstance(item, Tensor) and item.is_floating_point()):
                    if isinstance(item, Tensor) and item.ndim in (2, 3) and item.shape[-1] == full_width:
                        item = item[..., :dim]  # teacher embeddings (distillation): cut, not re-normalised
                    truncated.append(item)
                else:
                    truncated.append(shrink(item, dim))
        return truncated

    def _terms(self, args: tuple) -> list[tuple[int, float, Tensor]]:
        full_width = next(a.shape[-1] for a in args if isinstance(a, Tensor) and a.is_floating_point())
        return [(self.matryoshka_dims[i], self.matryoshka_weights[i],
                 self.loss(*self._arguments_at(self.matryoshka_dims[i], full_width, args)))
                for i in self._dims_this_step()]

    def forward(self, *args) -> Tensor:
        if self.runs_the_model:
            return self.loss(*args)
        return sum(weight * value for _, weight, value in self._terms(args))

    @torch.no_grad()
    def explain(self, *args) -> MatryoshkaExplanation:
        """The wrapped loss at every dimension for one batch (all dimensions, whatever ``n_dims_per_step``)."""
        if self.runs_the_model:
            raise TypeError("explain() needs embeddings; a cached loss takes tokenized batches. Explain the plain loss instead.")
        keep, self.n_dims_per_step = self.n_dims_per_step, -1
        try:
            terms = self._terms(args)
        finally:
            self.n_dims_per_step = keep
        losses = tuple(float(value) for _, _, value in terms)
        return MatryoshkaExplanation(self.matryoshka_dims, tuple(float(w) for w in self.matryoshka_weights), losses,
                                     sum(w * l for w, l in zip(self.matryoshka_weights, losses)))

    def get_config_dict(self) -> dict:
        return {"loss": type(self.loss).__name__, "matryoshka_dims": self.matryoshka_dims,
                "matryoshka_weights": self.matryoshka_weights, "n_dims_per_step": self.n_dims_per_step}
