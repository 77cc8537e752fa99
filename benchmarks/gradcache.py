"""Batch size under a memory budget: one training step of MNRL against its cached version (GradCache).

    python benchmarks/gradcache.py                          # all-MiniLM-L6-v2 on SNLI pairs, the full CPU table
    python benchmarks/gradcache.py --quick                  # tiny random BERT, tiny sizes: seconds (what tests run)
    python benchmarks/gradcache.py --device cuda            # the same table on a GPU
    python benchmarks/gradcache.py --plain-sizes 32 64 --cached-sizes 256 1024 --mini-batch-size 64 --output t.md

What one row measures: one complete training step — forward, backward and an AdamW step — of the model
on a batch of (anchor, positive) pairs, with

* ``MultipleNegativesRankingLoss`` (plain MNRL): both columns embedded with a graph, activations of the
  whole batch kept for backward;
* ``CachedMultipleNegativesRankingLoss`` (GradCache): embedded mini-batch by mini-batch, the activations
  of one mini-batch at a time.

Peak memory is `labkit.memory.peak_memory` (CUDA: ``max_memory_allocated``; CPU: the PyTorch profiler's
allocation events): the most tensor memory live at once during the step, above what was live before it.
Weights and AdamW's two moment buffers exist before the step (a warm-up step creates the buffers), so
they are not counted; the step's own gradients are (``zero_grad(set_to_none=True)`` frees them after
every step, as `labkit.train.fit` does). Time is the step's duration under that measurement: wall-clock
and, with ``--clock thread``, the CPU time of the calling thread (on a busy CPU the better number; the
whole step, backward included, runs on that thread when torch has one thread).

Data: SNLI entailment pairs (premise, entailed hypothesis) from the dev and test splits, with no text
twice, so a batch never holds a false negative. Every text is padded to ``--max-length`` tokens, so memory
and time scale with the batch size alone.

The question it answers (issue 7): does a batch of 4,096 pairs train with GradCache within the memory
that plain MNRL needs for a batch of 256? Results: benchmarks/README.md, section "GradCache: batch size
under a memory budget". Taught in notebooks/13_scaling_up.ipynb.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from labkit.env import cpu_name
from labkit.losses.cached import CachedMultipleNegativesRankingLoss
from labkit.losses.ranking import MultipleNegativesRankingLoss
from labkit.memory import peak_memory
from labkit.train import adamw

PLAIN_SIZES = (32, 64, 128, 256)
CACHED_SIZES = (256, 512, 1024, 2048, 4096)
QUICK_PLAIN_SIZES = (4, 8)
QUICK_CACHED_SIZES = (8, 16)
MIB = 2**20


@dataclass
class StepMeasurement:
    """One training step: which loss, how big a batch, its peak memory and its duration."""

    loss: str  # "MNRL" or "cached"
    batch_size: int
    mini_batch_size: int | None  # None for plain MNRL
    peak_bytes: int
    wall_s: float
    thread_s: float  # CPU time of the calling thread
    loss_value: float

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / MIB

    @property
    def label(self) -> str:
        return "MNRL" if self.mini_batch_size is None else f"cached (mini-batch {self.mini_batch_size})"


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------
def unique_pairs(count: int, seed: int = 0, data_dir=None) -> pd.DataFrame:
    """`count` SNLI (premise, entailed hypothesis) pairs in random order, no anchor and no positive twice.

    dev + test give 5,940 such pairs. A text that occurs twice in a batch would be a false negative
    (MNRL asks the model to tell it from itself), so duplicates are dropped rather than sampled around.
    """
    from labkit.data import snli_pairs

    pairs = pd.concat([snli_pairs("dev", data_dir), snli_pairs("test", data_dir)], ignore_index=True)
    pairs = pairs.drop_duplicates("anchor").drop_duplicates("positive")
    pairs = pairs[~pairs["positive"].isin(set(pairs["anchor"]))]  # a premise reused as a hypothesis elsewhere
    if count > len(pairs):
        raise ValueError(
            f"asked for {count} pairs but SNLI dev + test hold only {len(pairs)} distinct ones; "
            "use smaller --cached-sizes."
        )
    return pairs.sample(n=count, random_state=seed).reset_index(drop=True)


def tokenize_pairs(model: nn.Module, pairs: pd.DataFrame, max_length: int) -> list[dict[str, torch.Tensor]]:
    """Both columns tokenized and padded to exactly `max_length` tokens, on the model's device."""
    columns = []
    for column in ("anchor", "positive"):
        features = model.tokenizer(
            pairs[column].tolist(), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        columns.append({name: tensor.to(model.device) for name, tensor in features.items()})
    return columns


# ------------------------------------------------------------------------------------------------------------
# One training step, measured
# ------------------------------------------------------------------------------------------------------------
def make_loss(model: nn.Module, mini_batch_size: int | None, scale: float = 20.0) -> nn.Module:
    """Plain MNRL (`mini_batch_size=None`) or its cached version with that mini-batch size."""
    if mini_batch_size is None:
        return MultipleNegativesRankingLoss(scale=scale)
    return CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=mini_batch_size)


