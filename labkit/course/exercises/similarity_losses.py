"""Checkers for the exercises of notebooks/06_similarity_losses.ipynb.

`exercise_scored_pairs()` gives the batch the exercises use; each checker takes your answer, computes the
right one with `labkit.losses.regression`, and prints what is right or a hint at what is off.
"""
from __future__ import annotations


import numpy as np
import torch

from labkit.course.exercises import close, describe_difference, first_slip, matches, numeric_answer, report
from labkit.losses.regression import CoSENTLoss, CosineSimilarityLoss, SoftmaxLoss
from labkit.distances import pairwise_cos_sim

STS_MAX_SCORE = 5.0  # STS-B's annotators score from 0 (unrelated) to 5 (same meaning)


def exercise_scored_pairs() -> tuple:
    """Four 2-D pairs (float64), their cosines 0.6, 0.8, 0.28, 0.96, and gold scores on STS-B's 0–5 scale.

    The gold scores are 2, 5, 0, 2: pairs 0 and 3 tie, and pair 3 (gold 2) has a higher cosine than pair 1
    (gold 5), the one ordering mistake in the batch.
    """
    emb_a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, -0.8]], dtype=torch.float64)
    emb_b = torch.tensor([[0.6, 0.8], [-0.6, 0.8], [-0.28, -0.96], [0.8, -0.6]], dtype=torch.float64)
    gold_0_to_5 = torch.tensor([2.0, 5.0, 0.0, 2.0], dtype=torch.float64)
    return emb_a, emb_b, gold_0_to_5


def check_cosine_similarity_loss(answer) -> bool:
    """CosineSimilarityLoss() of `exercise_scored_pairs()` after scaling the gold scores to [0, 1]."""
    emb_a, emb_b, gold = exercise_scored_pairs()
    scores = gold / STS_MAX_SCORE
    expected = float(CosineSimilarityLoss()(emb_a, emb_b, scores))
    hint = "Hint: divide the gold scores by 5, then take the mean over pairs of (cos(a_i, b_i) − score_i)²."
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected:.6f}. Pair 3 (cos 0.96 for a gold 0.4) makes most of it. Same as "
                            "CosineSimilarityLoss()(emb_a, emb_b, gold / 5).", "")
    cosine = pairwise_cos_sim(emb_a, emb_b)
    message = first_slip(value, [
        (((cosine - gold) ** 2).mean(), "You used the raw 0–5 scores. A cosine is at most 1, so CosineSimilarityLoss "
                                        "needs scores on the same scale: divide them by 5 first."),
        ((cosine - scores).abs().mean(), "That is the mean *absolute* error; CosineSimilarityLoss uses nn.MSELoss: "
                                         "square the differences."),
        (((cosine - scores) ** 2).sum(), "That is the sum over pairs; nn.MSELoss takes the mean."),
        ((((1 - cosine) - scores) ** 2).mean(), "You used the cosine distance 1 − cos; the loss compares the cosine "
                                                "*similarity* with the score."),
    ])
    if message:
        return report(False, "", message)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Compare your terms with "
                             "CosineSimilarityLoss().explain(emb_a, emb_b, gold / 5). " + hint)


def _pairs_of_pairs(answer) -> set | None:
    """The answer as a set of (i, j) tuples of ints, or None if it is not a collection of index pairs."""
    if answer is None or isinstance(answer, (str, bytes)):
        return None
    try:
        rows = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else list(answer), dtype=float)
    except (TypeError, ValueError):
        return None
    if rows.size == 0:
        return set()
    if rows.ndim != 2 or rows.shape[1] != 2 or not np.all(np.mod(rows, 1) == 0):
        return None
    return {(int(i), int(j)) for i, j in rows}


def check_cosent_pairs_of_pairs(answer) -> bool:
    """The (i, j) index pairs whose term enters CoSENT's sum for `exercise_scored_pairs()`."""
    emb_a, emb_b, gold = exercise_scored_pairs()
    table = CoSENTLoss().explain(emb_a, emb_b, gold).details["pairs_of_pairs"]
    expected = set(zip(table["i"].tolist(), table["j"].tolist()))
    hint = ("Hint: (i, j) enters when pair i has a strictly higher gold score than pair j (i should be more "
            "similar than j); ties and i = j never enter.")
    if answer is None:
        return report(False, "", "You have not answered yet. Give a list of (i, j) tuples. " + hint)
    chosen = _pairs_of_pairs(answer)
    if chosen is None:
        return report(False, "", "Give a list of (i, j) tuples of pair indices, e.g. [(0, 1), (2, 3)]. " + hint)
    if chosen == expected:
        return report(True, f"Right: {len(expected)} terms, {sorted(expected)}. Every correctly ordered term is in "
                            "the sum too; it just adds almost nothing once its gap is well below 0. The tie "
                            "between pairs 0 and 3 adds no term.", "")
    n = len(gold)
    ties = {(i, j) for i in range(n) for j in range(n) if i != j and gold[i] == gold[j]}
    if chosen == {(j, i) for i, j in expected}:
        return report(False, "", "You have every term the wrong way round: (i, j) enters when gold_i > gold_j, "
                                 "and its exponent is s_j − s_i (positive when pair j is wrongly more similar).")
    if chosen == expected | ties or chosen == expected | ties | {(i, i) for i in range(n)}:
        return report(False, "", "You included tied pairs (same gold score): CoSENT uses a strict '>' so ties add "
                                 "no term — the loss does not ask for an order between them.")
    misordered = set(zip(*[table.loc[table["gap"] > 0, c].tolist() for c in ("i", "j")]))
    if chosen == misordered:
        return report(False, "", "Those are the *misordered* terms only. CoSENT sums over every (i, j) with "
                                 "gold_i > gold_j; the well-ordered ones are in the sum but contribute little.")
    if chosen == {(min(i, j), max(i, j)) for i, j in expected}:
        return report(False, "", "Order matters: write (i, j) with gold_i > gold_j (the pair that should be more "
                                 "similar first).")
    missing, extra = sorted(expected - chosen), sorted(chosen - expected)
    return report(False, "", f"Not quite: missing {missing}, should not be there {extra}. " + hint)


