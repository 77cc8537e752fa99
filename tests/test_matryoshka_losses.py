"""MatryoshkaLoss around labkit losses (embedding losses, distillation with embedding labels, the cached losses
and GIST): values and gradients against sentence-transformers 6.3's MatryoshkaLoss around the same losses, and
against the definition (a weighted sum of the inner loss on truncated, re-normalised embeddings)."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer import losses as st_losses
from st_model_stubs import LabkitModelStub, STModelStub, columns, leaves, minilm_tokenizer

from labkit.losses import (
    BatchHardTripletLoss, CachedGISTEmbedLoss, CachedMultipleNegativesRankingLoss, CoSENTLoss, GISTEmbedLoss,
    MatryoshkaLoss, MSELoss, MultipleNegativesRankingLoss,
)

DIMS, WEIGHTS = (16, 8, 4), (1.0, 0.5, 2.0)


class SizedStub(STModelStub):
    """What sentence-transformers' MatryoshkaLoss asks of the model: its embedding dimension."""

    def __init__(self, dim=16, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def get_embedding_dimension(self):
        return self.dim

    _get_untruncated_embedding_dimension = get_embedding_dimension


def random_columns(num_columns, batch_size=6, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, dim, generator=generator, dtype=torch.float64) for _ in range(num_columns)]


def compare(ours, st_loss, inputs, labels=None, guide=()):
    mine, theirs = leaves(*inputs), leaves(*inputs)
    value = ours(columns(*mine, guide=guide)) if ours.runs_the_model else (
        ours(*mine) if labels is None else ours(*mine, labels))
    value.backward()
    st_value = st_loss(columns(*theirs, guide=guide), labels)
    st_value.backward()
    torch.testing.assert_close(value.detach(), st_value.detach(), rtol=1e-12, atol=1e-12)
    for grad, their in zip(mine, theirs):
        torch.testing.assert_close(grad.grad, their.grad, rtol=1e-10, atol=1e-12)
    return value.detach()


def test_mnrl_matches_st_and_the_definition():
    inputs = random_columns(3)
    stub = SizedStub()
    st_loss = st_losses.MatryoshkaLoss(stub, st_losses.MultipleNegativesRankingLoss(stub), DIMS, WEIGHTS)
    value = compare(MatryoshkaLoss(MultipleNegativesRankingLoss(), DIMS, WEIGHTS), st_loss, inputs)
    by_definition = sum(w * MultipleNegativesRankingLoss()(*[F.normalize(c[:, :d], dim=1) for c in inputs])
                        for d, w in zip(DIMS, WEIGHTS))
    assert value.item() == pytest.approx(by_definition.item(), rel=1e-12)


@pytest.mark.parametrize("inner,st_class,label_kind", [
    (CoSENTLoss(), st_losses.CoSENTLoss, "scores"),
    (BatchHardTripletLoss(margin=0.5), st_losses.BatchHardTripletLoss, "classes"),
    (MSELoss(), st_losses.MSELoss, "teacher"),
])
def test_losses_with_labels_match_st(inner, st_class, label_kind):
    stub = SizedStub()
    kwargs = dict(margin=0.5) if st_class is st_losses.BatchHardTripletLoss else {}
    st_loss = st_losses.MatryoshkaLoss(stub, st_class(stub, **kwargs), DIMS, WEIGHTS)
    generator = torch.Generator().manual_seed(1)
    if label_kind == "classes":
        inputs, labels = random_columns(1, batch_size=8, seed=2), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    elif label_kind == "scores":
        inputs, labels = random_columns(2, seed=3), torch.rand(6, generator=generator, dtype=torch.float64)
    else:  # teacher embeddings of the full size: truncated along with the columns
        inputs, labels = random_columns(2, seed=4), torch.randn(6, 16, generator=generator, dtype=torch.float64)
    compare(MatryoshkaLoss(inner, DIMS, WEIGHTS), st_loss, inputs, labels)


def test_n_dims_per_step_draws_the_same_sizes_as_st():
    inputs = random_columns(2, seed=5)
    stub = SizedStub()
    st_loss = st_losses.MatryoshkaLoss(stub, st_losses.MultipleNegativesRankingLoss(stub), DIMS, WEIGHTS,
                                       n_dims_per_step=2)
    ours = MatryoshkaLoss(MultipleNegativesRankingLoss(), DIMS, WEIGHTS, n_dims_per_step=2)
    for seed in range(4):
        random.seed(seed)
        value = ours(*inputs)
        random.seed(seed)
        torch.testing.assert_close(value, st_loss(columns(*inputs), None), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mini_batch_size", [2, 32])
def test_cached_mnrl_matches_st_cached(mini_batch_size):
    inputs = random_columns(3, seed=6)
    stub = SizedStub()
    st_inner = st_losses.CachedMultipleNegativesRankingLoss(stub, mini_batch_size=mini_batch_size)
    st_loss = st_losses.MatryoshkaLoss(stub, st_inner, DIMS, WEIGHTS)
    ours = MatryoshkaLoss(CachedMultipleNegativesRankingLoss(LabkitModelStub(), mini_batch_size=mini_batch_size),
                          DIMS, WEIGHTS)
    assert ours.runs_the_model
    value = compare(ours, st_loss, inputs)
    plain = MatryoshkaLoss(MultipleNegativesRankingLoss(), DIMS, WEIGHTS)(*inputs)
    assert value.item() == pytest.approx(plain.item(), rel=1e-12)
    assert "loss_from_embeddings" not in vars(ours.loss)  # the inner loss is itself again afterwards


@pytest.mark.parametrize("cached", [False, True])
def test_gist_matches_st_and_leaves_the_guide_untruncated(cached):
    tokenizer = minilm_tokenizer()
    inputs = random_columns(2, seed=7)
    guide = random_columns(2, dim=10, seed=8)
    guide[1] = guide[0] + 0.5 * guide[1]
    st_model, st_guide = SizedStub(tokenizer=tokenizer), STModelStub("guide_embedding", tokenizer=tokenizer)
    if cached:
        st_inner = st_losses.CachedGISTEmbedLoss(st_model, st_guide, temperature=0.05, mini_batch_size=2)
        inner = CachedGISTEmbedLoss(LabkitModelStub(), LabkitModelStub("guide_embedding"), temperature=0.05,
                                    mini_batch_size=2)
    else:
        st_inner = st_losses.GISTEmbedLoss(st_model, st_guide, temperature=0.05)
        inner = GISTEmbedLoss(LabkitModelStub(), LabkitModelStub("guide_embedding"), temperature=0.05)
    compare(MatryoshkaLoss(inner, DIMS, WEIGHTS), st_losses.MatryoshkaLoss(st_model, st_inner, DIMS, WEIGHTS),
            inputs, guide=guide)


def test_bad_arguments_and_config():
    with pytest.raises(ValueError, match="at least one dimension"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), ())
    with pytest.raises(ValueError, match="must be > 0"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), (8, 0))
    with pytest.raises(ValueError, match="same length"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), (8, 4), (1.0,))
    with pytest.raises(ValueError, match="cannot be greater than the embedding dimension 8"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), (16, 4))(torch.randn(4, 8), torch.randn(4, 8))
    loss_fn = MatryoshkaLoss(MultipleNegativesRankingLoss(), (4, 16, 8), (1, 2, 3))
    assert loss_fn.get_config_dict() == {"loss": "MultipleNegativesRankingLoss", "matryoshka_dims": (16, 8, 4),
                                         "matryoshka_weights": (2, 3, 1), "n_dims_per_step": -1}
