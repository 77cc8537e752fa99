"""MultipleNegativesRankingLoss (all directions / partition modes), MultipleNegativesSymmetricRankingLoss and
ContrastiveTensionLossInBatchNegatives: values and gradients against sentence-transformers 6.2
(tests/st_stub.py) and the naive loops of tests/naive_pairs.py."""
from __future__ import annotations

import itertools
import math
import warnings

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from sentence_transformers.util import cos_sim as st_cos_sim
from sentence_transformers.util import dot_score as st_dot_score
from st_stub import EmbeddingStub, st_loss
from torch import nn

from labkit.losses.ranking import (
    ContrastiveTensionLossInBatchNegatives,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)
from labkit.distances import cos_sim, dot_score

BATCH_SIZES = (1, 2, 8, 32)
DIMS = (2, 16, 384)
DTYPES = (torch.float32, torch.float64)
SHAPES = list(itertools.product(BATCH_SIZES, DIMS, DTYPES))
TOL = dict(rtol=1e-5, atol=1e-5)
ALL_DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
DIRECTION_CASES = [
    (("query_to_doc",), "joint"),
    (("query_to_doc",), "per_direction"),
    (("query_to_doc", "doc_to_query"), "joint"),
    (("query_to_doc", "doc_to_query"), "per_direction"),
    (("query_to_doc", "query_to_query"), "joint"),
    (("query_to_doc", "doc_to_doc"), "joint"),
    (ALL_DIRECTIONS, "joint"),
]


def random_columns(num_columns, batch_size, dim, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed + 1000 * batch_size + dim)
    return [torch.randn(batch_size, dim, generator=generator, dtype=dtype) for _ in range(num_columns)]


def value_and_grads(loss_fn, *inputs):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    value = loss_fn(*leaves)
    grads = torch.autograd.grad(value, leaves)
    return value.detach(), grads


def st_mnrl(*columns, st_class=st_losses.MultipleNegativesRankingLoss, **kwargs):
    with warnings.catch_warnings():  # MultipleNegativesSymmetricRankingLoss is deprecated in 6.2
        warnings.simplefilter("ignore")
        return st_loss(st_class, *columns, **kwargs)


def assert_matches(ours_fn, theirs_fn, columns):
    ours, our_grads = value_and_grads(ours_fn, *columns)
    theirs, their_grads = value_and_grads(theirs_fn, *columns)
    torch.testing.assert_close(ours, theirs, **TOL)
    for ours_grad, their_grad in zip(our_grads, their_grads):
        assert torch.isfinite(ours_grad).all()
        torch.testing.assert_close(ours_grad, their_grad, **TOL)
    return ours


def naive_mnrl(columns, **kwargs):
    lists = [c.tolist() for c in columns]
    return naive.multiple_negatives_ranking_loss(lists[0], lists[1], lists[2:], **kwargs)


