"""Input checks: what each part of labkit accepts, and a message that says what was wrong and how to fix it.

A wrong input rarely fails where it was made. A (B, 1) label column broadcasts against (1, B) into a table
of nonsense; float labels 0.9 and 0.1 truncate into one class; a NaN embedding turns every metric into NaN.
So every entry point checks its inputs first, here, in one module, and raises an error that names the
argument, what it got, and what to do instead. A valid input passes through unchanged, apart from the
documented conversions (evaluation embeddings become float32 CPU tensors, half-precision triplet-loss
inputs float32, label lists tensors).

What is checked where:

* **texts** (`check_texts`): `EmbeddingModel.tokenize` / `encode`, the datasets of `labkit.collate`, the
  tokenizer measurements of the course. A single string, an empty list, non-strings and blank texts are
  refused: each would embed silently into something meaningless.
* **evaluation** (`labkit.evaluate`, `labkit.viz`, `labkit.course.clusters`, `labkit.course.compare`):
  embeddings may be anything array-like (`as_embeddings`: a 2-D, non-empty, finite float32 CPU tensor);
  class labels may be ints or strings in any container (`label_codes`, `label_classes`: one per embedding,
  no NaN; codes follow the sorted labels); gold scores and 0/1 pair labels come one per pair
  (`as_gold_scores`, `as_binary_labels`); columns that go together have one length (`check_same_length`);
  metrics that compare classes need two (`require_two_classes`). Evaluation runs once per call, so these
  checks may copy and convert.
* **samplers** (`labkit.sampling`) and **batch measurements** (`labkit.course.batch_composition`): one
  class label per example of a dataset, from a list, array, tensor or pandas Series (`as_label_array`,
  `one_label_per_example`). A sampler also refuses continuous scores (`sampler_label_array`) and numbers
  its classes in sorted order (`sampler_class_codes`); the measurements keep first-seen order
  (`first_seen_class_codes`). Missing labels (None/NaN) are refused with their positions.
* **losses**, on every training batch: `check_embedding_columns` for the pair, regression, classification
  and in-batch-negatives losses (one (B, D) float tensor per text column); `check_embedding_matrix` +
  `check_class_labels` for the triplet losses, and `check_class_labels` for the masks and pickers of
  `labkit.mining` (integer class ids, one per embedding: floats and (B, 1) columns are refused);
  `check_pair_labels` (one label or score per pair, any dtype) for the pair and regression losses (and
  ClassificationLoss's one class per text), with `check_binary_labels` (0 or 1) for the contrastive ones.
  A valid batch passes with a few attribute reads and one small reduction at most; no message is built
  unless something is wrong (`check_embedding_columns` has a fast path for exactly that).

This module imports no other labkit module (and pandas only once a pandas object or a factorization needs
it), so the core and the course can both use it without import cycles.
"""
from __future__ import annotations

import sys
from typing import Optional

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_texts",
    "as_embeddings",
    "check_same_length",
    "label_codes",
    "label_classes",
    "require_two_classes",
    "as_gold_scores",
    "as_binary_labels",
    "as_label_array",
    "one_label_per_example",
    "sampler_label_array",
    "sampler_class_codes",
    "first_seen_class_codes",
    "check_embedding_columns",
    "check_embedding_matrix",
    "check_class_labels",
    "check_pair_labels",
    "check_binary_labels",
]


# --------------------------------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------------------------------
def check_texts(texts) -> None:
    """Refuse input that would silently produce meaningless embeddings."""
    if isinstance(texts, str):
        raise TypeError("Expected a list of texts, got a single string: wrap it in a list, e.g. [text].")
    if len(texts) == 0:
        raise ValueError("Expected at least one text, got an empty list.")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(
            f"Every text must be a string; {len(bad)} are not (first at index {bad[0]}: {texts[bad[0]]!r}). "
            "Convert them with str() or drop those rows."
        )
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(
            f"{len(empty)} text(s) are empty or only whitespace (first at index {empty[0]}): "
            "drop those rows before encoding."
        )


