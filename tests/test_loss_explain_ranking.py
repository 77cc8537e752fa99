"""`explain()` of the in-batch-negatives losses: its reduction is the forward value, and every intermediate
quantity (similarities, softmax rows, per-anchor cross-entropy) matches a slow Python-loop reference."""
from __future__ import annotations

import math

import pytest
import torch

from labkit.losses.ranking import (
    ContrastiveTensionLossInBatchNegatives,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)
from labkit.distances import dot_score

ALL_DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
CASES = [
    (("query_to_doc",), "joint"),
    (("query_to_doc",), "per_direction"),
    (("query_to_doc", "doc_to_query"), "joint"),
    (("query_to_doc", "doc_to_query"), "per_direction"),
    (("query_to_doc", "query_to_query"), "joint"),
    (("query_to_doc", "doc_to_doc"), "joint"),
    (ALL_DIRECTIONS, "joint"),
]


def columns(num_columns, batch_size=5, dim=3, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, dim, generator=generator, dtype=dtype) for _ in range(num_columns)]


def cosine(x, y):
    dot = sum(a * b for a, b in zip(x, y))
    return dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y)))


def naive_rows(anchor, positive, negatives, scale):
    """Row i of 'query_to_doc': scale * cos(anchor i, candidate j), candidates = positives then each negative column."""
    candidates = positive.tolist() + [row for column in negatives for row in column.tolist()]
    return [[scale * cosine(a, c) for c in candidates] for a in anchor.tolist()]


def naive_softmax(row):
    top = max(row)
    exps = [math.exp(x - top) for x in row]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("num_negatives", [0, 1, 2])
@pytest.mark.parametrize("directions, partition_mode", CASES)
def test_explained_loss_is_forward_value(directions, partition_mode, num_negatives):
    loss_fn = MultipleNegativesRankingLoss(scale=7.0, directions=directions, partition_mode=partition_mode)
    inputs = columns(2 + num_negatives)
    explanation = loss_fn.explain(*inputs)
    torch.testing.assert_close(explanation.loss, loss_fn(*inputs))
    torch.testing.assert_close(explanation.per_anchor.mean(), explanation.loss)
    torch.testing.assert_close(explanation.per_anchor, explanation.log_normaliser - explanation.positive_logit)
    assert list(explanation.logits) == list(directions)
    assert explanation.target.tolist() == list(range(5))


@pytest.mark.parametrize("num_negatives", [0, 2])
def test_classic_mnrl_quantities_match_a_python_loop(num_negatives):
    scale = 20.0
    anchor, positive, *negatives = columns(2 + num_negatives)
    explanation = MultipleNegativesRankingLoss(scale=scale).explain(anchor, positive, *negatives)
    logits = naive_rows(anchor, positive, negatives, scale)
    torch.testing.assert_close(explanation.logits["query_to_doc"], torch.tensor(logits, dtype=torch.float64))
    torch.testing.assert_close(explanation.similarity["query_to_doc"], torch.tensor(logits, dtype=torch.float64) / scale)
    probabilities = [naive_softmax(row) for row in logits]
    torch.testing.assert_close(explanation.probabilities["query_to_doc"], torch.tensor(probabilities, dtype=torch.float64))
    cross_entropy = [-math.log(probabilities[i][i]) for i in range(len(logits))]
    torch.testing.assert_close(explanation.per_anchor, torch.tensor(cross_entropy, dtype=torch.float64))
    assert explanation.columns["query_to_doc"][:6] == ["p0", "p1", "p2", "p3", "p4"] + ({0: [], 1: ["n0"]}.get(num_negatives, ["n1_0"]))
    assert explanation.rows["query_to_doc"] == ["a0", "a1", "a2", "a3", "a4"]


