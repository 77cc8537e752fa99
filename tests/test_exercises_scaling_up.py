"""The checkers of notebooks/13_scaling_up.ipynb accept right answers and explain wrong ones.

Right answers are computed here independently: counts with plain Python loops over the candidates and
mini-batches, the fp16 limit by squaring numbers in fp16 itself.
"""
from __future__ import annotations

import math

import pytest
import torch

from labkit.course.exercises import scaling_up as ex


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


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


@pytest.mark.parametrize("batch_size,hard", [(4, 0), (8, 1), (5, 2)])
def test_negatives_per_anchor_matches_counting(batch_size, hard):
    assert ex.negatives_per_anchor(batch_size, hard) == naive_negatives(batch_size, hard)


@pytest.mark.parametrize("batch_size,mini,columns", [(10, 4, 2), (8, 8, 3), (7, 2, 2)])
def test_cached_forward_passes_match_counting(batch_size, mini, columns):
    assert ex.cached_forward_passes(batch_size, mini, columns) == naive_passes(batch_size, mini, columns)


def test_fp16_longest_norm_is_where_fp16_squares_overflow():
    r = ex.fp16_longest_norm()
    below, above = torch.tensor(r * 0.999, dtype=torch.float16), torch.tensor(r * 1.01, dtype=torch.float16)
    assert torch.isfinite(below * below) and torch.isinf(above * above)


def test_check_negatives_per_anchor(capsys):
    right = naive_negatives(ex.BATCH_SIZE, ex.HARD_NEGATIVE_COLUMNS)
    ok, out = outcome(capsys, ex.check_negatives_per_anchor(right))
    assert ok and "Right" in out
    ok, out = outcome(capsys, ex.check_negatives_per_anchor(ex.BATCH_SIZE - 1))
    assert not ok and "hard-negative columns" in out
    ok, out = outcome(capsys, ex.check_negatives_per_anchor(right + 1))
    assert not ok and "own positive" in out
    ok, out = outcome(capsys, ex.check_negatives_per_anchor(ex.BATCH_SIZE - 1 + ex.HARD_NEGATIVE_COLUMNS))
    assert not ok and "other anchors' hard negatives" in out
    ok, out = outcome(capsys, ex.check_negatives_per_anchor(None))
    assert not ok and "not answered" in out
    ok, out = outcome(capsys, ex.check_negatives_per_anchor("many"))
    assert not ok and "one number" in out


def test_check_gathered_negatives(capsys):
    right = naive_negatives(ex.WORLD_SIZE * ex.PER_GPU_BATCH)
    ok, out = outcome(capsys, ex.check_gathered_negatives(right))
    assert ok and "Right" in out
    ok, out = outcome(capsys, ex.check_gathered_negatives(ex.PER_GPU_BATCH - 1))
    assert not ok and "without the gather" in out
    ok, out = outcome(capsys, ex.check_gathered_negatives(right + 1))
    assert not ok and "own positive" in out
    ok, out = outcome(capsys, ex.check_gathered_negatives(torch.tensor([float(right)])))  # a one-element tensor
    assert ok
    ok, out = outcome(capsys, ex.check_gathered_negatives(None))
    assert not ok and "not answered" in out


def test_check_cached_forward_passes(capsys):
    right = naive_passes(ex.CACHED_BATCH, ex.MINI_BATCH_SIZE, ex.COLUMNS)
    ok, out = outcome(capsys, ex.check_cached_forward_passes(right))
    assert ok and "Right" in out
    ok, out = outcome(capsys, ex.check_cached_forward_passes(right // 2))
    assert not ok and "twice" in out
    ok, out = outcome(capsys, ex.check_cached_forward_passes(right // 4))
    assert not ok and "two columns" in out
    ok, out = outcome(capsys, ex.check_cached_forward_passes(3))
    assert not ok and f"expected {right}" in out
    ok, out = outcome(capsys, ex.check_cached_forward_passes(None))
    assert not ok and "not answered" in out


def test_check_fp16_longest_norm(capsys):
    ok, out = outcome(capsys, ex.check_fp16_longest_norm(math.sqrt(65504)))
    assert ok and "Right" in out
    ok, out = outcome(capsys, ex.check_fp16_longest_norm(65504))
    assert not ok and "square root" in out
    ok, out = outcome(capsys, ex.check_fp16_longest_norm(1.0))
    assert not ok and "expected about 255.94" in out
    ok, out = outcome(capsys, ex.check_fp16_longest_norm(None))
    assert not ok and "not answered" in out
