"""The `explain` methods of the pair losses: their reduction equals forward's value, and every intermediate
quantity they show agrees with the slow references of tests/naive_pairs.py (written from the formulas)."""
from __future__ import annotations

import itertools
import math

import naive_pairs as naive
import pytest
import torch
from torch import nn

from labkit.losses.pairs import ContrastiveLoss, LossExplanation, OnlineContrastiveLoss, SiameseDistanceMetric
from labkit.losses.regression import AnglELoss, CoSENTLoss, CosineSimilarityLoss, SoftmaxLoss

METRICS = ("COSINE_DISTANCE", "EUCLIDEAN", "MANHATTAN")
SHAPES = list(itertools.product((1, 2, 7, 32), (2, 16), (torch.float32, torch.float64)))


def random_batch(batch_size, dim, dtype, seed=0, labels="binary"):
    generator = torch.Generator().manual_seed(seed + 100 * batch_size + dim)
    emb_a = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
    emb_b = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
    if labels == "binary":
        y = torch.randint(0, 2, (batch_size,), generator=generator)
    elif labels == "scores":
        y = torch.rand(batch_size, generator=generator, dtype=dtype)
    else:
        y = torch.randint(0, 3, (batch_size,), generator=generator)
    return emb_a, emb_b, y


def assert_reduction_equals_forward(loss_fn, emb_a, emb_b, labels):
    explanation = loss_fn.explain(emb_a, emb_b, labels)
    assert isinstance(explanation, LossExplanation)
    forward = loss_fn(emb_a, emb_b, labels)
    tolerance = 1e-12 if emb_a.dtype == torch.float64 else 1e-5
    assert explanation.loss == pytest.approx(forward.item(), rel=tolerance, abs=tolerance)
    assert len(explanation.per_pair) == len(emb_a)
    return explanation


def margin_for(metric, dim):
    return {"EUCLIDEAN": 2.1 * dim**0.5, "MANHATTAN": 1.7 * dim, "COSINE_DISTANCE": 0.5}[metric]


