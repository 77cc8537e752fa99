"""Checkers for the exercises of notebooks/09_training.ipynb.

Exercise 1: MAP@R of one query from its ranked list of results (relevant or not). Exercise 2: how many
batches, examples and optimizer steps one epoch of P×K batches gives, with gradient accumulation. Each
checker computes the right answer with labkit (the retrieval definition of `labkit.evaluate`, the epoch
length of `labkit.sampling.PKBatchSampler`) and prints what is right, or which slip the answer looks like.
"""
from __future__ import annotations

import math

import numpy as np

from labkit.course.exercises import report

# Exercise 1: the results of one query, best first: 1 = same class as the query, 0 = another class.
# The query's class has R = 3 other members in the collection; one of them is only found at rank 6.
RANKING = (1, 0, 1, 0, 0, 1, 0)
NUM_RELEVANT = 3

# Exercise 2: class sizes of a small labelled training set, the P×K batch shape and the accumulation.
CLASS_SIZES = (7, 11, 15, 7, 11, 15, 7, 11)
P, K, GRAD_ACCUM_STEPS = 2, 4, 2


def map_at_r(relevance, num_relevant: int) -> float:
    """MAP@R of one query: (1/R) * sum over the first R results of precision@i * rel(i).

    The per-query quantity that `labkit.evaluate.retrieval_metrics` averages as
    ``mean_average_precision_at_r``.
    """
    if num_relevant < 1:
        raise ValueError(f"num_relevant must be at least 1 (a query needs something to retrieve), got {num_relevant}.")
    rel = np.asarray(relevance, dtype=float)[:num_relevant]
    precision_at_i = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((precision_at_i * rel).sum() / num_relevant)


def exercise_labels() -> np.ndarray:
    """One label per example of exercise 2: class c repeated CLASS_SIZES[c] times."""
    return np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES)


def epoch_sizes(labels=None, p: int = P, k: int = K, grad_accum_steps: int = GRAD_ACCUM_STEPS) -> dict:
    """Batches, examples and optimizer steps in one epoch, as `PKBatchSampler` and `labkit.train.fit` count them."""
    from labkit.sampling import PKBatchSampler

    labels = exercise_labels() if labels is None else labels
    batches = len(PKBatchSampler(labels, p, k))
    return {"batches": batches, "examples": batches * p * k, "optimizer_steps": batches // grad_accum_steps}


def _as_number(answer):
    if answer is None or isinstance(answer, (str, bytes, bool)):
        return None
    try:
        values = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        return None
    return float(values.reshape(-1)[0]) if values.size == 1 else None


def check_map_at_r(answer) -> bool:
    """Exercise 1: MAP@R of the query whose results are `RANKING`, with R = `NUM_RELEVANT`."""
    expected = map_at_r(RANKING, NUM_RELEVANT)
    hint = ("Only the first R = 3 results count; at each relevant one among them take the precision so far "
            "(relevant found / rank), add these up and divide by R.")
    if answer is None:
        return report(False, "", "You have not answered yet — hint: " + hint)
    value = _as_number(answer)
    if value is None:
        return report(False, "", f"Give one number, got {answer!r}. " + hint)
    if math.isclose(value, expected, abs_tol=1e-3):
        return report(True, f"Right: MAP@R = {expected:.4f}. Relevant items found after rank R earn nothing.", "")
    rel = np.asarray(RANKING, dtype=float)
    everything = float((np.cumsum(rel) / np.arange(1, len(rel) + 1) * rel).sum())
    slips = {
        everything / NUM_RELEVANT: "you counted the relevant results beyond rank R too; MAP@R stops at rank R.",
        float(rel[:NUM_RELEVANT].mean()): "that is R-precision (relevant among the first R); MAP@R also weights "
                                          "each hit by the precision at its rank.",
        map_at_r(RANKING, NUM_RELEVANT) * NUM_RELEVANT / rel[:NUM_RELEVANT].sum(): "you divided by the number of hits "
                                                                                  "in the first R, not by R.",
    }
    for slip, message in slips.items():
        if math.isclose(value, slip, abs_tol=1e-3):
            return report(False, "", f"You got {value:.4f}: {message}")
    return report(False, "", f"You got {value:.4g}, not the expected value. " + hint)


def check_epoch_sizes(answer) -> bool:
    """Exercise 2: (examples used in one epoch, optimizer steps in one epoch) for `CLASS_SIZES`, P, K, accumulation."""
    expected = epoch_sizes()
    hint = (f"Each class gives n_c // K groups of K = {K}; a batch takes P = {P} groups of different classes; "
            f"an optimizer step takes {GRAD_ACCUM_STEPS} batches.")
    if answer is None:
        return report(False, "", "You have not answered yet — hint: " + hint)
    try:
        examples, steps = (int(v) for v in answer)
    except (TypeError, ValueError):
        return report(False, "", f"Give a pair (examples, optimizer_steps), got {answer!r}. " + hint)
    problems = []
    if examples != expected["examples"]:
        naive = sum(CLASS_SIZES) // (P * K) * P * K
        if examples == naive:
            problems.append(f"{examples} examples assumes every example fits in a batch; the n_c % K left over "
                            "in each class are not used this epoch.")
        else:
            problems.append(f"{examples} examples is off: count the groups of K per class, then the full batches.")
    if steps != expected["optimizer_steps"]:
        if steps == expected["batches"]:
            problems.append(f"{steps} is the number of batches; with grad_accum_steps={GRAD_ACCUM_STEPS} an "
                            "optimizer step uses that many batches.")
        elif steps == math.ceil(expected["batches"] / GRAD_ACCUM_STEPS):
            problems.append(f"{steps} rounds up; fit() takes only whole optimizer steps from an epoch (round down).")
        else:
            problems.append(f"{steps} optimizer steps is off. " + hint)
    if problems:
        return report(False, "", " ".join(problems))
    return report(True, f"Right: {expected['batches']} batches of {P * K}, i.e. {expected['examples']} examples, "
                        f"and {expected['optimizer_steps']} optimizer steps per epoch.", "")
