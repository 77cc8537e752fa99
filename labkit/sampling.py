"""Batch samplers for metric learning: P×K class batches, fixed evaluation batches, no-duplicate pair batches.

A loss that mines triplets *inside a batch* (batch-hard, batch-all, semi-hard) can only learn from a batch
that holds, for every anchor, at least one positive (same class) and one negative (other class). A plain
shuffled batch of 32 drawn from 70 classes rarely does: most anchors have no positive at all. The P×K
batch of Hermans et al. (2017) guarantees it: draw P classes, then K examples of each, so every anchor has
K-1 positives and (P-1)·K negatives.

In-batch-negative losses (MultipleNegativesRankingLoss) have the opposite need: every other row in the
batch is treated as a negative, so two rows sharing a text turn a true match into a "negative" (a false
negative). `NoDuplicatesBatchSampler` keeps such rows apart.

All samplers yield lists of int indices, so they plug into ``DataLoader(dataset, batch_sampler=...)``.
Every sampler is deterministic for a seed; the training samplers draw a new, reproducible order each
epoch (``set_epoch``).

Several processes (``torchrun``, one per GPU): the training samplers take ``num_replicas`` and ``rank``
(by default read from torchrun's environment or the running process group, so the same code works in one
process and in N). Each draws the *global* batch of all N processes, N times the per-process size, and
yields only this process's contiguous share of it; gathered back together (`labkit.distributed`) the
shares are exactly the batch that one process would draw with N times the size. Taught in
notebooks/13_scaling_up.ipynb.

Taught in notebooks/02_dataset_and_sampler.ipynb.

Reference: A. Hermans, L. Beyer, B. Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
2017, https://arxiv.org/abs/1703.07737 (section 2: P×K batches for batch-hard mining).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from labkit.validation import sampler_class_codes, sampler_label_array
from labkit.world import current_world

__all__ = [
    "PKBatchSampler",
    "FixedBatchSampler",
    "NoDuplicatesBatchSampler",
    "batch_composition",
    "example_usage",
    "token_lengths",
]


# ----------------------------------------------------------------------------------------------------------
# Input checking (the labels themselves: labkit.validation)
# ----------------------------------------------------------------------------------------------------------
def _check_positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _resolve_replicas(num_replicas, rank) -> tuple[int, int]:
    """(number of processes, this process's rank): as given, else from torchrun / torch.distributed (1, 0 alone)."""
    if num_replicas is None or rank is None:
        world = current_world()
        num_replicas = world.size if num_replicas is None else num_replicas
        rank = world.rank if rank is None else rank
    num_replicas = _check_positive_int("num_replicas", num_replicas, 1)
    rank = _check_positive_int("rank", rank, 0)
    if rank >= num_replicas:
        raise ValueError(f"rank must be in 0..num_replicas-1, got rank={rank} with num_replicas={num_replicas}.")
    return num_replicas, rank


def _share(batch: list[int], num_replicas: int, rank: int) -> list[int]:
    """Process ``rank``'s contiguous share of a global batch whose length is a multiple of ``num_replicas``."""
    size = len(batch) // num_replicas
    return batch[rank * size : (rank + 1) * size]


def _describe_classes(classes: np.ndarray, sizes: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(f"{classes[c]!r} ({sizes[c]} examples)" for c in range(min(len(classes), limit)))
    more = f" and {len(classes) - limit} more" if len(classes) > limit else ""
    return shown + more


class _EpochMixin:
    """Each pass draws a reproducible order for ``self.epoch`` from (seed, epoch), then moves on to the next epoch.

    A training loop that never calls ``set_epoch`` still sees a different order every epoch; calling
    ``set_epoch(e)`` (as the sentence-transformers Trainer does) replays epoch ``e`` exactly.
    """

    seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the next pass draws (each epoch has its own reproducible order)."""
        self.epoch = _check_positive_int("epoch", epoch, 0)

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))


# ----------------------------------------------------------------------------------------------------------
# P×K batches
# ----------------------------------------------------------------------------------------------------------
def _max_full_batches(groups_per_class: np.ndarray, p: int) -> int:
    """Largest number B of batches of P *distinct* classes that the class groups can fill.

    A class can give at most one group to each batch, so B batches are possible exactly when
    ``sum_c min(groups_c, B) >= P * B``. The left side minus the right side is concave in B and 0 at B=0,
    so the feasible B form an interval [0, B*]; binary search finds B*.
    """
    low, high = 0, int(groups_per_class.sum()) // p
    while low < high:
        middle = (low + high + 1) // 2
        if np.minimum(groups_per_class, middle).sum() >= p * middle:
            low = middle
        else:
            high = middle - 1
    return low


class PKBatchSampler(_EpochMixin):
    """Yield batches of P classes × K examples: every anchor gets K-1 positives and (P-1)·K negatives.

    Batch-hard, batch-all and semi-hard triplet losses mine their triplets inside the batch, so a batch must
    contain positives and negatives for every anchor; a random batch usually does not (Hermans et al. 2017).

    Guarantees for every batch: exactly P·K indices; exactly P distinct classes (P >= 2); exactly K examples
    of each; no index twice (except the top-up repeats of ``allow_replacement=True`` described below).

    Epoch length (``len(sampler)``): each epoch every class is shuffled and cut into ``n_c // K`` groups of K
    (the ``n_c % K`` left over change every epoch), and each epoch is the largest number of batches those
    groups can fill with P distinct classes per batch: the largest B with ``sum_c min(n_c // K, B) >= P·B``.
    When no class dominates this is simply ``sum_c (n_c // K) // P`` ≈ "eligible examples // (P·K)"; a class
    holding more than 1/P of the data cannot appear twice in a batch, so its surplus waits for later epochs.
    Each example is used **at most once per epoch**, and the length is the same every epoch.

    Classes are picked for each batch at random, with probability proportional to their unused groups, so
    every batch mixes different classes (hard negatives come from many classes over an epoch).

    Several processes (N = ``num_replicas``): P and K are per process. Each step's global batch has N·P
    distinct classes × K examples, drawn exactly as ``PKBatchSampler(labels, p=N·P, k)`` would draw it, and
    process ``rank`` gets classes ``rank·P .. rank·P + P - 1`` of it (P whole classes × K): the processes'
    batches are disjoint and, gathered, form the global batch. Every process yields the same number of
    batches: the epoch length above computed with N·P classes per batch, so an epoch has about 1/N as many
    steps, each seeing N times as many examples (every example still at most once per epoch).

    Args:
        labels: one class label per example (list, numpy array, torch tensor or pandas Series of ints or
            strings).
        p: classes per batch (>= 2: a batch of one class has no negatives).
        k: examples per class (>= 2: one example has no positive).
        seed: the seed of every epoch's order. Same seed and epoch, same batches.
        allow_replacement: classes with fewer than K examples are refused by default. With True, a class
            with 2 <= n < K examples gives one group per epoch: its n examples plus K-n draws with
            replacement among them. These top-up repeats are the only repeated indices in a batch (a
            positive pair of an example with itself has distance 0: it teaches nothing, so keep them rare).
        num_replicas, rank: how many processes share each global batch, and which one this is. None (the
            default) reads them from torchrun's environment or the running process group: 1 and 0 in a
            single process, which changes nothing.

    Raises:
        ValueError: a class has fewer than K examples (named in the message), or fewer than P classes qualify
            (N·P with N processes).

    Example:
        >>> from torch.utils.data import DataLoader
        >>> labels = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
        >>> sampler = PKBatchSampler(labels, p=2, k=4, seed=0)
        >>> len(sampler)   # 3 classes × (10 // 4) groups = 6 groups, 2 per batch
        3
        >>> batch = next(iter(sampler))
        >>> len(batch), len({labels[i] for i in batch})
        (8, 2)
        >>> loader = DataLoader(list(range(30)), batch_sampler=sampler)

    Taught in notebooks/02_dataset_and_sampler.ipynb.
    """

    def __init__(
        self,
        labels,
        p: int,
        k: int,
        seed: int = 0,
        allow_replacement: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.p = _check_positive_int("p", p, 2)
        self.k = _check_positive_int("k", k, 2)
        self.seed = _check_positive_int("seed", seed, 0)
        self.allow_replacement = bool(allow_replacement)
        self.epoch = 0
        self.num_replicas, self.rank = _resolve_replicas(num_replicas, rank)
        self.classes_per_batch = self.p * self.num_replicas  # of the global batch, all processes together

        self.class_codes, self.classes = sampler_class_codes(labels)
        self.class_sizes = np.bincount(self.class_codes, minlength=len(self.classes))
        self._check_class_sizes()

        # Every class gives n // K groups; a topped-up small class gives one.
        self.groups_per_class = np.maximum(self.class_sizes // self.k, (self.class_sizes < self.k).astype(np.int64))
        self.num_batches = _max_full_batches(self.groups_per_class, self.classes_per_batch)

        # Example indices grouped by class (stable), with the start of each class's block.
        self._indices_by_class = np.argsort(self.class_codes, kind="stable")
        self._class_starts = np.concatenate([[0], np.cumsum(self.class_sizes)[:-1]])

    def _check_class_sizes(self) -> None:
        sizes, classes = self.class_sizes, self.classes
        too_small = np.flatnonzero(sizes < (2 if self.allow_replacement else self.k))
        if len(too_small):
            if self.allow_replacement:
                raise ValueError(
                    f"{len(too_small)} class(es) have a single example, which can never form a positive pair: "
                    f"{_describe_classes(classes[too_small], sizes[too_small])}. Drop those rows before sampling."
                )
            raise ValueError(
                f"{len(too_small)} class(es) have fewer than k={self.k} examples: "
                f"{_describe_classes(classes[too_small], sizes[too_small])}. Use a smaller k, drop those classes, "
                "or pass allow_replacement=True to top them up by sampling with replacement."
            )
        if len(classes) < self.classes_per_batch:
            if self.num_replicas > 1:
                raise ValueError(
                    f"Only {len(classes)} class(es) in the labels, but {self.num_replicas} processes × p={self.p} = "
                    f"{self.classes_per_batch} distinct classes are needed per global batch. "
                    f"Use p <= {len(classes) // self.num_replicas} or fewer processes."
                )
            raise ValueError(
                f"Only {len(classes)} class(es) in the labels, but p={self.p} distinct classes are needed per batch. "
                f"Use p <= {len(classes)}."
            )

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1  # the next pass draws the next epoch
        yield from self.batches_for_epoch(epoch)

    def batches_for_epoch(self, epoch: int) -> list[list[int]]:
        """All batches of one epoch (this process's share of them), without changing the sampler's state."""
        return [_share(batch, self.num_replicas, self.rank) for batch in self.global_batches_for_epoch(epoch)]

    def global_batches_for_epoch(self, epoch: int) -> list[list[int]]:
        """The global batches of one epoch, N·P classes × K each: every process's share, in rank order."""
        rng = self._rng(_check_positive_int("epoch", epoch, 0))
        groups = self._shuffled_groups(rng)
        group_offsets = np.concatenate([[0], np.cumsum(self.groups_per_class)[:-1]])
        groups_left = self.groups_per_class.copy()
        batches = []
        for batches_left in range(self.num_batches, 0, -1):
            chosen = self._choose_classes(groups_left, batches_left, rng)
            rows = group_offsets[chosen] + (self.groups_per_class[chosen] - groups_left[chosen])
            groups_left[chosen] -= 1
            batches.append(groups[rows].ravel().tolist())
        return batches

    def _shuffled_groups(self, rng: np.random.Generator) -> np.ndarray:
        """Shuffle each class and cut it into groups of K: a (total groups, K) matrix of indices, class by class."""
        codes, k = self.class_codes, self.k
        # Sort by (class, random key): each class's block comes out in a fresh random order.
        order = np.lexsort((rng.random(len(codes)), codes))
        sorted_codes = codes[order]
        position_in_class = np.arange(len(codes)) - self._class_starts[sorted_codes]
        group_offsets = np.concatenate([[0], np.cumsum(self.groups_per_class)[:-1]])
        groups = np.full((int(self.groups_per_class.sum()), k), -1, dtype=np.int64)

        used = position_in_class < self.groups_per_class[sorted_codes] * k  # the n % K left over sit out
        rows = group_offsets[sorted_codes[used]] + position_in_class[used] // k
        groups[rows, position_in_class[used] % k] = order[used]

        small = np.flatnonzero(self.class_sizes < k)  # only present with allow_replacement=True
        if len(small):
            missing = k - self.class_sizes[small]
            owner = np.repeat(small, missing)
            first_missing = np.repeat(np.cumsum(missing) - missing, missing)
            columns = np.arange(missing.sum()) - first_missing + self.class_sizes[owner]
            draws = (rng.random(len(owner)) * self.class_sizes[owner]).astype(np.int64)
            groups[group_offsets[owner], columns] = order[self._class_starts[owner] + draws]
        return groups

    def _choose_classes(self, groups_left: np.ndarray, batches_left: int, rng: np.random.Generator) -> np.ndarray:
        """Pick P distinct classes for the next batch so that the remaining batches can still all be filled.

        With R batches left, a class with at least R groups ("big") can fill a slot in every remaining batch.
        The remaining batches stay fillable as long as at most ``slack = sum min(groups, R) - P·R`` big classes
        are skipped now, so we first pick enough big classes, then fill the batch at random, weighted by groups.
        """
        p = self.classes_per_batch
        slack = int(np.minimum(groups_left, batches_left).sum()) - p * batches_left
        big = np.flatnonzero(groups_left >= batches_left)
        must_pick = max(0, len(big) - slack)
        forced = rng.choice(big, size=must_pick, replace=False) if must_pick else np.empty(0, dtype=np.int64)
        available = groups_left > 0
        available[forced] = False
        candidates = np.flatnonzero(available)
        if must_pick == p:
            return rng.permutation(forced)
        weights = groups_left[candidates] / groups_left[candidates].sum()
        others = rng.choice(candidates, size=p - must_pick, replace=False, p=weights)
        return rng.permutation(np.concatenate([forced, others]).astype(np.int64))


class FixedBatchSampler:
    """The same P×K batches every epoch, built once from a seed: for evaluation.

    A validation loss computed on freshly drawn batches moves with the draw as well as with the model; fixed
    batches make epoch-to-epoch numbers comparable. The batches are epoch 0 of a ``PKBatchSampler`` with the
    same arguments, so they carry the same guarantees (P distinct classes × K examples, no repeats).

    Args:
        labels, p, k, seed, allow_replacement: as for :class:`PKBatchSampler`.
        max_batches: keep only the first ``max_batches`` batches (a quicker evaluation); None keeps all.

    Example:
        >>> sampler = FixedBatchSampler([0] * 6 + [1] * 6 + [2] * 6, p=3, k=2, seed=1)
        >>> list(sampler) == list(sampler)
        True

    Taught in notebooks/02_dataset_and_sampler.ipynb.
    """

    def __init__(
        self, labels, p: int, k: int, seed: int = 0, allow_replacement: bool = False, max_batches: int | None = None
    ) -> None:
        batches = PKBatchSampler(labels, p, k, seed=seed, allow_replacement=allow_replacement,
                                 num_replicas=1, rank=0).batches_for_epoch(0)  # evaluation: never sharded
        if max_batches is not None:
            batches = batches[: _check_positive_int("max_batches", max_batches, 1)]
        self.batches: list[list[int]] = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(batch) for batch in self.batches])

    def set_epoch(self, epoch: int) -> None:
        """Accepted for Trainer compatibility; the batches never change."""


# ----------------------------------------------------------------------------------------------------------
# No-duplicate batches for in-batch negatives
# ----------------------------------------------------------------------------------------------------------
def _as_value_matrix(texts_or_keys) -> np.ndarray:
    """The rows as a 2-D object array (rows, columns): one column for single texts."""
    if isinstance(texts_or_keys, pd.DataFrame):
        values = texts_or_keys.to_numpy(dtype=object)
    elif isinstance(texts_or_keys, (pd.Series, pd.Index)):
        values = texts_or_keys.to_numpy(dtype=object)
    elif isinstance(texts_or_keys, np.ndarray):  # 1-D or 2-D (rows, texts); rows of a 2-D array are not tuples
        values = texts_or_keys.astype(object)
    elif isinstance(texts_or_keys, (str, bytes)):
        raise TypeError("texts_or_keys must be a sequence of rows, got a single string.")
    else:
        values = np.empty(len(texts_or_keys), dtype=object)
        values[:] = list(texts_or_keys)
        if len(values) and isinstance(values[0], (tuple, list)):
            widths = {len(row) for row in values}
            if len(widths) != 1:
                raise ValueError(f"every row must have the same number of texts, got row lengths {sorted(widths)}.")
            rows = np.empty((len(values), widths.pop()), dtype=object)
            rows[:] = [list(row) for row in values]
            values = rows
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"texts_or_keys must be non-empty rows of texts, got shape {values.shape}.")
    return values


def _as_key_matrix(values: np.ndarray) -> np.ndarray:
    """Integer codes (rows, columns): equal texts anywhere in the data (any column) get the same code."""
    codes, _ = pd.factorize(values.ravel())
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0]) // values.shape[1]
        raise ValueError(f"texts_or_keys has a missing value (None/NaN) in row {row}; drop or fill it first.")
    return codes.reshape(values.shape).astype(np.int64)


