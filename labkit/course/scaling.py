"""Notebook 13's measurements: peak memory against batch size (plain MNRL and GradCache), and fp16 overflow.

Two demonstrations, each a function that computes and one that shows:

* **Memory against batch size.** `memory_by_batch_size` measures one complete training step (forward,
  backward, AdamW step) of a model with `MultipleNegativesRankingLoss` and with
  `CachedMultipleNegativesRankingLoss` (GradCache) at each batch size, with
  `labkit.memory.training_step_memory` (CUDA: ``max_memory_allocated``; CPU: the profiler's allocation
  events, collected garbage first, one step per measurement). `memory_summary` fits a line to each loss's
  peaks (MiB per extra pair) and says which batch fits where; `plot_memory_by_batch_size` draws both on
  linear axes, where linear growth looks linear.
* **fp16 overflow.** `long_embeddings` builds pairs of embeddings of norm about 294, whose entries are
  exact in fp16 (so rounding the inputs changes nothing). Their squared norms, about 86,400, are above
  65,504, the largest finite fp16 number. `overflow_table` computes two quantities from them in fp16, in
  fp32 and in float64 (the reference), and the way labkit computes them from fp16 embeddings under fp16
  autocast: the squared distance of each anchor to its positive from ||a||² - 2 a·p + ||p||² (the expansion
  the batch triplet losses use), and MNRL with dot-product similarity. Each with its gradient with respect to
  the anchors.

The full-size table (batches up to 4,096 pairs, CPU) is benchmarks/gradcache.py's, in benchmarks/README.md.
"""
from __future__ import annotations

import time
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.distances import dot_score, squared_euclidean_distance
from labkit.losses.cached import CachedMultipleNegativesRankingLoss
from labkit.losses.ranking import MultipleNegativesRankingLoss
from labkit.memory import MIB, training_step_memory
from labkit.train import adamw

PLAIN, CACHED = "MNRL", "cached MNRL (GradCache)"
FP16_MAX = torch.finfo(torch.float16).max  # 65,504


# ------------------------------------------------------------------------------------------------------------
# Peak memory against batch size
# ------------------------------------------------------------------------------------------------------------
def padded_pairs(model: nn.Module, pairs: pd.DataFrame, max_length: int) -> list[dict[str, Tensor]]:
    """Both columns tokenized and padded to exactly `max_length` tokens, so memory depends on the batch alone."""
    columns = []
    for column in ("anchor", "positive"):
        features = model.tokenizer(pairs[column].tolist(), padding="max_length", truncation=True,
                                   max_length=max_length, return_tensors="pt")
        columns.append({name: tensor.to(model.device) for name, tensor in features.items()})
    return columns


def memory_by_batch_size(model: nn.Module, pairs: pd.DataFrame, batch_sizes: Sequence[int], mini_batch_size: int,
                         max_length: int = 32, scale: float = 20.0) -> pd.DataFrame:
    """Peak memory and CPU time of one training step of `model`, plain MNRL and GradCache, at each batch size.

    Batch b is the first b rows of `pairs` (columns ``anchor``, ``positive``; no text twice, or MNRL sees a
    false negative). One warm-up step first creates AdamW's state. The model is in training mode (dropout
    on) during the steps and in eval mode afterwards; its weights move (lr 1e-6). Returns one row per step:
    loss, batch (pairs), peak memory (MiB), MiB per pair, CPU seconds (all threads of this process, the
    profiler's cost included).
    """
    batch_sizes = sorted(set(int(size) for size in batch_sizes))
    if not batch_sizes or batch_sizes[0] < 2:
        raise ValueError(f"batch sizes must be at least 2 (in-batch negatives need a second pair), got {batch_sizes}.")
    if batch_sizes[-1] > len(pairs):
        raise ValueError(f"the largest batch ({batch_sizes[-1]}) needs more pairs than the {len(pairs)} given.")
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be a positive integer, got {mini_batch_size}.")
    model.train()
    optimizer = adamw([{"params": [p for p in model.parameters() if p.requires_grad]}], lr=1e-6,
                      weight_decay=0.01, device=model.device)
    losses = {PLAIN: MultipleNegativesRankingLoss(scale=scale),
              CACHED: CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=mini_batch_size)}
    training_step_memory(model, losses[PLAIN], optimizer, padded_pairs(model, pairs.iloc[:2], max_length))  # warm-up
    rows = []
    try:
        for name, loss_fn in losses.items():
            for size in batch_sizes:
                features = padded_pairs(model, pairs.iloc[:size], max_length)
                started = time.process_time()
                measured = training_step_memory(model, loss_fn, optimizer, features)
                rows.append({"loss": name, "batch (pairs)": size, "peak memory (MiB)": measured.peak_mib,
                             "MiB per pair": measured.peak_mib / size,
                             "CPU seconds": time.process_time() - started})
    finally:
        model.eval()
    return pd.DataFrame(rows)


