"""The checkers of notebooks/14_retrieval_finetuning.ipynb accept right answers and explain wrong ones without revealing them.

Right answers are computed here independently: NDCG with the textbook formula in plain Python, the negatives
of accumulated mini-batches by listing each mini-batch's candidates.
"""
from __future__ import annotations

import math

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import retrieval_finetuning as ex


def naive_ndcg(hits, relevant):
    dcg = sum(hit / math.log2(rank + 1) for rank, hit in enumerate(hits, start=1))
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(relevant, len(hits)) + 1))
    return dcg / ideal


def naive_accumulated_negatives(batch, steps, anchor=0):
    mini = batch // steps
    own_mini_batch = [i for i in range(batch) if i // mini == anchor // mini]
    return sum(1 for candidate in own_mini_batch if candidate != anchor)


def test_ndcg_helper_matches_the_formula():
    for hits, relevant in [(ex.HITS, ex.RELEVANT), ((1, 0, 0, 1, 1), 4), ((0, 0, 1, 0, 0), 1)]:
        assert abs(ex._ndcg(hits, relevant) - naive_ndcg(hits, relevant)) < 1e-6


def test_check_ndcg(capsys):
    right = naive_ndcg(ex.HITS, ex.RELEVANT)
    check = ex.check_ndcg
    assert_right(capsys, check, right)
    assert_right(capsys, check, round(right, 4))
    assert_stub_and_reveal(capsys, check, right)
    dcg = sum(hit / math.log2(rank + 1) for rank, hit in enumerate(ex.HITS, start=1))
    all_relevant_ideal = sum(1 / math.log2(rank + 1) for rank in range(1, len(ex.HITS) + 1))
    log_rank = (sum(hit / math.log2(rank) for rank, hit in enumerate(ex.HITS, start=1) if rank > 1)
                / (1 + sum(1 / math.log2(rank) for rank in range(2, ex.RELEVANT + 1))))
    first_hit = 1 / (ex.HITS.index(1) + 1)
    cases = [(dcg, "not normalised"), (dcg / all_relevant_ideal, "ideal"), (log_rank, "log2(rank)"),
             (first_hit, "MRR"), (0.9, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_check_accumulated_negatives(capsys):
    right = naive_accumulated_negatives(ex.ACCUMULATED_BATCH, ex.ACCUMULATION_STEPS)
    check = ex.check_accumulated_negatives
    assert_right(capsys, check, right)
    assert_stub_and_reveal(capsys, check, right)
    mini = ex.ACCUMULATED_BATCH // ex.ACCUMULATION_STEPS
    cases = [(ex.ACCUMULATED_BATCH - 1, "whole batch"), (mini, "own positive"),
             (ex.ACCUMULATION_STEPS * (mini - 1), "added up"), (7, "Not quite"), (30.5, "whole number")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
