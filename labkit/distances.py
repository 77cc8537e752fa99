"""Distances and similarities between embeddings, with gradients that never turn into NaN.

Every distance and every cosine similarity in labkit is computed here: the losses, `labkit.evaluate`
and the course call these functions, so there is one matrix cosine and one row-by-row cosine (rows
L2-normalised with `F.normalize`, which clamps tiny norms: an all-zero row has similarity 0, not NaN).

Two shapes of question:

* all pairs (a matrix): ``euclidean_distance(x)[i, j]`` is the distance of row i to row j. The batch
  triplet losses need the whole (B, B) matrix to *choose* their triplets.
* row by row (a vector): ``paired_euclidean_distance(a, b)[i]`` is the distance of a[i] to b[i]. A loss
  that already knows its triplets only needs these B numbers, which is much cheaper to differentiate.

Why "NaN-safe": d/dx sqrt(x) = 1 / (2 sqrt(x)) is infinite at x = 0, and every embedding is at distance 0
from itself (and from its duplicates). The chain rule then multiplies inf by 0 and gives NaN, which
silently destroys a whole training run. `safe_sqrt` takes the square root only where the squared distance
is positive and gives 0 with gradient 0 elsewhere: identical embeddings get finite (zero) gradients. (The
row-by-row Euclidean distance uses `torch.linalg.vector_norm`, whose backward does the same masking.)

The names that sentence-transformers uses for the same choices are here too, with the same meaning, so code
written for it reads the same:

* ``TripletDistanceMetric.EUCLIDEAN / COSINE / MANHATTAN`` -- row-by-row metrics for `TripletLoss`;
* ``BatchHardTripletLossDistanceFunction.euclidean_distance / cosine_distance`` (and the historical
  misspelling ``eucledian_distance``) -- matrix metrics for the batch triplet losses.

Notebooks can also pass strings: "euclidean", "squared_euclidean", "cosine", "manhattan".

Similarities (larger = more alike), in the same two shapes:

* labkit's names, on checked tensors: ``cosine_similarity(x, y)`` (matrix; ``cosine_distance`` is 1 minus
  it) and ``paired_cosine_similarity(a, b)`` (row by row);
* sentence-transformers' names (``sentence_transformers.util``), which also take lists, arrays and a
  single vector: ``cos_sim`` / ``dot_score`` (matrix) and ``pairwise_cos_sim`` / ``pairwise_dot_score`` /
  ``pairwise_angle_sim`` (row by row: AnglE's cosine-plus-sine). The in-batch-negatives losses (MNRL)
  score every anchor against every candidate with ``cos_sim``; CoSENT and AnglE score each labelled pair.
  ``cos_sim`` and ``cosine_similarity`` are two names over the same kernel, as are ``pairwise_cos_sim``
  and ``paired_cosine_similarity``: same values, bit for bit.

Numerical note (a deliberate difference with sentence-transformers): the matrix form computes
||x - y||^2 = ||x||^2 - 2<x, y> + ||y||^2 with one matrix product, as sentence-transformers does. In float32
that expansion loses digits when the embeddings share a large common component (transformer embeddings
do: they are anisotropic) or are nearly identical: embeddings of norm ~20 that are identical can come out
~5e-3 apart instead of 0. Distances do not change when every point is shifted by the same vector, so
`squared_euclidean_distance(x)` first shifts the batch so that its first row is the origin: the values are
those of sentence-transformers up to rounding, only more accurate (identical rows give exactly 0). The
row-by-row forms subtract first and are exact.

Taught in notebooks/05_triplet_losses.ipynb (distances), notebooks/06_similarity_losses.ipynb and
notebooks/07_in_batch_negatives.ipynb (similarities).
"""
from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "safe_sqrt",
    "squared_euclidean_distance",
    "euclidean_distance",
    "cosine_similarity",
    "cosine_distance",
    "manhattan_distance",
    "paired_squared_euclidean_distance",
    "paired_euclidean_distance",
    "paired_cosine_similarity",
    "paired_cosine_distance",
    "paired_manhattan_distance",
    "TripletDistanceMetric",
    "BatchHardTripletLossDistanceFunction",
    "BatchDistance",
    "resolve_batch_distance",
    "resolve_paired_distance",
    "in_fp32",
    "cos_sim",
    "dot_score",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_angle_sim",
]


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------
def _as_float_matrix(x: Tensor, name: str = "embeddings") -> Tensor:
    """A (N, D) floating tensor; float16/bfloat16 are computed in float32 (as sentence-transformers does)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch_size, dim), got {type(x).__name__}.")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (batch_size, dim), got shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}; use {name}.float().")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # half precision rounds distances into spurious ties
    return x


def _as_float_rows(x: Tensor, name: str) -> Tensor:
    """A floating tensor of rows (..., D); float16/bfloat16 are computed in float32."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch_size, dim), got {type(x).__name__}.")
    if x.dim() == 0 or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor of shape (batch_size, dim), got {x.dtype} {tuple(x.shape)}.")
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_paired(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Row-by-row inputs: same shape (B, D), or shapes that broadcast, such as (B, D) and (k, B, D)."""
    a, b = _as_float_rows(a, "a"), _as_float_rows(b, "b")
    if a.shape != b.shape and not _broadcastable(a.shape, b.shape):
        raise ValueError(
            f"row-by-row distances need two tensors of the same shape (B, D), got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    return a, b


def _broadcastable(shape_a, shape_b) -> bool:
    # Plain Python: torch.broadcast_shapes costs more than the distance itself on small batches.
    return all(x == y or x == 1 or y == 1 for x, y in zip(reversed(shape_a), reversed(shape_b)))


def _full_precision(device_type: str):
    """Switch autocast off (it would redo the matrix product in half precision); a no-op when it is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device argument
        enabled = True
    return torch.autocast(device_type=device_type, enabled=False) if enabled else contextlib.nullcontext()


def in_fp32(fn: Callable, *tensors: Tensor):
    """``fn(*tensors)`` computed in float32: float16/bfloat16 tensors upcast, autocast off inside.

    Losses call their similarity or distance through this, so that under mixed precision the loss is
    computed in fp32 from the half-precision embeddings (cheap: B x D inputs). Half precision there
    overflows (fp16 stops at 65504: squared distances, dot products of long vectors, exp of scaled
    logits) and rounds cosines near 1 by up to 2e-3 in bf16, 0.04 in a logit after scale 20. Autocast has
    to be off too: it would run the matrix products of `fn` in half precision again.

    Taught in notebooks/13_scaling_up.ipynb.
    """
    tensors = [t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors]
    with _full_precision(tensors[0].device.type):
        return fn(*tensors)


# ----------------------------------------------------------------------------------------------
# The one numerical trick
# ----------------------------------------------------------------------------------------------
def safe_sqrt(squared: Tensor) -> Tensor:
    """Square root whose gradient is 0 (not inf or NaN) where the input is 0; negative inputs give 0.

    The square root is only evaluated at positive inputs (1 stands in elsewhere), and `torch.where` sends
    no gradient to the branch it did not select, so the infinite slope at 0 never enters the chain rule.
    Negative inputs only arise from rounding in ||x||^2 - 2<x, y> + ||y||^2; they are distances of 0.
    """
    positive = squared > 0
    root = torch.sqrt(torch.where(positive, squared, torch.ones_like(squared)))
    return torch.where(positive, root, torch.zeros_like(squared))


# ----------------------------------------------------------------------------------------------
# Kernels: the computations themselves, on inputs already checked (float rows, matching shapes).
# The public functions below check their inputs and call these; the losses, which check their
# inputs once per batch, call them directly (on small batches the checks would cost more than the math).
# ----------------------------------------------------------------------------------------------
# Above this many elements of the B x B' x D difference tensor (32 MiB of float64) the matrix product is used
# even in float64: exactness is for worked examples, not for a large float64 batch.
EXACT_FLOAT64_LIMIT = 1 << 22


def _exact_float64(x: Tensor, y: Tensor) -> bool:
    return (x.dtype == torch.float64 and y.dtype == torch.float64
            and x.shape[0] * y.shape[0] * x.shape[1] <= EXACT_FLOAT64_LIMIT)


def _exact_squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    # Subtract first, then square: no matrix product, so the same bits on every CPU (a BLAS picks its
    # kernel, and with it the rounding, by instruction set). Costs B·B'·D memory: meant for float64.
    difference = x.unsqueeze(1) - y.unsqueeze(0)
    return (difference * difference).sum(-1)


def _squared_euclidean_matrix(x: Tensor) -> Tensor:
    if _exact_float64(x, x):
        # float64 is what worked examples use: their printed numbers (and ties such as d_an == d_ap between
        # symmetric points) must come out the same on every machine. Training runs in float32 below.
        return _exact_squared_euclidean(x, x)
    with _full_precision(x.device.type):
        # Shift so that row 0 is the origin: same distances, far fewer lost digits. The shift is a constant
        # (detached): distances do not depend on it, so no gradient needs to flow through it.
        x = x - x[:1].detach()
        dot_product = x @ x.t()
        square_norm = torch.diagonal(dot_product)  # so that d[i, i] is exactly 0
        if _builds_graph(x):
            # sentence-transformers' order of operations: same values up to the shift above.
            distances = square_norm.unsqueeze(0) - 2.0 * dot_product + square_norm.unsqueeze(1)
            return distances.clamp_min(0)
        # No graph to keep: the same operations in place, bit for bit the same values. Every new (B, B)
        # tensor costs fresh memory pages, which at B = 2048 takes as long as the matrix product itself.
        square_norm = square_norm.clone()
        return dot_product.mul_(-2.0).add_(square_norm.unsqueeze(0)).add_(square_norm.unsqueeze(1)).clamp_min_(0)


def _builds_graph(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _euclidean_matrix(x: Tensor) -> Tensor:
    squared = _squared_euclidean_matrix(x)
    # Without a graph the plain root, in place, gives the same values.
    return safe_sqrt(squared) if squared.requires_grad else squared.sqrt_()


def _cosine_similarity_matrix(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
    # The one matrix cosine: rows L2-normalised (F.normalize clamps norms below 1e-12, so an all-zero row
    # gives 0, not NaN), then one matrix product. With y=None the rows are normalised once and reused.
    x_unit = F.normalize(x, p=2, dim=-1)
    y_unit = x_unit if y is None else F.normalize(y, p=2, dim=-1)
    return x_unit @ y_unit.t()


def _cosine_distance_matrix(x: Tensor) -> Tensor:
    similarity = _cosine_similarity_matrix(x)
    return 1 - similarity if similarity.requires_grad else similarity.neg_().add_(1)


def _manhattan_matrix(x: Tensor) -> Tensor:
    return torch.cdist(x, x, p=1)


def _paired_squared_euclidean(a: Tensor, b: Tensor) -> Tensor:
    difference = a - b
    return (difference * difference).sum(-1)


def _paired_euclidean(a: Tensor, b: Tensor) -> Tensor:
    # One fused operation. Its backward already gives gradient 0 where the norm is 0 (PyTorch masks it, as
    # safe_sqrt does), so identical rows are NaN-safe; the tests check it.
    return torch.linalg.vector_norm(a - b, dim=-1)


def _paired_cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    # The one row-by-row cosine: both rows L2-normalised (all-zero rows give 0), multiplied, summed.
    return (F.normalize(a, p=2, dim=-1) * F.normalize(b, p=2, dim=-1)).sum(-1)


def _paired_cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    return 1 - _paired_cosine_similarity(a, b)


def _paired_manhattan(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).abs().sum(-1)


# ----------------------------------------------------------------------------------------------
# All pairs: (B, D) x (B', D) -> (B, B')
# ----------------------------------------------------------------------------------------------
def squared_euclidean_distance(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
    """Matrix of squared Euclidean distances ``||x[i] - y[j]||^2`` (``y`` defaults to ``x``).

    Computed as ||x||^2 - 2<x, y> + ||y||^2 with one matrix product (fast), in the same order of operations
    as sentence-transformers. With ``y=None`` the first row is subtracted from every row first (distances
    are unchanged by a common shift, and the expansion is far more accurate without the component the
    embeddings share), and the squared norms are read from the diagonal of the Gram matrix, so d[i, i] is
    exactly 0. Rounding can make tiny values negative: they are clipped to 0.
    """
    x = _as_float_matrix(x, "x")
    if y is None:
        return _squared_euclidean_matrix(x)
    y = _as_float_matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dim, got {tuple(x.shape)} and {tuple(y.shape)}.")
    if _exact_float64(x, y):
        return _exact_squared_euclidean(x, y)
    with _full_precision(x.device.type):
        distances = (y * y).sum(1).unsqueeze(0) - 2.0 * (x @ y.t()) + (x * x).sum(1).unsqueeze(1)
    return distances.clamp_min(0)


def euclidean_distance(x: Tensor, y: Optional[Tensor] = None, squared: bool = False) -> Tensor:
    """Matrix of Euclidean distances ``||x[i] - y[j]||`` (``y`` defaults to ``x``), NaN-safe.

    Same values as sentence-transformers' ``BatchHardTripletLossDistanceFunction.euclidean_distance``
    (which also takes ``squared``). Where the distance is 0 (the diagonal, duplicates) the gradient is 0.
    """
    squared_distances = squared_euclidean_distance(x, y)
    if squared:
        return squared_distances
    return safe_sqrt(squared_distances) if squared_distances.requires_grad else squared_distances.sqrt_()


def cosine_similarity(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
    """Matrix of cosine similarities ``cos(x[i], y[j])`` (``y`` defaults to ``x``).

    Rows are L2-normalised first; `F.normalize` clamps norms below 1e-12, so an all-zero row gives
    similarity 0 and finite gradients instead of NaN.
    """
    return _cosine_similarity_matrix(_as_float_matrix(x, "x"), None if y is None else _as_float_matrix(y, "y"))


def cosine_distance(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
    """Matrix of cosine distances ``1 - cos(x[i], y[j])``, in [0, 2] (sentence-transformers' meaning)."""
    return 1 - cosine_similarity(x, y)


def manhattan_distance(x: Tensor, y: Optional[Tensor] = None) -> Tensor:
    """Matrix of Manhattan (L1) distances ``sum_k |x[i, k] - y[j, k]|``. Its gradient at 0 is 0 (sign(0))."""
    x = _as_float_matrix(x, "x")
    y = x if y is None else _as_float_matrix(y, "y")
    return torch.cdist(x, y, p=1)


# ----------------------------------------------------------------------------------------------
# Row by row: (N, D) x (N, D) -> (N,)
# (any shapes that broadcast work too, e.g. (N, D) against (k, N, D) gives (k, N))
# ----------------------------------------------------------------------------------------------
def paired_squared_euclidean_distance(a: Tensor, b: Tensor) -> Tensor:
    """``||a[i] - b[i]||^2`` for each row i. Subtracting first keeps it exact for nearby rows."""
    return _paired_squared_euclidean(*_check_paired(a, b))


def paired_euclidean_distance(a: Tensor, b: Tensor) -> Tensor:
    """``||a[i] - b[i]||`` for each row i, NaN-safe: identical rows give 0 with gradient 0."""
    return _paired_euclidean(*_check_paired(a, b))


def paired_cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """``cos(a[i], b[i])`` for each row i (all-zero rows give 0, not NaN)."""
    return _paired_cosine_similarity(*_check_paired(a, b))


def paired_cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 - cos(a[i], b[i])`` for each row i."""
    return _paired_cosine_distance(*_check_paired(a, b))


def paired_manhattan_distance(a: Tensor, b: Tensor) -> Tensor:
    """``sum_k |a[i, k] - b[i, k]|`` for each row i."""
    return _paired_manhattan(*_check_paired(a, b))


# ----------------------------------------------------------------------------------------------
# sentence-transformers' names for the same choices
# ----------------------------------------------------------------------------------------------
class TripletDistanceMetric:
    """Row-by-row distances for `TripletLoss`, named as in sentence-transformers.

    ``TripletDistanceMetric.EUCLIDEAN(a, b)[i] = ||a[i] - b[i]||`` (the default),
    ``COSINE`` = 1 - cos(a[i], b[i]), ``MANHATTAN`` = L1 distance.
    """

    EUCLIDEAN = staticmethod(paired_euclidean_distance)
    COSINE = staticmethod(paired_cosine_distance)
    MANHATTAN = staticmethod(paired_manhattan_distance)


class BatchHardTripletLossDistanceFunction:
    """Matrix distances for the Batch*TripletLoss classes, named as in sentence-transformers.

    ``euclidean_distance(embeddings, squared=False)`` (the default of every batch loss) and
    ``cosine_distance(embeddings)`` = 1 - cosine similarity. ``eucledian_distance`` is the old spelling that
    sentence-transformers keeps for backwards compatibility.
    """

    euclidean_distance = staticmethod(euclidean_distance)
    cosine_distance = staticmethod(cosine_distance)
    eucledian_distance = euclidean_distance  # the staticmethod above, under its old name


# ----------------------------------------------------------------------------------------------
# Turning a user's `distance_metric=` into the two forms a loss needs
# ----------------------------------------------------------------------------------------------
class BatchDistance(NamedTuple):
    """A distance in both shapes: ``matrix(embeddings) -> (B, B)``, ``paired(a, b) -> (N,)``.

    For the built-in metrics these are the unchecked kernels: pass float tensors of rows (the losses check
    theirs once per batch). ``paired`` is None for a custom function we only know as a matrix; losses then
    differentiate through the whole matrix (slower, same result).
    """

    name: str
    matrix: Callable[[Tensor], Tensor]
    paired: Optional[Callable[[Tensor, Tensor], Tensor]]


# The kernels (unchecked: the losses check their inputs once), plus the public matrix functions they stand for.
_BATCH_DISTANCES = {
    "euclidean": BatchDistance("euclidean", _euclidean_matrix, _paired_euclidean),
    "squared_euclidean": BatchDistance("squared_euclidean", _squared_euclidean_matrix, _paired_squared_euclidean),
    "cosine": BatchDistance("cosine", _cosine_distance_matrix, _paired_cosine_distance),
    "manhattan": BatchDistance("manhattan", _manhattan_matrix, _paired_manhattan),
}
_PUBLIC_MATRIX_FUNCTIONS = {
    euclidean_distance: "euclidean",
    squared_euclidean_distance: "squared_euclidean",
    cosine_distance: "cosine",
    manhattan_distance: "manhattan",
}
_PAIRED_DISTANCES = {
    "euclidean": paired_euclidean_distance,
    "squared_euclidean": paired_squared_euclidean_distance,
    "cosine": paired_cosine_distance,
    "manhattan": paired_manhattan_distance,
}
_ALIASES = {"l2": "euclidean", "eucledian": "euclidean", "sqeuclidean": "squared_euclidean", "l1": "manhattan"}


def _name_of_string(metric: str, known: dict) -> str:
    name = metric.strip().lower().replace("-", "_").replace(" ", "_")
    name = name[: -len("_distance")] if name.endswith("_distance") else name
    name = _ALIASES.get(name, name)
    if name not in known:
        raise ValueError(f"unknown distance_metric {metric!r}; choose one of {sorted(known)}.")
    return name


def _sentence_transformers_batch_name(function) -> Optional[str]:
    """'euclidean'/'cosine' for sentence-transformers' own BatchHardTripletLossDistanceFunction members.

    They compute exactly what ours do, so we recognise them by name (without importing
    sentence-transformers) and use the faster row-by-row form for the chosen triplets.
    """
    module = getattr(function, "__module__", "") or ""
    qualname = getattr(function, "__qualname__", "")
    if module.startswith("sentence_transformers") and qualname.startswith("BatchHardTripletLossDistanceFunction."):
        return {"euclidean_distance": "euclidean", "cosine_distance": "cosine"}.get(qualname.rsplit(".", 1)[1])
    return None


def resolve_batch_distance(distance_metric: Union[str, Callable[[Tensor], Tensor]]) -> BatchDistance:
    """The `BatchDistance` for a batch loss's ``distance_metric`` argument.

    Accepts a string ("euclidean", "squared_euclidean", "cosine", "manhattan"), a labkit function
    (``BatchHardTripletLossDistanceFunction.euclidean_distance``, ``euclidean_distance``, ...), the same
    functions from sentence-transformers, or any function ``embeddings (B, D) -> distances (B, B)``.
    """
    if isinstance(distance_metric, str):
        return _BATCH_DISTANCES[_name_of_string(distance_metric, _BATCH_DISTANCES)]
    if not callable(distance_metric):
        raise TypeError(
            "distance_metric must be a string such as 'euclidean' or a function embeddings (B, D) -> (B, B), "
            f"e.g. BatchHardTripletLossDistanceFunction.euclidean_distance; got {type(distance_metric).__name__}."
        )
    try:
        name = _PUBLIC_MATRIX_FUNCTIONS.get(distance_metric)
    except TypeError:  # an unhashable callable object: certainly not one of ours
        name = None
    if name is not None:
        return _BATCH_DISTANCES[name]
    st_name = _sentence_transformers_batch_name(distance_metric)
    if st_name is not None:
        return _BATCH_DISTANCES[st_name]
    return BatchDistance(getattr(distance_metric, "__name__", "custom"), distance_metric, None)


def resolve_paired_distance(distance_metric: Union[str, Callable[[Tensor, Tensor], Tensor]]) -> Callable:
    """The row-by-row function for `TripletLoss`'s ``distance_metric``: a string or ``(a, b) -> (N,)``."""
    if isinstance(distance_metric, str):
        return _PAIRED_DISTANCES[_name_of_string(distance_metric, _PAIRED_DISTANCES)]
    if not callable(distance_metric):
        raise TypeError(
            "distance_metric must be a string such as 'euclidean' or a function (a, b) -> (N,) distances, "
            f"e.g. TripletDistanceMetric.EUCLIDEAN; got {type(distance_metric).__name__}."
        )
    return distance_metric


# ----------------------------------------------------------------------------------------------
# Similarities with sentence-transformers' names (``sentence_transformers.util``): cos_sim, dot_score, and
# their row-by-row forms. The in-batch-negatives losses (MNRL) need every anchor against every candidate
# (matrix); the pair losses (CoSENT, AnglE) score each labelled pair (row by row). Inputs may be lists or
# arrays; a single vector becomes one row. Taught in notebooks/06_similarity_losses.ipynb and
# notebooks/07_in_batch_negatives.ipynb.
# ----------------------------------------------------------------------------------------------
def _as_matrix(x) -> Tensor:
    """A (N, D) float tensor: lists/arrays become tensors, a single vector becomes one row."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.float()
    return x.unsqueeze(0) if x.dim() == 1 else x


def cos_sim(a, b) -> Tensor:
    """Cosine similarity of every row of `a` with every row of `b`: shape (len(a), len(b))."""
    return _cosine_similarity_matrix(_as_matrix(a), _as_matrix(b))


def dot_score(a, b) -> Tensor:
    """Dot product of every row of `a` with every row of `b`: shape (len(a), len(b))."""
    a, b = _as_matrix(a), _as_matrix(b)
    return a @ b.T


def pairwise_cos_sim(a, b) -> Tensor:
    """Cosine similarity of row i of `a` with row i of `b`: shape (len(a),)."""
    return _paired_cosine_similarity(_as_matrix(a), _as_matrix(b))


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
