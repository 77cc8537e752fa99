"""MegaBatchMarginLoss: value and gradients against sentence-transformers 6.3 (both its mini-batched and plain
versions) and a naive loop; explain()."""
from __future__ import annotations

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from st_model_stubs import STModelStub, columns, leaves

from labkit.losses.megabatch import MegaBatchMarginLoss


def pairs(batch_size, dim=16, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed + batch_size)
    anchor = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
    positive = anchor + torch.randn(batch_size, dim, generator=generator, dtype=dtype)  # cosines around 0.7
    return anchor, positive


def naive_megabatch(anchor, positive, positive_margin, negative_margin):
    total = 0.0
    for i in range(len(anchor)):
        negatives = [naive.cosine(anchor[i], positive[j]) for j in range(len(anchor)) if j != i]
        hardest = max(negatives) if negatives else float("-inf")
        total += max(positive_margin - naive.cosine(anchor[i], positive[i]), 0.0) + max(hardest - negative_margin, 0.0)
    return total / len(anchor)


@pytest.mark.parametrize("mini_batched", [True, False])
@pytest.mark.parametrize("margins", [(0.8, 0.3), (0.5, 0.1), (0.95, 0.0)])
@pytest.mark.parametrize("batch_size", [1, 2, 7, 32])
def test_matches_st_and_naive(batch_size, margins, mini_batched):
    anchor, positive = pairs(batch_size)
    positive_margin, negative_margin = margins
    ours = leaves(anchor, positive)
    value = MegaBatchMarginLoss(positive_margin, negative_margin)(*ours)
    grads = torch.autograd.grad(value, ours)
    st_loss = st_losses.MegaBatchMarginLoss(STModelStub(), positive_margin, negative_margin,
                                            use_mini_batched_version=mini_batched, mini_batch_size=3)
    theirs = leaves(anchor, positive)
    st_value = st_loss(columns(*theirs), None)
    st_value.backward()
    torch.testing.assert_close(value, st_value.detach(), rtol=1e-12, atol=1e-12)
    for grad, their in zip(grads, theirs):
        torch.testing.assert_close(grad, their.grad, rtol=1e-10, atol=1e-12)
    expected = naive_megabatch(anchor.tolist(), positive.tolist(), positive_margin, negative_margin)
    assert value.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_gradient_matches_finite_differences():
    anchor, positive = pairs(4, dim=3, seed=1)
    leaf = leaves(anchor, positive)
    grads = torch.autograd.grad(MegaBatchMarginLoss(0.9, 0.1)(*leaf), leaf)
    expected = naive.numerical_gradient(lambda a, p: naive_megabatch(a, p, 0.9, 0.1),
                                        [anchor.tolist(), positive.tolist()])
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_explain_names_the_hardest_negative_and_sums_to_the_loss():
    anchor, positive = pairs(6, seed=2)
    loss_fn = MegaBatchMarginLoss()
    explanation = loss_fn.explain(anchor, positive)
    torch.testing.assert_close(explanation.loss, loss_fn(anchor, positive))
    for i in range(6):
        others = [j for j in range(6) if j != i]
        hardest = max(others, key=lambda j: explanation.similarity[i, j].item())
        assert explanation.hardest_negative[i].item() == hardest
    torch.testing.assert_close(explanation.per_anchor, explanation.positive_term + explanation.negative_term)


def test_bad_inputs():
    with pytest.raises(ValueError, match="anchor has 4 rows but positive has 3"):
        MegaBatchMarginLoss()(torch.randn(4, 8), torch.randn(3, 8))
    with pytest.raises(TypeError):
        MegaBatchMarginLoss()(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8))
