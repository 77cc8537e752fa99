"""CosineSimilarityLoss, CoSENTLoss, AnglELoss and SoftmaxLoss: values and gradients against sentence-transformers
6.2 (tests/st_stub.py) and the naive loops of tests/naive_pairs.py."""
from __future__ import annotations

import itertools
import math

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from sentence_transformers.util import pairwise_angle_sim as st_pairwise_angle_sim
from sentence_transformers.util import pairwise_cos_sim as st_pairwise_cos_sim
from sentence_transformers.util import pairwise_dot_score as st_pairwise_dot_score
from st_stub import EmbeddingStub, st_loss
from torch import nn

from labkit.losses.regression import AnglELoss, CoSENTLoss, CosineSimilarityLoss, SoftmaxLoss
from labkit.distances import pairwise_angle_sim, pairwise_cos_sim, pairwise_dot_score

BATCH_SIZES = (1, 2, 8, 32)
DIMS = (2, 16, 384)
DTYPES = (torch.float32, torch.float64)
SHAPES = list(itertools.product(BATCH_SIZES, DIMS, DTYPES))
TOL = dict(rtol=1e-5, atol=1e-5)


def random_scored_pairs(batch_size, dim, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed + 1000 * batch_size + dim)
    emb_a = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
    emb_b = torch.randn(batch_size, dim, generator=generator, dtype=dtype)
    scores = torch.rand(batch_size, generator=generator, dtype=dtype)
    return emb_a, emb_b, scores


def value_and_grads(loss_fn, *inputs):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    value = loss_fn(*leaves)
    grads = torch.autograd.grad(value, leaves)
    return value.detach(), grads


def assert_matches_st(labkit_loss, st_class, emb_a, emb_b, labels, **st_kwargs):
    ours, our_grads = value_and_grads(lambda a, b: labkit_loss(a, b, labels), emb_a, emb_b)
    theirs, their_grads = value_and_grads(lambda a, b: st_loss(st_class, a, b, labels=labels, **st_kwargs), emb_a, emb_b)
    torch.testing.assert_close(ours, theirs.to(ours.dtype), **TOL)
    for ours_grad, their_grad in zip(our_grads, their_grads):
        assert torch.isfinite(ours_grad).all()
        torch.testing.assert_close(ours_grad, their_grad, **TOL)
    return ours


