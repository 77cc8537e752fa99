"""The checkers of notebooks/07_in_batch_negatives.ipynb accept right answers (computed here by slow Python loops,
independently of labkit) and recognise the usual wrong ones without revealing the answer."""
from __future__ import annotations

import math

import numpy as np
import torch

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import in_batch_negatives as ex


def cosine(x, y):
    return sum(a * b for a, b in zip(x, y)) / (math.hypot(*x) * math.hypot(*y))


def logit_matrix(rows, columns, scale, similarity=cosine):
    return [[scale * similarity(r, c) for c in columns] for r in rows]


def transpose(matrix):
    return [list(column) for column in zip(*matrix)]


def row_losses(matrix):
    """-log softmax(row i)[i] for each row i."""
    return [math.log(sum(math.exp(x) for x in row)) - row[i] for i, row in enumerate(matrix)]


def softmax_diagonal(matrix):
    return [math.exp(row[i]) / sum(math.exp(x) for x in row) for i, row in enumerate(matrix)]


def dot(x, y):
    return sum(a * b for a, b in zip(x, y))


def exercise_lists():
    anchor, positive = ex.exercise_batch()
    return anchor.tolist(), positive.tolist()


def test_mnrl_loss(capsys):
    anchor, positive = exercise_lists()
    logits = logit_matrix(anchor, positive, 5.0)
    right = sum(row_losses(logits)) / 3
    check = ex.check_mnrl_loss
    assert_right(capsys, check, right)
    assert_right(capsys, check, torch.tensor(right))
    assert_stub_and_reveal(capsys, check, right)
    cases = [
        (sum(row_losses(logits)), "*sum*"),
        (-right, "wrong sign"),
        (sum(row_losses(logit_matrix(anchor, positive, 1.0))) / 3, "without the scale"),
        (sum(row_losses(logit_matrix(anchor, positive, 5.0, dot))) / 3, "dot products"),
        (sum(row_losses(transpose(logits))) / 3, "*column*"),
        (right / math.log(2), "bits"),
        ((right + sum(row_losses(transpose(logits))) / 3) / 2, "symmetric"),
        (right + 0.05, "Not quite"),
        ("0.18", "one number"),
        ([right, right], "2 values"),
    ]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_positive_probabilities(capsys):
    anchor, positive = exercise_lists()
    right = np.array([softmax_diagonal(logit_matrix(anchor, positive, s)) for s in (1.0, 20.0)])
    assert right[0].max() < 0.7 < right[1].min()  # the lesson: the scale sharpens the softmax
    check = ex.check_positive_probabilities
    assert_right(capsys, check, right, "scale")
    assert_right(capsys, check, torch.tensor(right))
    assert_stub_and_reveal(capsys, check, right)
    columns = np.array([softmax_diagonal(transpose(logit_matrix(anchor, positive, s))) for s in (1.0, 20.0)])
    unnormalised = np.array([[math.exp(row[i]) for i, row in enumerate(logit_matrix(anchor, positive, s))]
                             for s in (1.0, 20.0)])
    dots = np.array([softmax_diagonal(logit_matrix(anchor, positive, s, dot)) for s in (1.0, 20.0)])
    cases = [
        (right[::-1], "swapped"),
        (columns, "dim=0"),
        (np.stack([right[0], right[0]]), "scale-1 probabilities twice"),
        (unnormalised, "without the normalisation"),
        (dots, "dot products"),
        (right[0], "shape (3,)"),
        (right + 0.01, "6 of the 6 entries are off"),
        ("probabilities", "tensor or an array"),
    ]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_duplicate_floor_by_hand(capsys):
    scale, batch = 2.0, 4
    # row 0's best case: cos 1 with p0 and with its copy p1, cos -1 with the other two
    logits = [scale, scale] + [-scale] * (batch - 2)
    right = math.log(sum(math.exp(x) for x in logits)) - logits[0]
    assert math.isclose(ex._duplicate_floor(scale, batch), right, abs_tol=1e-12)
    assert math.isclose(ex._duplicate_floor(50.0, 8), math.log(2), abs_tol=1e-9)  # large scale: log 2
    check = ex.check_duplicate_floor
    assert_right(capsys, check, right, "log 2", scale=scale, batch_size=batch)
    assert_stub_and_reveal(capsys, check, right, scale=scale, batch_size=batch)
    cases = [
        (math.log(1 + 3 * math.exp(-2 * scale)), "*without* the duplicate"),
        (math.log(2), "huge scale"),
        (math.log(batch), "uniform"),
        (math.log(2 + 2 * math.exp(-scale)), "e^(−2·scale)"),
        (-right, "wrong sign"),
        (1.5, "Not quite"),
        ("log 2", "one number"),
    ]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right, scale=scale, batch_size=batch)


def test_tension_loss(capsys):
    emb_1, emb_2 = (x.tolist() for x in ex.tension_batch())
    logits = logit_matrix(emb_1, emb_2, 10.0)
    rows = sum(row_losses(logits)) / 3
    columns = sum(row_losses(transpose(logits))) / 3
    right = (rows + columns) / 2
    check = ex.check_tension_loss
    assert_right(capsys, check, right, "average")
    assert_stub_and_reveal(capsys, check, right)
    log_scaled = logit_matrix(emb_1, emb_2, math.log(10.0))
    unscaled = logit_matrix(emb_1, emb_2, 1.0)
    cases = [
        (rows, "row direction only"),
        (columns, "column direction only"),
        (rows + columns, "divide by 2"),
        ((sum(row_losses(log_scaled)) + sum(row_losses(transpose(log_scaled)))) / 6, "exp(logit_scale)"),
        ((sum(row_losses(unscaled)) + sum(row_losses(transpose(unscaled)))) / 6, "without the scale"),
        (right * 2 + 1, "Not quite"),
        ("0.4", "one number"),
    ]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
