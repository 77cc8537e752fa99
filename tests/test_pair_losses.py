"""ContrastiveLoss and OnlineContrastiveLoss: values and gradients against sentence-transformers 6.2 (run on the
same tensors through tests/st_stub.py) and against the naive loops in tests/naive_pairs.py."""
from __future__ import annotations

import itertools

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from st_stub import st_loss

from labkit.losses.pairs import ContrastiveLoss, OnlineContrastiveLoss, SiameseDistanceMetric

BATCH_SIZES = (1, 2, 8, 32)
DIMS = (2, 16, 384)
DTYPES = (torch.float32, torch.float64)
SHAPES = list(itertools.product(BATCH_SIZES, DIMS, DTYPES))
METRICS = ("EUCLIDEAN", "MANHATTAN", "COSINE_DISTANCE")
TOL = dict(rtol=1e-5, atol=1e-5)


def random_pairs(batch_size, dim, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed + 1000 * batch_size + dim)
    emb_a = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
    emb_b = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
    labels = torch.randint(0, 2, (batch_size,), generator=generator)
    return emb_a, emb_b, labels


def value_and_grads(loss_fn, *inputs):
    """Loss value and d loss / d input for each input (fresh leaves, so nothing is shared between calls)."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    value = loss_fn(*leaves)
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]
    return value.detach(), grads


def assert_matches_st(labkit_loss, st_class, emb_a, emb_b, labels, **st_kwargs):
    ours, our_grads = value_and_grads(lambda a, b: labkit_loss(a, b, labels), emb_a, emb_b)
    theirs, their_grads = value_and_grads(lambda a, b: st_loss(st_class, a, b, labels=labels, **st_kwargs), emb_a, emb_b)
    torch.testing.assert_close(ours, theirs, **TOL)
    for ours_grad, their_grad in zip(our_grads, their_grads):
        assert torch.isfinite(ours_grad).all()
        torch.testing.assert_close(ours_grad, their_grad, **TOL)
    return ours


# ---------------------------------------------------------------------------------------------------
# SiameseDistanceMetric
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
def test_distance_metrics_match_sentence_transformers_and_naive(metric):
    emb_a, emb_b, _ = random_pairs(8, 16, torch.float64)
    ours = getattr(SiameseDistanceMetric, metric)(emb_a, emb_b)
    theirs = getattr(st_losses.SiameseDistanceMetric, metric)(emb_a, emb_b)
    torch.testing.assert_close(ours, theirs)
    expected = [naive.DISTANCES[metric](a, b) for a, b in zip(emb_a.tolist(), emb_b.tolist())]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------
# ContrastiveLoss
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_contrastive_matches_st_and_naive(batch_size, dim, dtype, metric):
    emb_a, emb_b, labels = random_pairs(batch_size, dim, dtype)
    # Random vectors are ~1.4 sqrt(D) (Euclidean) or ~1.1 D (Manhattan) apart: a margin a bit above keeps the
    # negative term active without making margin - d a float32 cancellation.
    margin = {"EUCLIDEAN": 2.1 * dim**0.5, "MANHATTAN": 1.7 * dim, "COSINE_DISTANCE": 0.5}[metric]
    distance = getattr(SiameseDistanceMetric, metric)
    loss_fn = ContrastiveLoss(distance_metric=distance, margin=margin)
    value = assert_matches_st(
        loss_fn, st_losses.ContrastiveLoss, emb_a, emb_b, labels,
        distance_metric=getattr(st_losses.SiameseDistanceMetric, metric), margin=margin,
    )
    expected = naive.contrastive_loss(emb_a.tolist(), emb_b.tolist(), labels.tolist(), metric, margin)
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("size_average", [True, False])
def test_contrastive_size_average_matches_st(size_average):
    emb_a, emb_b, labels = random_pairs(8, 16, torch.float64)
    loss_fn = ContrastiveLoss(size_average=size_average)
    value = assert_matches_st(loss_fn, st_losses.ContrastiveLoss, emb_a, emb_b, labels, size_average=size_average)
    expected = naive.contrastive_loss(emb_a.tolist(), emb_b.tolist(), labels.tolist(), size_average=size_average)
    assert value.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("metric", METRICS)
def test_contrastive_gradient_matches_finite_differences(metric):
    emb_a, emb_b, labels = random_pairs(4, 3, torch.float64, seed=7)
    labels = torch.tensor([1, 0, 1, 0])
    margin = 3.0 if metric != "COSINE_DISTANCE" else 1.0
    loss_fn = ContrastiveLoss(getattr(SiameseDistanceMetric, metric), margin=margin)
    _, grads = value_and_grads(lambda a, b: loss_fn(a, b, labels), emb_a, emb_b)
    expected = naive.numerical_gradient(
        lambda a, b: naive.contrastive_loss(a, b, labels.tolist(), metric, margin), [emb_a.tolist(), emb_b.tolist()]
    )
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("same_tensor", [True, False])
def test_identical_embeddings_give_finite_gradients(metric, same_tensor):
    emb_a, _, _ = random_pairs(8, 16, torch.float32)
    labels = torch.tensor([1, 0] * 4)
    for loss_fn in (ContrastiveLoss(getattr(SiameseDistanceMetric, metric)), OnlineContrastiveLoss(getattr(SiameseDistanceMetric, metric))):
        leaf = emb_a.clone().requires_grad_()
        other = leaf if same_tensor else emb_a.clone().requires_grad_()
        value = loss_fn(leaf, other, labels)
        grads = torch.autograd.grad(value, [leaf] if same_tensor else [leaf, other])
        assert torch.isfinite(value)
        assert all(torch.isfinite(g).all() for g in grads)
    # And the values still agree with sentence-transformers there.
    assert_matches_st(
        ContrastiveLoss(getattr(SiameseDistanceMetric, metric)), st_losses.ContrastiveLoss, emb_a, emb_a.clone(), labels,
        distance_metric=getattr(st_losses.SiameseDistanceMetric, metric),
    )


def test_zero_embeddings_give_finite_gradients_with_cosine_distance():
    zeros = torch.zeros(4, 8, requires_grad=True)
    value = ContrastiveLoss()(zeros, torch.randn(4, 8), torch.tensor([1, 0, 1, 0]))
    (grad,) = torch.autograd.grad(value, zeros)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_contrastive_accepts_bool_float_and_list_labels():
    emb_a, emb_b, labels = random_pairs(8, 16, torch.float64)
    loss_fn = ContrastiveLoss()
    reference = loss_fn(emb_a, emb_b, labels)
    for variant in (labels.bool(), labels.double(), labels.tolist(), labels.view(-1, 1)):
        torch.testing.assert_close(loss_fn(emb_a, emb_b, variant), reference)


# ---------------------------------------------------------------------------------------------------
# OnlineContrastiveLoss
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_online_contrastive_matches_st_and_naive(batch_size, dim, dtype, metric):
    emb_a, emb_b, labels = random_pairs(batch_size, dim, dtype, seed=3)
    # Make positives a little closer than negatives on average, so the hard pairs are a real subset.
    emb_b = torch.where(labels[:, None].bool(), 0.5 * emb_a + 0.5 * emb_b, emb_b)
    margin = {"EUCLIDEAN": 2.1 * dim**0.5, "MANHATTAN": 1.7 * dim, "COSINE_DISTANCE": 0.5}[metric]
    loss_fn = OnlineContrastiveLoss(getattr(SiameseDistanceMetric, metric), margin=margin)
    value = assert_matches_st(
        loss_fn, st_losses.OnlineContrastiveLoss, emb_a, emb_b, labels,
        distance_metric=getattr(st_losses.SiameseDistanceMetric, metric), margin=margin,
    )
    expected = naive.online_contrastive_loss(emb_a.tolist(), emb_b.tolist(), labels.tolist(), metric, margin)
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("label", [0, 1])
def test_online_contrastive_with_one_kind_of_pair_matches_st(batch_size, label):
    """No positives (or no negatives) in the batch: sentence-transformers' fallback thresholds, no crash."""
    emb_a, emb_b, _ = random_pairs(batch_size, 16, torch.float64, seed=5)
    labels = torch.full((batch_size,), label)
    value = assert_matches_st(OnlineContrastiveLoss(), st_losses.OnlineContrastiveLoss, emb_a, emb_b, labels)
    expected = naive.online_contrastive_loss(emb_a.tolist(), emb_b.tolist(), labels.tolist())
    assert value.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_online_contrastive_without_hard_pairs_is_zero_with_zero_gradient():
    # Positives identical, negatives opposite: every positive is closer than every negative.
    emb_a = torch.randn(4, 8, dtype=torch.float64)
    emb_b = torch.cat([emb_a[:2], -emb_a[2:]])
    labels = torch.tensor([1, 1, 0, 0])
    value, grads = value_and_grads(lambda a, b: OnlineContrastiveLoss()(a, b, labels), emb_a, emb_b)
    theirs = st_loss(st_losses.OnlineContrastiveLoss, emb_a, emb_b, labels=labels)
    assert value.item() == pytest.approx(theirs.item(), abs=1e-12)
    assert value.item() == pytest.approx(naive.online_contrastive_loss(emb_a.tolist(), emb_b.tolist(), labels.tolist()), abs=1e-9)
    assert all(torch.all(g.abs() < 1e-9) for g in grads)