def assert_gradients_match_finite_differences(labkit_loss, naive_loss, emb_a, emb_b, labels):
    _, grads = value_and_grads(lambda a, b: labkit_loss(a, b, labels), emb_a, emb_b)
    expected = naive.numerical_gradient(lambda a, b: naive_loss(a, b, labels.tolist()), [emb_a.tolist(), emb_b.tolist()])
    for grad, expected_grad in zip(grads, expected):
        torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=grad.dtype), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Similarity functions
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 5, 16])
def test_pairwise_similarities_match_st_and_naive(dim):
    emb_a, emb_b, _ = random_scored_pairs(8, dim, torch.float64)
    torch.testing.assert_close(pairwise_cos_sim(emb_a, emb_b), st_pairwise_cos_sim(emb_a, emb_b))
    torch.testing.assert_close(pairwise_dot_score(emb_a, emb_b), st_pairwise_dot_score(emb_a, emb_b))
    torch.testing.assert_close(pairwise_angle_sim(emb_a, emb_b), st_pairwise_angle_sim(emb_a, emb_b))
    expected = [naive.angle_similarity(a, b) for a, b in zip(emb_a.tolist(), emb_b.tolist())]
    torch.testing.assert_close(pairwise_angle_sim(emb_a, emb_b), torch.tensor(expected, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------
# CosineSimilarityLoss
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_cosine_similarity_loss_matches_st_and_naive(batch_size, dim, dtype):
    emb_a, emb_b, scores = random_scored_pairs(batch_size, dim, dtype)
    value = assert_matches_st(CosineSimilarityLoss(), st_losses.CosineSimilarityLoss, emb_a, emb_b, scores)
    expected = naive.cosine_similarity_loss(emb_a.tolist(), emb_b.tolist(), scores.tolist())
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_cosine_similarity_loss_custom_loss_and_transformation_match_st():
    emb_a, emb_b, scores = random_scored_pairs(8, 16, torch.float64)
    kwargs = dict(loss_fct=nn.L1Loss(), cos_score_transformation=nn.ReLU())
    assert_matches_st(CosineSimilarityLoss(**kwargs), st_losses.CosineSimilarityLoss, emb_a, emb_b, scores, **kwargs)


def test_cosine_similarity_loss_gradient_matches_finite_differences():
    emb_a, emb_b, scores = random_scored_pairs(4, 3, torch.float64, seed=2)
    assert_gradients_match_finite_differences(CosineSimilarityLoss(), naive.cosine_similarity_loss, emb_a, emb_b, scores)


# ---------------------------------------------------------------------------------------------------
# CoSENT and AnglE
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES)
def test_cosent_matches_st_and_naive(batch_size, dim, dtype):
    emb_a, emb_b, scores = random_scored_pairs(batch_size, dim, dtype)
    value = assert_matches_st(CoSENTLoss(), st_losses.CoSENTLoss, emb_a, emb_b, scores)
    expected = naive.cosent_loss(emb_a.tolist(), emb_b.tolist(), scores.tolist())
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("batch_size,dim,dtype", SHAPES + [(8, 5, torch.float64), (3, 1, torch.float64)])
def test_angle_matches_st_and_naive(batch_size, dim, dtype):
    emb_a, emb_b, scores = random_scored_pairs(batch_size, dim, dtype)
    value = assert_matches_st(AnglELoss(), st_losses.AnglELoss, emb_a, emb_b, scores)
    expected = naive.angle_loss(emb_a.tolist(), emb_b.tolist(), scores.tolist())
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("loss_class,st_class", [(CoSENTLoss, st_losses.CoSENTLoss), (AnglELoss, st_losses.AnglELoss)])
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_all_equal_gold_scores_give_zero_loss_and_gradient(loss_class, st_class, batch_size):
    """No pair should rank above another: log(1 + 0) = 0, nothing to learn."""
    emb_a, emb_b, _ = random_scored_pairs(batch_size, 16, torch.float64)
    scores = torch.full((batch_size,), 0.7, dtype=torch.float64)
    value, grads = value_and_grads(lambda a, b: loss_class()(a, b, scores), emb_a, emb_b)
    assert value.item() == 0.0
    assert all(torch.all(g == 0) for g in grads)
    assert_matches_st(loss_class(), st_class, emb_a, emb_b, scores)


@pytest.mark.parametrize("loss_class,st_class,naive_loss", [
    (CoSENTLoss, st_losses.CoSENTLoss, naive.cosent_loss),
    (AnglELoss, st_losses.AnglELoss, naive.angle_loss),
])
def test_all_equal_predicted_similarities_match_st_and_naive(loss_class, st_class, naive_loss):
    """Every pair identical, distinct gold scores: each ordered pair contributes exp(0), loss = log(1 + #pairs)."""
    row_a, row_b = torch.randn(2, 16, dtype=torch.float64)
    emb_a, emb_b = row_a.repeat(6, 1), row_b.repeat(6, 1)
    scores = torch.tensor([0.0, 0.2, 0.4, 0.4, 0.8, 1.0], dtype=torch.float64)
    value = assert_matches_st(loss_class(), st_class, emb_a, emb_b, scores)
    ordered_pairs = sum(1 for i in range(6) for j in range(6) if scores[i] > scores[j])
    assert value.item() == pytest.approx(math.log(1 + ordered_pairs), rel=1e-9)
    assert value.item() == pytest.approx(naive_loss(emb_a.tolist(), emb_b.tolist(), scores.tolist()), rel=1e-9)


def test_cosent_with_ties_integer_labels_scale_and_dot_similarity_match_st():
    emb_a, emb_b, _ = random_scored_pairs(16, 8, torch.float64)
    labels = torch.tensor([0, 1, 2, 3] * 4)  # integer classes with many ties
    assert_matches_st(CoSENTLoss(), st_losses.CoSENTLoss, emb_a, emb_b, labels)
    assert_matches_st(CoSENTLoss(scale=5.0), st_losses.CoSENTLoss, emb_a, emb_b, labels, scale=5.0)
    assert_matches_st(
        CoSENTLoss(scale=1.0, similarity_fct=pairwise_dot_score), st_losses.CoSENTLoss, emb_a, emb_b, labels,
        scale=1.0, similarity_fct=st_pairwise_dot_score,
    )
    value = CoSENTLoss(scale=5.0)(emb_a, emb_b, labels)
    assert value.item() == pytest.approx(naive.cosent_loss(emb_a.tolist(), emb_b.tolist(), labels.tolist(), scale=5.0), rel=1e-9)


@pytest.mark.parametrize("loss_class,naive_loss", [(CoSENTLoss, naive.cosent_loss), (AnglELoss, naive.angle_loss)])
def test_cosent_and_angle_gradients_match_finite_differences(loss_class, naive_loss):
    emb_a, emb_b, scores = random_scored_pairs(4, 4, torch.float64, seed=4)
    assert_gradients_match_finite_differences(loss_class(), naive_loss, emb_a, emb_b, scores)


def test_cosent_identical_embeddings_give_finite_gradients():
    emb = torch.randn(6, 16, requires_grad=True)
    for loss_fn in (CoSENTLoss(), AnglELoss(), CosineSimilarityLoss()):
        value = loss_fn(emb, emb, torch.rand(6))
        (grad,) = torch.autograd.grad(value, emb)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------------------
# SoftmaxLoss
# ---------------------------------------------------------------------------------------------------
def st_softmax_like(ours: SoftmaxLoss, **kwargs):
    """sentence-transformers' SoftmaxLoss with our classifier's weights (its own are randomly initialised)."""
    theirs = st_losses.SoftmaxLoss(EmbeddingStub(), ours.embedding_dimension, ours.num_labels, **kwargs)
    theirs.classifier.load_state_dict(ours.classifier.state_dict())
    return theirs.to(ours.classifier.weight.dtype)


def softmax_value_and_grads(loss, emb_a, emb_b, labels, stub_style=False):
    """Value and gradients w.r.t. both embeddings, the classifier weight and bias."""
    a, b = (x.detach().clone().requires_grad_() for x in (emb_a, emb_b))
    if stub_style:
        value = loss([{"sentence_embedding": a}, {"sentence_embedding": b}], labels)
    else:
        value = loss(a, b, labels)
    grads = torch.autograd.grad(value, [a, b, loss.classifier.weight, loss.classifier.bias])
    return value.detach(), grads


CONCATENATIONS = [
    dict(),
    dict(concatenation_sent_rep=True, concatenation_sent_difference=True, concatenation_sent_multiplication=True),
    dict(concatenation_sent_rep=False, concatenation_sent_difference=True, concatenation_sent_multiplication=False),
    dict(concatenation_sent_rep=False, concatenation_sent_difference=False, concatenation_sent_multiplication=True),
]


# Every shape with the default features; the other feature choices on the shapes below D=384 (enough for them).
SOFTMAX_CASES = [(*shape, concatenation) for shape in SHAPES for concatenation in CONCATENATIONS
                 if not concatenation or shape[1] < 384]


@pytest.mark.parametrize("batch_size,dim,dtype,concatenation", SOFTMAX_CASES)
def test_softmax_loss_matches_st_and_naive(batch_size, dim, dtype, concatenation):
    emb_a, emb_b, _ = random_scored_pairs(batch_size, dim, dtype)
    labels = torch.randint(0, 3, (batch_size,), generator=torch.Generator().manual_seed(batch_size))
    ours = SoftmaxLoss(dim, 3, **concatenation).to(dtype)
    theirs = st_softmax_like(ours, **concatenation)
    value, grads = softmax_value_and_grads(ours, emb_a, emb_b, labels)
    st_value, st_grads = softmax_value_and_grads(theirs, emb_a, emb_b, labels, stub_style=True)
    torch.testing.assert_close(value, st_value, **TOL)
    for grad, st_grad in zip(grads, st_grads):
        torch.testing.assert_close(grad, st_grad, **TOL)

    flags = dict(
        rep=concatenation.get("concatenation_sent_rep", True),
        difference=concatenation.get("concatenation_sent_difference", True),
        multiplication=concatenation.get("concatenation_sent_multiplication", False),
    )
    expected = naive.softmax_loss(
        emb_a.tolist(), emb_b.tolist(), labels.tolist(),
        ours.classifier.weight.tolist(), ours.classifier.bias.tolist(), **flags,
    )
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_softmax_classifier_is_trained_through_loss_parameters():
    torch.manual_seed(0)
    loss_fn = SoftmaxLoss(embedding_dimension=8, num_labels=3)
    parameters = dict(loss_fn.named_parameters())
    assert set(parameters) == {"classifier.weight", "classifier.bias"}
    assert loss_fn.classifier.weight.shape == (3, 3 * 8)

    emb_a, emb_b = torch.randn(4, 8), torch.randn(4, 8)
    labels = torch.tensor([0, 1, 2, 1])
    before = loss_fn.classifier.weight.detach().clone()
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=0.1)
    loss = loss_fn(emb_a, emb_b, labels)
    loss.backward()
    assert loss_fn.classifier.weight.grad is not None and loss_fn.classifier.weight.grad.abs().sum() > 0
    assert loss_fn.classifier.bias.grad is not None
    optimizer.step()
    assert not torch.equal(loss_fn.classifier.weight, before)
    assert loss_fn(emb_a, emb_b, labels) < loss  # one step on the same batch lowers its loss


