"""Checkers for the exercises of notebooks/03_pooling.ipynb.

`exercise_batch()` gives the toy batch the pooling exercises use; each checker takes your answer,
computes the right one with `labkit.pooling`, and prints what is right or a hint at what is off.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from labkit.course.exercises import close, describe_difference, report
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


def _shape_hint(answer, expected) -> str | None:
    try:
        if isinstance(answer, str):
            raise TypeError
        shape = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float).shape
    except (TypeError, ValueError):
        return f"Give a tensor or array, not {type(answer).__name__}."
    if shape != tuple(expected.shape):
        return (f"Your answer has shape {shape}; pooling gives one vector per sentence, shape "
                f"{tuple(expected.shape)} (batch, dim): reduce over the token axis, dim=1.")
    return None


def check_masked_mean(answer) -> bool:
    """Mean pooling of `exercise_batch()` over real tokens only."""
    h, mask = exercise_batch()
    expected = mean_pooling(h, mask)
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: zero the padding rows by multiplying with "
                                 "mask[..., None], sum over the token axis (dim=1), divide by the real-token count.")
    if close(answer, expected):
        return report(True, "Right: padding is left out of both the sum and the count. Same as "
                            "labkit.pooling.mean_pooling(h, mask).", "")
    wrong_shape = _shape_hint(answer, expected)
    if wrong_shape:
        return report(False, "", wrong_shape)
    if close(answer, h.mean(dim=1)):
        return report(False, "", "That is the plain mean over all 4 positions: padding got averaged in and pulls "
                                 "sentence 1 towards the padding vector. Multiply by the mask and divide by the real-token count.")
    summed = (h * mask[..., None]).sum(dim=1)
    if close(answer, summed):
        return report(False, "", "That is the masked *sum*. Divide by the number of real tokens per sentence.")
    if close(answer, summed / h.shape[1]):
        return report(False, "", "The sum is masked, but you divided by all 4 positions; divide by "
                                 "mask.sum(dim=1, keepdim=True), the real-token count of each sentence.")
    return report(False, "", f"Not quite: {describe_difference(answer, expected)}.")


def check_masked_max(answer) -> bool:
    """Max pooling of `exercise_batch()` over real tokens only."""
    h, mask = exercise_batch()
    expected = max_pooling(h, mask)
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: put −inf at the padding positions "
                                 "(masked_fill with mask[..., None] == 0), then take the max over the token axis, dim=1.")
    if close(answer, expected):
        return report(True, "Right: with padding at −inf it can never be the maximum. Same as "
                            "labkit.pooling.max_pooling(h, mask).", "")
    wrong_shape = _shape_hint(answer, expected)
    if wrong_shape:
        return report(False, "", wrong_shape)
    if close(answer, h.max(dim=1).values):
        return report(False, "", "That is the max over all positions: padding values beat the negative values "
                                 "of real tokens. Put −inf at padding positions before the max.")
    if close(answer, (h * mask[..., None]).max(dim=1).values):
        return report(False, "", "Multiplying by the mask sets padding to 0, and 0 is larger than the negative "
                                 "values here. Use −inf at padding positions instead (masked_fill).")
    if close(answer, h.masked_fill(mask[..., None] == 0, float("inf")).min(dim=1).values):
        return report(False, "", "That is the masked minimum; take the maximum.")
    return report(False, "", f"Not quite: {describe_difference(answer, expected)}.")


def check_unit_distance(answer, cosine: float = 0.8) -> bool:
    """Euclidean distance ‖a − b‖ between two unit vectors whose cosine similarity is `cosine`."""
    expected = math.sqrt(2 - 2 * cosine)
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: for unit vectors ‖a − b‖² = 2 − 2·cos(a, b).")
    try:
        if isinstance(answer, str):
            raise TypeError
        value = float(answer.item() if hasattr(answer, "item") else answer)
    except (TypeError, ValueError):
        return report(False, "", f"Give one number, not {type(answer).__name__}.")
    if math.isclose(value, expected, abs_tol=1e-4):
        return report(True, f"Right: ‖a − b‖ = √(2 − 2·{cosine}) = {expected:.4f}. On unit vectors distance and "
                            "cosine carry the same information, so they rank neighbours the same way.", "")
    if math.isclose(value, 2 - 2 * cosine, abs_tol=1e-4):
        return report(False, "", f"{value:.4f} is the *squared* distance ‖a − b‖²; take the square root.")
    if math.isclose(value, 1 - cosine, abs_tol=1e-4):
        return report(False, "", f"{value:.4f} is the cosine distance 1 − cos, not the Euclidean distance. "
                                 "Expand ‖a − b‖² = a·a − 2a·b + b·b with a·a = b·b = 1.")
    if math.isclose(value, math.sqrt(1 - cosine), abs_tol=1e-4):
        return report(False, "", "Almost: ‖a − b‖² = a·a + b·b − 2a·b = 1 + 1 − 2·cos. Check the factor 2.")
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. "
                             "Hint: expand ‖a − b‖² = a·a − 2a·b + b·b and use a·a = b·b = 1, a·b = cos.")