def test_online_contrastive_gradient_matches_finite_differences():
    emb_a, emb_b, _ = random_pairs(6, 3, torch.float64, seed=11)
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    loss_fn = OnlineContrastiveLoss(margin=1.0)
    _, grads = value_and_grads(lambda a, b: loss_fn(a, b, labels), emb_a, emb_b)
    assert any(g.abs().sum() > 0 for g in grads), "choose inputs with at least one hard pair"
    expected = naive.numerical_gradient(
        lambda a, b: naive.online_contrastive_loss(a, b, labels.tolist(), margin=1.0), [emb_a.tolist(), emb_b.tolist()]
    )
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Defaults and bad input
# ---------------------------------------------------------------------------------------------------
def test_defaults_are_sentence_transformers_defaults():
    assert ContrastiveLoss().distance_metric is SiameseDistanceMetric.COSINE_DISTANCE
    assert ContrastiveLoss().margin == 0.5 and ContrastiveLoss().size_average is True
    assert OnlineContrastiveLoss().margin == 0.5
    assert ContrastiveLoss().get_config_dict()["distance_metric"] == "SiameseDistanceMetric.COSINE_DISTANCE"


@pytest.mark.parametrize("loss_class", [ContrastiveLoss, OnlineContrastiveLoss])
def test_bad_inputs_raise_clear_errors(loss_class):
    loss_fn = loss_class()
    emb = torch.randn(4, 8)
    with pytest.raises(ValueError, match="4 rows but emb_b has 3"):
        loss_fn(emb, torch.randn(3, 8), torch.tensor([1, 0, 1, 0]))
    with pytest.raises(ValueError, match="embedding size"):
        loss_fn(emb, torch.randn(4, 7), torch.tensor([1, 0, 1, 0]))
    with pytest.raises(ValueError, match="expects 4 labels"):
        loss_fn(emb, emb, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="labels 0 .* or 1"):
        loss_fn(emb, emb, torch.tensor([1, 0, 2, 0]))
    with pytest.raises(ValueError, match="labels 0 .* or 1"):
        loss_fn(emb, emb, torch.tensor([0.5, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="shape \\(batch_size, dim\\)"):
        loss_fn(torch.randn(8), torch.randn(8), torch.tensor([1]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        loss_fn(emb.tolist(), emb, torch.tensor([1, 0, 1, 0]))
    with pytest.raises(ValueError, match="empty"):
        loss_fn(torch.randn(0, 8), torch.randn(0, 8), torch.tensor([]))
