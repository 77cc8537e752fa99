"""Checkers for the exercises of notebooks/07_in_batch_negatives.ipynb.

`exercise_batch()` gives the toy (anchor, positive) batch the first two exercises use, `tension_batch()`
the two views of the Contrastive Tension exercise. Each checker computes the right answer with
`labkit.losses.ranking`, and recognises the usual slips (no scale, softmax over the wrong axis, a sum
instead of a mean, ...) so its hint says which step to recheck (never the answer itself). Add
``reveal=True`` to see the solution.
"""
from __future__ import annotations

import math

import torch

from labkit.course.exercises import Exercise, Slip, check_array, check_number
from labkit.losses.ranking import ContrastiveTensionLossInBatchNegatives, MultipleNegativesRankingLoss
from labkit.distances import cos_sim, dot_score

EXERCISE_SCALE = 5.0
TENSION_SCALE = 10.0


def exercise_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three anchors and their positives in 2-D (float64); row i of `anchor` goes with row i of `positive`.

    The vectors are not unit length, so a dot product and a cosine give different numbers. Anchor 1 lies
    almost halfway between positives 0 and 1: the row that is hard to get right.
    """
    anchor = torch.tensor([[2.0, 0.0], [1.0, 1.2], [-1.0, -1.0]], dtype=torch.float64)
    positive = torch.tensor([[1.0, 0.3], [0.3, 1.0], [-2.0, 0.5]], dtype=torch.float64)
    return anchor, positive


def tension_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The same three sentences through the two encoders of Contrastive Tension (emb_1: the copy, emb_2: the model)."""
    emb_1 = torch.tensor([[1.0, 0.2], [0.3, 1.0], [-1.0, 0.4]], dtype=torch.float64)
    emb_2 = torch.tensor([[0.9, -0.3], [0.6, 0.8], [-0.8, -0.1]], dtype=torch.float64)
    return emb_1, emb_2


def _cross_entropy_rows(logits: torch.Tensor) -> torch.Tensor:
    """-log softmax(row i)[i], for every row i."""
    return torch.logsumexp(logits, dim=1) - logits.diagonal()


def _mnrl_loss() -> Exercise:
    anchor, positive = exercise_batch()
    expected = MultipleNegativesRankingLoss(scale=EXERCISE_SCALE)(anchor, positive).item()
    cosine = cos_sim(anchor, positive)
    rows = _cross_entropy_rows(EXERCISE_SCALE * cosine)
    columns = _cross_entropy_rows(EXERCISE_SCALE * cosine.T)
    return Exercise(
        checker="check_mnrl_loss", expected=expected,
        hint="S = 5 · cos(anchor_i, positive_j) (3 × 3); the loss of row i is −log(exp(S[i, i]) / Σ_j exp(S[i, j])); "
             "average the 3 rows",
        success=f"{expected:.4f}, the same as MultipleNegativesRankingLoss(scale=5)(anchor, positive). Each anchor "
                "picked its positive out of the 3 candidates",
        why="the mean over the 3 rows of the cross-entropy of softmax(5 · cos(anchor_i, positive_j)) with target i",
        slips=(
            Slip(float(rows.sum()), "the *sum* over the 3 anchors", "the reduction: the loss is their mean"),
            Slip(float(-rows.mean()), "the loss with the wrong sign",
                 "the sign: cross-entropy is −log(probability), a positive number"),
            Slip(float(_cross_entropy_rows(cosine).mean()), "the loss without the scale",
                 "the scale: multiply the cosines by 5 before the softmax"),
            Slip(float(_cross_entropy_rows(EXERCISE_SCALE * dot_score(anchor, positive)).mean()),
                 "the loss of dot products", "the similarity: the default is the cosine, so divide by both "
                                             "vectors' lengths first"),
            Slip(float(columns.mean()), "the softmax over each *column* (each positive picking its anchor)",
                 "the axis: MNRL takes it over each row, anchor i against all positives"),
            Slip(float(rows.mean()) / math.log(2), "the loss in bits (log base 2)",
                 "the logarithm: use the natural one"),
            Slip(float((rows.mean() + columns.mean()) / 2), "the symmetric loss (rows and columns averaged)",
                 "the direction: this exercise asks for one, the rows"),
        ))


