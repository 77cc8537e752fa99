"""Checkers for the exercises of notebooks/12_reproducing_the_article.ipynb.

Exercise 1: the largest value the article's batch-hard loss can take on unit vectors. Exercise 2: the
classification loss of a tiny batch by hand. Exercise 3: the article's learning-rate schedule in steps.
Each checker computes the right answer with labkit (``labkit.course.article``, ``labkit.losses.classification``)
and prints whether it is right, or which slip the answer looks like and which step to recheck (never the
answer itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import torch

from labkit.course.exercises import Exercise, Field, Slip, check_fields, check_number, show_fields

# Exercise 1: the article's loss (nn.TripletMarginLoss, margin 1.0) on L2-normalised embeddings.
MARGIN = 1.0

# Exercise 2: three 2-D embeddings, a head for 3 classes (weight rows w_c, bias b_c) and the true classes.
EMBEDDINGS = ((1.0, 0.0), (0.0, 1.0), (0.6, 0.8))
HEAD_WEIGHT = ((2.0, 0.0), (0.0, 2.0), (-1.0, -1.0))
HEAD_BIAS = (0.0, 0.5, 0.0)
LABELS = (0, 1, 0)

# Exercise 3: the article's run: 12,000 training passages, batches of 32, 15 epochs, warm-up total // 12.
TRAIN_PASSAGES, BATCH_SIZE, EPOCHS = 12_000, 32, 15


def _worst_case_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors where every anchor's positive is opposite it and a negative coincides with it."""
    e = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    embeddings = torch.cat([e, -e, e, -e])  # classes 0, 0, 1, 1
    return embeddings, torch.tensor([0, 0, 1, 1])


def _largest_article_loss(margin: float = MARGIN) -> float:
    """The article's loss on :func:`_worst_case_batch`: d(a,p) = 2 (the sphere's diameter), d(a,n) = 0."""
    from labkit.course.article import article_batch_hard_loss

    embeddings, labels = _worst_case_batch()
    return float(article_batch_hard_loss(embeddings, labels, margin=margin))


def _largest_loss() -> Exercise:
    expected = _largest_article_loss()
    return Exercise(
        checker="check_largest_loss", expected=expected,
        hint="on the unit sphere a distance lies between 0 and 2. Make d(a,p) as large and d(a,n) as small as they "
             "can be, then apply max(d(a,p) - d(a,n) + margin, 0)",
        success=f"{expected:.4f} = 2 - 0 + 1. So a loss near 1.0 (the article's first five epochs) is not 'a third "
                "of the way': it is what d(a,p) = d(a,n) on average gives — a collapsed model, or one whose hardest "
                "positives are merely as close as its hardest negatives; only the embeddings can tell which",
        why="d(a,p) = 2 (the positive opposite the anchor), d(a,n) = 0 (a negative on it): 2 - 0 + margin",
        slips=(
            Slip(2.0, "the largest distance", "the hinge: the term is d(a,p) - d(a,n) + margin"),
            Slip(MARGIN, "the value when all embeddings coincide (d(a,p) = d(a,n) = 0): a collapse",
                 "what is asked: the worst case, with d(a,p) as large and d(a,n) as small as they can be"),
            Slip(0.0, "the best case (every triplet satisfied by the margin)", "what is asked: the worst case"),
            Slip(4.0 + MARGIN, "a loss with distances of 4", "the distances: unit vectors are at most 2 apart "
                                                              "(opposite points)"),
        ))


