"""Checkers for the exercises of notebooks/03_pooling.ipynb.

`exercise_batch()` gives the toy batch the pooling exercises use; each checker takes your answer,
computes the right one with `labkit.pooling`, and prints whether it is right, or which step to recheck (never
the answer itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import math

import torch

from labkit.course.exercises import Exercise, Slip, check_array, check_number
from labkit.pooling import max_pooling, mean_pooling


def exercise_batch() -> tuple:
    """Token vectors (2 sentences × 4 positions × 3 dims, float64) and their attention mask.

    Sentence 0 has 3 real tokens, sentence 1 has 2; the rest is padding. As in a real transformer, the
    padding positions hold vectors that are not zero ([1, −1, 0.5] here). Most real values are negative,
    so an unmasked maximum, or zeroing padding before a maximum, picks padding values.
    """
    token_embeddings = torch.tensor(
        [
            [[-1.0, 2.0, -3.0], [-3.0, 4.0, -1.0], [-2.0, 0.5, -2.0], [1.0, -1.0, 0.5]],
            [[-4.0, -2.0, 1.0], [-2.0, -6.0, 3.0], [1.0, -1.0, 0.5], [1.0, -1.0, 0.5]],
        ],
        dtype=torch.float64,
    )
    attention_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    return token_embeddings, attention_mask


_SHAPE_HINT = "Pooling gives one vector per sentence, shape (batch, dim): reduce over the token axis, dim=1."


def _masked_mean() -> Exercise:
    h, mask = exercise_batch()
    summed = (h * mask[..., None]).sum(dim=1)
    return Exercise(
        checker="check_masked_mean", expected=mean_pooling(h, mask),
        hint="zero the padding rows by multiplying with mask[..., None], sum over the token axis (dim=1), divide "
             "by the real-token count",
        success="padding is left out of both the sum and the count. Same as labkit.pooling.mean_pooling(h, mask)",
        why="(h * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)",
        slips=(
            Slip(h.mean(dim=1), "the plain mean over all 4 positions: padding got averaged in",
                 "the mask: multiply by it before the sum, and divide by the real-token count"),
            Slip(summed, "the masked *sum*", "the last step: divide by the number of real tokens per sentence"),
            Slip(summed / h.shape[1], "a masked sum divided by all 4 positions",
                 "the count: divide by mask.sum(dim=1, keepdim=True), the real-token count of each sentence"),
        ))


def check_masked_mean(answer, reveal: bool = False) -> bool:
    """Mean pooling of `exercise_batch()` over real tokens only: a (2, 3) tensor.

    A wrong answer gets the step to recheck; ``check_masked_mean(answer, reveal=True)`` prints the solution.
    """
    return check_array(answer, _masked_mean(), shape_hint=_SHAPE_HINT, reveal=reveal)


def _masked_max() -> Exercise:
    h, mask = exercise_batch()
    return Exercise(
        checker="check_masked_max", expected=max_pooling(h, mask),
        hint="put −inf at the padding positions (masked_fill with mask[..., None] == 0), then take the max over "
             "the token axis, dim=1",
        success="with padding at −inf it can never be the maximum. Same as labkit.pooling.max_pooling(h, mask)",
        why="h.masked_fill(mask[..., None] == 0, -inf).max(dim=1).values",
        slips=(
            Slip(h.max(dim=1).values, "the max over all positions: padding values beat the negative values of "
                                      "real tokens", "the mask: put −inf at padding positions before the max"),
            Slip((h * mask[..., None]).max(dim=1).values, "a max after multiplying by the mask",
                 "the padding value: 0 is larger than the negative values here, use −inf (masked_fill)"),
            Slip(h.masked_fill(mask[..., None] == 0, float("inf")).min(dim=1).values, "the masked minimum",
                 "the reduction: take the maximum"),
        ))


def check_masked_max(answer, reveal: bool = False) -> bool:
    """Max pooling of `exercise_batch()` over real tokens only: a (2, 3) tensor.

    A wrong answer gets the step to recheck; ``check_masked_max(answer, reveal=True)`` prints the solution.
    """
    return check_array(answer, _masked_max(), shape_hint=_SHAPE_HINT, reveal=reveal)


def _unit_distance(cosine: float = 0.8) -> Exercise:
    expected = math.sqrt(2 - 2 * cosine)
    return Exercise(
        checker="check_unit_distance", with_inputs=True, expected=expected,
        hint="for unit vectors ‖a − b‖² = a·a − 2a·b + b·b, with a·a = b·b = 1 and a·b = cos(a, b)",
        success=f"‖a − b‖ = √(2 − 2·{cosine}) = {expected:.4f}. On unit vectors distance and cosine carry the "
                "same information, so they rank neighbours the same way",
        why=f"‖a − b‖² = 1 + 1 − 2·cos = 2 − 2·{cosine}; take the square root",
        slips=(
            Slip(2 - 2 * cosine, "the *squared* distance ‖a − b‖²", "the last step: take the square root"),
            Slip(1 - cosine, "the cosine distance 1 − cos, not the Euclidean distance",
                 "the expansion ‖a − b‖² = a·a − 2a·b + b·b with a·a = b·b = 1"),
            Slip(math.sqrt(1 - cosine), "a slip in the factor 2", "‖a − b‖² = a·a + b·b − 2a·b = 1 + 1 − 2·cos"),
        ))


def check_unit_distance(answer, cosine: float = 0.8, reveal: bool = False) -> bool:
    """Euclidean distance ‖a − b‖ between two unit vectors whose cosine similarity is `cosine`: one number.

    A wrong answer gets the step to recheck; ``check_unit_distance(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _unit_distance(cosine), rel_tol=0, abs_tol=1e-4, reveal=reveal)


_EXERCISES = {"masked_mean": _masked_mean, "masked_max": _masked_max, "unit_distance": _unit_distance}
