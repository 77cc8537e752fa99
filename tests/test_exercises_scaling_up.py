"""The checkers of notebooks/13_scaling_up.ipynb accept right answers and explain wrong ones without revealing them.

Right answers are computed here independently: counts with plain Python loops over the candidates and
mini-batches, the fp16 limit by squaring numbers in fp16 itself.
"""
from __future__ import annotations

import math

import pytest
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import scaling_up as ex


def naive_negatives(batch_size, hard_negative_columns=0, anchor=0):
    candidates = [(column, row) for column in range(1 + hard_negative_columns) for row in range(batch_size)]
    return sum(1 for column, row in candidates if (column, row) != (0, anchor))


def naive_passes(batch_size, mini_batch_size, columns):
    passes = 0
    for _ in range(2):  # step 1 without gradients, step 3 with them
        for _ in range(columns):
            start = 0
            while start < batch_size:
                passes += 1
                start += mini_batch_size
    return passes


def fp16_square_is_finite(r: float) -> bool:
    x = torch.tensor(r, dtype=torch.float16)
    return bool(torch.isfinite(x * x))


@pytest.mark.parametrize("batch_size,hard", [(4, 0), (8, 1), (5, 2)])
def test_negatives_per_anchor_matches_counting(batch_size, hard):
    assert ex._negatives_per_anchor(batch_size, hard) == naive_negatives(batch_size, hard)


@pytest.mark.parametrize("batch_size,mini,columns", [(10, 4, 2), (8, 8, 3), (7, 2, 2)])
def test_cached_forward_passes_match_counting(batch_size, mini, columns):
    assert ex._cached_forward_passes(batch_size, mini, columns) == naive_passes(batch_size, mini, columns)


def test_check_negatives_per_anchor(capsys):
    right = naive_negatives(ex.BATCH_SIZE, ex.HARD_NEGATIVE_COLUMNS)
    check = ex.check_negatives_per_anchor
    assert_right(capsys, check, right)
    assert_stub_and_reveal(capsys, check, right)
    cases = [(ex.BATCH_SIZE - 1, "other positives only"), (right + 1, "own positive included"),
             (ex.BATCH_SIZE - 1 + ex.HARD_NEGATIVE_COLUMNS, "anchor's own hard negative"), ("many", "one whole number"),
             (300, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_check_gathered_negatives(capsys):
    right = naive_negatives(ex.WORLD_SIZE * ex.PER_GPU_BATCH)
    check = ex.check_gathered_negatives
    assert_right(capsys, check, right)
    assert_right(capsys, check, torch.tensor([float(right)]))  # a one-element tensor
    assert_stub_and_reveal(capsys, check, right)
    cases = [(ex.PER_GPU_BATCH - 1, "without the gather"), (right + 1, "own included"),
             (ex.WORLD_SIZE * (ex.PER_GPU_BATCH - 1), "'others' added up"), (100, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_check_cached_forward_passes(capsys):
    right = naive_passes(ex.CACHED_BATCH, ex.MINI_BATCH_SIZE, ex.COLUMNS)
    check = ex.check_cached_forward_passes
    assert_right(capsys, check, right)
    assert_stub_and_reveal(capsys, check, right)
    cases = [(right // 2, "one pass"), (right // 4, "one column, once"), (2 * ex.COLUMNS, "plain MNRL"),
             (3, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_check_fp16_longest_norm(capsys):
    # The largest r with r * r finite in fp16 arithmetic, found by bisection on fp16 itself (no finfo, no sqrt).
    low, high = 1.0, 1000.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if fp16_square_is_finite(middle) else (low, middle)
    right = low
    assert fp16_square_is_finite(right) and not fp16_square_is_finite(256.0)
    check = ex.check_fp16_longest_norm
    assert_right(capsys, check, right)
    assert_right(capsys, check, math.sqrt(65504))
    assert_right(capsys, check, 255.9)
    assert_stub_and_reveal(capsys, check, right)
    bf16 = torch.finfo(torch.bfloat16).max
    cases = [(256, "overflows to inf"), (256.0, "round down, never up"), (right * 1.0001, "overflows"),
             (right * right, "largest dot product"), (math.sqrt(bf16), "bf16"), (1.0, "Not quite"),
             ([right, 1.0], "2 values")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