def test_joint_softmax_spans_directions_and_per_direction_does_not():
    inputs = columns(2)
    joint = MultipleNegativesRankingLoss(directions=ALL_DIRECTIONS).explain(*inputs)
    total = sum(block.sum(dim=1) for block in joint.probabilities.values())
    torch.testing.assert_close(total, torch.ones(5, dtype=torch.float64))
    own = torch.eye(5, dtype=torch.bool)
    assert (joint.probabilities["query_to_query"][own] == 0).all()  # an anchor is not its own negative
    symmetric = MultipleNegativesSymmetricRankingLoss(scale=5.0).explain(*inputs)
    for block in symmetric.probabilities.values():
        torch.testing.assert_close(block.sum(dim=1), torch.ones(5, dtype=torch.float64))
    # the symmetric loss: mean over anchors of (row cross-entropy + column cross-entropy) / 2
    rows = naive_rows(inputs[0], inputs[1], [], 5.0)
    row_ce = [-math.log(naive_softmax(rows[i])[i]) for i in range(5)]
    column_ce = [-math.log(naive_softmax([rows[j][i] for j in range(5)])[i]) for i in range(5)]
    expected = [(r + c) / 2 for r, c in zip(row_ce, column_ce)]
    torch.testing.assert_close(symmetric.per_anchor, torch.tensor(expected, dtype=torch.float64))


def test_dot_score_and_float32():
    loss_fn = MultipleNegativesRankingLoss(scale=1.0, similarity_fct=dot_score)
    inputs = columns(3, dtype=torch.float32)
    explanation = loss_fn.explain(*inputs)
    torch.testing.assert_close(explanation.loss, loss_fn(*inputs))
    torch.testing.assert_close(explanation.similarity["query_to_doc"], inputs[0] @ torch.cat(inputs[1:]).T)


def test_contrastive_tension_explanation():
    loss_fn = ContrastiveTensionLossInBatchNegatives(scale=3.0)
    emb_1, emb_2 = columns(2)
    explanation = loss_fn.explain(emb_1, emb_2)
    torch.testing.assert_close(explanation.loss, loss_fn(emb_1, emb_2).detach())
    rows = naive_rows(emb_1, emb_2, [], 3.0)
    row_ce = [-math.log(naive_softmax(rows[i])[i]) for i in range(5)]
    column_ce = [-math.log(naive_softmax([rows[j][i] for j in range(5)])[i]) for i in range(5)]
    torch.testing.assert_close(explanation.per_anchor, torch.tensor([(r + c) / 2 for r, c in zip(row_ce, column_ce)],
                                                                      dtype=torch.float64))
    torch.testing.assert_close(explanation.logits["doc_to_query"], explanation.logits["query_to_doc"].T)
    assert explanation.scale == pytest.approx(3.0)
    assert explanation.rows["query_to_doc"][0] == "e1_0" and explanation.columns["query_to_doc"][0] == "e2_0"


def test_explain_leaves_no_graph_and_checks_input():
    anchor, positive = (x.requires_grad_() for x in columns(2))
    explanation = MultipleNegativesRankingLoss().explain(anchor, positive)
    assert not explanation.loss.requires_grad
    with pytest.raises(ValueError):
        MultipleNegativesRankingLoss().explain(anchor, positive[:3])


def test_to_frame():
    explanation = MultipleNegativesRankingLoss(scale=20.0).explain(*columns(3, batch_size=3))
    frame = explanation.to_frame()
    assert frame.shape == (3, 6) and list(frame.index) == ["a0", "a1", "a2"] and frame.columns[3] == "n0"
    assert frame.sum(axis=1).round(3).tolist() == [1.0, 1.0, 1.0]
    two_columns = MultipleNegativesRankingLoss(scale=20.0).explain(*columns(4, batch_size=2)).to_frame()
    assert list(two_columns.columns) == ["p0", "p1", "n1_0", "n1_1", "n2_0", "n2_1"]
    logits = explanation.to_frame("logits", decimals=2)
    assert logits.to_numpy().tolist() == explanation.logits["query_to_doc"].numpy().round(2).tolist()
    with pytest.raises(ValueError, match="what must be one of"):
        explanation.to_frame("softmax")
    with pytest.raises(ValueError, match="not in this explanation"):
        explanation.to_frame(direction="doc_to_query")
