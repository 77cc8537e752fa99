"""Tests for labkit.course.exercises.reproducing_the_article: right answers pass, typical slips get their specific
hint, and no wrong answer's message shows the answer."""
from __future__ import annotations

import math

import numpy as np
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import reproducing_the_article as ex


def by_hand_cross_entropy(use_bias: bool = True) -> np.ndarray:
    """Per-example cross-entropy of the exercise's batch, one logit at a time."""
    losses = []
    for e, y in zip(ex.EMBEDDINGS, ex.LABELS):
        logits = [w[0] * e[0] + w[1] * e[1] + (b if use_bias else 0.0) for w, b in zip(ex.HEAD_WEIGHT, ex.HEAD_BIAS)]
        losses.append(math.log(sum(math.exp(z) for z in logits)) - logits[y])
    return np.array(losses)


def test_largest_loss_is_diameter_plus_margin(capsys):
    right = 2.0 - 0.0 + ex.MARGIN  # d(a,p) at most the diameter 2, d(a,n) at least 0
    assert abs(ex._largest_article_loss() - right) < 1e-5  # eps of TripletMarginLoss shifts it by ~1e-6
    check = ex.check_largest_loss
    assert_right(capsys, check, right, "collapsed")
    assert_right(capsys, check, torch.tensor(right))
    assert_stub_and_reveal(capsys, check, right)
    cases = [(2.0, "largest distance"), (1.0, "collapse"), (0.0, "best case"), (5.0, "distances of 4"),
             (2.5, "unit sphere"), ("three", "one number"), ([3.0, 1.0], "2 values")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_classification_loss(capsys):
    right = float(by_hand_cross_entropy().mean())
    assert abs(ex._classification_loss_by_labkit() - right) < 1e-12
    check = ex.check_classification_loss
    assert_right(capsys, check, right, "third embedding")
    assert_stub_and_reveal(capsys, check, right)
    per_example = by_hand_cross_entropy()
    cases = [(per_example.sum(), "sum over the batch"), (by_hand_cross_entropy(use_bias=False).mean(), "bias"),
             (np.exp(-per_example).mean(), "probability"), ((per_example / math.log(2)).mean(), "base 2"),
             (0.123, "log(sum_c exp(z_c))")]
    for answer, words in cases:
        assert_wrong(capsys, check, float(answer), words, right)


def test_article_schedule(capsys):
    total = ex.TRAIN_PASSAGES // ex.BATCH_SIZE * ex.EPOCHS
    right = (total // 12, total)
    assert right == (468, 5625)  # 12,000 // 32 = 375 batches × 15 epochs; // 12, as the article's code
    assert ex._article_schedule() == {"warmup_steps": right[0], "total_steps": right[1]}
    check = ex.check_article_schedule
    assert_right(capsys, check, right, "warm-up steps")
    assert_stub_and_reveal(capsys, check, right)
    one_epoch = ex.TRAIN_PASSAGES // ex.BATCH_SIZE
    cases = [((one_epoch // 12, one_epoch), "one epoch's batches"), ((round(0.08 * total), total), "8 %"),
             ((total // 12, ex.TRAIN_PASSAGES * ex.EPOCHS), "passages"), ((-(-total // 12), total), "rounded up"),
             ((1, 2), "Warm-up steps: not quite. Total steps: not quite"), (5625, "Give a tuple")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
