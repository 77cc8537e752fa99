"""Checkers for the exercises of notebooks/07_in_batch_negatives.ipynb.

`exercise_batch()` gives the toy (anchor, positive) batch the first two exercises use, `tension_batch()`
the two views of the Contrastive Tension exercise. Each checker computes the right answer with
`labkit.losses.ranking`, and recognises the usual slips (no scale, softmax over the wrong axis, a sum
instead of a mean, ...) so its hint says what is off.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from labkit.course.exercises import as_number, close, describe_difference, report
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


def check_mnrl_loss(answer) -> bool:
    """MultipleNegativesRankingLoss(scale=5) of `exercise_batch()`, computed by hand: one number."""
    anchor, positive = exercise_batch()
    expected = MultipleNegativesRankingLoss(scale=EXERCISE_SCALE)(anchor, positive).item()
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: S = 5 · cos(anchor_i, positive_j) (3 × 3); the loss "
                                 "of row i is −log(exp(S[i, i]) / Σ_j exp(S[i, j])); average the 3 rows.")
    value = as_number(answer)
    if value is None:
        return report(False, "", f"Give one number (a float or a 0-d tensor), not {type(answer).__name__}.")
    if math.isclose(value, expected, abs_tol=1e-4):
        return report(True, f"Right: {expected:.4f}, the same as MultipleNegativesRankingLoss(scale=5)(anchor, "
                            "positive). Each anchor picked its positive out of the 3 candidates.", "")
    cosine = cos_sim(anchor, positive)
    rows = _cross_entropy_rows(EXERCISE_SCALE * cosine)
    slips = [
        (rows.sum(), "That is the *sum* over the 3 anchors; the loss is their mean."),
        (-rows.mean(), "Check the sign: cross-entropy is −log(probability), a positive number."),
        (_cross_entropy_rows(cosine).mean(), "You left out the scale: multiply the cosines by 5 before the softmax."),
        (_cross_entropy_rows(EXERCISE_SCALE * dot_score(anchor, positive)).mean(),
         "You used dot products; the default similarity is the cosine: divide by both vectors' lengths first."),
        (_cross_entropy_rows(EXERCISE_SCALE * cosine.T).mean(),
         "That is the softmax over each *column* (each positive picking its anchor). MNRL takes it over each row: "
         "anchor i against all positives."),
        (rows.mean() / math.log(2), "That is in bits (log base 2); use the natural logarithm."),
        ((rows.mean() + _cross_entropy_rows(EXERCISE_SCALE * cosine.T).mean()) / 2,
         "That is the symmetric loss (rows and columns averaged); this exercise asks for one direction, the rows."),
    ]
    for wrong, hint in slips:
        if math.isclose(value, float(wrong), abs_tol=1e-4):
            return report(False, "", hint)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Compare your similarity "
                             "matrix with MultipleNegativesRankingLoss(scale=5).explain(anchor, positive).similarity.")


def positive_probabilities(scales=(1.0, 20.0)) -> torch.Tensor:
    """Row k: the probability each anchor of `exercise_batch()` gives its own positive at scale `scales[k]`."""
    anchor, positive = exercise_batch()
    rows = []
    for scale in scales:
        explanation = MultipleNegativesRankingLoss(scale=scale).explain(anchor, positive)
        rows.append(explanation.probabilities["query_to_doc"].diagonal())
    return torch.stack(rows)


def check_positive_probabilities(answer) -> bool:
    """A (2, 3) array: the softmax probability of each anchor's own positive at scale 1 (row 0) and 20 (row 1)."""
    expected = positive_probabilities((1.0, 20.0))
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: for each scale s, take torch.softmax(s * cos_sim("
                                 "anchor, positive), dim=1).diagonal(); stack the two rows.")
    try:
        shape = np.asarray(answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float).shape
    except (TypeError, ValueError):
        return report(False, "", f"Give a (2, 3) tensor or array, not {type(answer).__name__}.")
    if shape != (2, 3):
        return report(False, "", f"Your answer has shape {shape}; expected (2, 3): one row per scale (1, then 20), "
                                 "one column per anchor.")
    if close(answer, expected):
        high = expected[1].min().item()
        return report(True, f"Right. At scale 1 the softmax is flat: no positive gets more than "
                            f"{expected[0].max().item():.2f} however well it is placed. At scale 20 the easy rows give their "
                            f"positive ~1.0 and only the confusable anchor 1 keeps doubt ({high:.3f}). The scale sets "
                            "how sharply the loss separates candidates.", "")
    anchor, positive = exercise_batch()
    cosine = cos_sim(anchor, positive)
    slips = [
        (expected.flip(0), "The rows are swapped: row 0 is scale 1, row 1 is scale 20."),
        (torch.stack([torch.softmax(s * cosine, dim=0).diagonal() for s in (1.0, 20.0)]),
         "You took the softmax over each column (dim=0). Anchor i's probabilities are row i: softmax(dim=1)."),
        (torch.stack([torch.softmax(cosine, dim=1).diagonal()] * 2),
         "Both rows are the scale-1 probabilities: multiply the cosines by 20 for the second row."),
        (torch.stack([(s * cosine).exp().diagonal() for s in (1.0, 20.0)]),
         "Those are exp(logit) without dividing by the row's sum: normalise with softmax."),
        (torch.stack([torch.softmax(s * dot_score(anchor, positive), dim=1).diagonal() for s in (1.0, 20.0)]),
         "You used dot products; MNRL's default similarity is the cosine."),
    ]
    for wrong, hint in slips:
        if close(answer, wrong):
            return report(False, "", hint)
    return report(False, "", f"Not quite: {describe_difference(answer, expected)}. Look at "
                             "MultipleNegativesRankingLoss(scale=s).explain(anchor, positive).probabilities.")


def duplicate_floor(scale: float, batch_size: int) -> float:
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


def check_duplicate_floor(answer, scale: float = 2.0, batch_size: int = 4) -> bool:
    """The lowest possible loss of row 0 when columns p0 and p1 hold the same text (a false negative)."""
    expected = duplicate_floor(scale, batch_size)
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: the best row 0 can do has cos 1 with p0 AND with "
                                 f"its copy p1, and cos −1 with the other {batch_size - 2}; the loss is −log of p0's "
                                 "softmax share.")
    value = as_number(answer)
    if value is None:
        return report(False, "", f"Give one number, not {type(answer).__name__}.")
    if math.isclose(value, expected, abs_tol=1e-4):
        return report(True, f"Right: log(2 + {batch_size - 2}·e^(−2·{scale:g})) = {expected:.4f}. However good the "
                            "model, the copy takes the same share as the true positive: the row never goes below log 2, "
                            "and the copy's push cancels part of the pull towards the right answer.", "")
    others = batch_size - 2
    slips = [
        (math.log(1 + (batch_size - 1) * math.exp(-2 * scale)),
         "That is the floor *without* the duplicate. With it, p1 has cos 1 with anchor 0 as well, like p0."),
        (math.log(2), f"Close: log 2 is the limit for a huge scale. At scale {scale:g} the {others} candidates at "
                      "cos −1 still add e^(−scale) each to the denominator."),
        (math.log(batch_size), "That is a uniform softmax (scale 0). The best case has cos 1 for p0 and p1 and −1 for "
                               "the others."),
        (math.log(2 + others * math.exp(-scale)),
         "Almost: at cos −1 the logit is −scale, and the ratio to the positive's logit (+scale) is e^(−2·scale)."),
        (-expected, "Check the sign: the loss is −log(share), a positive number."),
    ]
    for wrong, hint in slips:
        if math.isclose(value, wrong, abs_tol=1e-4):
            return report(False, "", hint)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Write row 0's logits "
                             f"(scale·cos) for p0, p1 and the {others} others, then −log(exp(p0's) / Σ exp).")