# ---------------------------------------------------------------------------------------------------
# Similarity functions
# ---------------------------------------------------------------------------------------------------
def test_similarity_matrices_match_st():
    a, b = random_columns(2, 8, 16, torch.float64)
    torch.testing.assert_close(cos_sim(a, b), st_cos_sim(a, b))
    torch.testing.assert_close(dot_score(a, b), st_dot_score(a, b))
    torch.testing.assert_close(cos_sim(a[0], b), st_cos_sim(a[0], b))  # a single vector is one row
    expected = [[naive.cosine(x, y) for y in b.tolist()] for x in a.tolist()]
    torch.testing.assert_close(cos_sim(a, b), torch.tensor(expected, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------
# MultipleNegativesRankingLoss
# ---------------------------------------------------------------------------------------------------
# Every shape with no and one hard-negative column; three columns on a few shapes (the naive loop is slow).
MNRL_CASES = [(*shape, n) for shape in SHAPES for n in (0, 1)] + [
    (1, 16, torch.float64, 3), (8, 16, torch.float32, 3), (32, 16, torch.float64, 3), (8, 384, torch.float32, 3)]


@pytest.mark.parametrize("batch_size,dim,dtype,num_negatives", MNRL_CASES)
def test_mnrl_matches_st_and_naive(batch_size, dim, dtype, num_negatives):
    columns = random_columns(2 + num_negatives, batch_size, dim, dtype)
    value = assert_matches(MultipleNegativesRankingLoss(), lambda *c: st_mnrl(*c), columns)
    assert value.item() == pytest.approx(naive_mnrl(columns), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("num_negatives", [0, 2])
@pytest.mark.parametrize("directions,partition_mode", DIRECTION_CASES)
@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_mnrl_directions_match_st_and_naive(directions, partition_mode, num_negatives, batch_size):
    columns = random_columns(2 + num_negatives, batch_size, 16, torch.float64, seed=1)
    kwargs = dict(directions=directions, partition_mode=partition_mode)
    value = assert_matches(MultipleNegativesRankingLoss(**kwargs), lambda *c: st_mnrl(*c, **kwargs), columns)
    assert value.item() == pytest.approx(naive_mnrl(columns, **kwargs), rel=1e-9)


@pytest.mark.parametrize("num_negatives", [0, 1])
def test_symmetric_loss_matches_st_and_naive(num_negatives):
    columns = random_columns(2 + num_negatives, 8, 16, torch.float64, seed=2)
    value = assert_matches(
        MultipleNegativesSymmetricRankingLoss(),
        lambda *c: st_mnrl(*c, st_class=st_losses.MultipleNegativesSymmetricRankingLoss),
        columns,
    )
    symmetric_by_directions = MultipleNegativesRankingLoss(
        directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
    )(*columns)
    assert value.item() == pytest.approx(symmetric_by_directions.item(), rel=1e-12)
    expected = naive_mnrl(columns, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")
    assert value.item() == pytest.approx(expected, rel=1e-9)


def test_symmetric_loss_is_the_mean_of_both_cross_entropies():
    """Definition check straight from the formula: (CE(anchor -> positives) + CE(positive -> anchors)) / 2."""
    anchor, positive = random_columns(2, 8, 16, torch.float64, seed=3)
    naive_forward = naive.multiple_negatives_ranking_loss(anchor.tolist(), positive.tolist())
    naive_backward = naive.multiple_negatives_ranking_loss(positive.tolist(), anchor.tolist())
    value = MultipleNegativesSymmetricRankingLoss()(anchor, positive)
    assert value.item() == pytest.approx((naive_forward + naive_backward) / 2, rel=1e-9)


def test_mnrl_with_duplicates_in_the_batch_matches_st_and_naive():
    """A repeated (anchor, positive) pair: the copy counts as a negative (as in sentence-transformers)."""
    anchor, positive, negative = random_columns(3, 6, 16, torch.float64, seed=4)
    anchor[3], positive[3] = anchor[1], positive[1]
    anchor[5] = anchor[0]  # same anchor, different positive
    for num_columns in (2, 3):
        columns = [anchor, positive, negative][:num_columns]
        value = assert_matches(MultipleNegativesRankingLoss(), lambda *c: st_mnrl(*c), columns)
        assert value.item() == pytest.approx(naive_mnrl(columns), rel=1e-9)
    # The duplicate makes the loss larger than the batch without it would suggest: ln 2 at least for that row.
    assert MultipleNegativesRankingLoss()(anchor, positive).item() > 0


def test_mnrl_identical_anchor_and_positive_give_finite_gradients():
    emb = torch.randn(8, 16, requires_grad=True)
    for loss_fn in (MultipleNegativesRankingLoss(), MultipleNegativesRankingLoss(directions=ALL_DIRECTIONS)):
        value = loss_fn(emb, emb, emb)
        (grad,) = torch.autograd.grad(value, emb)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_mnrl_dot_score_and_scale_match_st_and_naive():
    columns = random_columns(3, 8, 16, torch.float64, seed=5)
    columns = [c / 4 for c in columns]  # keep dot products in a range where the softmax is not one-hot
    ours = MultipleNegativesRankingLoss(scale=1.0, similarity_fct=dot_score)
    value = assert_matches(ours, lambda *c: st_mnrl(*c, scale=1.0, similarity_fct=st_dot_score), columns)
    assert value.item() == pytest.approx(naive_mnrl(columns, scale=1.0, similarity="dot"), rel=1e-9)
    assert_matches(MultipleNegativesRankingLoss(scale=50.0), lambda *c: st_mnrl(*c, scale=50.0), columns)


@pytest.mark.parametrize("directions,partition_mode", [(("query_to_doc",), "joint"), (ALL_DIRECTIONS, "joint"),
                                                       (("query_to_doc", "doc_to_query"), "per_direction")])
def test_mnrl_gradient_matches_finite_differences(directions, partition_mode):
    columns = random_columns(3, 3, 4, torch.float64, seed=6)
    kwargs = dict(directions=directions, partition_mode=partition_mode, scale=5.0)
    _, grads = value_and_grads(MultipleNegativesRankingLoss(**kwargs), *columns)
    expected = naive.numerical_gradient(
        lambda a, p, n: naive.multiple_negatives_ranking_loss(a, p, [n], **kwargs), [c.tolist() for c in columns]
    )
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_mnrl_defaults_and_bad_arguments():
    loss_fn = MultipleNegativesRankingLoss()
    assert (loss_fn.scale, loss_fn.similarity_fct, loss_fn.directions, loss_fn.partition_mode) == (
        20.0, cos_sim, ("query_to_doc",), "joint")
    assert loss_fn.temperature == pytest.approx(0.05)
    with pytest.raises(ValueError, match="positive"):
        MultipleNegativesRankingLoss(scale=0)
    with pytest.raises(ValueError, match="Invalid directions"):
        MultipleNegativesRankingLoss(directions=("query_to_doc", "doc_to_everything"))
    with pytest.raises(ValueError, match="'query_to_doc' direction is required"):
        MultipleNegativesRankingLoss(directions=("doc_to_query",))
    with pytest.raises(ValueError, match="partition_mode='joint'"):
        MultipleNegativesRankingLoss(directions=("query_to_doc", "query_to_query"), partition_mode="per_direction")
    with pytest.raises(ValueError, match="partition_mode must be"):
        MultipleNegativesRankingLoss(partition_mode="separate")


def test_mnrl_bad_inputs_raise_clear_errors():
    loss_fn = MultipleNegativesRankingLoss()
    anchor = torch.randn(4, 8)
    with pytest.raises(ValueError, match="anchor has 4 rows but positive has 3"):
        loss_fn(anchor, torch.randn(3, 8))
    with pytest.raises(ValueError, match="anchor has 4 rows but negative 1 has 5"):
        loss_fn(anchor, torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="embedding size 8 but positive has 6"):
        loss_fn(anchor, torch.randn(4, 6))
    with pytest.raises(TypeError):
        loss_fn(anchor)


# ---------------------------------------------------------------------------------------------------
# ContrastiveTensionLossInBatchNegatives
# ---------------------------------------------------------------------------------------------------
class ColumnStub(nn.Module):
    """Returns one named tensor of the features: lets sentence-transformers' two CT models see different embeddings."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def forward(self, features):
        return {"sentence_embedding": features[self.key]}


def st_contrastive_tension(**kwargs):
    loss = st_losses.ContrastiveTensionLossInBatchNegatives(EmbeddingStub(), **kwargs)
    loss.model1, loss.model2 = ColumnStub("emb_1"), ColumnStub("emb_2")
    return loss


def ct_value_and_grads(loss, emb_1, emb_2, stub_style=False):
    e1, e2 = (x.detach().clone().requires_grad_() for x in (emb_1, emb_2))
    value = loss([{"emb_1": e1, "emb_2": e2}], None) if stub_style else loss(e1, e2)
    grads = torch.autograd.grad(value, [e1, e2, loss.logit_scale])
    return value.detach(), grads


@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_contrastive_tension_matches_st_and_naive(batch_size, dim, dtype):
    emb_1, emb_2 = random_columns(2, batch_size, dim, dtype, seed=7)
    emb_2 = 0.6 * emb_1 + 0.4 * emb_2  # the trained copy stays near the frozen one
    ours, theirs = ContrastiveTensionLossInBatchNegatives(), st_contrastive_tension()
    assert torch.equal(ours.logit_scale.detach(), theirs.logit_scale.detach())
    value, grads = ct_value_and_grads(ours, emb_1, emb_2)
    st_value, st_grads = ct_value_and_grads(theirs, emb_1, emb_2, stub_style=True)
    torch.testing.assert_close(value, st_value, **TOL)
    for grad, st_grad in zip(grads, st_grads):
        torch.testing.assert_close(grad, st_grad, **TOL)
    expected = naive.contrastive_tension_in_batch_loss(emb_1.tolist(), emb_2.tolist(), scale=math.exp(ours.logit_scale.item()))
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_contrastive_tension_with_the_same_embeddings_matches_plain_st_stub():
    """With emb_1 == emb_2 sentence-transformers' own set-up (model1 a copy of model2) applies unchanged."""
    (emb,) = random_columns(1, 8, 16, torch.float64, seed=8)
    ours = ContrastiveTensionLossInBatchNegatives(scale=10.0)(emb, emb)
    theirs = st_loss(st_losses.ContrastiveTensionLossInBatchNegatives, emb, labels=None, scale=10.0)
    torch.testing.assert_close(ours, theirs)


def test_contrastive_tension_scale_is_a_learnable_log_parameter():
    loss_fn = ContrastiveTensionLossInBatchNegatives(scale=20.0)
    assert [name for name, _ in loss_fn.named_parameters()] == ["logit_scale"]
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(20.0), rel=1e-6)
    assert loss_fn.scale == pytest.approx(20.0, rel=1e-6)
    assert loss_fn.get_config_dict()["scale"] == pytest.approx(20.0, rel=1e-6)

    emb_1, emb_2 = random_columns(2, 8, 16, torch.float32, seed=9)
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=0.1)
    loss_fn(emb_1, emb_2).backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad.item() != 0
    before = loss_fn.logit_scale.item()
    optimizer.step()
    assert loss_fn.logit_scale.item() != before


def test_contrastive_tension_gradient_matches_finite_differences():
    emb_1, emb_2 = random_columns(2, 3, 4, torch.float64, seed=10)
    loss_fn = ContrastiveTensionLossInBatchNegatives(scale=5.0).double()
    _, grads = value_and_grads(loss_fn, emb_1, emb_2)
    scale = math.exp(loss_fn.logit_scale.item())
    expected = naive.numerical_gradient(
        lambda a, b: naive.contrastive_tension_in_batch_loss(a, b, scale=scale), [emb_1.tolist(), emb_2.tolist()]
    )
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_contrastive_tension_bad_inputs():
    loss_fn = ContrastiveTensionLossInBatchNegatives()
    with pytest.raises(ValueError, match="emb_1 has 4 rows but emb_2 has 3"):
        loss_fn(torch.randn(4, 8), torch.randn(3, 8))
    with pytest.raises(ValueError, match="positive"):
        ContrastiveTensionLossInBatchNegatives(scale=-1.0)
