"""Checkers for the exercises of notebooks/11_choosing_a_loss.ipynb.

Exercise 1: how many valid triplets BatchAllTripletLoss considers in a P×K batch. Exercise 2: how many
"pair i should be more similar than pair j" terms CoSENT sums for a batch of gold scores. Exercise 3: which
losses can train on a given DataFrame. Each checker computes the right answer with labkit (`labkit.mining`,
`CoSENTLoss.explain`, `labkit.experiment`) and says what is right, or which slip the answer looks like and
which step to recheck (never the answer itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import pandas as pd
import torch

from labkit.course.exercises import Exercise, Slip, check_number, check_set

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


def _batch_all_triplets(p: int = P, k: int = K) -> int:
    """Valid (anchor, positive, negative) triplets in a P×K batch, counted with `labkit.mining.valid_triplet_mask`."""
    from labkit.mining import valid_triplet_mask

    labels = torch.arange(p).repeat_interleave(k)
    return int(valid_triplet_mask(labels).sum())


def _cosent_comparisons(scores=SCORES) -> int:
    """Terms of CoSENT's sum for these gold scores: ordered pairs (i, j) with score_i > score_j (`explain`)."""
    from labkit.losses import CoSENTLoss

    gold = torch.tensor(scores, dtype=torch.float64)
    embeddings = torch.eye(len(gold), dtype=torch.float64)  # any embeddings: the count depends on the scores only
    return int(CoSENTLoss().explain(embeddings, embeddings.flip(0), gold).details["enters"].sum())


def _losses_for(frame: pd.DataFrame = DATA) -> tuple[str, ...]:
    """The losses that fit `frame`, as `labkit.experiment` decides from its columns."""
    from labkit.experiment import LOSSES_FOR, data_kind

    return tuple(LOSSES_FOR[data_kind(frame)])


def _batch_all_triplets_exercise() -> Exercise:
    expected = _batch_all_triplets()
    b = P * K
    return Exercise(
        checker="check_batch_all_triplets", expected=expected,
        hint=f"count anchors (P·K = {b}), then positives per anchor (the other K−1 of its class), then negatives "
             "per anchor (every text of the other P−1 classes), and multiply",
        success=f"{P}·{K} anchors × {K - 1} positives × {(P - 1) * K} negatives = {expected} triplets. Batch-hard "
                "keeps one per anchor, semi-hard one per (anchor, positive)",
        why="P·K anchors × (K − 1) positives × (P − 1)·K negatives (labkit.mining.valid_triplet_mask)",
        slips=(
            Slip(b, "batch-hard's count (one triplet per anchor)",
                 "what batch-all takes: every positive with every negative"),
            Slip(b * (K - 1), "semi-hard's count (one negative per anchor–positive pair)",
                 "what batch-all takes: every negative too"),
            Slip(b * K * (P - 1) * K, "a count where an anchor is its own positive",
                 "the positives: each anchor has K−1, not K"),
            Slip(b * (K - 1) * (b - 1), "a count where every other text is a negative",
                 "the negatives: only texts of *other* classes"),
            Slip(expected // 2, "each triplet counted once for two orders",
                 "the order: (a, p, n) and (p, a, n) are different triplets (each text is an anchor)"),
            Slip((K - 1) * (P - 1) * K, "the count for one anchor", "the anchors: every text of the batch is one"),
        ))


