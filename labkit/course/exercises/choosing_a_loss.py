"""Checkers for the exercises of notebooks/11_choosing_a_loss.ipynb.

Exercise 1: how many valid triplets BatchAllTripletLoss considers in a P×K batch. Exercise 2: how many
"pair i should be more similar than pair j" terms CoSENT sums for a batch of gold scores. Exercise 3: which
losses can train on a given DataFrame. Each checker computes the right answer with labkit (`labkit.mining`,
`CoSENTLoss.explain`, `labkit.experiment`) and says what is right, or which slip the answer looks like.
"""
from __future__ import annotations

import pandas as pd
import torch

from labkit.course.exercises import first_slip, matches, numeric_answer, report

# Exercise 1: a P×K batch.
P, K = 4, 3

# Exercise 2: the gold scores of one batch of STS pairs (in [0, 1]; two ties).
SCORES = (0.8, 0.2, 0.8, 0.4, 0.0, 0.6)

# Exercise 3: a small dataset; which losses can train on it?
DATA = pd.DataFrame({
    "text": ["How do I reset my PIN?", "My card has not arrived", "Can I top up by cheque?",
             "Where is my new card?"],
    "text_pair": ["I forgot my PIN, how can I change it?", "What is the exchange rate?",
                  "Is topping up with a cheque possible?", "The card I ordered has still not come"],
    "label": [1, 0, 1, 1],
})


def batch_all_triplets(p: int = P, k: int = K) -> int:
    """Valid (anchor, positive, negative) triplets in a P×K batch, counted with `labkit.mining.valid_triplet_mask`."""
    from labkit.mining import valid_triplet_mask

    labels = torch.arange(p).repeat_interleave(k)
    return int(valid_triplet_mask(labels).sum())


def cosent_comparisons(scores=SCORES) -> int:
    """Terms of CoSENT's sum for these gold scores: ordered pairs (i, j) with score_i > score_j (`explain`)."""
    from labkit.losses import CoSENTLoss

    gold = torch.tensor(scores, dtype=torch.float64)
    embeddings = torch.eye(len(gold), dtype=torch.float64)  # any embeddings: the count depends on the scores only
    return int(CoSENTLoss().explain(embeddings, embeddings.flip(0), gold).details["enters"].sum())


def losses_for(frame: pd.DataFrame = DATA) -> tuple[str, ...]:
    """The losses that fit `frame`, as `labkit.experiment` decides from its columns."""
    from labkit.experiment import LOSSES_FOR, data_kind

    return tuple(LOSSES_FOR[data_kind(frame)])


def check_batch_all_triplets(answer) -> bool:
    """Exercise 1: how many valid triplets BatchAllTripletLoss considers in a P×K batch with P=`P`, K=`K`."""
    expected = batch_all_triplets()
    hint = (f"Count anchors (P·K = {P * K}), then positives per anchor (the other K−1 of its class), then "
            "negatives per anchor (every text of the other P−1 classes), and multiply.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {P}·{K} anchors × {K - 1} positives × {(P - 1) * K} negatives = {expected} "
                            "triplets. Batch-hard keeps one per anchor, semi-hard one per (anchor, positive).", "")
    b = P * K
    slips = [
        (b, "that is batch-hard's count (one triplet per anchor); batch-all takes every positive with every negative."),
        (b * (K - 1), "that is semi-hard's count (one negative per anchor–positive pair); batch-all takes every negative."),
        (b * K * (P - 1) * K, "an anchor is not its own positive: each anchor has K−1 positives, not K."),
        (b * (K - 1) * (b - 1), "only texts of *other* classes are negatives, not every other text."),
        (expected // 2, "the order matters: (a, p, n) and (p, a, n) are different triplets (each text is an anchor)."),
        ((K - 1) * (P - 1) * K, "that is the count for one anchor; every text of the batch is an anchor."),
    ]
    slip = first_slip(value, slips)
    return report(False, "", f"You answered {value:g}; {slip or 'that is not it.'} {hint}")


def check_cosent_comparisons(answer) -> bool:
    """Exercise 2: how many terms CoSENT sums for a batch of pairs with gold scores `SCORES`."""
    expected = cosent_comparisons()
    n = len(SCORES)
    hint = ("CoSENT adds one term for every ordered pair of pairs (i, j) where pair i has the strictly higher gold "
            "score (it should get the higher cosine). Pairs with equal scores are not compared.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected} comparisons out of {n} pairs; the tied pairs (0.8, 0.8) give none.", "")
    slips = [
        (n * (n - 1) // 2, "that counts every unordered pair of pairs, ties included; tied scores give no term."),
        (n * (n - 1), "each comparison counts once (only the direction where pair i has the higher score)."),
        (n, "that is CosineSimilarityLoss's count (one term per pair); CoSENT compares pairs with each other."),
        (n * n, "a pair is never compared with itself, and ties are not compared."),
    ]
    slip = first_slip(value, slips)
    return report(False, "", f"You answered {value:g}; {slip or 'that is not it.'} {hint}")


def check_losses_for(answer) -> bool:
    """Exercise 3: the names of the losses that can train on `DATA` (a list, any order)."""
    from labkit.experiment import LOSSES_FOR

    expected = set(losses_for())
    hint = ("Look at the columns: single texts or pairs? A graded score, or a 0/1 label per pair? "
            "`labkit.experiment.LOSSES_FOR` lists the losses for each kind of data.")
    if answer is None:
        return report(False, "", "You have not answered yet — hint: " + hint)
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        return report(False, "", f"Give a list of loss names, e.g. ['ContrastiveLoss'], not {type(answer).__name__}. "
                                 + hint)
    given = {str(name) for name in answer}
    if given == expected:
        return report(True, f"Right: {', '.join(sorted(expected))}. The label is a 0/1 verdict on each *pair*, "
                            "which is what contrastive losses learn from.", "")
    wrong, missing = sorted(given - expected), sorted(expected - given)
    problems = []
    if set(wrong) & set(LOSSES_FOR["labelled"]):
        problems.append("the batch losses and MNRL need single texts with a class label; here `label` says whether "
                        "the two texts of a pair are similar (1) or not (0)")
    if set(wrong) & set(LOSSES_FOR["scored_pairs"]):
        problems.append("CosineSimilarity, CoSENT and AnglE are for graded scores; here each pair has only a 0/1 label")
    unknown = [name for name in wrong if not any(name in names for names in LOSSES_FOR.values())]
    if unknown:
        problems.append(f"{', '.join(unknown)} is not a loss name of labkit.experiment.LOSSES_FOR")
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    return report(False, "", "Not quite: " + "; ".join(problems) + ". " + hint)
