"""Similarity functions between embeddings, with the meaning sentence-transformers gives them.

Two shapes of question:

* all pairs (a matrix): `cos_sim(a, b)[i, j]` and `dot_score(a, b)[i, j]` compare row i of `a` with row j
  of `b`; the in-batch-negatives losses (MultipleNegativesRankingLoss) need every anchor against every
  candidate.
* row by row (a vector): `pairwise_cos_sim(a, b)[i]`, `pairwise_dot_score(a, b)[i]` and
  `pairwise_angle_sim(a, b)[i]` compare row i of `a` with row i of `b`; the pair losses (CoSENT, AnglE)
  score each labelled pair.

Cosine similarity divides by the norms; `F.normalize` clamps a norm below 1e-12, so an all-zero
embedding gives a similarity of 0 and finite gradients instead of NaN.

Taught in notebooks/06_similarity_losses.ipynb and notebooks/07_in_batch_negatives.ipynb.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cos_sim", "dot_score", "pairwise_cos_sim", "pairwise_dot_score", "pairwise_angle_sim"]


def _as_matrix(x) -> Tensor:
    """A (N, D) float tensor: lists/arrays become tensors, a single vector becomes one row."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.float()
    return x.unsqueeze(0) if x.dim() == 1 else x


def cos_sim(a, b) -> Tensor:
    """Cosine similarity of every row of `a` with every row of `b`: shape (len(a), len(b))."""
    a, b = _as_matrix(a), _as_matrix(b)
    return F.normalize(a, p=2, dim=-1) @ F.normalize(b, p=2, dim=-1).T


def dot_score(a, b) -> Tensor:
    """Dot product of every row of `a` with every row of `b`: shape (len(a), len(b))."""
    a, b = _as_matrix(a), _as_matrix(b)
    return a @ b.T


def pairwise_cos_sim(a, b) -> Tensor:
    """Cosine similarity of row i of `a` with row i of `b`: shape (len(a),)."""
    a, b = _as_matrix(a), _as_matrix(b)
    return pairwise_dot_score(F.normalize(a, p=2, dim=-1), F.normalize(b, p=2, dim=-1))


def pairwise_dot_score(a, b) -> Tensor:
    """Dot product of row i of `a` with row i of `b`: shape (len(a),)."""
    a, b = _as_matrix(a), _as_matrix(b)
    return (a * b).sum(dim=-1)


def pairwise_angle_sim(x, y) -> Tensor:
    """AnglE's similarity of row i of `x` with row i of `y`: ``|cos(x, y) + sin(x, y)|`` after L2 normalisation.

    AnglE (Li & Li 2023) reads an embedding of even size D as D/2 complex numbers (first half: real parts,
    second half: imaginary parts). The "sine" term pairs dimension k with dimension k + D/2:
    ``sin(x, y) = sum_k x[k + D/2] * y[k] - x[k] * y[k + D/2]``. An odd D is padded with one zero.
    This is sentence-transformers' `pairwise_angle_sim` (the authors' reference code), not a geometric angle.
    """
    x, y = _as_matrix(x), _as_matrix(y)
    if x.shape[1] % 2 != 0:
        x = F.pad(x, (0, 1), value=0.0)
        y = F.pad(y, (0, 1), value=0.0)
    x = F.normalize(x, p=2, dim=1)
    y = F.normalize(y, p=2, dim=1)
    cosines = (x * y).sum(dim=1)
    x_real, x_imag = torch.chunk(x, 2, dim=1)
    y_real, y_imag = torch.chunk(y, 2, dim=1)
    sines = (x_imag * y_real - x_real * y_imag).sum(dim=1)
    return torch.abs(cosines + sines)
