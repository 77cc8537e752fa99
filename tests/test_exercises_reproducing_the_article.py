"""Tests for labkit.course.exercises.reproducing_the_article: right answers pass, typical slips get their specific hint."""
from __future__ import annotations

import math

import numpy as np
import torch

from labkit.course.exercises import reproducing_the_article as ex


def by_hand_cross_entropy(use_bias: bool = True) -> np.ndarray:
    """Per-example cross-entropy of the exercise's batch, one logit at a time."""
    losses = []
    for e, y in zip(ex.EMBEDDINGS, ex.LABELS):
        logits = [w[0] * e[0] + w[1] * e[1] + (b if use_bias else 0.0) for w, b in zip(ex.HEAD_WEIGHT, ex.HEAD_BIAS)]
        losses.append(math.log(sum(math.exp(z) for z in logits)) - logits[y])
    return np.array(losses)


def test_largest_loss_is_diameter_plus_margin(capsys):
    assert abs(ex.largest_article_loss() - 3.0) < 1e-5  # eps of TripletMarginLoss shifts it by ~1e-6
    assert ex.check_largest_loss(3.0) is True
    assert "collapsed" in capsys.readouterr().out
    assert ex.check_largest_loss(torch.tensor(3.0)) is True


def test_largest_loss_slips_and_non_answers(capsys):
    for answer, words in [(2.0, "add the margin"), (1.0, "collapse"), (0.0, "best case"), (5.0, "impossible"),
                          (2.5, "unit sphere")]:
        assert ex.check_largest_loss(answer) is False
        assert words in capsys.readouterr().out
    assert ex.check_largest_loss(None) is False
    assert "not answered" in capsys.readouterr().out
    assert ex.check_largest_loss("three") is False
    assert "one number" in capsys.readouterr().out


def test_classification_loss_against_a_hand_computation(capsys):
    expected = float(by_hand_cross_entropy().mean())
    assert abs(ex.classification_loss_by_labkit() - expected) < 1e-12
    assert ex.check_classification_loss(expected) is True
    assert "third embedding" in capsys.readouterr().out


def test_classification_loss_slips(capsys):
    per_example = by_hand_cross_entropy()
    slips = [
        (per_example.sum(), "mean"),
        (by_hand_cross_entropy(use_bias=False).mean(), "bias"),
        (np.exp(-per_example).mean(), "probability"),
        ((per_example / math.log(2)).mean(), "base 2"),
        (0.123, "log(sum_c exp(z_c))"),
    ]
    for answer, words in slips:
        assert ex.check_classification_loss(float(answer)) is False
        assert words in capsys.readouterr().out
    assert ex.check_classification_loss(None) is False
    assert "not answered" in capsys.readouterr().out


def test_article_schedule(capsys):
    total = 12_000 // 32 * 15
    assert ex.article_schedule() == {"warmup_steps": total // 12, "total_steps": total} == \
        {"warmup_steps": 468, "total_steps": 5625}
    assert ex.check_article_schedule((468, 5625)) is True
    assert "468 warm-up steps" in capsys.readouterr().out


def test_article_schedule_slips(capsys):
    for answer, words in [((31, 375), "one epoch"), ((450, 5625), "8 %"), ((468, 180_000), "passages"),
                          ((400, 5625), "integer division"), ((1, 2), "off")]:
        assert ex.check_article_schedule(answer) is False
        assert words in capsys.readouterr().out
    assert ex.check_article_schedule(None) is False
    assert "not answered" in capsys.readouterr().out
    assert ex.check_article_schedule(5625) is False
    assert "pair" in capsys.readouterr().out
