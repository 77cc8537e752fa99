"""The triplet losses against sentence-transformers (via st_stub) and naive Python loops: values and gradients."""
from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses

from labkit.distances import BatchHardTripletLossDistanceFunction, TripletDistanceMetric, euclidean_distance
from labkit.losses import triplets as T
from labkit.mining import anchor_positive_mask, hardest_negative, hardest_positive, semi_hard_negative
from naive_triplets import NAIVE_BATCH_LOSSES, naive_triplet_loss
from st_stub import st_loss


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

BATCH_LOSSES = ["BatchAllTripletLoss", "BatchHardTripletLoss", "BatchHardSoftMarginTripletLoss", "BatchSemiHardTripletLoss"]
METRICS = {
    "euclidean": (BatchHardTripletLossDistanceFunction.euclidean_distance, st_losses.BatchHardTripletLossDistanceFunction.euclidean_distance),
    "cosine": (BatchHardTripletLossDistanceFunction.cosine_distance, st_losses.BatchHardTripletLossDistanceFunction.cosine_distance),
}


def tolerances(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-8, atol=1e-9)


def make_batch(batch_size, dim, num_classes, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch_size, dim, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return embeddings, labels


def margin_kwargs(name, margin):
    return {} if name == "BatchHardSoftMarginTripletLoss" else {"margin": margin}


def ours_and_grad(name, embeddings, labels, metric="euclidean", margin=5.0):
    loss = getattr(T, name)(distance_metric=METRICS[metric][0], **margin_kwargs(name, margin))(embeddings, labels)
    (grad,) = torch.autograd.grad(loss, embeddings)
    return loss, grad


def st_and_grad(name, embeddings, labels, metric="euclidean", margin=5.0):
    loss = st_loss(getattr(st_losses, name), embeddings, labels=labels, distance_metric=METRICS[metric][1], **margin_kwargs(name, margin))
    (grad,) = torch.autograd.grad(loss, embeddings)
    return loss, grad


def naive_and_grad(name, embeddings, labels, metric="euclidean", margin=5.0):
    reference = embeddings.detach().double().requires_grad_()
    loss = NAIVE_BATCH_LOSSES[name](reference, labels.tolist(), metric, margin)
    (grad,) = torch.autograd.grad(loss, reference)
    return loss, grad


def assert_same(actual, expected, dtype):
    (loss, grad), (expected_loss, expected_grad) = actual, expected
    torch.testing.assert_close(loss.double(), expected_loss.detach().double(), **tolerances(dtype))
    torch.testing.assert_close(grad.double(), expected_grad.double(), **tolerances(dtype))


# ----------------------------------------------------------------------------------------------
# Random batches: equal to sentence-transformers and to the naive loops
# ----------------------------------------------------------------------------------------------
SHAPES = [(2, 2), (8, 16), (32, 384), (64, 2), (64, 384)]


@pytest.mark.parametrize("name", BATCH_LOSSES)
@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch_size,dim", SHAPES)
def test_batch_losses_equal_sentence_transformers(name, metric, dtype, batch_size, dim):
    margin = 5.0 if metric == "euclidean" else 0.3
    for seed, num_classes in enumerate([2, max(2, batch_size // 4), batch_size]):
        embeddings, labels = make_batch(batch_size, dim, num_classes, dtype, seed)
        if labels.unique().numel() < 2:  # single-label batches: a documented difference, tested below
            labels[0] = labels[0] + 1
        ours = ours_and_grad(name, embeddings, labels, metric, margin)
        assert_same(ours, st_and_grad(name, embeddings, labels, metric, margin), dtype)


@pytest.mark.parametrize("name", BATCH_LOSSES)
@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch_size,dim", [(2, 2), (8, 16), (16, 384)])
def test_batch_losses_equal_naive_loops(name, metric, dtype, batch_size, dim):
    margin = 5.0 if metric == "euclidean" else 0.3
    for seed, num_classes in enumerate([1, 3, batch_size]):
        embeddings, labels = make_batch(batch_size, dim, num_classes, dtype, seed)
        assert_same(ours_and_grad(name, embeddings, labels, metric, margin), naive_and_grad(name, embeddings, labels, metric, margin), dtype)


@pytest.mark.parametrize("name", ["BatchAllTripletLoss", "BatchSemiHardTripletLoss"])
def test_squared_euclidean_strings_equal_naive_loops(name):
    embeddings, labels = make_batch(12, 8, 3, torch.float64, seed=3)
    loss = getattr(T, name)(distance_metric="squared_euclidean", margin=20.0)(embeddings, labels)
    (grad,) = torch.autograd.grad(loss, embeddings)
    assert_same((loss, grad), naive_and_grad(name, embeddings, labels, "squared_euclidean", 20.0), torch.float64)


# ----------------------------------------------------------------------------------------------
# Edge cases
# ----------------------------------------------------------------------------------------------
EDGE_LABELS = {
    "anchor_without_positive": [0, 0, 1, 1, 2, 3, 3],
    "one_example_per_class": [0, 1, 2, 3, 4, 5],
    "pairs": [0, 1],
    "two_classes": [0, 0, 0, 1, 1, 1],
}


@pytest.mark.parametrize("name", BATCH_LOSSES)
@pytest.mark.parametrize("case", sorted(EDGE_LABELS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_edge_cases_equal_sentence_transformers_and_naive(name, case, dtype):
    labels = torch.tensor(EDGE_LABELS[case])
    embeddings, _ = make_batch(len(labels), 16, 2, dtype, seed=7)
    ours = ours_and_grad(name, embeddings, labels)
    assert_same(ours, st_and_grad(name, embeddings, labels), dtype)
    assert_same(ours, naive_and_grad(name, embeddings, labels), dtype)


@pytest.mark.parametrize("name", BATCH_LOSSES)
@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [7]])
def test_single_label_batch_gives_zero_that_can_be_backpropagated(name, labels):
    labels = torch.tensor(labels)
    embeddings, _ = make_batch(len(labels), 16, 1, torch.float32, seed=8)
    loss = getattr(T, name)()(embeddings, labels)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert (embeddings.grad == 0).all()
    naive_loss, _ = naive_and_grad(name, embeddings, labels)
    assert naive_loss.item() == 0.0


def test_single_label_batch_is_a_documented_difference_from_sentence_transformers():
    # sentence-transformers returns artefacts of its masking here; labkit returns 0 (see the module docstring).
    embeddings, _ = make_batch(4, 16, 1, torch.float64, seed=9)
    labels = torch.tensor([1, 1, 1, 1])
    assert st_loss(st_losses.BatchHardTripletLoss, embeddings, labels=labels).item() == pytest.approx(5.0)
    soft = st_loss(st_losses.BatchHardSoftMarginTripletLoss, embeddings, labels=labels).item()
    assert soft == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert st_loss(st_losses.BatchSemiHardTripletLoss, embeddings, labels=labels).item() > 5.0
    assert st_loss(st_losses.BatchAllTripletLoss, embeddings, labels=labels).item() == 0.0  # this one agrees


@pytest.mark.parametrize("name", BATCH_LOSSES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identical_embeddings_give_finite_gradients_and_the_naive_value(name, dtype):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    embeddings = (torch.randn(1, 384, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 2).repeat(6, 1)
    embeddings.requires_grad_()
    loss, grad = ours_and_grad(name, embeddings, labels)
    assert torch.isfinite(grad).all()
    assert_same((loss, grad), naive_and_grad(name, embeddings, labels), dtype)
    if dtype == torch.float64:  # in float32 sentence-transformers' expansion is ~5e-3 off here (see labkit.distances)
        assert_same((loss, grad), st_and_grad(name, embeddings, labels), dtype)


@pytest.mark.parametrize("name", BATCH_LOSSES)
def test_half_precision_embeddings_are_computed_in_float32(name):
    embeddings, labels = make_batch(8, 16, 3, torch.float32, seed=10)
    half = embeddings.detach().half().requires_grad_()
    loss = getattr(T, name)()(half, labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert half.grad.dtype == torch.float16 and torch.isfinite(half.grad).all()


# ----------------------------------------------------------------------------------------------
# Other ways to give the distance
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BATCH_LOSSES)
def test_sentence_transformers_functions_strings_and_custom_functions_agree(name):
    embeddings, labels = make_batch(24, 16, 5, torch.float64, seed=11)
    reference = st_and_grad(name, embeddings, labels)
    for metric in (
        st_losses.BatchHardTripletLossDistanceFunction.euclidean_distance,
        st_losses.BatchHardTripletLossDistanceFunction.eucledian_distance,
        "euclidean",
        lambda x: euclidean_distance(x),  # a custom function: differentiated through the whole matrix
    ):
        loss = getattr(T, name)(distance_metric=metric)(embeddings, labels)
        (grad,) = torch.autograd.grad(loss, embeddings)
        assert_same((loss, grad), reference, torch.float64)


@pytest.mark.parametrize("name", ["BatchSemiHardTripletLoss", "BatchHardTripletLoss"])
@pytest.mark.parametrize("pairs_per_entry", [-1.0, 1.0])
def test_gathering_from_the_matrix_or_remeasuring_pairs_gives_the_same_result(monkeypatch, name, pairs_per_entry):
    # -1: always differentiate the whole matrix; 1: always re-measure the chosen pairs (the usual choice
    # depends on how many pairs there are per matrix entry).
    monkeypatch.setattr(T, "_MAX_PAIRS_PER_ENTRY", pairs_per_entry)
    for num_classes in (2, 12):
        embeddings, labels = make_batch(48, 32, num_classes, torch.float64, seed=12)
        assert_same(ours_and_grad(name, embeddings, labels), st_and_grad(name, embeddings, labels), torch.float64)


def test_batch_all_chunks_give_the_same_weights():
    embeddings, labels = make_batch(40, 8, 4, torch.float64, seed=13)
    dist = euclidean_distance(embeddings.detach())
    whole = T._batch_all_weights(dist, labels, 5.0)
    chunked = T._batch_all_weights(dist, labels, 5.0, max_elements=7 * 40)
    torch.testing.assert_close(whole[0], chunked[0])
    torch.testing.assert_close(whole[1], chunked[1])


# ----------------------------------------------------------------------------------------------
# explain(): the triplets used, and the same loss rebuilt from them
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BATCH_LOSSES)
@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 1, 2, 2, 5], [4, 4, 4], [0, 1, 2]])
def test_explain_rebuilds_the_forward_value(name, labels):
    labels = torch.tensor(labels)
    embeddings, _ = make_batch(len(labels), 8, 2, torch.float64, seed=14)
    loss = getattr(T, name)()
    explanation = loss.explain(embeddings, labels)
    forward = loss(embeddings, labels)
    torch.testing.assert_close(explanation.loss, forward.detach())
    torch.testing.assert_close(explanation.per_anchor.sum() / explanation.denominator, forward.detach())
    torch.testing.assert_close(explanation.term.sum() / explanation.denominator, forward.detach())
    frame = explanation.to_frame()
    assert list(frame.columns) == ["anchor", "positive", "negative", "d_ap", "d_an", "term", "kind"]
    assert len(frame) == len(explanation.term)


def test_explain_batch_hard_shows_the_mined_indices():
    embeddings, labels = make_batch(9, 8, 3, torch.float64, seed=15)
    labels[4] = 7  # an anchor without a positive
    explanation = T.BatchHardTripletLoss().explain(embeddings, labels)
    dist = euclidean_distance(embeddings.detach())
    assert explanation.positive.tolist() == hardest_positive(dist, labels).indices.tolist()
    assert explanation.negative.tolist() == hardest_negative(dist, labels).indices.tolist()
    assert explanation.positive[4] == -1 and explanation.d_ap[4] == 0 and explanation.kind[4] == -1
    a = 0
    p, n = explanation.positive[a].item(), explanation.negative[a].item()
    assert explanation.d_ap[a].item() == pytest.approx(dist[a, p].item())
    assert explanation.term[a].item() == pytest.approx(max(dist[a, p].item() - dist[a, n].item() + 5.0, 0.0))


def test_explain_semi_hard_and_batch_all_list_the_right_triplets():
    embeddings, labels = make_batch(10, 8, 3, torch.float64, seed=16)
    dist = euclidean_distance(embeddings.detach())
    semi = T.BatchSemiHardTripletLoss().explain(embeddings, labels)
    pick = semi_hard_negative(dist, labels)
    assert semi.negative.tolist() == pick.indices[semi.anchor, semi.positive].tolist()
    assert len(semi.anchor) == int(anchor_positive_mask(labels).sum())
    every = T.BatchAllTripletLoss().explain(embeddings, labels)
    num_triplets = sum(
        1 for a in range(10) for p in range(10) for n in range(10)
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]
    )
    assert len(every.anchor) == num_triplets


# ----------------------------------------------------------------------------------------------
# TripletLoss
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("member", ["EUCLIDEAN", "COSINE", "MANHATTAN"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch_size,dim", [(2, 2), (8, 16), (64, 384)])
def test_triplet_loss_equals_sentence_transformers_and_naive(member, dtype, batch_size, dim):
    generator = torch.Generator().manual_seed(batch_size)
    columns = [torch.randn(batch_size, dim, generator=generator, dtype=torch.float64).to(dtype).requires_grad_() for _ in range(3)]
    margin = 5.0 if member != "COSINE" else 0.3
    ours = T.TripletLoss(distance_metric=getattr(TripletDistanceMetric, member), triplet_margin=margin)(*columns)
    theirs = st_loss(
        st_losses.TripletLoss, *columns, distance_metric=getattr(st_losses.TripletDistanceMetric, member), triplet_margin=margin
    )
    torch.testing.assert_close(ours, theirs, **tolerances(dtype))
    our_grads = torch.autograd.grad(ours, columns)
    for mine, reference in zip(our_grads, torch.autograd.grad(theirs, columns)):
        torch.testing.assert_close(mine, reference, **tolerances(dtype))
    if batch_size <= 8:
        references = [c.detach().double().requires_grad_() for c in columns]
        naive = naive_triplet_loss(*references, metric=member.lower(), margin=margin)
        torch.testing.assert_close(ours.double(), naive.detach(), **tolerances(dtype))
        for mine, reference in zip(our_grads, torch.autograd.grad(naive, references)):
            torch.testing.assert_close(mine.double(), reference, **tolerances(dtype))


def test_triplet_loss_accepts_strings_and_sentence_transformers_metrics():
    anchor, positive, negative = torch.randn(3, 8, 16, dtype=torch.float64).unbind(0)
    expected = T.TripletLoss()(anchor, positive, negative)
    assert T.TripletLoss(distance_metric="euclidean")(anchor, positive, negative).item() == pytest.approx(expected.item())
    via_st = T.TripletLoss(distance_metric=st_losses.TripletDistanceMetric.EUCLIDEAN)(anchor, positive, negative)
    assert via_st.item() == pytest.approx(expected.item())


def test_triplet_loss_identical_anchor_and_positive_has_finite_gradients():
    anchor = torch.randn(4, 16, requires_grad=True)
    positive = anchor.detach().clone().requires_grad_()
    negative = anchor.detach().clone().requires_grad_()
    loss = T.TripletLoss()(anchor, positive, negative)
    assert loss.item() == pytest.approx(5.0)
    grads = torch.autograd.grad(loss, (anchor, positive, negative))
    assert all(torch.isfinite(g).all() and (g == 0).all() for g in grads)


def test_triplet_loss_explain_rebuilds_the_value():
    anchor, positive, negative = torch.randn(3, 6, 4, dtype=torch.float64).unbind(0)
    loss = T.TripletLoss(triplet_margin=1.0)
    explanation = loss.explain(anchor, positive, negative)
    torch.testing.assert_close(explanation.loss, loss(anchor, positive, negative))
    assert explanation.anchor.tolist() == list(range(6))


# ----------------------------------------------------------------------------------------------
# Same names, parameters, defaults as sentence-transformers; clear errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BATCH_LOSSES + ["TripletLoss"])
def test_constructor_parameters_and_defaults_match_sentence_transformers(name):
    import inspect

    ours = inspect.signature(getattr(T, name)).parameters
    theirs = dict(inspect.signature(getattr(st_losses, name)).parameters)
    theirs.pop("model")
    assert list(ours) == list(theirs)
    for parameter in theirs:
        if parameter != "distance_metric":  # ours is labkit's function with the same meaning
            assert ours[parameter].default == theirs[parameter].default
    st_instance = getattr(st_losses, name)(model=None)
    labkit_instance = getattr(T, name)()
    if name != "BatchHardSoftMarginTripletLoss":  # ST's has an unused triplet_margin inherited from BatchHard
        for attribute in ("triplet_margin", "margin"):
            assert hasattr(labkit_instance, attribute) == hasattr(st_instance, attribute)
    assert labkit_instance.get_config_dict().keys() == st_instance.get_config_dict().keys()


@pytest.mark.parametrize("name", BATCH_LOSSES)
@pytest.mark.parametrize(
    "labels,error,match",
    [
        (torch.tensor([0.0, 1.0, 1.0, 0.0]), TypeError, "integer class ids"),
        (torch.tensor([[0], [1], [1], [0]]), ValueError, "1-D"),
        (torch.tensor([0, 1, 1]), ValueError, "expected 4 labels"),
        ("0110", TypeError, "labels"),
    ],
)
def test_bad_labels_are_clear_errors(name, labels, error, match):
    with pytest.raises(error, match=match):
        getattr(T, name)()(torch.randn(4, 8), labels)


@pytest.mark.parametrize("name", BATCH_LOSSES)
@pytest.mark.parametrize("embeddings", [torch.randn(8), torch.zeros(0, 4), torch.ones(4, 3, dtype=torch.long)])
def test_bad_embeddings_are_clear_errors(name, embeddings):
    with pytest.raises((TypeError, ValueError), match="embeddings"):
        getattr(T, name)()(embeddings, torch.zeros(len(embeddings), dtype=torch.long))


def test_triplet_loss_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        T.TripletLoss()(torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8))


def test_docstring_examples_run():
    import doctest

    assert doctest.testmod(T).failed == 0