# --------------------------------------------------------------------------------------------------------------
# Evaluation: embeddings, labels and scores of any array type, converted once
# --------------------------------------------------------------------------------------------------------------
def as_embeddings(x, name: str = "embeddings") -> Tensor:
    """A (N, D) float32 CPU tensor without gradients; refuses empty, 1-D/3-D and non-finite input."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
    else:
        x = torch.as_tensor(np.asarray(x))
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (num_texts, dim), got shape {tuple(x.shape)}.")
    if len(x) == 0:
        raise ValueError(f"{name} is empty: pass at least one embedding.")
    x = x.float()
    # a NaN or inf makes its row's sum non-finite; the (N, D) check runs only then (it needs ~2x the input's memory)
    if not torch.isfinite(x.sum(dim=1)).all() and (bad := int((~torch.isfinite(x)).any(dim=1).sum())):
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad} row(s): the model diverged or the input was "
            "corrupted. Check the training loss and the learning rate, or drop those rows."
        )
    return x


def check_same_length(*arrays: tuple[str, int]) -> None:
    """Refuse columns of different lengths; each argument is (name, length)."""
    lengths = {name: n for name, n in arrays}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Lengths differ: {lengths}. Pass one row per pair/triplet in each argument.")


def label_classes(labels, n: int, name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """(codes, classes): class labels of any hashable type (ints, strings), one per embedding, as integer
    codes 0..C-1, and the label of each code. Codes follow the sorted labels (`np.unique`)."""
    array = _evaluation_labels(labels, n, name)
    return np.unique(array, return_inverse=True)[1].reshape(-1).astype(np.int64), np.unique(array)


def label_codes(labels, n: int, name: str = "labels") -> np.ndarray:
    """Class labels of any hashable type (ints, strings) as integer codes 0..C-1 (see `label_classes`)."""
    return np.unique(_evaluation_labels(labels, n, name), return_inverse=True)[1].reshape(-1).astype(np.int64)


def _evaluation_labels(labels, n: int, name: str) -> np.ndarray:
    labels = as_label_array(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per embedding), got shape {labels.shape}.")
    if len(labels) != n:
        raise ValueError(f"Got {n} embeddings but {len(labels)} {name}: pass one label per embedding.")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise ValueError(f"{name} contains NaN: drop unlabelled rows first.")
    return labels


def require_two_classes(codes: np.ndarray) -> None:
    """Refuse label codes (from `label_codes`) of a single class: the metric compares classes."""
    if codes.max(initial=-1) < 1:
        raise ValueError(
            "These metrics compare classes, but all labels are the same class: pass at least 2 classes."
        )


def as_gold_scores(scores, n: int, name: str = "scores") -> np.ndarray:
    """One finite gold similarity score per pair, as float64."""
    if isinstance(scores, Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != n:
        raise ValueError(f"Got {n} pairs but {len(scores)} {name}: pass one score per pair.")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} contains NaN or infinite values: drop those pairs first.")
    return scores


def as_binary_labels(labels, n: int, name: str) -> np.ndarray:
    """One 0 (different) / 1 (similar) label per pair, as int64."""
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"Got {n} pairs but {len(labels)} {name}: pass one label per pair.")
    if not np.isin(labels, [0, 1]).all():
        raise ValueError(f"{name} must be 0 (different) or 1 (similar); got values {np.unique(labels)[:5]}.")
    return labels.astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# Samplers and batch measurements: one class label per example of a dataset
# --------------------------------------------------------------------------------------------------------------
def as_label_array(labels) -> np.ndarray:
    """Labels (list, NumPy array, torch tensor, pandas Series or Index) as a NumPy array, unchecked."""
    if isinstance(labels, Tensor):
        return labels.detach().cpu().numpy()
    pd = sys.modules.get("pandas")  # a pandas object implies pandas is imported: no import needed to ask
    if pd is not None and isinstance(labels, (pd.Series, pd.Index)):
        return labels.to_numpy()
    return np.asarray(labels)


def one_label_per_example(labels, if_empty: str) -> np.ndarray:
    """Labels as a non-empty 1-D NumPy array; `if_empty` is the message for an empty one."""
    if isinstance(labels, (str, bytes)) or np.isscalar(labels):
        raise TypeError(f"labels must be a sequence with one label per example, got a single {type(labels).__name__}.")
    array = as_label_array(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional (one label per example), got shape {array.shape}.")
    if len(array) == 0:
        raise ValueError(if_empty)
    return array


def sampler_label_array(labels) -> np.ndarray:
    """A sampler's labels: one class label (int or string) per example; continuous scores are refused."""
    array = one_label_per_example(labels, "labels is empty: a sampler needs at least one example.")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError("labels contain NaN or infinity; remove those rows or give them a class.")
        if not np.all(array == np.round(array)):
            raise ValueError(
                "labels look like continuous scores (non-integer floats). These samplers need class labels "
                "(ints or strings); for similarity scores use a pair loss such as CoSENTLoss with a plain sampler."
            )
    elif array.dtype.kind not in "iubUSO":
        raise TypeError(f"labels must be ints or strings, got dtype {array.dtype}.")
    return array