def check_largest_loss(answer, reveal: bool = False) -> bool:
    """Exercise 1: the largest value the article's loss can take on unit vectors with margin 1.0: one number.

    A wrong answer gets the step to recheck; ``check_largest_loss(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _largest_loss(), rel_tol=1e-4, abs_tol=1e-4, reveal=reveal)


def _classification_loss_by_labkit() -> float:
    """Exercise 2's answer from `ClassificationLoss` with the exercise's head."""
    from labkit.losses.classification import ClassificationLoss

    loss_fn = ClassificationLoss(2, 3).double()
    with torch.no_grad():
        loss_fn.classifier.weight.copy_(torch.tensor(HEAD_WEIGHT, dtype=torch.float64))
        loss_fn.classifier.bias.copy_(torch.tensor(HEAD_BIAS, dtype=torch.float64))
    with torch.no_grad():
        return float(loss_fn(torch.tensor(EMBEDDINGS, dtype=torch.float64), torch.tensor(LABELS)))


def _per_example_cross_entropy(use_bias: bool = True) -> torch.Tensor:
    logits = torch.tensor(EMBEDDINGS, dtype=torch.float64) @ torch.tensor(HEAD_WEIGHT, dtype=torch.float64).T
    if use_bias:
        logits = logits + torch.tensor(HEAD_BIAS, dtype=torch.float64)
    return -torch.log_softmax(logits, dim=1)[torch.arange(len(LABELS)), torch.tensor(LABELS)]


def _classification_loss() -> Exercise:
    expected = _classification_loss_by_labkit()
    per_example = _per_example_cross_entropy()
    return Exercise(
        checker="check_classification_loss", expected=expected,
        hint="for each embedding e: logits z_c = w_c · e + b_c for the 3 classes; its loss is log(sum_c exp(z_c)) - "
             "z_y (y its label). Average the three",
        success=f"{expected:.4f}. The third embedding (0.6, 0.8) is labelled 0 but its largest logit is class 1's: "
                "it carries most of the loss",
        why="the mean over the 3 embeddings of log(sum_c exp(w_c · e + b_c)) - z_y (ClassificationLoss)",
        slips=(
            Slip(float(per_example.sum()), "the sum over the batch", "the reduction: the loss is the mean (divide by 3)"),
            Slip(float(_per_example_cross_entropy(use_bias=False).mean()), "the loss without the bias",
                 "the logits: z_c = w_c · e + b_c"),
            Slip(float(torch.exp(-per_example).mean()), "the mean probability of the true class",
                 "the last step: the loss is its negative log, averaged"),
            Slip(float((per_example / torch.log(torch.tensor(2.0, dtype=torch.float64))).mean()),
                 "the loss in bits (log base 2)", "the logarithm: cross-entropy uses the natural log"),
        ))


def check_classification_loss(answer, reveal: bool = False) -> bool:
    """Exercise 2: mean cross-entropy of `EMBEDDINGS` under the head (`HEAD_WEIGHT`, `HEAD_BIAS`) for `LABELS`.

    A wrong answer gets the step to recheck; ``check_classification_loss(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _classification_loss(), rel_tol=1e-3, abs_tol=1e-4, reveal=reveal)


def _article_schedule() -> dict:
    """Warm-up and total optimizer steps of the article's run, as its ``tv_run()`` computes them."""
    batches_per_epoch = TRAIN_PASSAGES // BATCH_SIZE  # the sampler's len()
    total = batches_per_epoch * EPOCHS
    return {"warmup_steps": total // 12, "total_steps": total}


def _article_schedule_exercise() -> Exercise:
    schedule = _article_schedule()
    total, one_epoch = schedule["total_steps"], TRAIN_PASSAGES // BATCH_SIZE
    fields = (
        Field("warm-up steps", schedule["warmup_steps"], (
            Slip(round(0.08 * total), "8 % of the steps (the article's comment)",
                 "the rule in its code: total // 12, about 8.3 %"),
            Slip(-(-total // 12), "total / 12 rounded up", "the rounding: total // 12 is an integer division"),
            Slip(one_epoch // 12, "a twelfth of one epoch", f"the total: the schedule spans all {EPOCHS} epochs"),
        )),
        Field("total steps", total, (
            Slip(one_epoch, "one epoch's batches", f"the epochs: the schedule spans all {EPOCHS}"),
            Slip(TRAIN_PASSAGES * EPOCHS, "a count of passages, not batches",
                 f"the batch size: divide by {BATCH_SIZE}"),
        )),
    )
    return Exercise(
        checker="check_article_schedule", expected=fields, shown=show_fields(fields),
        hint=f"total_steps = len(train_loader) * epochs with len = {TRAIN_PASSAGES:,} // {BATCH_SIZE}; the warm-up "
             "is total_steps // 12",
        success=f"{schedule['warmup_steps']} warm-up steps out of {total:,}. A step budget of a few hundred is a few "
                "per cent of the article's training",
        why=f"{TRAIN_PASSAGES:,} // {BATCH_SIZE} = {one_epoch} batches per epoch × {EPOCHS} epochs = {total} steps, "
            f"and {total} // 12 = {schedule['warmup_steps']} of warm-up")


def check_article_schedule(answer, reveal: bool = False) -> bool:
    """Exercise 3: (warm-up steps, total steps) of the article's learning-rate schedule.

    A wrong answer gets a verdict per part and the step to recheck; ``check_article_schedule(answer,
    reveal=True)`` prints the solution.
    """
    return check_fields(answer, _article_schedule_exercise(), reveal=reveal)


_EXERCISES = {"largest_loss": _largest_loss, "classification_loss": _classification_loss,
              "article_schedule": _article_schedule_exercise}