# ---------------------------------------------------------------------------------------------------
# ContrastiveLoss
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_contrastive_explain_reduces_to_forward(batch_size, dim, dtype, metric):
    emb_a, emb_b, labels = random_batch(batch_size, dim, dtype)
    for size_average in (True, False):
        loss_fn = ContrastiveLoss(getattr(SiameseDistanceMetric, metric), margin_for(metric, dim), size_average)
        explanation = assert_reduction_equals_forward(loss_fn, emb_a, emb_b, labels)
        table = explanation.per_pair
        assert explanation.reduction.startswith("mean" if size_average else "sum")
        # the reduction of the table's own column is the loss
        reduce = sum(table["loss_i"]) / (len(table) if size_average else 1)
        assert reduce == pytest.approx(explanation.loss, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_contrastive_explain_rows_match_naive_formulas(metric):
    emb_a, emb_b, labels = random_batch(9, 5, torch.float64, seed=3)
    margin = margin_for(metric, 5)
    table = ContrastiveLoss(getattr(SiameseDistanceMetric, metric), margin).explain(emb_a, emb_b, labels).per_pair
    for i, (a, b, y) in enumerate(zip(emb_a.tolist(), emb_b.tolist(), labels.tolist())):
        d = naive.DISTANCES[metric](a, b)
        assert table.loc[i, "label"] == y
        assert table.loc[i, "distance"] == pytest.approx(d, rel=1e-12)
        assert table.loc[i, "positive_term"] == pytest.approx(d * d if y == 1 else 0.0, abs=1e-12)
        assert table.loc[i, "negative_term"] == pytest.approx(0.0 if y == 1 else max(0.0, margin - d) ** 2, abs=1e-12)
        # a batch of one pair: the naive loss is that pair's term
        one_pair = naive.contrastive_loss([a], [b], [y], metric, margin)
        assert table.loc[i, "loss_i"] == pytest.approx(one_pair, rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------------------------------------------
# OnlineContrastiveLoss
# ---------------------------------------------------------------------------------------------------
def naive_hard_pairs(distances, labels):
    positives = [d for d, y in zip(distances, labels) if y == 1]
    negatives = [d for d, y in zip(distances, labels) if y == 0]
    closest_negative = min(negatives) if negatives else sum(positives) / len(positives)
    farthest_positive = max(positives) if positives else sum(negatives) / len(negatives)
    hard = []
    for d, y in zip(distances, labels):
        hard.append(d > closest_negative if y == 1 else d < farthest_positive)
    return hard, closest_negative, farthest_positive


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_online_contrastive_explain_reduces_to_forward(batch_size, dim, dtype, metric):
    emb_a, emb_b, labels = random_batch(batch_size, dim, dtype, seed=1)
    loss_fn = OnlineContrastiveLoss(getattr(SiameseDistanceMetric, metric), margin_for(metric, dim))
    explanation = assert_reduction_equals_forward(loss_fn, emb_a, emb_b, labels)
    assert sum(explanation.per_pair["loss_i"]) == pytest.approx(explanation.loss, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("labels", [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 1, 1, 0], [0, 1, 0, 0, 1]])
@pytest.mark.parametrize("metric", METRICS)
def test_online_contrastive_explain_selects_the_naive_hard_pairs(labels, metric):
    emb_a, emb_b, _ = random_batch(5, 4, torch.float64, seed=11)
    labels = torch.tensor(labels)
    margin = margin_for(metric, 4)
    explanation = assert_reduction_equals_forward(
        OnlineContrastiveLoss(getattr(SiameseDistanceMetric, metric), margin), emb_a, emb_b, labels)
    distances = [naive.DISTANCES[metric](a, b) for a, b in zip(emb_a.tolist(), emb_b.tolist())]
    hard, closest_negative, farthest_positive = naive_hard_pairs(distances, labels.tolist())
    table, details = explanation.per_pair, explanation.details
    assert table["hard"].tolist() == hard
    assert details["positive_threshold"] == pytest.approx(closest_negative, rel=1e-12)
    assert details["negative_threshold"] == pytest.approx(farthest_positive, rel=1e-12)
    assert details["hard_positives"] == [i for i, y in enumerate(labels.tolist()) if y == 1 and hard[i]]
    assert details["hard_negatives"] == [i for i, y in enumerate(labels.tolist()) if y == 0 and hard[i]]
    assert ("no negatives" in details["positive_threshold_is"]) == (0 not in labels.tolist())
    assert ("no positives" in details["negative_threshold_is"]) == (1 not in labels.tolist())
    for i, (d, y) in enumerate(zip(distances, labels.tolist())):
        expected = 0.0 if not hard[i] else (d * d if y == 1 else max(0.0, margin - d) ** 2)
        assert table.loc[i, "loss_i"] == pytest.approx(expected, abs=1e-12)
        assert table.loc[i, "threshold"] == pytest.approx(closest_negative if y == 1 else farthest_positive)
    assert explanation.loss == pytest.approx(
        naive.online_contrastive_loss(emb_a.tolist(), emb_b.tolist(), labels.tolist(), metric, margin), rel=1e-12)


def test_online_contrastive_explain_without_hard_pairs_is_zero():
    # positives at distance ~0, negatives far: nothing is on the wrong side
    emb_a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    emb_b = torch.tensor([[1.0, 0.01], [0.01, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([1, 1, 0, 0])
    explanation = assert_reduction_equals_forward(OnlineContrastiveLoss(), emb_a, emb_b, labels)
    assert explanation.loss == 0.0 and not explanation.per_pair["hard"].any()
    assert "0 hard pairs" in explanation.reduction


# ---------------------------------------------------------------------------------------------------
# CosineSimilarityLoss
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_cosine_similarity_explain_reduces_to_forward(batch_size, dim, dtype):
    emb_a, emb_b, scores = random_batch(batch_size, dim, dtype, labels="scores")
    for loss_fn in (CosineSimilarityLoss(), CosineSimilarityLoss(nn.L1Loss()),
                    CosineSimilarityLoss(nn.MSELoss(reduction="sum")),
                    CosineSimilarityLoss(cos_score_transformation=nn.Tanh())):
        explanation = assert_reduction_equals_forward(loss_fn, emb_a, emb_b, scores)
        assert ("prediction" in explanation.per_pair) == isinstance(loss_fn.cos_score_transformation, nn.Tanh)


def test_cosine_similarity_explain_rows_match_naive_formulas():
    emb_a, emb_b, scores = random_batch(6, 3, torch.float64, seed=5, labels="scores")
    table = CosineSimilarityLoss().explain(emb_a, emb_b, scores).per_pair
    for i, (a, b, s) in enumerate(zip(emb_a.tolist(), emb_b.tolist(), scores.tolist())):
        assert table.loc[i, "cosine"] == pytest.approx(naive.cosine(a, b), rel=1e-12)
        assert table.loc[i, "loss_i"] == pytest.approx(naive.cosine_similarity_loss([a], [b], [s]), rel=1e-12)


def test_cosine_similarity_explain_rejects_a_loss_it_cannot_split():
    emb_a, emb_b, scores = random_batch(3, 2, torch.float64, labels="scores")
    with pytest.raises(TypeError, match="reduction"):
        CosineSimilarityLoss(loss_fct=lambda p, t: ((p - t) ** 2).mean()).explain(emb_a, emb_b, scores)


# ---------------------------------------------------------------------------------------------------
# CoSENTLoss and AnglELoss
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss_class", [CoSENTLoss, AnglELoss])
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_cosent_and_angle_explain_reduce_to_forward(loss_class, batch_size, dim, dtype):
    emb_a, emb_b, scores = random_batch(batch_size, dim, dtype, labels="scores")
    explanation = assert_reduction_equals_forward(loss_class(), emb_a, emb_b, scores)
    pairs_of_pairs = explanation.details["pairs_of_pairs"]
    by_hand = math.log(1 + sum(math.exp(g) for g in pairs_of_pairs["gap"]))
    assert by_hand == pytest.approx(explanation.loss, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("loss_class,similarity", [(CoSENTLoss, naive.cosine), (AnglELoss, naive.angle_similarity)])
def test_cosent_explain_shows_the_naive_pairs_of_pairs(loss_class, similarity):
    emb_a, emb_b, _ = random_batch(6, 4, torch.float64, seed=2)
    labels = torch.tensor([3.0, 1.0, 3.0, 0.0, 2.5, 1.0])  # ties add no term
    explanation = assert_reduction_equals_forward(loss_class(scale=7.0), emb_a, emb_b, labels)
    per_pair, pairs_of_pairs = explanation.per_pair, explanation.details["pairs_of_pairs"]
    s = [7.0 * similarity(a, b) for a, b in zip(emb_a.tolist(), emb_b.tolist())]
    assert per_pair["similarity"].tolist() == pytest.approx([x / 7.0 for x in s], rel=1e-12)
    assert per_pair["score"].tolist() == pytest.approx(s, rel=1e-12)
    expected = [(i, j) for i in range(6) for j in range(6) if labels[i] > labels[j]]
    assert list(zip(pairs_of_pairs["i"], pairs_of_pairs["j"])) == expected
    assert pairs_of_pairs["gap"].tolist() == pytest.approx([s[j] - s[i] for i, j in expected], rel=1e-12)
    assert explanation.details["enters"].sum().item() == len(expected)
    assert explanation.loss == pytest.approx(
        naive.cosent_loss(emb_a.tolist(), emb_b.tolist(), labels.tolist(), 7.0,
                          "cosine" if loss_class is CoSENTLoss else "angle"), rel=1e-12)


def test_cosent_weights_are_the_gradient_of_the_loss():
    # a similarity that reads the first coordinate: d loss / d emb_a[k, 0] = scale * sum of the weights of the
    # terms where pair k is j (gap grows with s_k) minus those where it is i.
    emb_a, emb_b, scores = random_batch(7, 3, torch.float64, seed=9, labels="scores")
    loss_fn = CoSENTLoss(scale=3.0, similarity_fct=lambda a, b: a[:, 0])
    explanation = loss_fn.explain(emb_a, emb_b, scores)
    leaf = emb_a.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(loss_fn(leaf, emb_b, scores), leaf)
    expected = [0.0] * 7
    for row in explanation.details["pairs_of_pairs"].itertuples():
        expected[row.j] += 3.0 * row.weight
        expected[row.i] -= 3.0 * row.weight
    assert gradient[:, 0].tolist() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_cosent_explain_with_equal_labels_has_no_terms():
    emb_a, emb_b, _ = random_batch(4, 3, torch.float64)
    explanation = assert_reduction_equals_forward(CoSENTLoss(), emb_a, emb_b, torch.ones(4))
    assert explanation.loss == 0.0 and explanation.details["pairs_of_pairs"].empty


# ---------------------------------------------------------------------------------------------------
# SoftmaxLoss
# ---------------------------------------------------------------------------------------------------
CONCATENATIONS = [(True, True, False), (True, False, False), (False, True, True), (True, True, True)]


@pytest.mark.parametrize("rep,difference,multiplication", CONCATENATIONS)
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_softmax_explain_reduces_to_forward(batch_size, dim, dtype, rep, difference, multiplication):
    torch.manual_seed(0)
    loss_fn = SoftmaxLoss(dim, 3, rep, difference, multiplication).to(dtype)
    emb_a, emb_b, labels = random_batch(batch_size, dim, dtype, labels="classes")
    explanation = assert_reduction_equals_forward(loss_fn, emb_a, emb_b, labels)
    features = explanation.details["features"]
    assert features.shape == (batch_size, (2 * rep + difference + multiplication) * dim)
    assert list(features.columns) == loss_fn.feature_names()


def test_softmax_explain_rows_match_naive_formulas():
    torch.manual_seed(1)
    loss_fn = SoftmaxLoss(embedding_dimension=3, num_labels=3).double()
    emb_a, emb_b, labels = random_batch(5, 3, torch.float64, seed=4, labels="classes")
    names = ["entailment", "neutral", "contradiction"]
    explanation = loss_fn.explain(emb_a, emb_b, labels, label_names=names)
    table = explanation.per_pair
    weight, bias = loss_fn.classifier.weight.tolist(), loss_fn.classifier.bias.tolist()
    for i, (u, v, y) in enumerate(zip(emb_a.tolist(), emb_b.tolist(), labels.tolist())):
        features = u + v + [abs(p - q) for p, q in zip(u, v)]
        assert explanation.details["features"].loc[i].tolist() == pytest.approx(features, rel=1e-12)
        logits = [naive.dot(w, features) + b for w, b in zip(weight, bias)]
        normaliser = naive.log_sum_exp(logits)
        for name, logit in zip(names, logits):
            assert table.loc[i, f"logit[{name}]"] == pytest.approx(logit, rel=1e-12)
            assert table.loc[i, f"prob[{name}]"] == pytest.approx(math.exp(logit - normaliser), rel=1e-12)
        assert table.loc[i, "loss_i"] == pytest.approx(
            naive.softmax_loss([u], [v], [y], weight, bias), rel=1e-12)


def test_softmax_explain_errors():
    loss_fn = SoftmaxLoss(embedding_dimension=2, num_labels=3).double()
    emb_a, emb_b, labels = random_batch(3, 2, torch.float64, labels="classes")
    with pytest.raises(ValueError, match="label_names"):
        loss_fn.explain(emb_a, emb_b, labels, label_names=["a", "b"])
    with pytest.raises(TypeError, match="integer class labels"):
        loss_fn.explain(emb_a, emb_b, labels.double())
    with pytest.raises(ValueError, match="0..2"):
        loss_fn.explain(emb_a, emb_b, torch.tensor([0, 1, 3]))


# ---------------------------------------------------------------------------------------------------
# All of them
# ---------------------------------------------------------------------------------------------------
def all_losses():
    return [ContrastiveLoss(), OnlineContrastiveLoss(), CosineSimilarityLoss(), CoSENTLoss(), AnglELoss(),
            SoftmaxLoss(embedding_dimension=3, num_labels=2)]


@pytest.mark.parametrize("loss_fn", all_losses(), ids=lambda loss: type(loss).__name__)
def test_explain_leaves_inputs_and_autograd_alone(loss_fn):
    emb_a, emb_b, labels = random_batch(4, 3, torch.float32)
    emb_a.requires_grad_()
    before = emb_a.detach().clone()
    explanation = loss_fn.explain(emb_a, emb_b, labels)
    assert torch.equal(emb_a.detach(), before) and emb_a.grad is None
    text = str(explanation)
    assert "loss = " in text and f"{explanation.loss:.6f}" in text and "-0.000000" not in text


@pytest.mark.parametrize("loss_fn", all_losses(), ids=lambda loss: type(loss).__name__)
def test_explain_rejects_bad_batches_like_forward(loss_fn):
    emb_a, emb_b, labels = random_batch(4, 3, torch.float32)
    with pytest.raises(ValueError, match="rows"):
        loss_fn.explain(emb_a, emb_b[:3], labels)
    with pytest.raises(ValueError, match="labels"):
        loss_fn.explain(emb_a, emb_b, labels[:3])