def sampler_class_codes(labels) -> tuple[np.ndarray, np.ndarray]:
    """Map a sampler's labels to class codes 0..C-1. Returns (codes per example, the class label of each code).

    Classes are numbered in sorted order, or in first-seen order when the labels cannot be sorted (mixed
    types such as 1 and "1").
    """
    import pandas as pd

    array = sampler_label_array(labels)
    try:
        codes, classes = pd.factorize(array, sort=True)
    except TypeError:  # labels of mixed types (1 and "1") cannot be sorted; keep first-seen order
        codes, classes = pd.factorize(array, sort=False)
    _refuse_missing(codes)
    return codes.astype(np.int64), np.asarray(classes, dtype=object)


def first_seen_class_codes(labels) -> np.ndarray:
    """Labels (list, array, tensor, Series; ints or strings) as class codes 0..C-1, in first-seen order."""
    import pandas as pd

    codes, _ = pd.factorize(one_label_per_example(labels, "labels is empty: give one label per example."))
    _refuse_missing(codes)
    return codes.astype(np.int64)


def _refuse_missing(codes: np.ndarray) -> None:
    if (codes < 0).any():  # pandas.factorize codes a missing value as -1
        missing = np.flatnonzero(codes < 0)[:5].tolist()
        raise ValueError(f"labels contain missing values (None/NaN) at positions {missing}; drop those rows first.")


# --------------------------------------------------------------------------------------------------------------
# Losses: checked on every training batch, so a valid batch costs a few attribute reads
# --------------------------------------------------------------------------------------------------------------
def check_embedding_columns(loss_name: str, *columns: Tensor, names: tuple[str, ...] | None = None) -> None:
    """Raise a clear error unless every column is a (B, D) float tensor with the same B and D."""
    if _well_formed(columns):  # every batch of a training run: a few attribute reads, no messages to build
        return
    names = names or tuple(f"column {i}" for i in range(len(columns)))
    for name, column in zip(names, columns):
        if not isinstance(column, Tensor):
            raise TypeError(
                f"{loss_name}: {name} must be a torch.Tensor of embeddings with shape (batch_size, dim), "
                f"got {type(column).__name__}. Encode the texts with the model first."
            )
        if column.dim() != 2:
            raise ValueError(
                f"{loss_name}: {name} must have shape (batch_size, dim), got shape {tuple(column.shape)}. "
                "Use .unsqueeze(0) for a single embedding."
            )
        if not column.is_floating_point():
            raise TypeError(f"{loss_name}: {name} must hold floating-point embeddings, got {column.dtype}.")
    batch_size, dim = columns[0].shape
    if batch_size == 0:
        raise ValueError(f"{loss_name}: the batch is empty; pass at least one example.")
    for name, column in zip(names[1:], columns[1:]):
        if column.shape[0] != batch_size:
            raise ValueError(
                f"{loss_name}: {names[0]} has {batch_size} rows but {name} has {column.shape[0]}: every column "
                "must hold one embedding per example, in the same order."
            )
        if column.shape[1] != dim:
            raise ValueError(
                f"{loss_name}: {names[0]} has embedding size {dim} but {name} has {column.shape[1]}: "
                "encode all columns with the same model."
            )


