"""Checkers for the exercises of notebooks/13_scaling_up.ipynb.

Exercise 1: how many negatives one anchor sees in MultipleNegativesRankingLoss, with hard negatives.
Exercise 2: the same across GPUs whose embeddings are gathered into one batch. Exercise 3: how many
mini-batch forward passes one GradCache step runs. Exercise 4: the longest vectors whose dot product fp16
can still hold. Each checker computes the right answer with labkit (the loss's own candidate columns, the
cached loss run on a call-counting stand-in model, torch's description of fp16) and says what is right or
which slip the answer looks like.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labkit.course.exercises import first_slip, matches, numeric_answer, report

# Exercise 1: a batch of B pairs with k hard-negative columns (anchor, positive, negative).
BATCH_SIZE, HARD_NEGATIVE_COLUMNS = 256, 1
# Exercise 2: GPUs, pairs per GPU; every GPU gathers the others' embeddings before the loss.
WORLD_SIZE, PER_GPU_BATCH = 4, 64
# Exercise 3: one step of CachedMultipleNegativesRankingLoss on (anchor, positive) columns.
CACHED_BATCH, MINI_BATCH_SIZE, COLUMNS = 4096, 64, 2


def negatives_per_anchor(batch_size: int, hard_negative_columns: int = 0) -> int:
    """Candidates of anchor 0 in `MultipleNegativesRankingLoss` that are not its own positive, counted from the loss."""
    from labkit.losses.ranking import MultipleNegativesRankingLoss

    columns = torch.zeros(2 + hard_negative_columns, batch_size, 2, dtype=torch.float64).unbind(0)
    explained = MultipleNegativesRankingLoss().explain(*columns)
    return len(explained.columns["query_to_doc"]) - 1


class _CountingEncoder(nn.Module):
    """A stand-in model: embeds a batch of 'token ids' with one linear layer and counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 2)
        self.calls = 0

    def forward(self, features: dict) -> torch.Tensor:
        self.calls += 1
        return self.layer(features["input_ids"].float())


def cached_forward_passes(batch_size: int = CACHED_BATCH, mini_batch_size: int = MINI_BATCH_SIZE,
                          columns: int = COLUMNS) -> int:
    """Model calls in one training step (forward + backward) of `CachedMultipleNegativesRankingLoss`, counted."""
    from labkit.losses.cached import CachedMultipleNegativesRankingLoss

    encoder = _CountingEncoder()
    features = [{"input_ids": torch.arange(batch_size).unsqueeze(1) + column} for column in range(columns)]
    CachedMultipleNegativesRankingLoss(encoder, mini_batch_size=mini_batch_size)(features).backward()
    return encoder.calls


def fp16_longest_norm() -> float:
    """The largest norm r at which the dot product of a vector with itself (r squared) is still finite in fp16."""
    return math.sqrt(torch.finfo(torch.float16).max)


def check_negatives_per_anchor(answer, batch_size: int = BATCH_SIZE,
                               hard_negative_columns: int = HARD_NEGATIVE_COLUMNS) -> bool:
    """Exercise 1: negatives of one anchor in MNRL with `batch_size` pairs and hard-negative columns."""
    expected = negatives_per_anchor(batch_size, hard_negative_columns)
    hint = ("Anchor i is compared with every positive and every hard negative of the batch; all of them but "
            "its own positive are negatives.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected} negatives — the other {batch_size - 1} positives and all "
                            f"{batch_size * hard_negative_columns} hard negatives, its own included.", "")
    slips = [
        (batch_size - 1, "you counted the other positives only; the hard-negative columns are candidates too."),
        (expected + 1, "you counted the anchor's own positive, which is the right answer, not a negative."),
        (batch_size - 1 + hard_negative_columns,
         "the other anchors' hard negatives are candidates too, not only the anchor's own."),
    ]
    return report(False, "", (first_slip(value, slips) or f"you got {value:g}, expected a different count.")
                  + " " + hint)


def check_gathered_negatives(answer, world_size: int = WORLD_SIZE, per_gpu_batch: int = PER_GPU_BATCH) -> bool:
    """Exercise 2: negatives per anchor when `world_size` GPUs gather their positives into one batch."""
    expected = negatives_per_anchor(world_size * per_gpu_batch)
    hint = "After the all-gather, each GPU scores its anchors against the positives of every GPU."
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected} — as one batch of {world_size} × {per_gpu_batch} = "
                            f"{world_size * per_gpu_batch} pairs, for the memory of {per_gpu_batch} per GPU.", "")
    slips = [
        (per_gpu_batch - 1, "that is without the gather: each GPU alone only sees its own batch."),
        (world_size * per_gpu_batch, "you counted the anchor's own positive among its negatives."),
        (world_size * (per_gpu_batch - 1), "the other GPUs' positives are negatives too, not only their 'others'."),
    ]
    return report(False, "", (first_slip(value, slips) or f"you got {value:g}, expected a different count.")
                  + " " + hint)


def check_cached_forward_passes(answer, batch_size: int = CACHED_BATCH, mini_batch_size: int = MINI_BATCH_SIZE,
                                columns: int = COLUMNS) -> bool:
    """Exercise 3: mini-batch forward passes of the model in one GradCache training step."""
    expected = cached_forward_passes(batch_size, mini_batch_size, columns)
    per_pass = columns * math.ceil(batch_size / mini_batch_size)
    hint = (f"Each of the {columns} columns is cut into mini-batches of {mini_batch_size}; count the passes of "
            "step 1 (no gradients) and of step 3 (again, with gradients).")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected} — {per_pass} without gradients, the same {per_pass} again with "
                            "them. That second pass is GradCache's price in time.", "")
    slips = [
        (per_pass, "that is one pass; GradCache embeds every mini-batch twice (step 1, then again in step 3)."),
        (per_pass / columns, "that is one column, once: there are two columns (anchors and positives), each cut "
                             "into mini-batches and embedded twice."),
        (2 * columns, "plain MNRL would run the model once per column; the cached loss runs it per mini-batch."),
    ]
    return report(False, "", (first_slip(value, slips) or f"you got {value:g}, expected {expected}.") + " " + hint)


def check_fp16_longest_norm(answer) -> bool:
    """Exercise 4: the largest norm whose squared value (a vector's dot product with itself) fp16 can hold."""
    expected = fp16_longest_norm()
    hint = "x · x = ||x||²; the largest finite fp16 number is torch.finfo(torch.float16).max."
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if math.isclose(value, expected, rel_tol=1e-3):
        return report(True, f"Right: about {expected:.2f}. Unnormalised embeddings can be longer than that, which is "
                            "why labkit computes similarities in fp32 (labkit.distances.in_fp32).", "")
    largest = torch.finfo(torch.float16).max
    slips = [
        (largest, "that is the largest dot product; the norm is its square root."),
        (math.sqrt(torch.finfo(torch.bfloat16).max), "that is bf16's limit; the question is about fp16."),
    ]
    return report(False, "", (first_slip(value, slips) or f"you got {value:g}, expected about {expected:.2f}.")
                  + " " + hint)
