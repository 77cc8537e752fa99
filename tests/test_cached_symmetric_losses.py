"""CachedMultipleNegativesSymmetricRankingLoss: the value and gradients of sentence-transformers' cached and plain
symmetric losses (d loss / d embeddings through stand-in models, d loss / d parameters of a tiny BERT)."""
from __future__ import annotations

import warnings

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from st_model_stubs import LabkitModelStub, STModelStub, columns, leaves
from st_stub import st_loss

from labkit.losses import MultipleNegativesSymmetricRankingLoss
from labkit.losses.cached import CachedMultipleNegativesRankingLoss, CachedMultipleNegativesSymmetricRankingLoss
from labkit.model import tiny_model


def embeddings(num_columns, batch_size=7, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, dim, generator=generator, dtype=torch.float64) for _ in range(num_columns)]


@pytest.mark.parametrize("mini_batch_size", [1, 3, 32])
@pytest.mark.parametrize("num_columns", [2, 3])
def test_matches_st_cached_and_plain_on_embedding_gradients(num_columns, mini_batch_size):
    inputs = embeddings(num_columns, seed=num_columns)
    ours = leaves(*inputs)
    value = CachedMultipleNegativesSymmetricRankingLoss(LabkitModelStub(), scale=15.0,
                                                        mini_batch_size=mini_batch_size)(columns(*ours))
    value.backward()
    with warnings.catch_warnings():  # deprecated in sentence-transformers 6.x
        warnings.simplefilter("ignore")
        st_cached = st_losses.CachedMultipleNegativesSymmetricRankingLoss(STModelStub(), scale=15.0,
                                                                          mini_batch_size=mini_batch_size)
    theirs = leaves(*inputs)
    st_value = st_cached(columns(*theirs), None)
    st_value.backward()
    plain = leaves(*inputs)
    plain_value = MultipleNegativesSymmetricRankingLoss(scale=15.0)(*plain)
    plain_grads = torch.autograd.grad(plain_value, plain)
    torch.testing.assert_close(value.detach(), st_value.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(value.detach(), plain_value.detach(), rtol=1e-12, atol=1e-12)
    for mine, st, reference in zip(ours, theirs, plain_grads):
        torch.testing.assert_close(mine.grad, st.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(mine.grad, reference, rtol=1e-10, atol=1e-12)
    lists = [c.tolist() for c in inputs]
    expected = naive.multiple_negatives_ranking_loss(lists[0], lists[1], lists[2:], scale=15.0,
                                                     directions=("query_to_doc", "doc_to_query"),
                                                     partition_mode="per_direction")
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_matches_st_on_the_parameters_of_a_tiny_model():
    model = tiny_model(seed=0).double()
    features = [model.tokenize(["a cat", "a dog", "the sun", "rain falls", "my card"]),
                model.tokenize(["a kitten", "a puppy", "sunshine", "a storm", "the pin"])]
    model.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st_value = st_loss(st_losses.MultipleNegativesSymmetricRankingLoss, *[model(f) for f in features])
    st_value.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    value = CachedMultipleNegativesSymmetricRankingLoss(model, mini_batch_size=2)(features)
    value.backward()
    assert value.item() == pytest.approx(st_value.item(), rel=1e-10)
    assert len(expected) > 10
    for name, parameter in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-8, atol=1e-10)


def test_it_is_the_cached_loss_with_both_directions():
    loss_fn = CachedMultipleNegativesSymmetricRankingLoss(LabkitModelStub(), scale=10.0, mini_batch_size=4)
    assert isinstance(loss_fn, CachedMultipleNegativesRankingLoss) and loss_fn.runs_the_model
    config = loss_fn.get_config_dict()
    assert (config["directions"], config["partition_mode"], config["scale"], config["mini_batch_size"]) == (
        ("query_to_doc", "doc_to_query"), "per_direction", 10.0, 4)
    with pytest.raises(TypeError, match="CachedMultipleNegativesSymmetricRankingLoss needs the model"):
        CachedMultipleNegativesSymmetricRankingLoss("all-MiniLM-L6-v2")