def _well_formed(columns: tuple) -> bool:
    shape = getattr(columns[0], "shape", None)
    if shape is None or len(shape) != 2 or shape[0] == 0:
        return False
    for column in columns:
        if not isinstance(column, Tensor) or column.shape != shape or not column.is_floating_point():
            return False
    return True


def check_embedding_matrix(embeddings: Tensor, name: str = "embeddings") -> Tensor:
    """The triplet losses' (B, D) float embeddings, B >= 1; float16/bfloat16 come back as float32."""
    if not isinstance(embeddings, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch_size, dim), got {type(embeddings).__name__}.")
    if embeddings.dim() != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"{name} must have shape (batch_size, dim) with batch_size >= 1, got {tuple(embeddings.shape)}.")
    if not embeddings.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {embeddings.dtype}.")
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        embeddings = embeddings.float()  # distances in half precision round into spurious ties
    return embeddings


def check_class_labels(labels, batch_size: Optional[int] = None, device: Optional[torch.device] = None) -> Tensor:
    """Return ``labels`` as a 1-D integer tensor (on ``device``), or raise a clear error.

    Labels are class ids, one per embedding: a tensor (or list / NumPy array) of integers of shape
    (batch_size,). Floats are refused rather than silently truncated (0.9 and 0.1 would become the same
    class); a (B, 1) column is refused because broadcasting it would compare the wrong things.
    """
    if not isinstance(labels, Tensor):
        if isinstance(labels, (list, tuple, np.ndarray)):
            labels = torch.as_tensor(np.asarray(labels))
        else:
            raise TypeError(
                f"labels must be a 1-D integer tensor of class ids (one per embedding), got {type(labels).__name__}."
            )
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(
            f"labels must hold integer class ids, got dtype {labels.dtype}. "
            "Map your classes to integers (e.g. with pandas.factorize) and pass a torch.long tensor."
        )
    if labels.dim() != 1:
        raise ValueError(
            f"labels must be a 1-D tensor of shape (batch_size,), got shape {tuple(labels.shape)}; "
            "if it is a column, use labels.view(-1)."
        )
    if batch_size is not None and labels.shape[0] != batch_size:
        raise ValueError(f"expected {batch_size} labels (one per embedding), got {labels.shape[0]}.")
    return labels if device is None or labels.device == device else labels.to(device)


def check_pair_labels(loss_name: str, labels, batch_size: int, device: torch.device) -> Tensor:
    """Return a pair loss's labels (one label or score per pair) as a 1-D tensor of length `batch_size`.

    Any dtype is kept (0/1 labels, float scores, class ids): the loss checks their values itself
    (`check_binary_labels`, SoftmaxLoss's class range). ClassificationLoss uses it for its one class per text.
    """
    if labels is None:
        raise ValueError(f"{loss_name} needs labels: one per pair.")
    if not isinstance(labels, Tensor) or labels.device != device:
        labels = torch.as_tensor(labels, device=device)
    if labels.numel() != batch_size:
        raise ValueError(
            f"{loss_name} expects {batch_size} labels (one per pair), but got {labels.numel()} "
            f"with shape {tuple(labels.shape)}."
        )
    return labels if labels.dim() == 1 else labels.reshape(-1)


def check_binary_labels(loss_name: str, labels: Tensor) -> None:
    """Raise unless every label is 0 or 1 (bool, int or float)."""
    if labels.dtype == torch.bool or labels.numel() == 0:
        return
    # One small reduction instead of a comparison per allowed value: this runs on every batch.
    smallest, largest = torch.aminmax(labels)
    in_range = smallest.item() >= 0 and largest.item() <= 1  # False for NaN too
    if in_range and labels.is_floating_point():
        in_range = torch.equal(labels, labels.round())  # 0.5 is in range but not a class
    if not in_range:
        is_binary = (labels == 0) | (labels == 1)
        bad = labels[~is_binary].unique()[:5].tolist()
        raise ValueError(
            f"{loss_name} expects labels 0 (different) or 1 (similar), got {bad}. For graded similarity "
            "scores use CosineSimilarityLoss or CoSENTLoss instead."
        )
