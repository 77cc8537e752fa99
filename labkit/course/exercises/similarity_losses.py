"""Checkers for the exercises of notebooks/06_similarity_losses.ipynb.

`exercise_scored_pairs()` gives the batch the exercises use; each checker takes your answer, computes the
right one with `labkit.losses.regression`, and prints whether it is right, or which step to recheck (never the
answer itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import numpy as np
import torch

from labkit.course.exercises import Exercise, Slip, check_array, check_number, check_set
from labkit.losses.regression import CoSENTLoss, CosineSimilarityLoss, SoftmaxLoss
from labkit.distances import pairwise_cos_sim

STS_MAX_SCORE = 5.0  # STS-B's annotators score from 0 (unrelated) to 5 (same meaning)


def exercise_scored_pairs() -> tuple:
    """Four 2-D pairs (float64) and their gold scores on STS-B's 0–5 scale: ``(emb_a, emb_b, gold_0_to_5)``."""
    # The cosines are 0.6, 0.8, 0.28, 0.96 and the gold scores 2, 5, 0, 2: pairs 0 and 3 tie, and pair 3 (gold 2)
    # has a higher cosine than pair 1 (gold 5), the one ordering mistake in the batch.
    emb_a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, -0.8]], dtype=torch.float64)
    emb_b = torch.tensor([[0.6, 0.8], [-0.6, 0.8], [-0.28, -0.96], [0.8, -0.6]], dtype=torch.float64)
    gold_0_to_5 = torch.tensor([2.0, 5.0, 0.0, 2.0], dtype=torch.float64)
    return emb_a, emb_b, gold_0_to_5


def _cosine_similarity_loss() -> Exercise:
    emb_a, emb_b, gold = exercise_scored_pairs()
    scores = gold / STS_MAX_SCORE
    expected = float(CosineSimilarityLoss()(emb_a, emb_b, scores))
    cosine = pairwise_cos_sim(emb_a, emb_b)
    return Exercise(
        checker="check_cosine_similarity_loss", expected=expected,
        hint="divide the gold scores by 5, then take the mean over pairs of (cos(a_i, b_i) − score_i)²",
        success=f"{expected:.6f}. Pair 3 (cos 0.96 for a gold 0.4) makes most of it. Same as "
                "CosineSimilarityLoss()(emb_a, emb_b, gold / 5)",
        why="the mean over the 4 pairs of (cos(a_i, b_i) − gold_i / 5)² (nn.MSELoss)",
        slips=(
            Slip(float(((cosine - gold) ** 2).mean()), "the loss of the raw 0–5 scores",
                 "the scale: a cosine is at most 1, so divide the scores by 5 first"),
            Slip(float((cosine - scores).abs().mean()), "the mean *absolute* error",
                 "the error: CosineSimilarityLoss uses nn.MSELoss, so square the differences"),
            Slip(float(((cosine - scores) ** 2).sum()), "the sum over the pairs", "the reduction: nn.MSELoss takes the mean"),
            Slip(float((((1 - cosine) - scores) ** 2).mean()), "the loss of the cosine distance 1 − cos",
                 "what is compared: the cosine *similarity* with the score"),
        ))