def check_tension_loss(answer) -> bool:
    """ContrastiveTensionLossInBatchNegatives(scale=10) of `tension_batch()`: one number."""
    emb_1, emb_2 = tension_batch()
    expected = ContrastiveTensionLossInBatchNegatives(scale=TENSION_SCALE)(emb_1, emb_2).item()
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: S = 10 · cos(emb_1_i, emb_2_j); average the "
                                 "cross-entropy of the rows and the cross-entropy of the columns (target: the diagonal).")
    value = as_number(answer)
    if value is None:
        return report(False, "", f"Give one number, not {type(answer).__name__}.")
    if math.isclose(value, expected, abs_tol=1e-4):
        return report(True, f"Right: {expected:.4f}. Rows: each sentence of the copy finds itself among the model's; "
                            "columns: the other way round; the loss is their average.", "")
    cosine = cos_sim(emb_1, emb_2)
    rows = _cross_entropy_rows(TENSION_SCALE * cosine).mean().item()
    columns = _cross_entropy_rows(TENSION_SCALE * cosine.T).mean().item()
    log_scale = math.log(TENSION_SCALE)
    slips = [
        (rows, "That is the row direction only; add the columns (S transposed) and average the two."),
        (columns, "That is the column direction only; add the rows and average the two."),
        (rows + columns, "You added the two directions; the loss is their average (divide by 2)."),
        ((_cross_entropy_rows(log_scale * cosine).mean().item() + _cross_entropy_rows(log_scale * cosine.T).mean().item()) / 2,
         "You multiplied by logit_scale = log(10); the scale is exp(logit_scale) = 10."),
        ((_cross_entropy_rows(cosine).mean().item() + _cross_entropy_rows(cosine.T).mean().item()) / 2,
         "You left out the scale: multiply the cosines by 10."),
    ]
    for wrong, hint in slips:
        if math.isclose(value, wrong, abs_tol=1e-4):
            return report(False, "", hint)
    return report(False, "", f"Not quite: you got {value:.6g}, expected {expected:.6g}. Compare with "
                             "ContrastiveTensionLossInBatchNegatives(scale=10).explain(emb_1, emb_2).")
