"""Measuring tokenization: how long texts are in tokens, how much padding a batching strategy adds, what it costs.

A transformer computes on every position of its input tensor, padding included. Three ways to build
batches give very different tensors for the same texts:

* pad every text to `max_length` (the original article: `tokenizer(text, padding='max_length')`, one
  text per call, 512 positions per text);
* dynamic padding: pad each batch only to its longest text (`padding=True`, one call per batch);
* dynamic padding after sorting by length, so texts of similar length share a batch.

`padding_cost` counts positions arithmetically from token lengths (instant, for a whole dataset);
`time_tokenization` and `time_model_forward` run the tokenizer and the model each way and time them.
`max_length_for_coverage` turns a token-length distribution into a `max_length`.

Taught in notebooks/01_tokenization.ipynb.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from labkit.validation import check_texts

# Names of the batching strategies, in the order the notebook shows them.
PAD_TO_MAX_LENGTH = "pad to max_length"
DYNAMIC = "dynamic, shuffled"
DYNAMIC_SORTED = "dynamic, sorted by length"
STRATEGIES = (PAD_TO_MAX_LENGTH, DYNAMIC, DYNAMIC_SORTED)

# The ways of calling the tokenizer that `time_tokenization` compares.
PER_TEXT_MAX_LENGTH = "one call per text, pad to max_length"
PER_BATCH_MAX_LENGTH = "one call per batch, pad to max_length"
PER_TEXT_THEN_PAD = "one call per text, then pad each batch"
PER_BATCH_DYNAMIC = "one call per batch, dynamic"
PER_BATCH_SORTED = "one call per batch, dynamic, sorted"
TOKENIZER_WAYS = (PER_TEXT_MAX_LENGTH, PER_BATCH_MAX_LENGTH, PER_TEXT_THEN_PAD, PER_BATCH_DYNAMIC, PER_BATCH_SORTED)

PERCENTILES = (50, 90, 95, 99)


def token_lengths(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Tokens per text, special tokens ([CLS], [SEP]) included, without truncation: one batched call.

    >>> token_lengths(model.tokenizer, ["How do I top up?"])
    array([8])
    """
    check_texts(texts)
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, padding=False,
                        return_attention_mask=False, return_token_type_ids=False, verbose=False)
    return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))


def _check_lengths(lengths) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0:
        raise ValueError(f"Expected a non-empty 1-D array of token lengths, got shape {lengths.shape}.")
    if not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"Token lengths must be integers, got dtype {lengths.dtype}: use token_lengths(tokenizer, texts).")
    if lengths.min() < 1:
        raise ValueError("Token lengths must be at least 1; a tokenized text has at least its special tokens.")
    return lengths.astype(np.int64)


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def length_summary(lengths) -> dict:
    """Count, mean, percentiles (50/90/95/99) and maximum of token lengths, as plain Python numbers."""
    lengths = _check_lengths(lengths)
    summary = {"texts": int(lengths.size), "mean": float(lengths.mean())}
    for q, value in zip(PERCENTILES, np.percentile(lengths, PERCENTILES)):
        summary[f"p{q}"] = float(value)
    summary["max"] = int(lengths.max())
    return summary


def truncated_share(lengths, max_length: int) -> float:
    """Fraction of texts longer than `max_length` tokens, i.e. that truncation would cut."""
    lengths = _check_lengths(lengths)
    max_length = _check_positive("max_length", max_length)
    return float((lengths > max_length).mean())