def _row_lengths(values: np.ndarray, lengths) -> np.ndarray:
    """One length per row: its longest text's (lengths per row and column given, else character counts)."""
    if lengths is None:
        try:
            counts = pd.Series(values.ravel()).str.len()  # NaN for a value that is not a string
        except AttributeError:  # no string at all
            counts = pd.Series([np.nan])
        if counts.isna().any():
            raise TypeError("group_by_length without lengths counts the characters of the texts, but texts_or_keys "
                            "holds values that are not strings; pass lengths= (e.g. token_lengths(tokenizer, rows)).")
        return counts.to_numpy(dtype=np.int64).reshape(values.shape).max(axis=1)
    array = np.asarray(lengths)
    if array.ndim == 2:
        array = array.max(axis=1)
    if array.shape != (len(values),) or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"lengths must hold one number per row ({len(values)} rows, optionally one column per text), "
                         f"got shape {np.asarray(lengths).shape} of {array.dtype}.")
    return array


def token_lengths(tokenizer, texts_or_keys, max_length: int | None = None) -> np.ndarray:
    """Token counts (rows, texts per row), special tokens included, cut at ``max_length``: for ``group_by_length``.

    Character counts (the sampler's default) follow the token counts closely on English sentences (Spearman
    0.96 on SNLI premises, MiniLM's tokenizer), but exact counts group a little better (benchmarks/padding.py);
    they cost one tokenizer pass over the data.

    Example:
        >>> lengths = token_lengths(model.tokenizer, pairs, max_length=128)   # doctest: +SKIP
        >>> sampler = NoDuplicatesBatchSampler(pairs, 32, group_by_length=True, lengths=lengths)   # doctest: +SKIP
    """
    values = _as_value_matrix(texts_or_keys)
    options = {"truncation": True, "max_length": max_length} if max_length is not None else {}
    counts = tokenizer(values.ravel().tolist(), return_length=True, **options)["length"]
    return np.asarray(counts, dtype=np.int64).reshape(values.shape)