def check_batch_all_triplets(answer, reveal: bool = False) -> bool:
    """Exercise 1: how many valid triplets BatchAllTripletLoss considers in a P×K batch with P=`P`, K=`K`.

    A wrong answer gets the step to recheck; ``check_batch_all_triplets(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _batch_all_triplets_exercise(), whole=True, reveal=reveal)


def _cosent_comparisons_exercise() -> Exercise:
    expected = _cosent_comparisons()
    n = len(SCORES)
    return Exercise(
        checker="check_cosent_comparisons", expected=expected,
        hint="CoSENT adds one term for every ordered pair of pairs (i, j) where pair i has the strictly higher gold "
             "score (it should get the higher cosine). Pairs with equal scores are not compared",
        success=f"{expected} comparisons out of {n} pairs; the tied pairs (0.8, 0.8) give none",
        why="the ordered pairs (i, j) with score_i > score_j, strictly (CoSENTLoss().explain(...).details['enters'])",
        slips=(
            Slip(n * (n - 1) // 2, "every unordered pair of pairs, ties included", "the ties: tied scores give no term"),
            Slip(n * (n - 1), "every ordered pair of pairs",
                 "the direction: each comparison counts once, where pair i has the higher score"),
            Slip(n, "CosineSimilarityLoss's count (one term per pair)", "what CoSENT compares: pairs with each other"),
            Slip(n * n, "every (i, j), i = j included", "which pairs are compared: never a pair with itself, nor ties"),
        ))


def check_cosent_comparisons(answer, reveal: bool = False) -> bool:
    """Exercise 2: how many terms CoSENT sums for a batch of pairs with gold scores `SCORES`.

    A wrong answer gets the step to recheck; ``check_cosent_comparisons(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _cosent_comparisons_exercise(), whole=True, reveal=reveal)


def _read_loss_names(answer) -> tuple:
    from labkit.experiment import LOSSES_FOR

    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
        return None, f"Give a list of loss names, e.g. ['ContrastiveLoss'], not {type(answer).__name__}."
    names = [str(name) for name in answer]
    if len(set(names)) != len(names):
        return None, "Give each loss name once: your list has a repeated name."
    known = {name for names in LOSSES_FOR.values() for name in names}
    unknown = [name for name in names if name not in known]
    if unknown:
        return None, f"{', '.join(unknown)}: not a loss name of labkit.experiment.LOSSES_FOR."
    return frozenset(names), None


def _losses_for_exercise() -> Exercise:
    from labkit.experiment import LOSSES_FOR, data_kind

    kind = data_kind(DATA)
    expected = frozenset(_losses_for())
    kind_slips = {
        "labelled": Slip(lambda given: given & set(LOSSES_FOR["labelled"]) - expected,
                         "a list with losses for single texts with a class label (the batch losses, MNRL)",
                         "the columns: here `label` says whether the two texts of a pair are similar (1) or not (0)"),
        "scored_pairs": Slip(lambda given: given & set(LOSSES_FOR["scored_pairs"]) - expected,
                             "a list with losses for graded scores (CosineSimilarity, CoSENT, AnglE)",
                             "the label column: here each pair has only a 0/1 label, not a graded score"),
        "binary_pairs": Slip(lambda given: given & set(LOSSES_FOR["binary_pairs"]) - expected,
                             "a list with losses for pairs labelled 0/1 (the contrastive losses)",
                             "the columns: what does each row hold, and what does its label mean?"),
    }
    return Exercise(
        checker="check_losses_for", expected=expected,
        hint="look at the columns: single texts or pairs? A graded score, or a 0/1 label per pair? "
             "`labkit.experiment.LOSSES_FOR` lists the losses for each kind of data",
        success=f"{', '.join(sorted(expected))}. The label is a 0/1 verdict on each *pair*, which is what "
                "contrastive losses learn from",
        why=f"the columns (text, text_pair, a 0/1 label) make it {kind!r} data: "
            f"labkit.experiment.LOSSES_FOR[{kind!r}]",
        slips=tuple(slip for other, slip in kind_slips.items() if other != kind))


def check_losses_for(answer, reveal: bool = False) -> bool:
    """Exercise 3: the names of the losses that can train on `DATA` (a list, any order).

    A wrong answer gets how many of yours are right (never which); ``check_losses_for(answer, reveal=True)``
    prints the solution.
    """
    return check_set(answer, _losses_for_exercise(), read=_read_loss_names, noun="losses", reveal=reveal)


_EXERCISES = {"batch_all_triplets": _batch_all_triplets_exercise, "cosent_comparisons": _cosent_comparisons_exercise,
              "losses_for": _losses_for_exercise}
