"""Checkers for the exercises of notebooks/13_scaling_up.ipynb.

Exercise 1: how many negatives one anchor sees in MultipleNegativesRankingLoss, with hard negatives.
Exercise 2: the same across GPUs whose embeddings are gathered into one batch. Exercise 3: how many
mini-batch forward passes one GradCache step runs. Exercise 4: the longest vectors whose dot product fp16
can still hold. Each checker computes the right answer with labkit (the loss's own candidate columns, the
cached loss run on a call-counting stand-in model, torch's description of fp16) and says what is right, or
which slip the answer looks like and which step to recheck (never the answer itself). Add ``reveal=True`` to
see the solution.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labkit.course.exercises import Exercise, Slip, check_number

# Exercise 1: a batch of B pairs with k hard-negative columns (anchor, positive, negative).
BATCH_SIZE, HARD_NEGATIVE_COLUMNS = 256, 1
# Exercise 2: GPUs, pairs per GPU; every GPU gathers the others' embeddings before the loss.
WORLD_SIZE, PER_GPU_BATCH = 4, 64
# Exercise 3: one step of CachedMultipleNegativesRankingLoss on (anchor, positive) columns.
CACHED_BATCH, MINI_BATCH_SIZE, COLUMNS = 4096, 64, 2


def _negatives_per_anchor(batch_size: int, hard_negative_columns: int = 0) -> int:
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


def _cached_forward_passes(batch_size: int = CACHED_BATCH, mini_batch_size: int = MINI_BATCH_SIZE,
                          columns: int = COLUMNS) -> int:
    """Model calls in one training step (forward + backward) of `CachedMultipleNegativesRankingLoss`, counted."""
    from labkit.losses.cached import CachedMultipleNegativesRankingLoss

    encoder = _CountingEncoder()
    features = [{"input_ids": torch.arange(batch_size).unsqueeze(1) + column} for column in range(columns)]
    CachedMultipleNegativesRankingLoss(encoder, mini_batch_size=mini_batch_size)(features).backward()
    return encoder.calls


# fp16 itself rounds: a norm up to 255.9375 (a hair above the square root of 65,504) still squares to a finite
# fp16 number, since it rounds to 255.875 first. Far below 256, whose square overflows.
_FP16_UPPER = 1 + 1e-6


def _fp16_longest_norm() -> float:
    """The largest norm r at which the dot product of a vector with itself (r squared) is still finite in fp16."""
    return math.sqrt(torch.finfo(torch.float16).max)


def _negatives_exercise(batch_size: int = BATCH_SIZE, hard_negative_columns: int = HARD_NEGATIVE_COLUMNS) -> Exercise:
    expected = _negatives_per_anchor(batch_size, hard_negative_columns)
    return Exercise(
        checker="check_negatives_per_anchor", with_inputs=True, expected=expected,
        hint="anchor i is compared with every positive and every hard negative of the batch; all of them but its "
             "own positive are negatives",
        success=f"{expected} negatives — the other {batch_size - 1} positives and all "
                f"{batch_size * hard_negative_columns} hard negatives, its own included",
        why=f"the {batch_size} positives and {batch_size * hard_negative_columns} hard negatives are all candidates; "
            "all but the anchor's own positive are negatives (MultipleNegativesRankingLoss().explain(...).columns)",
        slips=(
            Slip(batch_size - 1, "the other positives only", "the candidates: the hard-negative columns count too"),
            Slip(expected + 1, "every candidate, the anchor's own positive included",
                 "the right answer among the candidates: the own positive is not a negative"),
            Slip(batch_size - 1 + hard_negative_columns, "the other positives and the anchor's own hard negative",
                 "the hard-negative columns: the other anchors' hard negatives are candidates too"),
        ))


def check_negatives_per_anchor(answer, batch_size: int = BATCH_SIZE,
                               hard_negative_columns: int = HARD_NEGATIVE_COLUMNS, reveal: bool = False) -> bool:
    """Exercise 1: negatives of one anchor in MNRL with `batch_size` pairs and hard-negative columns.

    A wrong answer gets the step to recheck; ``check_negatives_per_anchor(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _negatives_exercise(batch_size, hard_negative_columns), whole=True, reveal=reveal)


def _gathered_exercise(world_size: int = WORLD_SIZE, per_gpu_batch: int = PER_GPU_BATCH) -> Exercise:
    expected = _negatives_per_anchor(world_size * per_gpu_batch)
    return Exercise(
        checker="check_gathered_negatives", with_inputs=True, expected=expected,
        hint="after the all-gather, each GPU scores its anchors against the positives of every GPU",
        success=f"{expected} — as one batch of {world_size} × {per_gpu_batch} = {world_size * per_gpu_batch} pairs, "
                f"for the memory of {per_gpu_batch} per GPU",
        why=f"the gathered batch has {world_size} × {per_gpu_batch} positives; all but the anchor's own are negatives",
        slips=(
            Slip(per_gpu_batch - 1, "the count without the gather", "the all-gather: each GPU then sees every GPU's "
                                                                     "positives, not only its own batch"),
            Slip(world_size * per_gpu_batch, "every gathered positive, the anchor's own included",
                 "the own positive: it is the right answer, not a negative"),
            Slip(world_size * (per_gpu_batch - 1), "each GPU's 'others' added up",
                 "the other GPUs' positives: all of them are negatives, not only their 'others'"),
        ))