def check_cosine_similarity_loss(answer, reveal: bool = False) -> bool:
    """CosineSimilarityLoss() of `exercise_scored_pairs()` after scaling the gold scores to [0, 1]: one number.

    A wrong answer gets the step to recheck; ``check_cosine_similarity_loss(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _cosine_similarity_loss(), reveal=reveal)


def _read_pairs_of_pairs(answer) -> tuple:
    """The answer as a frozenset of (i, j) tuples of ints, or why it is not a collection of index pairs."""
    form = "Give a list of (i, j) tuples of pair indices, one tuple per term."
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") and not hasattr(answer, "detach"):
        return None, form
    try:
        rows = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else list(answer))
    except (TypeError, ValueError):
        return None, form
    if rows.size == 0:
        return frozenset(), None
    if rows.ndim != 2 or rows.shape[1] != 2:
        return None, form
    if rows.dtype.kind not in "iu":
        return None, "Pair indices must be integers: no floats."
    pairs = [(int(i), int(j)) for i, j in rows]
    if len(set(pairs)) != len(pairs):
        return None, "Give each (i, j) once: your list has a repeated pair."
    return frozenset(pairs), None


def _cosent_pairs_of_pairs() -> Exercise:
    emb_a, emb_b, gold = exercise_scored_pairs()
    table = CoSENTLoss().explain(emb_a, emb_b, gold).details["pairs_of_pairs"]
    expected = frozenset(zip(table["i"].tolist(), table["j"].tolist()))
    n = len(gold)
    ties = {(i, j) for i in range(n) for j in range(n) if i != j and gold[i] == gold[j]}
    misordered = set(zip(*[table.loc[table["gap"] > 0, c].tolist() for c in ("i", "j")]))
    return Exercise(
        checker="check_cosent_pairs_of_pairs", expected=expected,
        hint="(i, j) enters when pair i has a strictly higher gold score than pair j (i should be more similar "
             "than j); ties and i = j never enter",
        success=f"{len(expected)} terms, {sorted(expected)}. Every correctly ordered term is in the sum too; it "
                "just adds almost nothing once its gap is well below 0. The tie between pairs 0 and 3 adds no term",
        why="every ordered (i, j) with gold_i > gold_j, strictly (CoSENTLoss().explain(...).details['pairs_of_pairs'])",
        slips=(
            Slip({(j, i) for i, j in expected}, "every term the wrong way round",
                 "the order in (i, j): it enters when gold_i > gold_j, and its exponent is s_j − s_i"),
            Slip(expected | ties, "the terms with the tied pairs added",
                 "the comparison: CoSENT uses a strict '>', so ties (same gold score) add no term"),
            Slip(expected | ties | {(i, i) for i in range(n)}, "the terms with ties and i = j added",
                 "the comparison: CoSENT uses a strict '>', so ties and a pair with itself add no term"),
            Slip(misordered, "the *misordered* terms only",
                 "which terms are in the sum: every (i, j) with gold_i > gold_j; the well-ordered ones contribute "
                 "little, but they are there"),
            Slip({(min(i, j), max(i, j)) for i, j in expected}, "the right pairs written smaller index first",
                 "the order in (i, j): the pair that should be more similar (higher gold) comes first"),
        ))


def check_cosent_pairs_of_pairs(answer, reveal: bool = False) -> bool:
    """The (i, j) index pairs whose term enters CoSENT's sum for `exercise_scored_pairs()`, any order.

    A wrong answer gets how many of yours are right (never which); ``check_cosent_pairs_of_pairs(answer,
    reveal=True)`` prints the solution.
    """
    return check_set(answer, _cosent_pairs_of_pairs(), read=_read_pairs_of_pairs, noun="pairs of pairs",
                     reveal=reveal)


def _cosent_loss() -> Exercise:
    emb_a, emb_b, gold = exercise_scored_pairs()
    explanation = CoSENTLoss().explain(emb_a, emb_b, gold)
    expected = explanation.loss
    gaps = torch.tensor(explanation.details["pairs_of_pairs"]["gap"].tolist(), dtype=torch.float64)
    scores = explanation.per_pair["score"].to_numpy()
    n = len(scores)
    with_ties = [scores[j] - scores[i] for i in range(n) for j in range(n) if gold[i] >= gold[j]]
    return Exercise(
        checker="check_cosent_loss", expected=expected,
        hint="s_i = 20·cos(a_i, b_i); loss = log(1 + Σ exp(s_j − s_i)) over the (i, j) of exercise 2",
        success=f"{expected:.6f}. The misordered term (1, 3) gives almost all of it, and the scores' scale did not "
                "matter: gold / 5 gives the same loss. Same as CoSENTLoss()(emb_a, emb_b, gold)",
        why="log(1 + Σ exp(20·(cos_j − cos_i))) over the (i, j) with gold_i > gold_j",
        slips=(
            Slip(float(torch.logsumexp(gaps, 0)), "the loss without the 1 inside log(1 + Σ …)",
                 "the 1: it is the exp(0) term that keeps the loss at 0 (not −∞) when every pair is ordered right"),
            Slip(float(torch.log1p((gaps / 20).exp().sum())), "the loss without the scale",
                 "the scale: multiply the cosines by 20 before taking the differences"),
            Slip(float(torch.log1p((-gaps).exp().sum())), "the loss with the sign of the exponent flipped",
                 "the exponent: s_j − s_i, large when pair j (lower gold score) is *more* similar than pair i"),
            Slip(float(torch.log1p(torch.tensor(with_ties).exp().sum())), "the loss with ties (and i = j) included",
                 "the pairs of exercise 2: gold_i > gold_j, strictly"),
            Slip(float(torch.log1p(gaps.exp()).sum()), "a sum of separate log(1 + exp(·)) terms",
                 "where the sum goes: CoSENT puts all the terms inside one log(1 + Σ exp(·))"),
        ))


def check_cosent_loss(answer, reveal: bool = False) -> bool:
    """CoSENTLoss() (scale 20) of `exercise_scored_pairs()`, as one number.

    A wrong answer gets the step to recheck; ``check_cosent_loss(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _cosent_loss(), reveal=reveal)


