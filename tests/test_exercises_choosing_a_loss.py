"""Checkers of notebooks/11_choosing_a_loss.ipynb: right answers pass, wrong ones get a hint that says what is off."""
from __future__ import annotations

import itertools

import pandas as pd
import pytest

from labkit.course.exercises import choosing_a_loss as ex


def naive_batch_all_triplets(p: int, k: int) -> int:
    """Every (a, p, n) of a P×K batch with a loop: p of a's class and not a, n of another class."""
    labels = [c for c in range(p) for _ in range(k)]
    return sum(1 for a, pos, neg in itertools.product(range(p * k), repeat=3)
               if pos != a and labels[pos] == labels[a] and labels[neg] != labels[a])


def naive_cosent_terms(scores) -> int:
    return sum(1 for i, j in itertools.product(range(len(scores)), repeat=2) if scores[i] > scores[j])


def test_reference_answers_agree_with_naive_counts():
    assert ex.batch_all_triplets() == naive_batch_all_triplets(ex.P, ex.K)
    assert ex.batch_all_triplets(3, 2) == naive_batch_all_triplets(3, 2)
    assert ex.cosent_comparisons() == naive_cosent_terms(ex.SCORES)
    assert ex.cosent_comparisons((0.1, 0.1, 0.1)) == 0
    assert set(ex.losses_for()) == {"ContrastiveLoss", "OnlineContrastiveLoss"}
    labelled = pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})
    assert "BatchHardTripletLoss" in ex.losses_for(labelled)


def test_batch_all_right_and_slips(capsys):
    assert ex.check_batch_all_triplets(naive_batch_all_triplets(ex.P, ex.K)) is True
    assert "Right" in capsys.readouterr().out
    assert ex.check_batch_all_triplets(ex.P * ex.K) is False
    assert "batch-hard" in capsys.readouterr().out
    assert ex.check_batch_all_triplets(ex.P * ex.K * (ex.K - 1)) is False
    assert "semi-hard" in capsys.readouterr().out
    assert ex.check_batch_all_triplets(ex.P * ex.K * ex.K * (ex.P - 1) * ex.K) is False
    assert "not its own positive" in capsys.readouterr().out
    assert ex.check_batch_all_triplets(7) is False
    assert "Count anchors" in capsys.readouterr().out


@pytest.mark.parametrize("answer, message", [(None, "not answered yet"), ("216", "one number"), ([1, 2], "one number")])
def test_batch_all_unanswered_or_not_a_number(capsys, answer, message):
    assert ex.check_batch_all_triplets(answer) is False
    assert message in capsys.readouterr().out


def test_cosent_right_and_slips(capsys):
    assert ex.check_cosent_comparisons(naive_cosent_terms(ex.SCORES)) is True
    assert "Right" in capsys.readouterr().out
    n = len(ex.SCORES)
    assert ex.check_cosent_comparisons(n * (n - 1) // 2) is False
    assert "ties" in capsys.readouterr().out
    assert ex.check_cosent_comparisons(n) is False
    assert "CosineSimilarityLoss" in capsys.readouterr().out
    assert ex.check_cosent_comparisons(None) is False
    assert "not answered yet" in capsys.readouterr().out


def test_losses_for_right_and_wrong(capsys):
    assert ex.check_losses_for(["OnlineContrastiveLoss", "ContrastiveLoss"]) is True
    assert "Right" in capsys.readouterr().out
    assert ex.check_losses_for(("ContrastiveLoss", "OnlineContrastiveLoss")) is True
    capsys.readouterr()
    assert ex.check_losses_for(["BatchHardTripletLoss", "ContrastiveLoss", "OnlineContrastiveLoss"]) is False
    assert "class label" in capsys.readouterr().out
    assert ex.check_losses_for(["CoSENTLoss", "ContrastiveLoss"]) is False
    out = capsys.readouterr().out
    assert "graded scores" in out and "missing: OnlineContrastiveLoss" in out
    assert ex.check_losses_for(["TripletMarginLoss"]) is False
    assert "not a loss name" in capsys.readouterr().out
    assert ex.check_losses_for("ContrastiveLoss") is False
    assert "list of loss names" in capsys.readouterr().out
    assert ex.check_losses_for(None) is False
    assert "not answered yet" in capsys.readouterr().out
