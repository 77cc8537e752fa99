"""Measuring batches: what a sampler hands a batch triplet loss, batch by batch and over an epoch.

A batch loss (batch-hard, batch-all, semi-hard) builds its triplets (anchor, positive, negative) from the
rows of one batch. An anchor can only take part if the batch holds another example of its class (a
positive) and an example of another class (a negative). With ``m_c`` examples of class c in a batch of B,
the batch holds

    positive pairs (a, p):     sum_c m_c (m_c - 1)
    valid triplets (a, p, n):  sum_c m_c (m_c - 1) (B - m_c)

(ordered, a != p, as ``labkit.mining.valid_triplet_mask`` counts them), and the m_c = 1 anchors have no
positive at all. This module counts those things for whole epochs of batches (vectorised), compares
samplers side by side, counts how often code moves tensors to a device, and plots batch composition.

Two reference batchings to measure against (not for training):

* :func:`shuffled_batches`: what ``DataLoader(shuffle=True, batch_size=B)`` does, ignoring labels;
* :func:`label_grouped_batches`: a label-grouped stream cut into batches, as sentence-transformers'
  ``GroupByLabelBatchSampler`` did before v5.3: mostly single-class batches, so no negatives.

Taught in notebooks/02_dataset_and_sampler.ipynb.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.overrides import TorchFunctionMode

from labkit.validation import as_label_array, first_seen_class_codes

__all__ = [
    "triplet_counts",
    "batch_report",
    "epoch_report",
    "compare_samplers",
    "shuffled_batches",
    "label_grouped_batches",
    "DeviceMoves",
    "count_device_moves",
    "class_count_matrix",
    "plot_batch_composition",
    "plot_example_usage",
]


# ----------------------------------------------------------------------------------------------------------
# Input checking (the labels themselves: labkit.validation)
# ----------------------------------------------------------------------------------------------------------
def _flatten_batches(batches: Sequence[Sequence[int]], num_examples: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch sizes, all indices one after the other), checking that indices point into the labels."""
    if isinstance(batches, (str, bytes)) or len(batches) == 0:
        raise ValueError("batches must be a non-empty list of batches (lists of example indices).")
    sizes = np.array([len(batch) for batch in batches], dtype=np.int64)
    flat = np.concatenate([np.asarray(batch, dtype=np.int64).reshape(-1) for batch in batches])
    if flat.size and (flat.min() < 0 or flat.max() >= num_examples):
        raise ValueError(
            f"batches hold indices outside 0..{num_examples - 1}: they must index the labels given "
            f"(one label per example of the dataset the sampler was built on)."
        )
    return sizes, flat


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


def _per_batch_sum(owner: np.ndarray, values, num_batches: int) -> np.ndarray:
    return np.bincount(owner, weights=values, minlength=num_batches).round().astype(np.int64)


# ----------------------------------------------------------------------------------------------------------
# Counting anchors, pairs and triplets
# ----------------------------------------------------------------------------------------------------------
def triplet_counts(batch_labels) -> dict:
    """What one batch offers a batch triplet loss, from its labels alone (no embeddings needed).

    Returns a dict of ints: ``anchors`` (B), ``classes``, ``anchors_without_positive`` (their class
    appears once), ``anchors_without_negative`` (all B share one class), ``anchors_without_triplet``
    (either), ``positive_pairs`` (ordered (a, p), a != p) and ``valid_triplets`` (ordered (a, p, n)).

    Example:
        >>> triplet_counts([0, 0, 0, 1, 1, 2])["valid_triplets"]   # 3·2·3 + 2·1·4 + 0
        26
    """
    row = batch_report([list(range(len(batch_labels)))], batch_labels).iloc[0]
    return {
        "anchors": int(row["size"]),
        "classes": int(row["n_classes"]),
        **{name: int(row[name]) for name in (
            "anchors_without_positive", "anchors_without_negative", "anchors_without_triplet",
            "positive_pairs", "valid_triplets")},
    }