def test_softmax_loss_gradient_matches_finite_differences():
    emb_a, emb_b, _ = random_scored_pairs(4, 3, torch.float64, seed=9)
    labels = torch.tensor([0, 2, 1, 2])
    loss_fn = SoftmaxLoss(3, 3, concatenation_sent_multiplication=True).double()
    weight, bias = loss_fn.classifier.weight.tolist(), loss_fn.classifier.bias.tolist()
    assert_gradients_match_finite_differences(
        loss_fn,
        lambda a, b, y: naive.softmax_loss(a, b, y, weight, bias, multiplication=True),
        emb_a, emb_b, labels,
    )


def test_softmax_probability_labels_and_logits_match_st():
    emb_a, emb_b, _ = random_scored_pairs(4, 8, torch.float64)
    probabilities = torch.softmax(torch.randn(4, 3, dtype=torch.float64), dim=1)
    ours = SoftmaxLoss(8, 3).double()
    theirs = st_softmax_like(ours)
    torch.testing.assert_close(
        ours(emb_a, emb_b, probabilities),
        theirs([{"sentence_embedding": emb_a}, {"sentence_embedding": emb_b}], probabilities),
    )
    _, st_logits = theirs([{"sentence_embedding": emb_a}, {"sentence_embedding": emb_b}], None)
    torch.testing.assert_close(ours(emb_a, emb_b), st_logits)