def memory_slopes(table: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """(MiB per extra pair, MiB at batch 0) of each loss: the least-squares line through its peaks."""
    lines = {}
    for name, rows in table.groupby("loss", sort=False):
        slope, intercept = torch.linalg.lstsq(
            torch.tensor([[size, 1.0] for size in rows["batch (pairs)"]], dtype=torch.float64),
            torch.tensor(rows["peak memory (MiB)"].tolist(), dtype=torch.float64).unsqueeze(1)).solution.flatten()
        lines[name] = (float(slope), float(intercept))
    return lines


def memory_summary(table: pd.DataFrame) -> str:
    """What the table says, in sentences: growth per pair of each loss, and the largest cached batch against plain."""
    lines = memory_slopes(table)
    plain = table[table["loss"] == PLAIN].set_index("batch (pairs)")["peak memory (MiB)"]
    cached = table[table["loss"] == CACHED].set_index("batch (pairs)")["peak memory (MiB)"]
    smallest, largest = plain.index.min(), plain.index.max()
    sentences = [
        f"MNRL: {lines[PLAIN][0]:.2f} MiB more per extra pair (least squares over {len(plain)} batch sizes); "
        f"{plain[largest] / plain[smallest]:.1f}x the peak from {smallest} to {largest} pairs.",
        f"GradCache: {lines[CACHED][0]:.2f} MiB more per extra pair; "
        f"{cached[largest] / cached[smallest]:.2f}x the peak from {smallest} to {largest} pairs.",
    ]
    biggest = cached.index.max()
    fits_under = [size for size in plain.index if plain[size] >= cached[biggest]]
    if fits_under:
        sentences.append(f"GradCache at {biggest} pairs ({cached[biggest]:.0f} MiB) needs no more than plain MNRL at "
                         f"{min(fits_under)} pairs ({plain[min(fits_under)]:.0f} MiB).")
    return "\n".join(sentences)


def plot_memory_by_batch_size(table: pd.DataFrame, ax=None):
    """Peak memory against batch size, one line per loss, on linear axes. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    for (name, rows), marker in zip(table.groupby("loss", sort=False), ("o", "s")):
        ax.plot(rows["batch (pairs)"], rows["peak memory (MiB)"], marker=marker, label=name)
    ax.set_xlabel("batch size (pairs)")
    ax.set_ylabel("peak memory of one training step (MiB)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title("Peak memory of a training step against batch size (linear axes)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


# ------------------------------------------------------------------------------------------------------------
# fp16 overflow
# ------------------------------------------------------------------------------------------------------------
def long_embeddings(batch_size: int = 8, dim: int = 384, common: float = 15.0, offset: float = 0.875,
                    seed: int = 0) -> tuple[Tensor, Tensor]:
    """(anchors, positives) in float64: `common` in every entry, plus what tells the pairs apart.

    Anchor i is ``common`` everywhere, ``+ offset`` in entry 2i and ``- offset`` in entry 2i+1; its positive
    adds noise of a few 1/64 to that, in pairs of entries of opposite sign. Every entry is exact in fp16, and
    what differs between rows sums to zero, so it is orthogonal to the shared component: every dot product is
    ``dim * common**2`` (86,400 by default: above fp16's largest number, 65,504) plus terms of order 1, which
    decide the loss (anchor i's positive wins by about 2 offset²). Embeddings of an un-normalised model
    share such a component.
    """
    if dim % 2 or batch_size < 2 or dim < 2 * batch_size:
        raise ValueError(f"long_embeddings needs an even dim >= 2 * batch_size and batch_size >= 2, "
                         f"got dim={dim}, batch_size={batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(batch_size)
    anchors = torch.full((batch_size, dim), float(common), dtype=torch.float64)
    anchors[rows, 2 * rows] += offset
    anchors[rows, 2 * rows + 1] -= offset
    half = torch.randint(-2, 3, (batch_size, dim // 2), generator=generator).double() / 64
    positives = anchors + torch.cat([half, -half], dim=1)
    return anchors, positives


def _naive_squared_distance(anchors: Tensor, positives: Tensor) -> Tensor:
    """Mean of ||a_i - p_i||² from the expansion ||a||² - 2 a·p + ||p||², in the inputs' own precision."""
    expanded = (anchors * anchors).sum(1, keepdim=True) - 2 * anchors @ positives.T + (positives * positives).sum(1)
    return expanded.diagonal().mean()


def _naive_mnrl(anchors: Tensor, positives: Tensor) -> Tensor:
    """MNRL with dot-product similarity (scale 1), logits and cross-entropy in the inputs' own precision."""
    return F.cross_entropy(anchors @ positives.T, torch.arange(len(anchors), device=anchors.device))


def _labkit_squared_distance(anchors: Tensor, positives: Tensor) -> Tensor:
    batch = squared_euclidean_distance(torch.cat([anchors, positives]))  # the batch triplet losses' matrix
    return batch[: len(anchors), len(anchors):].diagonal().mean()


def _labkit_mnrl(anchors: Tensor, positives: Tensor) -> Tensor:
    return MultipleNegativesRankingLoss(scale=1.0, similarity_fct=dot_score)(anchors, positives)


def _largest_squared_norm(anchors: Tensor, positives: Tensor) -> Tensor:
    return (anchors * anchors).sum(1).max()


def _largest_logit(anchors: Tensor, positives: Tensor) -> Tensor:
    return (anchors @ positives.T).max()


# quantity: (as written, in the inputs' precision; as labkit computes it; its largest intermediate number)
QUANTITIES = {
    "mean squared distance a-p": (_naive_squared_distance, _labkit_squared_distance, _largest_squared_norm),
    "MNRL loss, dot product": (_naive_mnrl, _labkit_mnrl, _largest_logit),
}


def _value_and_gradient(fn, anchors: Tensor, positives: Tensor, autocast_dtype=None) -> tuple[Tensor, Tensor]:
    anchors = anchors.detach().clone().requires_grad_()
    if autocast_dtype is None:
        value = fn(anchors, positives)
    else:
        with torch.autocast(anchors.device.type, dtype=autocast_dtype):
            value = fn(anchors, positives)
    (gradient,) = torch.autograd.grad(value, anchors)
    return value.detach(), gradient


def overflow_table(anchors: Tensor, positives: Tensor) -> pd.DataFrame:
    """Each quantity of `QUANTITIES` in fp16, fp32, float64 and as labkit computes it under fp16 autocast.

    `anchors` and `positives` are float64 (`long_embeddings`). Columns: quantity, computed as, value, error
    (absolute, against float64), the largest intermediate number (the largest squared norm ||a||², or the
    largest logit a·p, in the precision it is computed in: inf where fp16 overflows), whether the gradient with respect to the anchors is finite, and its largest
    error against float64's. The labkit row takes fp16 embeddings, as a model under fp16 autocast returns them.
    """
    rows = []
    for quantity, (naive, labkit_way, largest_intermediate) in QUANTITIES.items():
        reference, reference_gradient = _value_and_gradient(naive, anchors, positives)
        cases = [(str(dtype).replace("torch.", ""), naive, dtype, dtype, None)
                 for dtype in (torch.float16, torch.float32, torch.float64)]
        # labkit upcasts the fp16 embeddings and computes in fp32 (labkit.distances.in_fp32)
        cases.append(("labkit, fp16 autocast", labkit_way, torch.float16, torch.float32, torch.float16))
        for name, fn, dtype, computed_in, autocast_dtype in cases:
            a, p = anchors.to(dtype), positives.to(dtype)
            value, gradient = _value_and_gradient(fn, a, p, autocast_dtype)
            rows.append({
                "quantity": quantity, "computed as": name, "value": value.item(),
                "error": abs(value.double().item() - reference.item()),
                "largest intermediate": largest_intermediate(a.to(computed_in), p.to(computed_in)).item(),
                "gradient finite": bool(torch.isfinite(gradient).all()),
                "gradient error": (gradient.double() - reference_gradient).abs().max().item(),
            })
    return pd.DataFrame(rows)
