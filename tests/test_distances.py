"""labkit.distances against naive pair-by-pair loops and against sentence-transformers: values and gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    BatchHardTripletLossDistanceFunction as STBatchDistance,
)
from sentence_transformers.sentence_transformer.losses import TripletDistanceMetric as STTripletMetric

from labkit import distances as D
from naive_triplets import as_floats, naive_distance, naive_distance_matrix


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

MATRIX_FUNCTIONS = {
    "euclidean": D.euclidean_distance,
    "squared_euclidean": D.squared_euclidean_distance,
    "cosine": D.cosine_distance,
    "manhattan": D.manhattan_distance,
}
PAIRED_FUNCTIONS = {
    "euclidean": D.paired_euclidean_distance,
    "squared_euclidean": D.paired_squared_euclidean_distance,
    "cosine": D.paired_cosine_distance,
    "manhattan": D.paired_manhattan_distance,
}


def tolerances(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)


def embeddings(batch_size, dim, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, dim, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()


# ----------------------------------------------------------------------------------------------
# Values and gradients against the naive loops
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", sorted(MATRIX_FUNCTIONS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch_size,dim", [(2, 2), (8, 16), (32, 384)])
def test_matrix_values_match_naive_loops(metric, dtype, batch_size, dim):
    x = embeddings(batch_size, dim, dtype)
    expected = as_floats(naive_distance_matrix(x.detach().double(), metric))
    actual = MATRIX_FUNCTIONS[metric](x).detach().double().numpy()
    scale = max(1.0, np.abs(expected).max())  # squared distances reach ~800 at D=384
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("metric", sorted(MATRIX_FUNCTIONS))
@pytest.mark.parametrize("batch_size,dim", [(2, 3), (8, 16)])
def test_matrix_gradients_match_naive_loops(metric, batch_size, dim):
    x = embeddings(batch_size, dim, torch.float64, seed=1)
    weights = torch.randn(batch_size, batch_size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (ours,) = torch.autograd.grad((weights * MATRIX_FUNCTIONS[metric](x)).sum(), x)
    naive = naive_distance_matrix(x, metric)
    naive_sum = sum(weights[i, j] * naive[i][j] for i in range(batch_size) for j in range(batch_size))
    (expected,) = torch.autograd.grad(naive_sum, x)
    torch.testing.assert_close(ours, expected, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("metric", sorted(PAIRED_FUNCTIONS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_paired_values_and_gradients_match_naive_loops(metric, dtype):
    a, b = embeddings(6, 16, dtype, seed=3), embeddings(6, 16, dtype, seed=4)
    ours = PAIRED_FUNCTIONS[metric](a, b)
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    naive = torch.stack([naive_distance(a64[i], b64[i], metric) for i in range(6)])
    torch.testing.assert_close(ours.double(), naive.detach(), **tolerances(dtype))
    weights = torch.arange(1.0, 7.0, dtype=dtype)
    ours_grads = torch.autograd.grad((weights * ours).sum(), (a, b))
    naive_grads = torch.autograd.grad((weights.double() * naive).sum(), (a64, b64))
    for mine, reference in zip(ours_grads, naive_grads):
        torch.testing.assert_close(mine.double(), reference, **tolerances(dtype))


def test_paired_broadcasts_rows_against_stacked_rows():
    a = embeddings(5, 8, torch.float64)
    others = embeddings(10, 8, torch.float64, seed=9).view(2, 5, 8)
    stacked = D.paired_euclidean_distance(a, others)
    assert stacked.shape == (2, 5)
    torch.testing.assert_close(stacked[1], D.paired_euclidean_distance(a, others[1]))


# ----------------------------------------------------------------------------------------------
# Same meaning as sentence-transformers
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ours,theirs",
    [
        (D.BatchHardTripletLossDistanceFunction.euclidean_distance, STBatchDistance.euclidean_distance),
        (D.BatchHardTripletLossDistanceFunction.eucledian_distance, STBatchDistance.eucledian_distance),
        (D.BatchHardTripletLossDistanceFunction.cosine_distance, STBatchDistance.cosine_distance),
        (lambda x: D.euclidean_distance(x, squared=True), lambda x: STBatchDistance.euclidean_distance(x, squared=True)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch_size,dim", [(2, 2), (8, 16), (64, 384)])
def test_matrix_functions_equal_sentence_transformers(ours, theirs, dtype, batch_size, dim):
    x = embeddings(batch_size, dim, dtype, seed=batch_size)
    mine, reference = ours(x), theirs(x)
    scale = max(1.0, reference.abs().max().item())  # squared distances reach ~800 at D=384
    torch.testing.assert_close(mine, reference, rtol=tolerances(dtype)["rtol"], atol=tolerances(dtype)["atol"] * scale)
    weights = torch.randn(batch_size, batch_size, generator=torch.Generator().manual_seed(5), dtype=dtype)
    (grad_mine,) = torch.autograd.grad((weights * mine).sum(), x)
    (grad_reference,) = torch.autograd.grad((weights * reference).sum(), x)
    # Random weights make the gradient a sum of large terms that cancel: compare at the scale of those terms.
    grad_scale = max(1.0, grad_reference.abs().max().item())
    torch.testing.assert_close(
        grad_mine, grad_reference, rtol=tolerances(dtype)["rtol"], atol=tolerances(dtype)["atol"] * grad_scale
    )


@pytest.mark.parametrize("member", ["EUCLIDEAN", "COSINE", "MANHATTAN"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triplet_metrics_equal_sentence_transformers(member, dtype):
    a, b = embeddings(8, 16, dtype, seed=6), embeddings(8, 16, dtype, seed=7)
    mine = getattr(D.TripletDistanceMetric, member)(a, b)
    reference = getattr(STTripletMetric, member)(a, b)
    torch.testing.assert_close(mine, reference, **tolerances(dtype))
    grads_mine = torch.autograd.grad(mine.sum(), (a, b))
    grads_reference = torch.autograd.grad(reference.sum(), (a, b))
    for mine_grad, reference_grad in zip(grads_mine, grads_reference):
        torch.testing.assert_close(mine_grad, reference_grad, **tolerances(dtype))


# ----------------------------------------------------------------------------------------------
# NaN safety and the deliberate numerical difference
# ----------------------------------------------------------------------------------------------
def test_safe_sqrt_has_zero_gradient_at_zero_where_sqrt_has_nan():
    squared = torch.tensor([0.0, 4.0, -1e-9], requires_grad=True)
    (grad,) = torch.autograd.grad(D.safe_sqrt(squared).sum(), squared)
    assert D.safe_sqrt(squared).tolist() == [0.0, 2.0, 0.0]
    assert grad.tolist() == [0.0, 0.25, 0.0]
    # The reason for it: the plain root, masked afterwards, still poisons the gradient.
    (plain,) = torch.autograd.grad((torch.sqrt(squared.clamp_min(0)) * torch.tensor([0.0, 1.0, 0.0])).sum(), squared)
    assert torch.isnan(plain[0])


@pytest.mark.parametrize("function", [D.euclidean_distance, D.cosine_distance, D.squared_euclidean_distance])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identical_embeddings_give_finite_gradients(function, dtype):
    x = (torch.randn(1, 384, dtype=dtype) * 3).repeat(6, 1).requires_grad_()
    (grad,) = torch.autograd.grad(function(x).sum(), x)
    assert torch.isfinite(grad).all()
    for paired in PAIRED_FUNCTIONS.values():
        a = x.detach().clone().requires_grad_()
        (grad,) = torch.autograd.grad(paired(a, a.detach().clone()).sum(), a)
        assert torch.isfinite(grad).all()


def test_identical_rows_are_exactly_zero_apart_where_the_plain_expansion_is_not():
    # Embeddings with a large shared component, as transformer outputs have. sentence-transformers' expansion
    # loses digits here (documented deliberate difference); ours shifts the batch first and stays exact.
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(1, 384, generator=generator) * 2
    x = torch.cat([shared.repeat(4, 1), shared + 0.01 * torch.randn(4, 384, generator=generator)])
    ours = D.euclidean_distance(x)
    assert (ours[:4, :4] == 0).all()
    exact = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")
    ours_error = (ours.double() - exact).abs().max().item()
    theirs_error = (STBatchDistance.euclidean_distance(x).double() - exact).abs().max().item()
    assert ours_error < 1e-5
    assert ours_error < theirs_error


def test_diagonal_is_exactly_zero():
    x = embeddings(16, 384, torch.float32)
    assert (torch.diagonal(D.euclidean_distance(x)) == 0).all()
    assert (torch.diagonal(D.squared_euclidean_distance(x)) == 0).all()


def test_two_argument_form_matches_naive():
    x, y = embeddings(3, 5, torch.float64).detach(), embeddings(4, 5, torch.float64, seed=1).detach()
    expected = [[float(naive_distance(x[i], y[j], "euclidean")) for j in range(4)] for i in range(3)]
    np.testing.assert_allclose(D.euclidean_distance(x, y).detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(
        D.cosine_distance(x, y).detach().numpy(),
        [[float(naive_distance(x[i], y[j], "cosine")) for j in range(4)] for i in range(3)],
        rtol=1e-10,
    )


def test_half_precision_is_computed_in_float32():
    x = torch.randn(8, 16).half()
    assert D.euclidean_distance(x).dtype == torch.float32
    assert D.paired_cosine_distance(x, x).dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# Choosing a metric
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "metric,name",
    [
        ("euclidean", "euclidean"),
        ("Euclidean_Distance", "euclidean"),
        ("l2", "euclidean"),
        ("squared-euclidean", "squared_euclidean"),
        ("cosine", "cosine"),
        ("manhattan", "manhattan"),
        (D.BatchHardTripletLossDistanceFunction.euclidean_distance, "euclidean"),
        (D.BatchHardTripletLossDistanceFunction.eucledian_distance, "euclidean"),
        (D.cosine_distance, "cosine"),
        (STBatchDistance.euclidean_distance, "euclidean"),
        (STBatchDistance.eucledian_distance, "euclidean"),
        (STBatchDistance.cosine_distance, "cosine"),
    ],
)
def test_resolve_batch_distance_knows_the_row_by_row_form(metric, name):
    distance = D.resolve_batch_distance(metric)
    assert distance.name == name and distance.paired is not None
    x = embeddings(6, 8, torch.float64)
    rows = torch.tensor([3, 1, 0, 5, 2, 4])
    torch.testing.assert_close(distance.paired(x, x[rows]), distance.matrix(x)[torch.arange(6), rows])


def test_custom_matrix_function_is_used_as_is():
    def my_distance(x):
        return torch.cdist(x, x, p=3)

    distance = D.resolve_batch_distance(my_distance)
    assert distance.matrix is my_distance and distance.paired is None


@pytest.mark.parametrize("bad", ["hamming", "", 3, None])
def test_unknown_metrics_are_clear_errors(bad):
    error = ValueError if isinstance(bad, str) else TypeError
    with pytest.raises(error, match="distance_metric"):
        D.resolve_batch_distance(bad)
    with pytest.raises(error, match="distance_metric"):
        D.resolve_paired_distance(bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda: D.euclidean_distance(torch.randn(8)),
        lambda: D.euclidean_distance(torch.ones(4, 3, dtype=torch.long)),
        lambda: D.euclidean_distance([[0.0, 1.0]]),
        lambda: D.euclidean_distance(torch.randn(4, 3), torch.randn(4, 5)),
        lambda: D.paired_euclidean_distance(torch.randn(4, 3), torch.randn(5, 3)),
    ],
)
def test_bad_inputs_are_clear_errors(call):
    with pytest.raises((TypeError, ValueError), match="shape|dtype|floating|Tensor|dim"):
        call()
