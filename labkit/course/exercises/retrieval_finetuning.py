"""Checkers for the exercises of notebooks/14_retrieval_finetuning.ipynb.

Exercise 1: NDCG@5 of one query's ranking, by hand. Exercise 2: the negatives one anchor sees when a batch
is split into mini-batches for gradient accumulation. Each checker computes the right answer with labkit
(`labkit.retrieval.per_query_metrics` on the ranking; `MultipleNegativesRankingLoss().explain` on one
mini-batch) and says what is right, or which slip the answer looks like and which step to recheck (never the
answer itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import math

import torch

from labkit.course.exercises import Exercise, Slip, check_number

# Exercise 1: one query with RELEVANT relevant documents; HITS[i] is 1 where rank i + 1 holds one of them.
HITS = (0, 1, 0, 1, 0)
RELEVANT = 2
# Exercise 2: a batch of ACCUMULATED_BATCH pairs trained as ACCUMULATION_STEPS mini-batches, one backward each.
ACCUMULATED_BATCH, ACCUMULATION_STEPS = 128, 4


def _ndcg(hits=HITS, relevant: int = RELEVANT) -> float:
    from labkit.retrieval import per_query_metrics

    k = len(hits)
    values = per_query_metrics(torch.tensor([hits]), [relevant], {"ndcg_at_k": (k,)})
    return float(values[f"ndcg@{k}"][0])


def _dcg(hits=HITS) -> float:
    return sum(hit / math.log2(rank + 2) for rank, hit in enumerate(hits))


def _ndcg_exercise(hits=HITS, relevant: int = RELEVANT) -> Exercise:
    expected = _ndcg(hits, relevant)
    k = len(hits)
    return Exercise(
        checker="check_ndcg", expected=expected,
        hint=f"DCG@{k} adds 1 / log2(rank + 1) for every relevant document in the first {k}; divide by the DCG of "
             f"the best possible ranking, the {relevant} relevant documents first",
        success=f"{expected:.4f}: the two relevant documents were found, but lower than they could have been",
        why="DCG = sum of 1/log2(rank + 1) over the hits; IDCG = the same with the relevant documents at ranks 1 "
            f"and 2; NDCG = DCG / IDCG (labkit.retrieval.per_query_metrics)",
        slips=(
            Slip(_dcg(hits), "DCG, not normalised", "the last step: divide by the ideal ranking's DCG"),
            Slip(_dcg(hits) / _dcg((1,) * k), f"DCG divided by the DCG of {k} relevant documents",
                 f"the ideal ranking: the query has {relevant} relevant documents, not {k}"),
            Slip(sum(hit / math.log2(rank + 1) for rank, hit in enumerate(hits) if rank > 0)
                 / (1 + sum(1 / math.log2(r + 1) for r in range(1, relevant))),
                 "the discount 1 / log2(rank) instead of 1 / log2(rank + 1)",
                 "the discount: rank 1 is divided by log2(2) = 1"),
            Slip(1 / (hits.index(1) + 1), "the reciprocal rank of the first hit (MRR)",
                 "the metric: NDCG counts every relevant document, discounted by its rank"),
        ))


def check_ndcg(answer, reveal: bool = False) -> bool:
    """Exercise 1: NDCG@5 of the ranking `HITS` for a query with `RELEVANT` relevant documents.

    A wrong answer gets the step to recheck; ``check_ndcg(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _ndcg_exercise(), reveal=reveal)


def _negatives_in_mini_batch(mini_batch: int) -> int:
    """Negatives of anchor 0 in MultipleNegativesRankingLoss over one mini-batch, counted from the loss."""
    from labkit.losses.ranking import MultipleNegativesRankingLoss

    columns = torch.zeros(2, mini_batch, 2, dtype=torch.float64).unbind(0)
    return len(MultipleNegativesRankingLoss().explain(*columns).columns["query_to_doc"]) - 1


def _accumulation_exercise(batch: int = ACCUMULATED_BATCH, steps: int = ACCUMULATION_STEPS) -> Exercise:
    mini_batch = batch // steps
    expected = _negatives_in_mini_batch(mini_batch)
    return Exercise(
        checker="check_accumulated_negatives", expected=expected,
        hint=f"gradient accumulation runs the loss {steps} times, once per mini-batch, and adds the gradients; "
             "which candidates does one run of the loss see?",
        success=f"{expected}: accumulation averages {steps} small losses, each with its mini-batch's negatives only; "
                f"GradCache would give all {batch - 1}",
        why=f"each of the {steps} losses is MNRL over {mini_batch} pairs: the other {mini_batch - 1} positives are "
            "the negatives (MultipleNegativesRankingLoss().explain(...).columns)",
        slips=(
            Slip(batch - 1, "the negatives of the whole batch", "what accumulation computes: one loss per "
                                                               "mini-batch, added up afterwards (that is GradCache's count)"),
            Slip(mini_batch, "every candidate of a mini-batch, the own positive included",
                 "the own positive: it is the right answer, not a negative"),
            Slip(steps * (mini_batch - 1), "the mini-batches' negatives added up",
                 "which losses an anchor is in: only its own mini-batch's"),
        ))


def check_accumulated_negatives(answer, reveal: bool = False) -> bool:
    """Exercise 2: negatives per anchor for MNRL with gradient accumulation (`ACCUMULATED_BATCH` pairs as
    `ACCUMULATION_STEPS` mini-batches).

    A wrong answer gets the step to recheck; ``check_accumulated_negatives(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _accumulation_exercise(), whole=True, reveal=reveal)


_EXERCISES = {"ndcg": _ndcg_exercise, "accumulated_negatives": _accumulation_exercise}
