"""GlobalOrthogonalRegularizationLoss: its terms and their gradients against sentence-transformers 6.3 and a
naive loop."""
from __future__ import annotations

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from sentence_transformers.util import dot_score as st_dot_score
from st_model_stubs import STModelStub, columns, leaves

from labkit.distances import dot_score
from labkit.losses.regularization import GlobalOrthogonalRegularizationLoss

SETTINGS = [dict(), dict(aggregation="sum"), dict(mean_weight=0.0, aggregation="sum"),
            dict(mean_weight=2.0, second_moment_weight=None), dict(mean_weight=0.5, second_moment_weight=3.0)]


def embeddings(num_columns, batch_size, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randn(1, dim, generator=generator, dtype=torch.float64)  # a common direction: M1, M2 > 0
    return [shared + torch.randn(batch_size, dim, generator=generator, dtype=torch.float64) for _ in range(num_columns)]


def naive_gor(columns_, mean_weight=1.0, second_moment_weight=1.0, aggregation="mean", similarity=naive.cosine):
    means, moments = [], []
    for column in columns_:
        pairs = [(i, j) for i in range(len(column)) for j in range(len(column)) if i != j]
        count = max(len(pairs), 1)
        means.append((sum(similarity(column[i], column[j]) for i, j in pairs) / count) ** 2)
        second = sum(similarity(column[i], column[j]) ** 2 for i, j in pairs) / count
        moments.append(max(second - 1.0 / len(column[0]), 0.0))
    aggregate = sum if aggregation == "sum" else naive.mean
    return (mean_weight or 0.0) * aggregate(means) + (second_moment_weight or 0.0) * aggregate(moments)


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("num_columns,batch_size,dim", [(1, 1, 4), (1, 6, 4), (2, 8, 16), (3, 5, 32)])
def test_matches_st_and_naive(num_columns, batch_size, dim, settings):
    inputs = embeddings(num_columns, batch_size, dim, seed=batch_size)
    loss_fn = GlobalOrthogonalRegularizationLoss(**settings)
    ours = leaves(*inputs)
    terms = loss_fn.terms(*ours)
    st_loss = st_losses.GlobalOrthogonalRegularizationLoss(STModelStub(), **settings)
    theirs = leaves(*inputs)
    st_terms = st_loss(columns(*theirs), None)
    assert list(terms) == list(st_terms)
    for name in terms:
        torch.testing.assert_close(terms[name], st_terms[name], rtol=1e-12, atol=1e-14)
    value = loss_fn(*ours)
    grads = torch.autograd.grad(value, ours)
    sum(st_terms.values()).backward()  # sentence-transformers' trainer sums the dict
    for grad, their in zip(grads, theirs):
        torch.testing.assert_close(grad, their.grad, rtol=1e-10, atol=1e-14)
    expected = naive_gor([c.tolist() for c in inputs], **settings)
    assert value.item() == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_dot_score_matches_st():
    inputs = embeddings(2, 6, 8, seed=3)
    ours = GlobalOrthogonalRegularizationLoss(similarity_fct=dot_score).terms(*inputs)
    theirs = st_losses.GlobalOrthogonalRegularizationLoss(STModelStub(), similarity_fct=st_dot_score)(
        columns(*inputs), None)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name])
    expected = naive_gor([c.tolist() for c in inputs], similarity=naive.dot)
    assert sum(ours.values()).item() == pytest.approx(expected, rel=1e-10)


def test_random_directions_in_high_dimension_are_nearly_unpenalised():
    """The targets M1 = 0, M2 = 1/D are those of random directions: a random batch pays (almost) nothing."""
    random_batch = torch.randn(64, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    clustered = random_batch + 3.0  # every embedding leans the same way
    loss_fn = GlobalOrthogonalRegularizationLoss()
    assert loss_fn(random_batch).item() < 1e-3 < 0.5 < loss_fn(clustered).item()


def test_bad_arguments():
    with pytest.raises(ValueError, match="At least one of mean_weight or second_moment_weight"):
        GlobalOrthogonalRegularizationLoss(mean_weight=0.0, second_moment_weight=None)
    with pytest.raises(ValueError, match="aggregation must be 'mean' or 'sum'"):
        GlobalOrthogonalRegularizationLoss(aggregation="max")
    with pytest.raises(ValueError, match="at least one column"):
        GlobalOrthogonalRegularizationLoss()()
    with pytest.raises(ValueError, match=r"shape \(batch_size, dim\)"):
        GlobalOrthogonalRegularizationLoss()(torch.randn(8))
