"""MatryoshkaLoss against sentence-transformers' MatryoshkaLoss and a naive loop over the dimensions, on values
and gradients; the cached (GradCache) path against the plain one; n_dims_per_step; bad arguments."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer import losses as st_losses

from labkit.losses import (
    BatchHardTripletLoss,
    CachedMultipleNegativesRankingLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    MultipleNegativesRankingLoss,
)
from labkit.losses.matryoshka import MatryoshkaLoss, shrink
from labkit.model import tiny_model
from st_stub import EmbeddingStub

DIMS, WEIGHTS = [8, 4, 2], [1.0, 0.5, 0.25]


class SizedStub(EmbeddingStub):
    """sentence-transformers' MatryoshkaLoss asks the model for its embedding size."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def _get_untruncated_embedding_dimension(self) -> int:
        return self.dim

    def get_embedding_dimension(self) -> int:
        return self.dim


def leaves(*shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_() for shape in shapes]


def st_matryoshka(st_class, embeddings, labels, dims=DIMS, weights=WEIGHTS, **kwargs):
    stub = SizedStub(embeddings[0].shape[-1])
    loss = st_losses.MatryoshkaLoss(stub, st_class(stub, **kwargs), dims, weights)
    return loss([{"sentence_embedding": e} for e in embeddings], labels)


def naive_matryoshka(inner, embeddings, labels, dims=DIMS, weights=WEIGHTS):
    """The definition, written out: the inner loss on each re-normalised prefix, weighted and summed."""
    total = 0.0
    for dim, weight in zip(dims, weights):
        prefixes = [e[:, :dim] / e[:, :dim].norm(dim=1, keepdim=True) for e in embeddings]
        total = total + weight * (inner(*prefixes, labels) if labels is not None else inner(*prefixes))
    return total