def max_length_for_coverage(lengths, coverage: float = 0.99, multiple_of: int = 8, limit: int | None = None) -> int:
    """The smallest `max_length`, rounded up to a multiple of `multiple_of`, that truncates at most 1 − coverage of texts.

    Rounding to a multiple of 8 suits GPU kernels; `limit` caps the result at the model's maximum
    (e.g. 512 for BERT-style models, or `model.max_seq_length`).
    """
    lengths = _check_lengths(lengths)
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], e.g. 0.99 to keep 99% of texts whole; got {coverage}.")
    multiple_of = _check_positive("multiple_of", multiple_of)
    # the k-th smallest length, where k texts are the share we must keep whole
    keep = int(np.ceil(coverage * lengths.size))
    needed = int(np.sort(lengths)[keep - 1])
    rounded = -(-needed // multiple_of) * multiple_of
    return rounded if limit is None else min(rounded, _check_positive("limit", limit))


def batch_order(lengths, strategy: str, seed: int = 0) -> np.ndarray:
    """The order in which texts go into batches: shuffled (as a training DataLoader does) or longest first."""
    lengths = _check_lengths(lengths)
    if strategy in (PAD_TO_MAX_LENGTH, DYNAMIC):
        return np.random.default_rng(seed).permutation(lengths.size)
    if strategy == DYNAMIC_SORTED:
        return np.argsort(-lengths, kind="stable")
    raise ValueError(f"Unknown strategy {strategy!r}: use one of {STRATEGIES}.")


def padded_positions(lengths, batch_size: int, max_length: int, pad_to_max_length: bool = False) -> int:
    """Token positions in all batches when `lengths` are cut into consecutive batches of `batch_size`, in this order.

    Each text is truncated to `max_length`; each batch is padded to its longest text, or to `max_length`
    when `pad_to_max_length` (then the order does not matter).
    """
    lengths = _check_lengths(lengths)
    batch_size = _check_positive("batch_size", batch_size)
    max_length = _check_positive("max_length", max_length)
    if pad_to_max_length:
        return int(lengths.size * max_length)
    kept = np.minimum(lengths, max_length)
    n_batches = -(-kept.size // batch_size)
    # pad with zero-length texts to fill the last batch: a zero never changes a batch's maximum
    grid = np.zeros(n_batches * batch_size, dtype=np.int64)
    grid[: kept.size] = kept
    grid = grid.reshape(n_batches, batch_size)
    texts_per_batch = (grid > 0).sum(axis=1)
    return int((grid.max(axis=1) * texts_per_batch).sum())


def padding_cost(lengths, batch_size: int = 32, max_length: int = 512, seed: int = 0) -> pd.DataFrame:
    """Token positions each batching strategy produces for these token lengths, against the real tokens.

    Columns: positions (what the model computes on), real_tokens (after truncation to `max_length`),
    padding_share (fraction of positions that are padding), positions_per_real_token.
    """
    lengths = _check_lengths(lengths)
    real = int(np.minimum(lengths, max_length).sum())
    rows = []
    for strategy in STRATEGIES:
        ordered = lengths[batch_order(lengths, strategy, seed)]
        positions = padded_positions(ordered, batch_size, max_length, pad_to_max_length=strategy == PAD_TO_MAX_LENGTH)
        rows.append({"strategy": strategy, "positions": positions, "real_tokens": real,
                     "padding_share": 1 - real / positions, "positions_per_real_token": positions / real})
    return pd.DataFrame(rows).set_index("strategy")


def _resolve_max_length(tokenizer, max_length: int | None) -> int:
    """`max_length`, or the tokenizer's own limit: what `padding='max_length'` pads to when none is given."""
    if max_length is None:
        max_length = getattr(tokenizer, "model_max_length", None)
        if max_length is None or max_length > 100_000:  # tokenizers without a limit report a huge sentinel
            raise ValueError("This tokenizer has no maximum length: pass max_length=, e.g. max_length=512.")
    return _check_positive("max_length", max_length)


def tokenize_batches(tokenizer, texts: Sequence[str], way: str, batch_size: int = 32,
                     max_length: int | None = None, seed: int = 0) -> list:
    """Tokenize `texts` one of the `TOKENIZER_WAYS`; returns the list of feature dicts (PyTorch tensors) produced."""
    check_texts(texts)
    batch_size = _check_positive("batch_size", batch_size)
    max_length = _resolve_max_length(tokenizer, max_length)
    return _run_tokenizer(tokenizer, _ordered(tokenizer, texts, way, seed), way, batch_size, max_length)


def _ordered(tokenizer, texts: Sequence[str], way: str, seed: int) -> list:
    """Texts in batch order: shuffled (as a training DataLoader does), or longest first for the sorted way.

    Sorting needs token lengths; a pipeline computes them once per dataset, so `time_tokenization`
    does this outside the timed part.
    """
    if way not in TOKENIZER_WAYS:
        raise ValueError(f"Unknown way {way!r}: use one of {TOKENIZER_WAYS}.")
    texts = list(texts)
    if way == PER_BATCH_SORTED:
        order = batch_order(token_lengths(tokenizer, texts), DYNAMIC_SORTED)
    else:
        order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order]


def _run_tokenizer(tokenizer, texts: list, way: str, batch_size: int, max_length: int) -> list:
    if way == PER_TEXT_MAX_LENGTH:
        # the original article's loop: one call per text, each padded to max_length
        return [tokenizer(text, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
                for text in texts]
    if way == PER_TEXT_THEN_PAD:
        # Hugging Face's `dataset.map(tokenize)` + `DataCollatorWithPadding` pattern: per text, padded per batch later
        encoded = [tokenizer(text, truncation=True, max_length=max_length) for text in texts]
        return [tokenizer.pad(encoded[start : start + batch_size], return_tensors="pt")
                for start in range(0, len(encoded), batch_size)]
    padding = "max_length" if way == PER_BATCH_MAX_LENGTH else True
    return [tokenizer(texts[start : start + batch_size], padding=padding, truncation=True,
                      max_length=max_length, return_tensors="pt")
            for start in range(0, len(texts), batch_size)]


def count_positions(features: list) -> tuple:
    """(positions, real tokens) in a list of tokenizer outputs: tensor sizes vs attention-mask sums."""
    positions = sum(int(f["input_ids"].numel()) for f in features)
    real = sum(int(f["attention_mask"].sum()) for f in features)
    return positions, real


def time_tokenization(tokenizer, texts: Sequence[str], batch_size: int = 32, max_length: int | None = None,
                      repeats: int = 1, seed: int = 0) -> pd.DataFrame:
    """Time each of the `TOKENIZER_WAYS` on `texts` (best of `repeats`) and count the positions it produces.

    The ways take turns within each repeat, so a busy machine slows them all alike and the ratios hold.
    Columns: seconds, texts_per_second, positions, real_tokens, positions_per_real_token,
    time_vs_first (seconds divided by the first way's: the article's per-text loop).
    """
    check_texts(texts)
    repeats = _check_positive("repeats", repeats)
    batch_size = _check_positive("batch_size", batch_size)
    max_length = _resolve_max_length(tokenizer, max_length)
    ordered = {way: _ordered(tokenizer, texts, way, seed) for way in TOKENIZER_WAYS}  # sorting's length pass: untimed
    best = dict.fromkeys(TOKENIZER_WAYS, float("inf"))
    features = {}
    for _ in range(repeats):
        for way in TOKENIZER_WAYS:
            start = time.perf_counter()
            features[way] = _run_tokenizer(tokenizer, ordered[way], way, batch_size, max_length)
            best[way] = min(best[way], time.perf_counter() - start)
    rows = []
    for way in TOKENIZER_WAYS:
        positions, real = count_positions(features[way])
        rows.append({"way": way, "seconds": best[way], "texts_per_second": len(texts) / best[way],
                     "positions": positions, "real_tokens": real, "positions_per_real_token": positions / real})
    table = pd.DataFrame(rows).set_index("way")
    table["time_vs_first"] = table["seconds"] / table["seconds"].iloc[0]
    return table


@torch.inference_mode()
def time_model_forward(model, texts: Sequence[str], max_length: int | None = None, repeats: int = 1) -> pd.DataFrame:
    """Run `model` on `texts` as one batch padded to `max_length` and as one batch padded dynamically.

    Returns, per padding, positions, seconds (best of `repeats`, the two paddings taking turns) and
    texts_per_second, plus max_abs_difference: the largest difference between the two runs'
    embeddings (tiny when the attention mask and masked pooling do their job).
    """
    check_texts(texts)
    repeats = _check_positive("repeats", repeats)
    max_length = _resolve_max_length(model.tokenizer, max_length)
    paddings = {PAD_TO_MAX_LENGTH: "max_length", "dynamic": True}
    features = {}
    for name, padding in paddings.items():
        encoded = model.tokenizer(list(texts), padding=padding, truncation=True, max_length=max_length,
                                  return_tensors="pt")
        features[name] = {k: v.to(model.device) for k, v in encoded.items()}
    was_training = model.training
    model.eval()
    best, embeddings = dict.fromkeys(paddings, float("inf")), {}
    try:
        model(features["dynamic"])  # warm-up: the first call pays one-off setup costs
        for _ in range(repeats):
            for name in paddings:
                start = time.perf_counter()
                output = model(features[name])
                if output.device.type == "cuda":
                    torch.cuda.synchronize()
                best[name] = min(best[name], time.perf_counter() - start)
                embeddings[name] = output.float().cpu()
    finally:
        model.train(was_training)
    table = pd.DataFrame(
        [{"padding": name, "positions": int(features[name]["input_ids"].numel()), "seconds": best[name],
          "texts_per_second": len(texts) / best[name]} for name in paddings]
    ).set_index("padding")
    table["max_abs_difference"] = float((embeddings[PAD_TO_MAX_LENGTH] - embeddings["dynamic"]).abs().max())
    return table


def plot_token_lengths(lengths, max_length: int | None = None, ax=None, label: str | None = None,
                       max_bins: int = 60):
    """Histogram of token lengths (integer-aligned bins), with the 99th percentile and an optional `max_length`."""
    import matplotlib.pyplot as plt

    lengths = _check_lengths(lengths)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    low, high = int(lengths.min()), int(lengths.max())
    width = max(1, -(-(high - low + 1) // max_bins))  # whole tokens per bin, so no bin is empty by rounding
    ax.hist(lengths, bins=np.arange(low, high + width + 1, width) - 0.5, alpha=0.7, label=label)
    p99 = np.percentile(lengths, 99)
    ax.axvline(p99, linestyle=":", linewidth=2, color="tab:red", label=f"99th percentile: {p99:.0f}")
    if max_length is not None:
        ax.axvline(max_length, color="black", linestyle="--", label=f"max_length = {max_length}")
    ax.set_xlabel("tokens per text (with [CLS] and [SEP])")
    ax.set_ylabel("texts")
    ax.legend(fontsize=8)
    return ax
