"""The checkers of notebooks/03_pooling.ipynb accept right answers and explain wrong ones without revealing them."""
from __future__ import annotations

import math

import numpy as np
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import pooling as ex


def naive_pool(how):
    h, mask = ex.exercise_batch()
    rows = []
    for b in range(h.shape[0]):
        real = [h[b, t].tolist() for t in range(h.shape[1]) if mask[b, t] == 1]
        if how == "mean":
            rows.append([sum(col) / len(real) for col in zip(*real)])
        else:
            rows.append([max(col) for col in zip(*real)])
    return np.array(rows)


def test_exercise_batch_has_the_promised_traps():
    h, mask = ex.exercise_batch()
    assert h.shape == (2, 4, 3) and h.dtype == torch.float64
    assert mask.sum(1).tolist() == [3, 2]
    # unmasked max would differ from the masked one: padding's values beat negative values
    assert not np.allclose(h.max(1).values.numpy(), naive_pool("max"))


def test_masked_mean(capsys):
    right = naive_pool("mean")
    assert_right(capsys, ex.check_masked_mean, right, "mean_pooling")
    assert_right(capsys, ex.check_masked_mean, torch.tensor(right).float())
    assert_stub_and_reveal(capsys, ex.check_masked_mean, right)
    h, mask = ex.exercise_batch()
    summed = (h * mask[..., None]).sum(1)
    cases = [(h.mean(1), "plain mean"), (summed, "masked *sum*"), (summed / 4, "divided by all 4"),
             (h.mean(2), "shape (2, 4)"), (right + 0.1, "6 of the 6 entries are off"), ("mean", "not str")]
    for answer, words in cases:
        assert_wrong(capsys, ex.check_masked_mean, answer, words, right)


def test_masked_max(capsys):
    right = naive_pool("max")
    assert_right(capsys, ex.check_masked_max, right, "−inf")
    assert_stub_and_reveal(capsys, ex.check_masked_max, right)
    h, mask = ex.exercise_batch()
    cases = [(h.max(1).values, "max over all positions"),
             ((h * mask[..., None]).max(1).values, "multiplying by the mask"),
             (h.masked_fill(mask[..., None] == 0, math.inf).min(1).values, "minimum"),
             (h.max(2).values, "shape"), (right - 1, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, ex.check_masked_max, answer, words, right)


def test_unit_distance_against_two_real_unit_vectors(capsys):
    cosine = 0.8
    a = np.array([1.0, 0.0])
    b = np.array([cosine, math.sqrt(1 - cosine**2)])  # unit vector at cosine 0.8 from a
    right = float(np.linalg.norm(a - b))
    assert_right(capsys, ex.check_unit_distance, right, "same way", cosine=cosine)
    assert_right(capsys, ex.check_unit_distance, torch.tensor(right), cosine=cosine)
    assert_stub_and_reveal(capsys, ex.check_unit_distance, right, cosine=cosine)
    cases = [(right**2, "*squared*"), (1 - cosine, "cosine distance"), (math.sqrt(1 - cosine), "factor 2"),
             (0.9, "Not quite"), ("0.63", "one number")]
    for answer, words in cases:
        assert_wrong(capsys, ex.check_unit_distance, answer, words, right, cosine=cosine)