def _length_grouped_order(order: np.ndarray, lengths: np.ndarray, megabatch_size: int) -> np.ndarray:
    """Cut a shuffled order into megabatches and sort each by length, longest first (Hugging Face's recipe)."""
    megabatch = np.arange(len(order)) // megabatch_size
    return order[np.lexsort((-lengths[order], megabatch))]


def _rows_first_for_all_their_keys(keys: np.ndarray) -> np.ndarray:
    """True for rows whose every key appears in no earlier row: taking all of them leaves no duplicate."""
    rows, width = keys.shape
    _, first_position, inverse = np.unique(keys.ravel(), return_index=True, return_inverse=True)
    first_row = (first_position // width)[inverse].reshape(rows, width)
    return (first_row == np.arange(rows)[:, None]).all(axis=1)


def _rows_kept_by_scan(keys: np.ndarray) -> np.ndarray:
    """True for the rows a front-to-back scan keeps when it keeps each row none of whose keys a kept row has.

    The result of that Python loop, in a few vectorised rounds: a row first for all its keys is surely kept;
    a row sharing a key with a kept row is surely not; decide the rest the same way among themselves.
    (Deciding in one round, as `_rows_first_for_all_their_keys` alone would, lets a *rejected* row block its
    other keys: in (a, b), (b, c), (c, d) the third row would be turned away for no reason.)
    """
    kept = np.zeros(len(keys), dtype=bool)
    undecided = np.arange(len(keys))
    while len(undecided):  # each round keeps at least the first undecided row
        remaining = keys[undecided]
        first = _rows_first_for_all_their_keys(remaining)
        kept[undecided[first]] = True
        blocked = np.isin(remaining, remaining[first]).any(axis=1)  # shares a key with a row kept just now
        undecided = undecided[~first & ~blocked]
    return kept


class NoDuplicatesBatchSampler(_EpochMixin):
    """Batches in which no two rows share a text, for in-batch-negative losses (MultipleNegativesRankingLoss).

    MNRL scores each anchor against every positive in the batch and treats all but its own as negatives. If
    two rows share a text (the same answer to two questions, or one row's anchor is another's positive), a
    true match is pushed away as a "negative": a false negative. This sampler keeps such rows in different
    batches. Texts are compared exactly (as sentence-transformers' NoDuplicatesBatchSampler does); pass
    normalised keys (e.g. lower-cased) to compare more loosely.

    How: each epoch shuffles the rows; each batch takes, from the rows deferred so far followed by fresh
    rows, those a front-to-back scan would take (each row whose texts no row taken before it has; computed
    in a few vectorised rounds), and defers the others to later batches.

    Epoch length: every row is used **at most once per epoch** (no redraws). ``len(sampler)`` is the exact
    number of batches of the next epoch (it builds that epoch and keeps it): ``N // batch_size`` when
    duplicates are rare, a little less when deferred rows cannot all be placed (those rows, and the last
    ``N % batch_size`` rows with ``drop_last=True``, sit out this epoch and get another chance the next one).
    sentence-transformers instead always promises ``N // batch_size`` and redraws rows to keep that promise.

    Length grouping (``group_by_length=True``, off by default): the collate function pads each batch to its
    longest text, so a batch of one long and 31 short rows computes mostly on padding. As Hugging Face's
    ``group_by_length`` (``LengthGroupedSampler``) does, each epoch's shuffled order is cut into megabatches of
    ``min(50, N // (4·batch_size))`` batches (at least one), each sorted by row length, longest first; the
    no-duplicate scan then cuts batches from that order, so rows of a batch have similar lengths and the
    guarantees above still hold. The batches are then shuffled (a batch's length says nothing about its
    place in the epoch), except that the batch holding the longest row comes first, so that running out of
    memory happens at the first step rather than late in the epoch. A row's length is that of its longest text:
    ``lengths`` (e.g. :func:`token_lengths`), by default character counts. (Each column is padded separately;
    on SNLI and STS-B pairs sorting by the longest text left less padding than by the sum or the first text.)

    Several processes (N = ``num_replicas``): ``batch_size`` is per process. The sampler builds global
    batches of N·batch_size rows without duplicates (so no process's rows duplicate another's: the gathered
    batch is duplicate-free) and gives process ``rank`` rows ``rank·batch_size ..`` of each. Every process
    gets the same number of batches, about N times fewer per epoch.

    Args:
        texts_or_keys: one row per example: a list of strings (one text per row), a list of tuples
            ``(anchor, positive[, negative…])``, a 2-D array or a pandas DataFrame (all its columns are
            compared; select the text columns first). Equal values in any column count as duplicates.
        batch_size: rows per batch (>= 2), per process.
        seed: seed of every epoch's order.
        drop_last: drop the last, incomplete batch (default True: a smaller batch has fewer negatives).
            Must be True with several processes (each needs a batch of the same size).
        num_replicas, rank: processes sharing each global batch, and this one; None reads them from
            torchrun's environment or the process group (1 and 0 in a single process).
        group_by_length: batch rows of similar length together (less padding, faster steps); False (the
            default) gives exactly the batches of earlier labkit versions.
        lengths: with ``group_by_length``, one length per row, or one per row and text (the longest counts);
            None counts the characters of ``texts_or_keys`` (which must then be strings).

    Example:
        >>> pairs = [("q1", "answer A"), ("q2", "answer A"), ("q3", "answer B"), ("q4", "answer C")]
        >>> sampler = NoDuplicatesBatchSampler(pairs, batch_size=2, seed=0)
        >>> all(len({pairs[i][1] for i in batch}) == 2 for batch in sampler)
        True

    Taught in notebooks/02_dataset_and_sampler.ipynb.
    """

    def __init__(
        self,
        texts_or_keys,
        batch_size: int,
        seed: int = 0,
        drop_last: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        group_by_length: bool = False,
        lengths=None,
    ) -> None:
        self.batch_size = _check_positive_int("batch_size", batch_size, 2)
        self.seed = _check_positive_int("seed", seed, 0)
        self.drop_last = bool(drop_last)
        self.group_by_length = bool(group_by_length)
        self.epoch = 0
        self.num_replicas, self.rank = _resolve_replicas(num_replicas, rank)
        if self.num_replicas > 1 and not self.drop_last:
            raise ValueError("drop_last=False leaves a last batch that cannot be split evenly between processes; "
                             "use drop_last=True with several processes.")
        self.global_batch_size = self.batch_size * self.num_replicas
        values = _as_value_matrix(texts_or_keys)
        self.keys = _as_key_matrix(values)
        if lengths is not None and not self.group_by_length:
            raise ValueError("lengths is only used with group_by_length=True; pass both, or neither.")
        self.lengths = _row_lengths(values, lengths) if self.group_by_length else None
        if len(self.keys) < self.global_batch_size:
            processes = f" ({self.num_replicas} processes × {self.batch_size})" if self.num_replicas > 1 else ""
            raise ValueError(f"batch_size={self.global_batch_size}{processes} is larger than the {len(self.keys)} "
                             "rows; lower it.")
        self._cached_epoch: int | None = None
        self._cached_batches: list[list[int]] = []
        self.batches_for_epoch(0)  # fail now, not at the first training step, if no batch can be formed

    def __len__(self) -> int:
        return len(self.batches_for_epoch(self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1
        yield from self.batches_for_epoch(epoch)

    def batches_for_epoch(self, epoch: int) -> list[list[int]]:
        """All batches of one epoch (this process's share of them), without changing the sampler's state."""
        return [_share(batch, self.num_replicas, self.rank) for batch in self.global_batches_for_epoch(epoch)]

    def global_batches_for_epoch(self, epoch: int) -> list[list[int]]:
        """The global batches of one epoch (N·batch_size rows): every process's share, in rank order."""
        epoch = _check_positive_int("epoch", epoch, 0)
        if self._cached_epoch != epoch:
            self._cached_batches = self._build_epoch(self._rng(epoch))
            self._cached_epoch = epoch
        return [list(batch) for batch in self._cached_batches]

    def _build_epoch(self, rng: np.random.Generator) -> list[list[int]]:
        keys, size = self.keys, self.global_batch_size
        order = rng.permutation(len(keys))
        if self.group_by_length:
            megabatch_batches = max(1, min(50, len(keys) // (4 * size)))
            order = _length_grouped_order(order, self.lengths, megabatch_batches * size)
        deferred = np.empty(0, dtype=np.int64)
        next_fresh = 0
        batches = []
        while len(deferred) or next_fresh < len(order):
            candidates = deferred
            while True:  # widen the candidate window until it can fill a batch or the rows run out
                fresh = order[next_fresh : next_fresh + size]
                next_fresh += len(fresh)
                candidates = np.concatenate([candidates, fresh])
                accepted = np.flatnonzero(_rows_kept_by_scan(keys[candidates]))
                if len(accepted) >= size or next_fresh >= len(order):
                    break
            taken = accepted[:size]
            if len(taken) < size and (self.drop_last or next_fresh < len(order)):
                break  # rows ran out: what is left cannot fill a batch
            batches.append(candidates[taken].tolist())
            deferred = np.delete(candidates, taken)
        if not batches:
            raise ValueError(
                f"No batch of {size} rows without a repeated text could be formed: the data has too few distinct "
                "texts. Lower batch_size or remove duplicated rows."
            )
        return self._longest_first_then_shuffled(batches, rng) if self.group_by_length else batches

    def _longest_first_then_shuffled(self, batches: list[list[int]], rng: np.random.Generator) -> list[list[int]]:
        """The batches in a random order, except the one holding the longest row, which comes first."""
        longest = max(range(len(batches)), key=lambda b: self.lengths[batches[b]].max())
        rest = np.delete(np.arange(len(batches)), longest)
        return [batches[longest]] + [batches[b] for b in rng.permutation(rest)]


# ----------------------------------------------------------------------------------------------------------
# Inspecting batches (for plots in the notebooks)
# ----------------------------------------------------------------------------------------------------------
def batch_composition(batches: Sequence[Sequence[int]], labels) -> pd.DataFrame:
    """One row per batch: its size, how many classes and how many examples per class, and repeated indices.

    Columns: ``size``; ``n_classes``; ``min_per_class`` / ``max_per_class`` (examples of the least / most
    represented class: an anchor of a class with 1 example has no positive); ``n_repeats`` (indices that
    appear more than once in the batch, counted beyond their first appearance); ``class_counts`` (dict
    label -> count). Batches may have different sizes (the original article's sampler makes such batches).

    Example:
        >>> batch_composition([[0, 1, 2, 2]], ["a", "a", "b"])[["size", "n_classes", "n_repeats"]].values.tolist()
        [[4, 2, 1]]

    Taught in notebooks/02_dataset_and_sampler.ipynb.
    """
    label_array = sampler_label_array(labels)
    sizes = np.array([len(batch) for batch in batches], dtype=np.int64)
    if len(sizes) == 0:
        raise ValueError("batches is empty.")
    flat = np.concatenate([np.asarray(batch, dtype=np.int64) for batch in batches])
    if flat.size and (flat.min() < 0 or flat.max() >= len(label_array)):
        raise ValueError(f"batches hold indices outside 0..{len(label_array) - 1} (the labels given).")
    long = pd.DataFrame({"batch": np.repeat(np.arange(len(sizes)), sizes), "index": flat, "label": label_array[flat]})
    per_class = long.groupby(["batch", "label"], sort=True).size()
    by_batch = per_class.groupby(level="batch")
    summary = pd.DataFrame(
        {
            "size": sizes,
            "n_classes": by_batch.size().reindex(range(len(sizes)), fill_value=0).to_numpy(),
            "min_per_class": by_batch.min().reindex(range(len(sizes)), fill_value=0).to_numpy(),
            "max_per_class": by_batch.max().reindex(range(len(sizes)), fill_value=0).to_numpy(),
            "n_repeats": sizes - long.groupby("batch")["index"].nunique().reindex(range(len(sizes)), fill_value=0).to_numpy(),
        }
    )
    counts = {b: {} for b in range(len(sizes))}
    for (batch, label), count in per_class.items():
        counts[batch][label] = int(count)
    summary["class_counts"] = [counts[b] for b in range(len(sizes))]
    summary.index.name = "batch"
    return summary


def example_usage(batches: Sequence[Sequence[int]], num_examples: int) -> np.ndarray:
    """How many times each example 0..num_examples-1 appears in ``batches`` (e.g. one epoch).

    With :class:`PKBatchSampler` every count is 0 or 1 within an epoch; a sampler that draws every batch
    independently (like the original article's) shows examples used 2-3 times while others never appear.

    Example:
        >>> example_usage([[0, 1], [1, 3]], 4).tolist()
        [1, 2, 0, 1]

    Taught in notebooks/02_dataset_and_sampler.ipynb.
    """
    num_examples = _check_positive_int("num_examples", num_examples, 1)
    if len(batches) == 0:
        return np.zeros(num_examples, dtype=np.int64)
    flat = np.concatenate([np.asarray(batch, dtype=np.int64) for batch in batches])
    if flat.size and (flat.min() < 0 or flat.max() >= num_examples):
        raise ValueError(f"batches hold indices outside 0..{num_examples - 1}.")
    return np.bincount(flat, minlength=num_examples)
