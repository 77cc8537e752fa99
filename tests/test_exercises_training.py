"""The checkers of notebooks/09_training.ipynb accept right answers and explain wrong ones.

Right answers are computed here from the definitions with plain Python loops (MAP@R from its formula, the
epoch length by trying every batch count), not with labkit, so a checker with a wrong "right answer" fails.
"""
from __future__ import annotations

import numpy as np
import pytest

from labkit.evaluate import retrieval_metrics
from labkit.course.exercises import training as ex


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


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
        assert ex.map_at_r(rel, r) == pytest.approx(naive_map_at_r(list(rel), r))
    # Per-query MAP@R averaged over queries equals labkit.evaluate's mean_average_precision_at_r.
    points = rng.normal(size=(12, 3))
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3])
    normed = points / np.linalg.norm(points, axis=1, keepdims=True)
    sims = normed @ normed.T
    values = []
    for q in range(len(labels)):
        ranked = [i for i in np.argsort(-sims[q]) if i != q]
        values.append(ex.map_at_r(labels[ranked] == labels[q], int((labels == labels[q]).sum() - 1)))
    assert np.mean(values) == pytest.approx(retrieval_metrics(points, labels)["mean_average_precision_at_r"])


def test_map_at_r_refuses_zero_relevant():
    with pytest.raises(ValueError, match="num_relevant"):
        ex.map_at_r([1, 0], 0)


def test_check_map_at_r_right(capsys):
    ok, out = outcome(capsys, ex.check_map_at_r(naive_map_at_r(ex.RANKING, ex.NUM_RELEVANT)))
    assert ok and "✅" in out


def test_check_map_at_r_none_and_garbage(capsys):
    ok, out = outcome(capsys, ex.check_map_at_r(None))
    assert not ok and "not answered yet" in out and "hint" in out
    ok, out = outcome(capsys, ex.check_map_at_r("0.5"))
    assert not ok and "one number" in out


def test_check_map_at_r_names_the_slips(capsys):
    whole_list = naive_map_at_r(ex.RANKING, len(ex.RANKING)) * len(ex.RANKING) / ex.NUM_RELEVANT
    ok, out = outcome(capsys, ex.check_map_at_r(whole_list))
    assert not ok and "beyond rank R" in out
    r_precision = sum(ex.RANKING[: ex.NUM_RELEVANT]) / ex.NUM_RELEVANT
    ok, out = outcome(capsys, ex.check_map_at_r(r_precision))
    assert not ok and "R-precision" in out
    ok, out = outcome(capsys, ex.check_map_at_r(0.01))
    assert not ok and "not the expected value" in out


def test_epoch_sizes_match_naive_count():
    examples, steps, batches = naive_epoch()
    assert ex.epoch_sizes() == {"batches": batches, "examples": examples, "optimizer_steps": steps}


def test_check_epoch_sizes_right(capsys):
    examples, steps, _ = naive_epoch()
    ok, out = outcome(capsys, ex.check_epoch_sizes((examples, steps)))
    assert ok and "✅" in out


def test_check_epoch_sizes_wrong(capsys):
    examples, steps, batches = naive_epoch()
    ok, out = outcome(capsys, ex.check_epoch_sizes(None))
    assert not ok and "not answered yet" in out
    ok, out = outcome(capsys, ex.check_epoch_sizes(42))
    assert not ok and "pair" in out
    naive_examples = sum(ex.CLASS_SIZES) // (ex.P * ex.K) * ex.P * ex.K
    assert naive_examples != examples  # the exercise is built so that this slip shows
    ok, out = outcome(capsys, ex.check_epoch_sizes((naive_examples, steps)))
    assert not ok and "left over" in out
    ok, out = outcome(capsys, ex.check_epoch_sizes((examples, batches)))
    assert not ok and "number of batches" in out
    ok, out = outcome(capsys, ex.check_epoch_sizes((examples, -(-batches // ex.GRAD_ACCUM_STEPS))))
    assert not ok and "round" in out