def _softmax_features() -> Exercise:
    u, v, _ = exercise_scored_pairs()
    return Exercise(
        checker="check_softmax_features",
        expected=SoftmaxLoss(embedding_dimension=2, num_labels=3).pair_features(u, v),
        hint="torch.cat([u, v, (u - v).abs()], dim=1): one row per pair, 2 + 2 + 2 = 6 columns",
        success="(u, v, |u − v|), one row per pair. |u − v| is symmetric in the two texts and small for similar "
                "ones: the feature SBERT found most useful",
        why="torch.cat([u, v, (u - v).abs()], dim=1) (SoftmaxLoss.pair_features)",
        slips=(
            Slip(torch.cat([u, v, u - v], dim=1), "the features with u − v",
                 "the third piece: SoftmaxLoss uses the absolute difference |u − v| (so swapping u and v changes "
                 "nothing)"),
            Slip(torch.cat([u, v, (u - v).abs(), u * v], dim=1), "the features with u * v added",
                 "the pieces: u * v is concatenation_sent_multiplication, off by default"),
            Slip(torch.cat([(u - v).abs(), u, v], dim=1), "the right pieces in the wrong order",
                 "the order: the classifier reads u first, then v, then |u − v|"),
            Slip(torch.cat([u, (u - v).abs(), v], dim=1), "the right pieces in the wrong order",
                 "the order: the classifier reads u first, then v, then |u − v|"),
            Slip(torch.cat([u, v, (u - v).abs()], dim=0), "the pieces stacked as rows",
                 "the axis: concatenate along dim=1, to get one row of 6 features per pair"),
            Slip(torch.stack([u, v, (u - v).abs()]), "the pieces stacked as rows",
                 "the axis: concatenate along dim=1, to get one row of 6 features per pair"),
        ))


def check_softmax_features(answer, reveal: bool = False) -> bool:
    """The input SoftmaxLoss's classifier sees for `exercise_scored_pairs()`: concat(u, v, |u − v|), shape (4, 6).

    A wrong answer gets the step to recheck; ``check_softmax_features(answer, reveal=True)`` prints the solution.
    """
    return check_array(answer, _softmax_features(), reveal=reveal,
                       shape_hint="The classifier sees one row of 6 features per pair.")


_EXERCISES = {"cosine_similarity_loss": _cosine_similarity_loss, "cosent_pairs_of_pairs": _cosent_pairs_of_pairs,
              "cosent_loss": _cosent_loss, "softmax_features": _softmax_features}