def batch_report(batches: Sequence[Sequence[int]], labels) -> pd.DataFrame:
    """One row per batch: how many of its anchors a batch triplet loss can use, and how many triplets it has.

    Columns: ``size``; ``n_classes``; ``anchors_without_positive`` (examples whose class appears once in
    the batch: no positive, so no triplet); ``anchors_without_negative`` (all of them, when the batch holds
    a single class); ``anchors_without_triplet`` (either case: the anchors the loss must skip);
    ``positive_pairs`` and ``valid_triplets`` (ordered, counted by position in the batch, as the loss sees
    them); ``repeats`` (positions holding an example already in the batch) and ``self_pairs`` (positive
    pairs that are one example twice: distance 0, nothing to learn).

    Vectorised over all batches at once (one ``np.unique`` over (batch, class) keys), so a whole epoch of
    tens of thousands of batches takes milliseconds.

    Example:
        >>> batch_report([[0, 1, 2, 3], [0, 0, 2, 3]], ["a", "a", "b", "c"])["valid_triplets"].tolist()
        [4, 4]
    """
    codes = first_seen_class_codes(labels)
    sizes, flat = _flatten_batches(batches, len(codes))
    num_batches, num_classes = len(sizes), int(codes.max()) + 1
    batch_of_position = np.repeat(np.arange(num_batches), sizes)

    # m = examples of each (batch, class) present; B - m of the batch are that class's negatives
    keys, m = np.unique(batch_of_position * num_classes + codes[flat], return_counts=True)
    owner = keys // num_classes
    n_classes = np.bincount(owner, minlength=num_batches)
    single_class = n_classes == 1
    without_positive = _per_batch_sum(owner, (m == 1).astype(np.int64), num_batches)
    # The same example twice: r copies make r(r-1) ordered "positive" pairs at distance 0
    index_keys, r = np.unique(batch_of_position * len(codes) + flat, return_counts=True)
    index_owner = index_keys // len(codes)

    report = pd.DataFrame({
        "size": sizes,
        "n_classes": n_classes,
        "anchors_without_positive": without_positive,
        "anchors_without_negative": np.where(single_class, sizes, 0),
        "anchors_without_triplet": np.where(single_class, sizes, without_positive),
        "positive_pairs": _per_batch_sum(owner, m * (m - 1), num_batches),
        "valid_triplets": _per_batch_sum(owner, m * (m - 1) * (sizes[owner] - m), num_batches),
        "repeats": sizes - np.bincount(index_owner, minlength=num_batches),
        "self_pairs": _per_batch_sum(index_owner, r * (r - 1), num_batches),
    })
    report.index.name = "batch"
    return report


def epoch_report(batches: Sequence[Sequence[int]], labels) -> pd.Series:
    """One epoch of batches summed up: coverage of the data, repeats, and what a batch triplet loss gets.

    ``labels`` are those of the whole dataset (one per example), so coverage is measured against it.
    Entries: ``batches``; ``examples_drawn`` (positions over all batches); ``coverage`` (share of the
    dataset's examples drawn at least once); ``examples_repeated`` (examples drawn more than once this
    epoch); ``max_uses`` (most draws of one example); ``repeats_within_batches``; ``mean_classes_per_batch``;
    ``anchors_without_positive`` and ``anchors_without_triplet`` (shares of all positions);
    ``mean_valid_triplets`` (per batch); ``batches_without_triplets``.
    """
    codes = first_seen_class_codes(labels)
    per_batch = batch_report(batches, codes)
    _, flat = _flatten_batches(batches, len(codes))
    uses = np.bincount(flat, minlength=len(codes))
    drawn = int(per_batch["size"].sum())
    return pd.Series({
        "batches": len(per_batch),
        "examples_drawn": drawn,
        "coverage": float((uses > 0).mean()),
        "examples_repeated": int((uses > 1).sum()),
        "max_uses": int(uses.max()),
        "repeats_within_batches": int(per_batch["repeats"].sum()),
        "mean_classes_per_batch": float(per_batch["n_classes"].mean()),
        "anchors_without_positive": float(per_batch["anchors_without_positive"].sum() / max(drawn, 1)),
        "anchors_without_triplet": float(per_batch["anchors_without_triplet"].sum() / max(drawn, 1)),
        "mean_valid_triplets": float(per_batch["valid_triplets"].mean()),
        "batches_without_triplets": int((per_batch["valid_triplets"] == 0).sum()),
    }, dtype=object)


