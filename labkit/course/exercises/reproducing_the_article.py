"""Checkers for the exercises of notebooks/12_reproducing_the_article.ipynb.

Exercise 1: the largest value the article's batch-hard loss can take on unit vectors. Exercise 2: the
classification loss of a tiny batch by hand. Exercise 3: the article's learning-rate schedule in steps.
Each checker computes the right answer with labkit (``labkit.course.article``, ``labkit.losses.classification``)
and prints what is right, or which slip the answer looks like.
"""
from __future__ import annotations

import torch

from labkit.course.exercises import first_slip, matches, numeric_answer, report

# Exercise 1: the article's loss (nn.TripletMarginLoss, margin 1.0) on L2-normalised embeddings.
MARGIN = 1.0

# Exercise 2: three 2-D embeddings, a head for 3 classes (weight rows w_c, bias b_c) and the true classes.
EMBEDDINGS = ((1.0, 0.0), (0.0, 1.0), (0.6, 0.8))
HEAD_WEIGHT = ((2.0, 0.0), (0.0, 2.0), (-1.0, -1.0))
HEAD_BIAS = (0.0, 0.5, 0.0)
LABELS = (0, 1, 0)

# Exercise 3: the article's run: 12,000 training passages, batches of 32, 15 epochs, warm-up total // 12.
TRAIN_PASSAGES, BATCH_SIZE, EPOCHS = 12_000, 32, 15


def worst_case_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors where every anchor's positive is opposite it and a negative coincides with it."""
    e = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    embeddings = torch.cat([e, -e, e, -e])  # classes 0, 0, 1, 1
    return embeddings, torch.tensor([0, 0, 1, 1])


def largest_article_loss(margin: float = MARGIN) -> float:
    """The article's loss on :func:`worst_case_batch`: d(a,p) = 2 (the sphere's diameter), d(a,n) = 0."""
    from labkit.course.article import article_batch_hard_loss

    embeddings, labels = worst_case_batch()
    return float(article_batch_hard_loss(embeddings, labels, margin=margin))


def check_largest_loss(answer) -> bool:
    """Exercise 1: the largest value the article's loss can take on unit vectors with margin 1.0."""
    hint = ("On the unit sphere a distance lies between 0 and 2. Make d(a,p) as large and d(a,n) as small as "
            "they can be, then apply max(d(a,p) - d(a,n) + margin, 0).")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    expected = largest_article_loss()
    if matches(value, expected, rel_tol=1e-4, abs_tol=1e-4):
        return report(True, f"Right: {expected:.4f} = 2 - 0 + 1. So a loss near 1.0 (the article's first five "
                            "epochs) is not 'a third of the way': it is what a collapsed model gives, "
                            "d(a,p) = d(a,n).", "")
    slip = first_slip(value, [
        (2.0, "that is the largest distance; add the margin: the term is d(a,p) - d(a,n) + margin."),
        (1.0, "that is the value when all embeddings coincide (d(a,p) = d(a,n) = 0): a collapse, not the worst case."),
        (0.0, "that is the best case (every triplet satisfied by the margin), not the worst."),
        (5.0, "unit vectors are at most 2 apart (opposite points): distances of 4 are impossible on the sphere."),
    ])
    return report(False, "", f"You got {value:.4g}: {slip}" if slip else f"You got {value:.4g}. " + hint)


def classification_loss_by_labkit() -> float:
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


def check_classification_loss(answer) -> bool:
    """Exercise 2: mean cross-entropy of `EMBEDDINGS` under the head (`HEAD_WEIGHT`, `HEAD_BIAS`) for `LABELS`."""
    hint = ("For each embedding e: logits z_c = w_c · e + b_c for the 3 classes; its loss is "
            "log(sum_c exp(z_c)) - z_y (y its label). Average the three.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    expected = classification_loss_by_labkit()
    if matches(value, expected, rel_tol=1e-3, abs_tol=1e-4):
        return report(True, f"Right: {expected:.4f}. The third embedding (0.6, 0.8) is labelled 0 but its "
                            "largest logit is class 1's: it carries most of the loss.", "")
    per_example = _per_example_cross_entropy()
    slip = first_slip(value, [
        (float(per_example.sum()), "that is the sum over the batch; the loss is the mean (divide by 3)."),
        (float(_per_example_cross_entropy(use_bias=False).mean()), "you left out the bias b_c in the logits."),
        (float(torch.exp(-per_example).mean()), "that is the mean probability of the true class; the loss is its "
                                                "negative log, averaged."),
        (float((per_example / torch.log(torch.tensor(2.0, dtype=torch.float64))).mean()),
         "you used log base 2; cross-entropy uses the natural log."),
    ])
    return report(False, "", f"You got {value:.4g}: {slip}" if slip else f"You got {value:.4g}. " + hint)


def article_schedule() -> dict:
    """Warm-up and total optimizer steps of the article's run, as its ``tv_run()`` computes them."""
    batches_per_epoch = TRAIN_PASSAGES // BATCH_SIZE  # the sampler's len()
    total = batches_per_epoch * EPOCHS
    return {"warmup_steps": total // 12, "total_steps": total}


def check_article_schedule(answer) -> bool:
    """Exercise 3: (warm-up steps, total steps) of the article's learning-rate schedule."""
    expected = article_schedule()
    hint = (f"total_steps = len(train_loader) * epochs with len = {TRAIN_PASSAGES:,} // {BATCH_SIZE}; "
            "the warm-up is total_steps // 12.")
    if answer is None:
        return report(False, "", "You have not answered yet — hint: " + hint)
    try:
        warmup, total = (int(v) for v in answer)
    except (TypeError, ValueError):
        return report(False, "", f"Give a pair (warmup_steps, total_steps), got {answer!r}. " + hint)
    problems = []
    if total != expected["total_steps"]:
        if total == TRAIN_PASSAGES // BATCH_SIZE:
            problems.append(f"{total} is one epoch's batches; the schedule spans all {EPOCHS} epochs.")
        elif total == TRAIN_PASSAGES * EPOCHS:
            problems.append(f"{total} counts passages, not batches: divide by the batch size {BATCH_SIZE}.")
        else:
            problems.append(f"{total} total steps is off. " + hint)
    if warmup != expected["warmup_steps"]:
        if warmup == round(0.08 * expected["total_steps"]):
            problems.append(f"{warmup} is 8 % (the article's comment); its code takes total // 12, about 8.3 %.")
        elif total == expected["total_steps"]:
            problems.append(f"{warmup} warm-up steps is off: total // 12 (integer division).")
    if problems:
        return report(False, "", " ".join(problems))
    return report(True, f"Right: {expected['warmup_steps']} warm-up steps out of {expected['total_steps']:,}. "
                        "A step budget of a few hundred is a few per cent of the article's training.", "")