CASES = {
    # name: (labkit inner loss, its ST class, ST kwargs, embedding columns, labels maker)
    "mnrl with a hard negative": (MultipleNegativesRankingLoss(), st_losses.MultipleNegativesRankingLoss, {}, 3, None),
    "cosent": (CoSENTLoss(), st_losses.CoSENTLoss, {}, 2, lambda b: torch.rand(b, dtype=torch.float64)),
    "cosine similarity": (CosineSimilarityLoss(), st_losses.CosineSimilarityLoss, {}, 2,
                          lambda b: torch.rand(b, dtype=torch.float64)),
    "batch hard triplet": (BatchHardTripletLoss(margin=0.5), st_losses.BatchHardTripletLoss, {"margin": 0.5}, 1,
                           lambda b: torch.arange(b) % 3),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_sentence_transformers_and_the_naive_loop_on_values_and_gradients(case):
    inner, st_class, st_kwargs, columns, make_labels = CASES[case]
    batch = 6
    labels = make_labels(batch) if make_labels else None
    ours_in = leaves(*[(batch, 8)] * columns)
    st_in = [e.detach().clone().requires_grad_() for e in ours_in]
    naive_in = [e.detach().clone().requires_grad_() for e in ours_in]

    ours = MatryoshkaLoss(inner, DIMS, WEIGHTS)(*ours_in, *([labels] if labels is not None else []))
    reference = st_matryoshka(st_class, st_in, labels, **st_kwargs)
    naive = naive_matryoshka(inner, naive_in, labels)
    for value in (ours, reference, naive):
        value.backward()
    # sentence-transformers' CosineSimilarityLoss casts the scores to float32: agreement to ~1e-8, not 1e-12
    torch.testing.assert_close(ours, reference.to(ours.dtype), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(ours, naive, rtol=1e-12, atol=1e-12)
    for a, b, c in zip(ours_in, st_in, naive_in):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(a.grad, c.grad, rtol=1e-12, atol=1e-12)


def test_distillation_labels_are_cut_to_each_dimension_not_normalised():
    """Teacher embeddings given as labels (MSE distillation) are cut to d, as sentence-transformers does."""

    class EmbeddingMSE(torch.nn.Module):
        def forward(self, embeddings, labels):
            return F.mse_loss(embeddings, labels)

    student, = leaves((5, 8))
    teacher = torch.randn(5, 8, dtype=torch.float64)
    st_student = student.detach().clone().requires_grad_()
    ours = MatryoshkaLoss(EmbeddingMSE(), DIMS, WEIGHTS)(student, teacher)
    reference = st_matryoshka(st_losses.MSELoss, [st_student], teacher)
    expected = sum(w * F.mse_loss(shrink(student, d), teacher[:, :d]) for d, w in zip(DIMS, WEIGHTS))
    torch.testing.assert_close(ours, reference.to(ours.dtype))
    torch.testing.assert_close(ours, expected)
    ours.backward(), reference.backward()
    torch.testing.assert_close(student.grad, st_student.grad)


def test_shrink_keeps_the_prefix_direction_and_unit_length():
    embeddings = torch.tensor([[3.0, 4.0, 12.0], [0.0, 2.0, 0.0]])
    shrunk = shrink(embeddings, 2)
    torch.testing.assert_close(shrunk, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    half = shrink(embeddings.to(torch.bfloat16), 2)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), shrunk, atol=1e-2, rtol=0)


def test_dimensions_are_sorted_largest_first_with_their_weights():
    loss = MatryoshkaLoss(MultipleNegativesRankingLoss(), [2, 8, 4], [0.25, 1.0, 0.5])
    assert loss.matryoshka_dims == (8, 4, 2) and loss.matryoshka_weights == (1.0, 0.5, 0.25)


def test_n_dims_per_step_uses_that_many_dimensions_drawn_with_python_random():
    anchor, positive = leaves((6, 8), (6, 8))
    inner = MultipleNegativesRankingLoss()
    loss = MatryoshkaLoss(inner, DIMS, WEIGHTS, n_dims_per_step=1)
    per_dim = loss.explain(anchor, positive)
    random.seed(3)
    with torch.no_grad():
        values = [float(loss(anchor, positive)) for _ in range(30)]
    possible = {round(w * l, 9) for w, l in zip(per_dim.weights, per_dim.losses)}
    assert {round(v, 9) for v in values} == possible  # each step is one weighted term; 30 draws hit all three
    random.seed(3)
    with torch.no_grad():
        assert [float(loss(anchor, positive)) for _ in range(30)] == values  # the same seed, the same draws


def test_explain_lists_every_dimension_and_adds_up():
    anchor, positive = leaves((6, 8), (6, 8))
    loss = MatryoshkaLoss(MultipleNegativesRankingLoss(), DIMS, WEIGHTS, n_dims_per_step=1)
    explained = loss.explain(anchor, positive)
    assert explained.dims == (8, 4, 2)
    single = [float(MultipleNegativesRankingLoss()(shrink(anchor, d), shrink(positive, d))) for d in DIMS]
    assert explained.losses == pytest.approx(single)
    assert explained.total == pytest.approx(sum(w * l for w, l in zip(WEIGHTS, single)))
    assert loss.n_dims_per_step == 1  # explain() put it back
    assert "total" in explained.table()


def test_cached_loss_gives_the_same_gradients_as_the_plain_loss():
    """Matryoshka around GradCache = Matryoshka around plain MNRL on the same batch (dropout off)."""
    texts_a = ["a cat sat", "a dog ran", "the sun is hot", "rain falls", "a red car", "old books"]
    texts_b = ["a kitten", "a puppy", "sunshine today", "a storm", "a fast car", "a library"]
    grads = []
    for cached in (False, True):
        model = tiny_model(seed=0, hidden_size=32)
        model.eval()
        features = [model.tokenize(texts_a), model.tokenize(texts_b)]
        if cached:
            loss_fn = MatryoshkaLoss(CachedMultipleNegativesRankingLoss(model, mini_batch_size=2), [32, 16, 8], [1, 1, 0.5])
            assert loss_fn.runs_the_model
            value = loss_fn(features)
        else:
            loss_fn = MatryoshkaLoss(MultipleNegativesRankingLoss(), [32, 16, 8], [1, 1, 0.5])
            value = loss_fn(*[model(f) for f in features])
        value.backward()
        if cached:
            assert loss_fn.loss.scale == 20.0  # the cached loss still reads its inner loss's knobs
        grads.append((float(value), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (plain_value, plain_grads), (cached_value, cached_grads) = grads
    assert cached_value == pytest.approx(plain_value, rel=1e-5)
    assert len(plain_grads) == len(cached_grads) > 0
    for a, b in zip(plain_grads, cached_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"matryoshka_dims": []}, "at least one dimension"),
    ({"matryoshka_dims": [8, 0]}, "> 0"),
    ({"matryoshka_dims": [8, 4], "matryoshka_weights": [1.0]}, "same length as matryoshka_dims"),
])
def test_bad_arguments_say_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), **kwargs)


def test_a_dimension_wider_than_the_embeddings_is_a_clear_error():
    anchor, positive = leaves((4, 8), (4, 8))
    with pytest.raises(ValueError, match="greater than the embedding dimension 8"):
        MatryoshkaLoss(MultipleNegativesRankingLoss(), [16, 8])(anchor, positive)


def test_wrapping_something_that_is_not_a_loss_module_is_a_type_error():
    with pytest.raises(TypeError, match="wraps a labkit loss"):
        MatryoshkaLoss(lambda a, b: 0, [8])