def check_mnrl_loss(answer, reveal: bool = False) -> bool:
    """MultipleNegativesRankingLoss(scale=5) of `exercise_batch()`, computed by hand: one number.

    A wrong answer gets the step to recheck; ``check_mnrl_loss(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _mnrl_loss(), rel_tol=0, abs_tol=1e-4, reveal=reveal)


def _positive_probabilities(scales=(1.0, 20.0)) -> torch.Tensor:
    """Row k: the probability each anchor of `exercise_batch()` gives its own positive at scale `scales[k]`."""
    anchor, positive = exercise_batch()
    rows = []
    for scale in scales:
        explanation = MultipleNegativesRankingLoss(scale=scale).explain(anchor, positive)
        rows.append(explanation.probabilities["query_to_doc"].diagonal())
    return torch.stack(rows)


def _positive_probabilities_exercise() -> Exercise:
    expected = _positive_probabilities((1.0, 20.0))
    anchor, positive = exercise_batch()
    cosine = cos_sim(anchor, positive)
    scales = (1.0, 20.0)
    return Exercise(
        checker="check_positive_probabilities", expected=expected,
        hint="for each scale s, take torch.softmax(s * cos_sim(anchor, positive), dim=1).diagonal(); stack the two rows",
        success=f"at scale 1 the softmax is flat: no positive gets more than {expected[0].max().item():.2f} however "
                "well it is placed. At scale 20 the easy rows give their positive ~1.0 and only the confusable "
                f"anchor 1 keeps doubt ({expected[1].min().item():.3f}). The scale sets how sharply the loss "
                "separates candidates",
        why="softmax(s · cos(anchor_i, positive_j)) over each row j, its diagonal, for s = 1 then s = 20",
        slips=(
            Slip(expected.flip(0), "the right rows, swapped", "the order of the rows: row 0 is scale 1, row 1 scale 20"),
            Slip(torch.stack([torch.softmax(s * cosine, dim=0).diagonal() for s in scales]),
                 "the softmax over each column (dim=0)", "the axis: anchor i's probabilities are row i, softmax(dim=1)"),
            Slip(torch.stack([torch.softmax(cosine, dim=1).diagonal()] * 2), "the scale-1 probabilities twice",
                 "the second row's scale: multiply the cosines by 20"),
            Slip(torch.stack([(s * cosine).exp().diagonal() for s in scales]), "exp(logit) without the normalisation",
                 "the softmax: divide by the row's sum"),
            Slip(torch.stack([torch.softmax(s * dot_score(anchor, positive), dim=1).diagonal() for s in scales]),
                 "the probabilities of dot products", "the similarity: MNRL's default is the cosine"),
        ))


def check_positive_probabilities(answer, reveal: bool = False) -> bool:
    """A (2, 3) array: the softmax probability of each anchor's own positive at scale 1 (row 0) and 20 (row 1).

    A wrong answer gets the step to recheck; ``check_positive_probabilities(answer, reveal=True)`` prints the
    solution.
    """
    return check_array(answer, _positive_probabilities_exercise(), reveal=reveal,
                       shape_hint="Give one row per scale (1, then 20) and one column per anchor.")


def _duplicate_floor(scale: float, batch_size: int) -> float:
    """Smallest loss of a row whose positive appears twice among `batch_size` candidates (the rest at cos −1).

    Computed with labkit on an explicit batch: anchor 0 = its positive, positive 1 = the same text, every
    other candidate pointing the opposite way.
    """
    anchor = torch.zeros(batch_size, 2, dtype=torch.float64)
    anchor[:, 0] = -1.0
    anchor[0] = torch.tensor([1.0, 0.0], dtype=torch.float64)
    positive = anchor.clone()
    positive[1] = positive[0]  # the duplicate: row 1's positive is the same text as row 0's
    explanation = MultipleNegativesRankingLoss(scale=scale).explain(anchor, positive)
    return explanation.per_anchor[0].item()


def _duplicate_floor_exercise(scale: float = 2.0, batch_size: int = 4) -> Exercise:
    expected = _duplicate_floor(scale, batch_size)
    others = batch_size - 2
    return Exercise(
        checker="check_duplicate_floor", with_inputs=True, expected=expected,
        hint=f"the best row 0 can do has cos 1 with p0 AND with its copy p1, and cos −1 with the other {others}; the "
             "loss is −log of p0's softmax share",
        success=f"log(2 + {others}·e^(−2·{scale:g})) = {expected:.4f}. However good the model, the copy takes the "
                "same share as the true positive: the row never goes below log 2, and the copy's push cancels part "
                "of the pull towards the right answer",
        why=f"row 0's logits are {scale:g}, {scale:g} and {others} × −{scale:g}: −log(e^{scale:g} / Σ) = "
            f"log(2 + {others}·e^(−2·{scale:g}))",
        slips=(
            Slip(math.log(1 + (batch_size - 1) * math.exp(-2 * scale)), "the floor *without* the duplicate",
                 "the copy: p1 has cos 1 with anchor 0 as well, like p0"),
            Slip(math.log(2), "the limit for a huge scale",
                 f"the other {others} candidates: at cos −1 they still add to the denominator at scale {scale:g}"),
            Slip(math.log(batch_size), "a uniform softmax (scale 0)",
                 "the best case: cos 1 for p0 and p1, −1 for the others"),
            Slip(math.log(2 + others * math.exp(-scale)), "a slip in the exponent",
                 "the logits: at cos −1 the logit is −scale, and its ratio to the positive's (+scale) is e^(−2·scale)"),
            Slip(-expected, "the floor with the wrong sign", "the sign: the loss is −log(share), a positive number"),
        ))


def check_duplicate_floor(answer, scale: float = 2.0, batch_size: int = 4, reveal: bool = False) -> bool:
    """The lowest possible loss of row 0 when columns p0 and p1 hold the same text (a false negative).

    A wrong answer gets the step to recheck; ``check_duplicate_floor(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _duplicate_floor_exercise(scale, batch_size), rel_tol=0, abs_tol=1e-4, reveal=reveal)