def training_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, features) -> float:
    """Forward, backward, optimizer step, gradients freed; returns the loss value."""
    if isinstance(loss_fn, CachedMultipleNegativesRankingLoss):
        loss = loss_fn(features)  # it runs the model itself, twice
    else:
        loss = loss_fn(*(model(column) for column in features))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    return adamw([{"params": [p for p in model.parameters() if p.requires_grad]}], lr=1e-6, weight_decay=0.01,
                 device=device)


def warm_up(model: nn.Module, optimizer: torch.optim.Optimizer, features) -> None:
    """One small step, so AdamW's moment buffers (2 × the weights) exist before anything is measured."""
    training_step(model, MultipleNegativesRankingLoss(), optimizer, features)


def measure_step(
    model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, features, device: torch.device
) -> StepMeasurement:
    """Peak memory and duration of one `training_step`."""
    durations = {}

    def step() -> float:
        wall, thread = time.perf_counter(), time.thread_time()
        value = training_step(model, loss_fn, optimizer, features)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        durations.update(wall=time.perf_counter() - wall, thread=time.thread_time() - thread)
        return value

    measured = peak_memory(step, device=device)
    mini = loss_fn.mini_batch_size if isinstance(loss_fn, CachedMultipleNegativesRankingLoss) else None
    return StepMeasurement(
        loss="MNRL" if mini is None else "cached",
        batch_size=len(features[0]["input_ids"]),
        mini_batch_size=mini,
        peak_bytes=measured.peak_bytes,
        wall_s=durations["wall"],
        thread_s=durations["thread"],
        loss_value=measured.result,
    )


def run(
    model: nn.Module,
    pairs: pd.DataFrame,
    plain_sizes: Sequence[int] = PLAIN_SIZES,
    cached_sizes: Sequence[int] = CACHED_SIZES,
    mini_batch_sizes: Sequence[int] = (32,),
    max_length: int = 32,
    device: str | torch.device | None = None,
    on_result: Callable[[StepMeasurement], None] | None = None,
) -> list[StepMeasurement]:
    """Measure one step of plain MNRL at each of `plain_sizes`, and of the cached loss at each of
    `cached_sizes` with each of `mini_batch_sizes`. Batch b uses the first b rows of `pairs`."""
    sizes = [*plain_sizes, *cached_sizes]
    if not sizes:
        raise ValueError("give at least one batch size (plain_sizes or cached_sizes).")
    if min(sizes) < 2:
        raise ValueError(f"batch sizes must be at least 2 (in-batch negatives need a second pair), got {min(sizes)}.")
    if max(sizes) > len(pairs):
        raise ValueError(f"the largest batch ({max(sizes)}) needs more pairs than the {len(pairs)} given.")
    if cached_sizes and (not mini_batch_sizes or min(mini_batch_sizes) < 1):
        raise ValueError(f"mini_batch_sizes must be positive integers, got {list(mini_batch_sizes)}.")
    device = torch.device(device) if device is not None else model.device
    model.to(device).train()  # dropout on, as in training
    optimizer = make_optimizer(model, device)
    warm_up(model, optimizer, tokenize_pairs(model, pairs.iloc[: min(sizes)], max_length))

    cases = [(size, None) for size in plain_sizes]
    cases += [(size, mini) for size in cached_sizes for mini in mini_batch_sizes]
    results = []
    for size, mini in cases:
        features = tokenize_pairs(model, pairs.iloc[:size], max_length)
        result = measure_step(model, make_loss(model, mini), optimizer, features, device)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