def compare_samplers(batches_by_name: Mapping[str, Sequence[Sequence[int]]], labels) -> pd.DataFrame:
    """:func:`epoch_report` for several samplers' epochs over the same dataset: one row per sampler."""
    if not isinstance(batches_by_name, Mapping) or not batches_by_name:
        raise TypeError("batches_by_name must be a non-empty dict {sampler name: list of batches}.")
    codes = first_seen_class_codes(labels)
    table = pd.DataFrame({name: epoch_report(batches, codes) for name, batches in batches_by_name.items()}).T
    integer_columns = ["batches", "examples_drawn", "examples_repeated", "max_uses", "repeats_within_batches",
                       "batches_without_triplets"]
    table = table.astype(float)
    table[integer_columns] = table[integer_columns].astype(np.int64)
    table.index.name = "sampler"
    return table


# ----------------------------------------------------------------------------------------------------------
# Reference batchings to compare against
# ----------------------------------------------------------------------------------------------------------
def shuffled_batches(num_examples: int, batch_size: int, seed: int = 0, drop_last: bool = True) -> list[list[int]]:
    """One epoch of plain shuffled batches, made the way ``DataLoader(dataset, batch_size, shuffle=True)`` makes them.

    Built with PyTorch's own ``RandomSampler`` and ``BatchSampler`` (seeded), so these are the batches a
    learner gets by default: every example at most once per epoch, labels ignored.
    """
    from torch.utils.data import BatchSampler, RandomSampler

    _check_int("num_examples", num_examples, 1)
    _check_int("batch_size", batch_size, 1)
    generator = torch.Generator().manual_seed(int(seed))
    sampler = BatchSampler(RandomSampler(range(int(num_examples)), generator=generator), int(batch_size), drop_last)
    return [list(batch) for batch in sampler]