def _tension_loss() -> Exercise:
    emb_1, emb_2 = tension_batch()
    expected = ContrastiveTensionLossInBatchNegatives(scale=TENSION_SCALE)(emb_1, emb_2).item()
    cosine = cos_sim(emb_1, emb_2)

    def both(scale):
        return (_cross_entropy_rows(scale * cosine).mean().item() + _cross_entropy_rows(scale * cosine.T).mean().item()) / 2

    rows = _cross_entropy_rows(TENSION_SCALE * cosine).mean().item()
    columns = _cross_entropy_rows(TENSION_SCALE * cosine.T).mean().item()
    return Exercise(
        checker="check_tension_loss", expected=expected,
        hint="S = 10 · cos(emb_1_i, emb_2_j); average the cross-entropy of the rows and the cross-entropy of the "
             "columns (target: the diagonal)",
        success=f"{expected:.4f}. Rows: each sentence of the copy finds itself among the model's; columns: the other "
                "way round; the loss is their average",
        why="the average of the row and the column cross-entropies of 10 · cos(emb_1_i, emb_2_j), target the diagonal",
        slips=(
            Slip(rows, "the row direction only", "the columns: add the loss of S transposed and average the two"),
            Slip(columns, "the column direction only", "the rows: add their loss and average the two"),
            Slip(rows + columns, "the two directions added", "the last step: the loss is their average (divide by 2)"),
            Slip(both(math.log(TENSION_SCALE)), "the loss at scale log(10)",
                 "the scale: it is exp(logit_scale) = 10, not logit_scale"),
            Slip(both(1.0), "the loss without the scale", "the scale: multiply the cosines by 10"),
        ))


def check_tension_loss(answer, reveal: bool = False) -> bool:
    """ContrastiveTensionLossInBatchNegatives(scale=10) of `tension_batch()`: one number.

    A wrong answer gets the step to recheck; ``check_tension_loss(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _tension_loss(), rel_tol=0, abs_tol=1e-4, reveal=reveal)


_EXERCISES = {"mnrl_loss": _mnrl_loss, "positive_probabilities": _positive_probabilities_exercise,
              "duplicate_floor": _duplicate_floor_exercise, "tension_loss": _tension_loss}