def check_cosent_loss(answer) -> bool:
    """CoSENTLoss() (scale 20) of `exercise_scored_pairs()`, as one number."""
    emb_a, emb_b, gold = exercise_scored_pairs()
    explanation = CoSENTLoss().explain(emb_a, emb_b, gold)
    expected = explanation.loss
    hint = "Hint: s_i = 20·cos(a_i, b_i); loss = log(1 + Σ exp(s_j − s_i)) over the (i, j) of exercise 2."
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected:.6f}. The misordered term (1, 3) gives almost all of it, and the "
                            "scores' scale did not matter: gold / 5 gives the same loss. Same as "
                            "CoSENTLoss()(emb_a, emb_b, gold).", "")
    gaps = torch.tensor(explanation.details["pairs_of_pairs"]["gap"].tolist(), dtype=torch.float64)
    scores = explanation.per_pair["score"].to_numpy()
    n = len(scores)
    with_ties = [scores[j] - scores[i] for i in range(n) for j in range(n) if gold[i] >= gold[j]]
    message = first_slip(value, [
        (torch.logsumexp(gaps, 0), "You left out the 1 inside log(1 + Σ …): it is the exp(0) term that keeps the "
                                   "loss at 0 (not −∞) when every pair is ordered right."),
        (torch.log1p((gaps / 20).exp().sum()), "You forgot the scale: multiply the cosines by 20 before taking the "
                                               "differences."),
        (torch.log1p((-gaps).exp().sum()), "Wrong sign: the exponent is s_j − s_i, large when pair j (lower gold "
                                           "score) is *more* similar than pair i."),
        (torch.log1p(torch.tensor(with_ties).exp().sum()), "You included ties (and i = j): use gold_i > gold_j, "
                                                           "strictly."),
        (torch.log1p(gaps.exp()).sum(), "That is a sum of separate log(1 + exp(·)) terms; CoSENT puts all the terms "
                                        "inside one log(1 + Σ exp(·))."),
    ])
    if message:
        return report(False, "", message)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Compare with "
                             "CoSENTLoss().explain(emb_a, emb_b, gold).details['pairs_of_pairs']. " + hint)


def check_softmax_features(answer) -> bool:
    """The input SoftmaxLoss's classifier sees for `exercise_scored_pairs()`: concat(u, v, |u − v|), shape (4, 6)."""
    emb_a, emb_b, _ = exercise_scored_pairs()
    expected = SoftmaxLoss(embedding_dimension=2, num_labels=3).pair_features(emb_a, emb_b)
    hint = "Hint: torch.cat([u, v, (u - v).abs()], dim=1): one row per pair, 2 + 2 + 2 = 6 columns."
    if answer is None:
        return report(False, "", "You have not answered yet. " + hint)
    if isinstance(answer, (str, bytes)):
        return report(False, "", f"Give a tensor or array, not {type(answer).__name__}. " + hint)
    try:
        shape = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float).shape
    except (TypeError, ValueError):
        return report(False, "", f"Give a tensor or array, not {type(answer).__name__}. " + hint)
    if close(answer, expected):
        return report(True, "Right: (u, v, |u − v|), one row per pair. |u − v| is symmetric in the two texts and "
                            "small for similar ones: the feature SBERT found most useful.", "")
    u, v = emb_a, emb_b
    message = None
    if close(answer, torch.cat([u, v, u - v], dim=1)):
        message = ("You used u − v; SoftmaxLoss uses the absolute difference |u − v| (so swapping u and v "
                   "changes nothing).")
    elif close(answer, torch.cat([u, v, (u - v).abs(), u * v], dim=1)):
        message = "You also added u * v: that is concatenation_sent_multiplication, off by default."
    elif any(close(answer, torch.cat(order, dim=1)) for order in ([(u - v).abs(), u, v], [u, (u - v).abs(), v])):
        message = "Right pieces, wrong order: the classifier reads u first, then v, then |u − v|."
    elif shape == (3 * len(u), u.shape[1]) or shape == (3, len(u), u.shape[1]):
        message = f"Your answer has shape {shape}: you stacked the pieces as rows. Concatenate along dim=1 to get " \
                  "one row of 6 features per pair."
    elif shape != tuple(expected.shape):
        message = f"Your answer has shape {shape}; expected {tuple(expected.shape)}, one row of 6 features per pair."
    if message:
        return report(False, "", message)
    return report(False, "", f"Not quite: {describe_difference(answer, expected)}. " + hint)
