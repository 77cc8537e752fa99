"""The checkers of notebooks/03_pooling.ipynb accept right answers and explain wrong ones."""
from __future__ import annotations

import math

import numpy as np
import torch

from labkit.course.exercises import pooling as ex


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


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
    # unmasked max would differ from the masked one: padding's zeros beat negative values
    assert not np.allclose(h.max(1).values.numpy(), naive_pool("max"))


def test_masked_mean(capsys):
    ok, out = outcome(capsys, ex.check_masked_mean(naive_pool("mean")))
    assert ok and "mean_pooling" in out
    assert ex.check_masked_mean(torch.tensor(naive_pool("mean")).float())
    h, mask = ex.exercise_batch()
    summed = (h * mask[..., None]).sum(1)
    cases = [(None, "not answered yet"), (h.mean(1), "plain mean"), (summed, "masked *sum*"),
             (summed / 4, "divided by all 4"), (h.mean(2), "shape"), (naive_pool("mean") + 0.1, "Not quite"),
             ("mean", "not str")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_masked_mean(answer))
        assert not ok and words in out, (words, out)


def test_masked_max(capsys):
    ok, out = outcome(capsys, ex.check_masked_max(naive_pool("max")))
    assert ok and "−inf" in out
    h, mask = ex.exercise_batch()
    cases = [(None, "not answered yet"), (h.max(1).values, "max over all positions"),
             ((h * mask[..., None]).max(1).values, "Multiplying by the mask"),
             (h.masked_fill(mask[..., None] == 0, math.inf).min(1).values, "minimum"),
             (h.max(2).values, "shape"), (naive_pool("max") - 1, "Not quite")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_masked_max(answer))
        assert not ok and words in out, (words, out)


def test_unit_distance_against_two_real_unit_vectors(capsys):
    cosine = 0.8
    a = np.array([1.0, 0.0])
    b = np.array([cosine, math.sqrt(1 - cosine**2)])  # unit vector at cosine 0.8 from a
    right = float(np.linalg.norm(a - b))
    ok, out = outcome(capsys, ex.check_unit_distance(right, cosine))
    assert ok and "same way" in out
    assert ex.check_unit_distance(torch.tensor(right), cosine)
    cases = [(None, "not answered yet"), (right**2, "squared"), (1 - cosine, "cosine distance"),
             (math.sqrt(1 - cosine), "factor 2"), (0.9, "Not quite"), ("0.63", "one number")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_unit_distance(answer, cosine))
        assert not ok and words in out, (words, out)