def check_gathered_negatives(answer, world_size: int = WORLD_SIZE, per_gpu_batch: int = PER_GPU_BATCH,
                             reveal: bool = False) -> bool:
    """Exercise 2: negatives per anchor when `world_size` GPUs gather their positives into one batch.

    A wrong answer gets the step to recheck; ``check_gathered_negatives(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _gathered_exercise(world_size, per_gpu_batch), whole=True, reveal=reveal)


def _cached_exercise(batch_size: int = CACHED_BATCH, mini_batch_size: int = MINI_BATCH_SIZE,
                     columns: int = COLUMNS) -> Exercise:
    expected = _cached_forward_passes(batch_size, mini_batch_size, columns)
    per_pass = columns * math.ceil(batch_size / mini_batch_size)
    return Exercise(
        checker="check_cached_forward_passes", with_inputs=True, expected=expected,
        hint=f"each of the {columns} columns is cut into mini-batches of {mini_batch_size}; count the passes of step 1 "
             "(no gradients) and of step 3 (again, with gradients)",
        success=f"{expected} — {per_pass} without gradients, the same {per_pass} again with them. That second pass "
                "is GradCache's price in time",
        why=f"{columns} columns × ceil({batch_size} / {mini_batch_size}) mini-batches, embedded twice (step 1 without "
            "gradients, step 3 with them), counted on a stand-in model",
        slips=(
            Slip(per_pass, "one pass over the mini-batches",
                 "the steps: GradCache embeds every mini-batch twice (step 1, then again in step 3)"),
            Slip(per_pass // columns, "one column, once",
                 "the columns (anchors and positives, each cut into mini-batches) and the two passes"),
            Slip(2 * columns, "plain MNRL's count, once per column",
                 "the mini-batches: the cached loss runs the model once per mini-batch"),
        ))


def check_cached_forward_passes(answer, batch_size: int = CACHED_BATCH, mini_batch_size: int = MINI_BATCH_SIZE,
                                columns: int = COLUMNS, reveal: bool = False) -> bool:
    """Exercise 3: mini-batch forward passes of the model in one GradCache training step.

    A wrong answer gets the step to recheck; ``check_cached_forward_passes(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _cached_exercise(batch_size, mini_batch_size, columns), whole=True, reveal=reveal)


def _fp16_exercise() -> Exercise:
    expected = _fp16_longest_norm()
    largest = torch.finfo(torch.float16).max
    return Exercise(
        checker="check_fp16_longest_norm", expected=expected,
        hint="x · x = ||x||²; the largest finite fp16 number is torch.finfo(torch.float16).max",
        success=f"about {expected:.2f}. Unnormalised embeddings can be longer than that, which is why labkit "
                "computes similarities in fp32 (labkit.distances.in_fp32)",
        why="||x||² must stay at or below torch.finfo(torch.float16).max, so ||x|| <= its square root",
        slips=(
            Slip(largest, "the largest dot product", "the last step: the norm is its square root"),
            Slip(math.sqrt(torch.finfo(torch.bfloat16).max), "bf16's limit", "the format: the question is about fp16"),
            Slip(lambda value: value > _FP16_UPPER * expected, "a norm whose square is above fp16's largest finite "
                                                                 "number: x · x "
                                                 "overflows to inf",
                 "the rounding: the square must stay at or below torch.finfo(torch.float16).max, so round down, "
                 "never up"),
        ))


def check_fp16_longest_norm(answer, reveal: bool = False) -> bool:
    """Exercise 4: the largest norm whose squared value (a vector's dot product with itself) fp16 can hold.

    Right within 0.1 % *below* the limit: a norm whose square overflows (256² = 65,536 > 65,504) is wrong,
    however close. A wrong answer gets the step to recheck; ``check_fp16_longest_norm(answer, reveal=True)``
    prints the solution.
    """
    expected = _fp16_longest_norm()
    return check_number(answer, _fp16_exercise(), reveal=reveal,
                        accept=lambda value: expected * (1 - 1e-3) <= value <= expected * _FP16_UPPER)


_EXERCISES = {"negatives_per_anchor": _negatives_exercise, "gathered_negatives": _gathered_exercise,
              "cached_forward_passes": _cached_exercise, "fp16_longest_norm": _fp16_exercise}