# ------------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------------
def target_check(results: Sequence[StepMeasurement], budget_batch: int | None = None) -> str:
    """Does the largest cached batch fit in the memory plain MNRL needs at `budget_batch`? One line.

    `budget_batch` defaults to the largest plain-MNRL batch measured (256 in the full run).
    """
    plain_sizes = [r.batch_size for r in results if r.mini_batch_size is None]
    budget_batch = budget_batch or max(plain_sizes, default=0)
    plain = [r for r in results if r.mini_batch_size is None and r.batch_size == budget_batch]
    cached = [r for r in results if r.mini_batch_size is not None]
    if not plain or not cached:
        return f"target not checked: it needs plain MNRL at batch {budget_batch} and at least one cached run."
    budget = plain[0].peak_bytes
    largest = max(r.batch_size for r in cached)
    best = min((r for r in cached if r.batch_size == largest), key=lambda r: r.peak_bytes)
    verdict = "holds" if best.peak_bytes <= budget else "does NOT hold"
    return (
        f"batch {largest:,} with GradCache (mini-batch {best.mini_batch_size}) within the memory of plain MNRL "
        f"at batch {budget_batch}: {verdict} ({best.peak_mib:,.0f} MiB vs {budget / MIB:,.0f} MiB, "
        f"{best.peak_bytes / budget:.2f}×)."
    )


def results_table(results: Sequence[StepMeasurement]) -> str:
    """A markdown table: one row per step measured."""
    lines = [
        "| loss | batch (pairs) | texts per step | peak memory (MiB) | MiB per pair | step wall (s) | step CPU (s) | loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.batch_size:,} | {2 * r.batch_size:,} | {r.peak_mib:,.0f} | "
            f"{r.peak_mib / r.batch_size:.2f} | {r.wall_s:.2f} | {r.thread_s:.2f} | {r.loss_value:.3f} |"
        )
    return "\n".join(lines)


def machine_description(device: torch.device) -> str:
    cpu = cpu_name()
    where = f"GPU: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "device: cpu"
    return (f"CPU: {cpu}, {os.cpu_count()} cores, torch threads: {torch.get_num_threads()}; "
            f"Python {platform.python_version()}, torch {torch.__version__}; {where}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny random BERT and tiny sizes (seconds)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: labkit's choice)")
    parser.add_argument("--plain-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--cached-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--mini-batch-size", type=int, nargs="+", default=None, help="one or more (default 32)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text (default 32)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the markdown report to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import labkit

    if args.threads:
        torch.set_num_threads(args.threads)
    lab = labkit.setup(quiet=True, device=args.device)
    quick = args.quick
    plain_sizes = args.plain_sizes if args.plain_sizes is not None else (QUICK_PLAIN_SIZES if quick else PLAIN_SIZES)
    cached_sizes = args.cached_sizes
    if cached_sizes is None:
        cached_sizes = QUICK_CACHED_SIZES if quick else CACHED_SIZES
    mini_batch_sizes = args.mini_batch_size or ([4] if quick else [32])
    max_length = args.max_length or (16 if quick else 32)
    model = labkit.tiny_model(seed=args.seed) if quick else labkit.load_model(device=lab.device)
    pairs = unique_pairs(max([*plain_sizes, *cached_sizes]), seed=args.seed)

    command = "python benchmarks/gradcache.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        f"Model: {getattr(model, 'name_or_path', type(model).__name__)}, {max_length} tokens per text; "
        f"SNLI entailment pairs (dev + test, no text twice).",
        f"Machine: {machine_description(lab.device)}",
        f"Command: `{command.strip()}`",
    ]
    if hasattr(os, "getloadavg"):
        header.append(f"Load average at the start: {os.getloadavg()[0]:.1f}.")
    print("\n".join(header), flush=True)

    def progress(result: StepMeasurement) -> None:
        print(f"  {result.label:28} batch {result.batch_size:5}: {result.peak_mib:8.0f} MiB, "
              f"{result.wall_s:7.2f} s wall, {result.thread_s:7.2f} s CPU", flush=True)

    started = time.perf_counter()
    results = run(model, pairs, plain_sizes, cached_sizes, mini_batch_sizes, max_length, lab.device, progress)
    report = "\n".join([
        *header, "",
        results_table(results), "",
        f"- {target_check(results)}",
        f"- Total time: {time.perf_counter() - started:.0f} s.",
    ])
    print("\n" + report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
