"""The checkers of notebooks/09_training.ipynb accept right answers and explain wrong ones without revealing them.

Right answers are computed here from the definitions with plain Python loops (MAP@R from its formula, the
epoch length by trying every batch count), not with labkit, so a checker with a wrong "right answer" fails.
"""
from __future__ import annotations

import numpy as np
import pytest

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import training as ex
from labkit.evaluate import retrieval_metrics


def naive_map_at_r(relevance, r):
    total, hits = 0.0, 0
    for i in range(r):
        if relevance[i]:
            hits += 1
            total += hits / (i + 1)
    return total / r


def naive_epoch():
    """Largest B with sum_c min(n_c // K, B) >= P * B (each batch needs P groups of different classes)."""
    groups = [n // ex.K for n in ex.CLASS_SIZES]
    batches = 0
    for b in range(1, sum(groups) + 1):
        if sum(min(g, b) for g in groups) >= ex.P * b:
            batches = b
    return batches * ex.P * ex.K, batches // ex.GRAD_ACCUM_STEPS, batches


def test_map_at_r_helper_matches_naive_loop_and_labkit_retrieval():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rel = rng.integers(0, 2, size=9)
        r = int(rng.integers(1, 10))
        assert ex._map_at_r(rel, r) == pytest.approx(naive_map_at_r(list(rel), r))
    # Per-query MAP@R averaged over queries equals labkit.evaluate's mean_average_precision_at_r.
    points = rng.normal(size=(12, 3))
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3])
    normed = points / np.linalg.norm(points, axis=1, keepdims=True)
    sims = normed @ normed.T
    values = []
    for q in range(len(labels)):
        ranked = [i for i in np.argsort(-sims[q]) if i != q]
        values.append(naive_map_at_r(labels[ranked] == labels[q], int((labels == labels[q]).sum() - 1)))
    assert np.mean(values) == pytest.approx(retrieval_metrics(points, labels)["mean_average_precision_at_r"])


def test_map_at_r_refuses_zero_relevant():
    with pytest.raises(ValueError, match="num_relevant"):
        ex._map_at_r([1, 0], 0)


def test_check_map_at_r(capsys):
    right = naive_map_at_r(ex.RANKING, ex.NUM_RELEVANT)
    check = ex.check_map_at_r
    assert_right(capsys, check, right, "MAP@R")
    assert_stub_and_reveal(capsys, check, right)
    whole_list = naive_map_at_r(ex.RANKING, len(ex.RANKING)) * len(ex.RANKING) / ex.NUM_RELEVANT
    r_precision = sum(ex.RANKING[: ex.NUM_RELEVANT]) / ex.NUM_RELEVANT
    hits = sum(ex.RANKING[: ex.NUM_RELEVANT])
    cases = [(whole_list, "beyond R"), (r_precision, "R-precision"), (right * ex.NUM_RELEVANT / hits, "hits"),
             (0.01, "Not quite"), ("0.5", "one number"), ([right, 1.0], "2 values")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_epoch_sizes_match_naive_count():
    examples, steps, batches = naive_epoch()
    assert ex._epoch_sizes() == {"batches": batches, "examples": examples, "optimizer_steps": steps}


def test_check_epoch_sizes(capsys):
    examples, steps, batches = naive_epoch()
    check = ex.check_epoch_sizes
    assert_right(capsys, check, (examples, steps))
    assert_right(capsys, check, [float(examples), steps])
    assert_stub_and_reveal(capsys, check, (examples, steps))
    naive_examples = sum(ex.CLASS_SIZES) // (ex.P * ex.K) * ex.P * ex.K
    assert naive_examples != examples  # the exercise is built so that this slip shows
    cases = [(42, "Give a tuple (examples, optimizer steps)"), ((1, 2, 3), "Give a tuple"),
             ((examples, 1.5), "whole numbers"),
             ((naive_examples, steps), "Examples: that looks like every example fitting in a batch"),
             ((examples, batches), "Examples: right. Optimizer steps: that looks like the number of batches"),
             ((examples, -(-batches // ex.GRAD_ACCUM_STEPS)), "rounded up"),
             ((examples + 1, steps + 5), "Examples: not quite. Optimizer steps: not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, (examples, steps))
