"""Checkers for the exercises of notebooks/09_training.ipynb.

Exercise 1: MAP@R of one query from its ranked list of results (relevant or not). Exercise 2: how many
examples and optimizer steps one epoch of P×K batches gives, with gradient accumulation. Each checker computes
the right answer (MAP@R as `labkit.evaluate.retrieval_metrics` defines it, the epoch length of
`labkit.sampling.PKBatchSampler`) and prints whether it is right, or which slip it looks like and which step
to recheck (never the answer itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import math

import numpy as np

from labkit.course.exercises import Exercise, Field, Slip, check_fields, check_number, show_fields

# Exercise 1: the results of one query, best first: 1 = same class as the query, 0 = another class.
# The query's class has R = 3 other members in the collection; one of them is only found at rank 6.
RANKING = (1, 0, 1, 0, 0, 1, 0)
NUM_RELEVANT = 3

# Exercise 2: class sizes of a small labelled training set, the P×K batch shape and the accumulation.
CLASS_SIZES = (7, 11, 15, 7, 11, 15, 7, 11)
P, K, GRAD_ACCUM_STEPS = 2, 4, 2


def _map_at_r(relevance, num_relevant: int) -> float:
    """MAP@R of one query: (1/R) * sum over the first R results of precision@i * rel(i).

    The per-query quantity that `labkit.evaluate.retrieval_metrics` averages as
    ``mean_average_precision_at_r``.
    """
    if num_relevant < 1:
        raise ValueError(f"num_relevant must be at least 1 (a query needs something to retrieve), got {num_relevant}.")
    rel = np.asarray(relevance, dtype=float)[:num_relevant]
    precision_at_i = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((precision_at_i * rel).sum() / num_relevant)


def _map_at_r_exercise() -> Exercise:
    expected = _map_at_r(RANKING, NUM_RELEVANT)
    rel = np.asarray(RANKING, dtype=float)
    every_rank = float((np.cumsum(rel) / np.arange(1, len(rel) + 1) * rel).sum())
    hits_in_r = rel[:NUM_RELEVANT].sum()
    return Exercise(
        checker="check_map_at_r", expected=expected,
        hint=f"only the first R = {NUM_RELEVANT} results count; at each relevant one among them take the precision "
             "so far (relevant found / rank), add these up and divide by R",
        success=f"MAP@R = {expected:.4f}. Relevant items found after rank R earn nothing",
        why="(1/R)·Σ_{i<=R} P(i)·rel(i): the precisions at the relevant results among the first R, divided by R",
        slips=(
            Slip(every_rank / NUM_RELEVANT, "a sum over every rank, beyond R too",
                 "where the sum stops: MAP@R stops at rank R"),
            Slip(float(rel[:NUM_RELEVANT].mean()), "R-precision (relevant among the first R)",
                 "the weights: MAP@R weights each hit by the precision at its rank"),
            Slip(expected * NUM_RELEVANT / hits_in_r, "a division by the hits in the first R",
                 "the last step: divide by R, however many of the first R are hits"),
        ))


def check_map_at_r(answer, reveal: bool = False) -> bool:
    """Exercise 1: MAP@R of the query whose results are `RANKING`, with R = `NUM_RELEVANT`: one number.

    A wrong answer gets the step to recheck; ``check_map_at_r(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _map_at_r_exercise(), rel_tol=0, abs_tol=1e-3, reveal=reveal)


def _epoch_sizes(labels=None, p: int = P, k: int = K, grad_accum_steps: int = GRAD_ACCUM_STEPS) -> dict:
    """Batches, examples and optimizer steps in one epoch, as `PKBatchSampler` and `labkit.train.fit` count them."""
    from labkit.sampling import PKBatchSampler

    labels = np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES) if labels is None else labels
    batches = len(PKBatchSampler(labels, p, k))
    return {"batches": batches, "examples": batches * p * k, "optimizer_steps": batches // grad_accum_steps}


def _epoch_sizes_exercise() -> Exercise:
    sizes = _epoch_sizes()
    fields = (
        Field("examples", sizes["examples"], (
            Slip(sum(CLASS_SIZES) // (P * K) * P * K, "every example fitting in a batch",
                 "the groups: the n_c % K left over in each class are not used this epoch"),
        )),
        Field("optimizer steps", sizes["optimizer_steps"], (
            Slip(sizes["batches"], "the number of batches",
                 f"the accumulation: with grad_accum_steps={GRAD_ACCUM_STEPS} an optimizer step uses that many batches"),
            Slip(math.ceil(sizes["batches"] / GRAD_ACCUM_STEPS), "a count rounded up",
                 "the rounding: fit() takes only whole optimizer steps from an epoch (round down)"),
        )),
    )
    return Exercise(
        checker="check_epoch_sizes", expected=fields, shown=show_fields(fields),
        hint=f"each class gives n_c // K groups of K = {K}; a batch takes P = {P} groups of different classes; an "
             f"optimizer step takes {GRAD_ACCUM_STEPS} batches",
        success=f"{sizes['batches']} batches of {P * K}, i.e. {sizes['examples']} examples, and "
                f"{sizes['optimizer_steps']} optimizer steps per epoch",
        why=f"PKBatchSampler fills {sizes['batches']} batches of {P} classes × {K}; {sizes['batches']} // "
            f"{GRAD_ACCUM_STEPS} optimizer steps")


def check_epoch_sizes(answer, reveal: bool = False) -> bool:
    """Exercise 2: (examples used in one epoch, optimizer steps in one epoch) for `CLASS_SIZES`, P, K, accumulation.

    A wrong answer gets a verdict per part and the step to recheck; ``check_epoch_sizes(answer, reveal=True)``
    prints the solution.
    """
    return check_fields(answer, _epoch_sizes_exercise(), reveal=reveal)


_EXERCISES = {"map_at_r": _map_at_r_exercise, "epoch_sizes": _epoch_sizes_exercise}
