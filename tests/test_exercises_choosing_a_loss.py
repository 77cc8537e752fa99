"""Checkers of notebooks/11_choosing_a_loss.ipynb: right answers pass, wrong ones get the step to recheck and never
the answer. Right answers are counted here with loops over the definitions."""
from __future__ import annotations

import itertools

import pandas as pd

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import choosing_a_loss as ex


def naive_batch_all_triplets(p: int, k: int) -> int:
    """Every (a, p, n) of a P×K batch with a loop: p of a's class and not a, n of another class."""
    labels = [c for c in range(p) for _ in range(k)]
    return sum(1 for a, pos, neg in itertools.product(range(p * k), repeat=3)
               if pos != a and labels[pos] == labels[a] and labels[neg] != labels[a])


def naive_cosent_terms(scores) -> int:
    return sum(1 for i, j in itertools.product(range(len(scores)), repeat=2) if scores[i] > scores[j])


def test_reference_answers_agree_with_naive_counts():
    assert ex._batch_all_triplets() == naive_batch_all_triplets(ex.P, ex.K)
    assert ex._batch_all_triplets(3, 2) == naive_batch_all_triplets(3, 2)
    assert ex._cosent_comparisons() == naive_cosent_terms(ex.SCORES)
    assert ex._cosent_comparisons((0.1, 0.1, 0.1)) == 0
    labelled = pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})
    assert "BatchHardTripletLoss" in ex._losses_for(labelled)


def test_batch_all_triplets(capsys):
    right = naive_batch_all_triplets(ex.P, ex.K)
    check = ex.check_batch_all_triplets
    assert_right(capsys, check, right)
    assert_stub_and_reveal(capsys, check, right)
    b = ex.P * ex.K
    cases = [(b, "batch-hard"), (b * (ex.K - 1), "semi-hard"), (b * ex.K * (ex.P - 1) * ex.K, "its own positive"),
             (right // 2, "two orders"), (7, "Not quite"), ("216", "one whole number"), ([1, 2], "one whole number")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_cosent_comparisons(capsys):
    right = naive_cosent_terms(ex.SCORES)
    check = ex.check_cosent_comparisons
    assert_right(capsys, check, right)
    assert_stub_and_reveal(capsys, check, right)
    n = len(ex.SCORES)
    cases = [(n * (n - 1) // 2, "ties included"), (n, "CosineSimilarityLoss"), (n * (n - 1), "every ordered pair"),
             (right + 6, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_losses_for(capsys):
    # The data: two texts per row and a 0/1 label on the pair. Losses for such pairs are the contrastive ones.
    right = ["ContrastiveLoss", "OnlineContrastiveLoss"]
    assert set(ex.DATA.columns) == {"text", "text_pair", "label"} and set(ex.DATA["label"]) <= {0, 1}
    check = ex.check_losses_for
    assert_right(capsys, check, ["OnlineContrastiveLoss", "ContrastiveLoss"])
    assert_right(capsys, check, ("ContrastiveLoss", "OnlineContrastiveLoss"))
    assert_stub_and_reveal(capsys, check, right)
    cases = [(["BatchHardTripletLoss", "ContrastiveLoss", "OnlineContrastiveLoss"], "class label"),
             (["CoSENTLoss", "ContrastiveLoss"], "graded scores"),
             (["ContrastiveLoss"], "1 of your 1 losses is right, and at least one is missing"),
             (["TripletMarginLoss"], "not a loss name"), ("ContrastiveLoss", "list of loss names"),
             (["ContrastiveLoss", "ContrastiveLoss"], "repeated name"), ([], "your answer is empty")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