def label_grouped_batches(labels, batch_size: int, seed: int = 0, drop_last: bool = True) -> list[list[int]]:
    """Group by label, then cut the stream into batches: how sentence-transformers grouped labels before v5.3.

    Classes are visited in a random order; each class contributes all its examples (an even number: an
    odd class drops its last example) in dataset order; the resulting stream is cut into batches of
    ``batch_size``. When classes are larger than a batch, almost every batch holds a *single* class: no
    negatives, so batch triplet losses get no triplet at all. sentence-transformers' pull request #3668
    (https://github.com/huggingface/sentence-transformers/pull/3668) measured ~99% single-class batches and
    replaced it in v5.3. A reconstruction for measurement, not for training.
    """
    codes = first_seen_class_codes(labels)
    _check_int("batch_size", batch_size, 2)
    order = np.argsort(codes, kind="stable")  # dataset order inside each class
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    class_order = np.random.default_rng(seed).permutation(len(sizes))
    stream = np.concatenate([order[starts[c]: starts[c] + sizes[c] // 2 * 2] for c in class_order])
    cut = len(stream) // batch_size * batch_size if drop_last else len(stream)
    return [stream[i: i + batch_size].tolist() for i in range(0, cut, batch_size)]


# ----------------------------------------------------------------------------------------------------------
# Counting device moves
# ----------------------------------------------------------------------------------------------------------
@dataclass
class DeviceMoves:
    """What :func:`count_device_moves` saw.

    ``requests``: calls asking a tensor to be on a device (``.to(device)``, ``.to(other_tensor)``,
    ``.cuda()``, ``.cpu()``), whether or not it was there already. ``transfers``: those that really
    copied between devices. ``bytes_requested`` / ``bytes_transferred``: the tensors' sizes.
    ``targets``: requests per target device. On a CPU-only machine every request is a no-op (0
    transfers); on a GPU each request from CPU data is one host-to-device copy, with its own launch cost.
    """

    requests: int = 0
    transfers: int = 0
    bytes_requested: int = 0
    bytes_transferred: int = 0
    targets: Counter = field(default_factory=Counter)


def _target_device(func, args, kwargs) -> torch.device | None:
    """The device a ``.to``/``.cuda``/``.cpu`` call asks for, or None when it only changes the dtype."""
    source = args[0]
    if func is torch.Tensor.cpu:
        return torch.device("cpu")
    if func is torch.Tensor.cuda:
        device = kwargs.get("device", args[1] if len(args) > 1 else None)
        return torch.device("cuda" if device is None else device if not isinstance(device, int) else f"cuda:{device}")
    candidates = [kwargs.get("device"), kwargs.get("other")] + list(args[1:2])
    for candidate in candidates:
        if isinstance(candidate, torch.Tensor):
            return candidate.device
        if isinstance(candidate, (str, torch.device)):
            return torch.device(candidate)
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            return torch.device(source.device.type, candidate)
    return None


def _same_device(source: torch.device, target: torch.device) -> bool:
    return source.type == target.type and (target.index is None or source.index in (None, target.index))


class _MoveCounter(TorchFunctionMode):
    """A PyTorch function mode: sees every tensor method call made while it is active."""

    def __init__(self, moves: DeviceMoves) -> None:
        super().__init__()
        self.moves = moves

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu) and args:
            target = _target_device(func, args, kwargs)
            if target is not None:
                source = args[0]
                size = source.numel() * source.element_size()
                self.moves.requests += 1
                self.moves.bytes_requested += size
                self.moves.targets[str(target)] += 1
                if not _same_device(source.device, target):
                    self.moves.transfers += 1
                    self.moves.bytes_transferred += size
        return func(*args, **kwargs)


@contextmanager
def count_device_moves() -> Iterator[DeviceMoves]:
    """Count the device moves made by the code run inside the ``with`` block (in this process).

    Uses PyTorch's ``TorchFunctionMode``, which sees every tensor method call; nothing is patched. Work in
    DataLoader worker processes (``num_workers > 0``) runs elsewhere and is not counted.

    Example:
        >>> with count_device_moves() as moves:
        ...     _ = [torch.zeros(4).to("cpu") for _ in range(3)]
        >>> moves.requests, moves.transfers
        (3, 0)
    """
    moves = DeviceMoves()
    with _MoveCounter(moves):
        yield moves


# ----------------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------------
def class_count_matrix(batches: Sequence[Sequence[int]], labels, max_batches: int | None = None) -> np.ndarray:
    """(batches, classes) matrix: how many examples of each class each batch holds (classes in sorted order)."""
    codes, classes = pd.factorize(as_label_array(labels), sort=True)
    if (codes < 0).any():
        raise ValueError("labels contain missing values (None/NaN).")
    chosen = list(batches)[:max_batches] if max_batches is not None else list(batches)
    sizes, flat = _flatten_batches(chosen, len(codes))
    batch_of_position = np.repeat(np.arange(len(sizes)), sizes)
    matrix = np.zeros((len(sizes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (batch_of_position, codes[flat]), 1)
    return matrix


def plot_batch_composition(batches, labels, max_batches: int = 20, ax=None, title: str | None = None):
    """Heat map of the first ``max_batches`` batches: one row per batch, one column per class, colour = count.

    A P×K batch is a row with exactly P cells of value K; a shuffled batch is a row of scattered 1s (anchors
    without a positive); a label-grouped stream shows one dark cell per row (no negatives).
    """
    import matplotlib.pyplot as plt

    matrix = class_count_matrix(batches, labels, max_batches)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap="Blues", vmin=0,
                      vmax=max(int(matrix.max()), 1))
    ax.set_xlabel("class")
    ax.set_ylabel("batch")
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=10)
    ax.figure.colorbar(image, ax=ax, label="examples in batch", fraction=0.05, pad=0.02)
    return ax


def plot_example_usage(batches_by_name: Mapping[str, Sequence[Sequence[int]]], num_examples: int,
                       max_uses: int = 4, ax=None):
    """Grouped bars: for each sampler, the share of examples drawn 0, 1, 2, … times in one epoch."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(max_uses + 1)
    width = 0.8 / max(len(batches_by_name), 1)
    for i, (name, batches) in enumerate(batches_by_name.items()):
        _, flat = _flatten_batches(batches, num_examples)
        uses = np.minimum(np.bincount(flat, minlength=num_examples), max_uses)
        shares = np.bincount(uses, minlength=max_uses + 1) / num_examples
        ax.bar(x + (i - (len(batches_by_name) - 1) / 2) * width, shares, width=width, label=name)
    ax.set_xticks(x, [str(u) for u in range(max_uses)] + [f"{max_uses}+"])
    ax.set_xlabel("times an example is drawn in one epoch")
    ax.set_ylabel("share of examples")
    ax.legend(fontsize=8)
    return ax