def test_softmax_embedding_dim_alias_and_errors():
    assert SoftmaxLoss(embedding_dim=16, num_labels=3).embedding_dimension == 16
    assert SoftmaxLoss(16, 3).embedding_dimension == 16
    with pytest.raises(TypeError, match="embedding_dimension"):
        SoftmaxLoss(num_labels=3)
    with pytest.raises(ValueError, match="not two different values"):
        SoftmaxLoss(16, 3, embedding_dim=8)
    with pytest.raises(ValueError, match="At least one of"):
        SoftmaxLoss(16, 3, concatenation_sent_rep=False, concatenation_sent_difference=False)

    loss_fn = SoftmaxLoss(16, 3)
    with pytest.raises(ValueError, match="embedding_dimension=8"):
        loss_fn(torch.randn(4, 8), torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        loss_fn(torch.randn(4, 16), torch.randn(4, 16), torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="expects 4 labels"):
        loss_fn(torch.randn(4, 16), torch.randn(4, 16), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="4 rows but emb_b has 2"):
        loss_fn(torch.randn(4, 16), torch.randn(2, 16), torch.tensor([0, 1, 2, 0]))


# ---------------------------------------------------------------------------------------------------
# Defaults and bad input
# ---------------------------------------------------------------------------------------------------
def test_defaults_are_sentence_transformers_defaults():
    assert isinstance(CosineSimilarityLoss().loss_fct, nn.MSELoss)
    assert isinstance(CosineSimilarityLoss().cos_score_transformation, nn.Identity)
    assert CoSENTLoss().scale == 20.0 and CoSENTLoss().similarity_fct is pairwise_cos_sim
    assert AnglELoss().scale == 20.0 and AnglELoss().similarity_fct is pairwise_angle_sim
    softmax = SoftmaxLoss(8, 3)
    assert (softmax.concatenation_sent_rep, softmax.concatenation_sent_difference,
            softmax.concatenation_sent_multiplication) == (True, True, False)
    assert isinstance(softmax.loss_fct, nn.CrossEntropyLoss)


@pytest.mark.parametrize("loss_class", [CosineSimilarityLoss, CoSENTLoss, AnglELoss])
def test_bad_inputs_raise_clear_errors(loss_class):
    loss_fn = loss_class()
    emb = torch.randn(4, 8)
    with pytest.raises(ValueError, match="4 rows but emb_b has 3"):
        loss_fn(emb, torch.randn(3, 8), torch.rand(4))
    with pytest.raises(ValueError, match="embedding size"):
        loss_fn(emb, torch.randn(4, 6), torch.rand(4))
    with pytest.raises(ValueError, match="expects 4 labels"):
        loss_fn(emb, emb, torch.rand(5))
    with pytest.raises(ValueError, match="needs labels"):
        loss_fn(emb, emb, None)
