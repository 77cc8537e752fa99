"""CachedMultipleNegativesRankingLoss (GradCache): same value and model-parameter gradients as plain
MultipleNegativesRankingLoss over the whole batch (sentence-transformers' own MNRL as the reference), with the
model only ever run on mini-batches, and dropout replayed exactly in the second pass."""
from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from st_stub import st_loss

from labkit.losses import cached
from labkit.losses.cached import CachedMultipleNegativesRankingLoss, RandContext
from labkit.model import tiny_model

TOL = dict(rtol=1e-5, atol=1e-5)
ANCHORS = [
    "how do I reset my card pin", "the cat sat on the mat", "where is my refund", "a man is playing a guitar",
    "what is the exchange rate today", "two dogs run across a field of grass in the sun", "my transfer failed",
    "children are smiling", "can I top up by cheque", "the weather is nice",
]
POSITIVES = [
    "changing the pin of a card", "a cat is sitting on a rug", "refund not received yet", "someone plays guitar",
    "current currency exchange rates", "dogs running outside", "the payment did not go through",
    "kids smile at the camera", "topping up with a cheque", "it is sunny outside",
]
NEGATIVES = [
    "order a new card", "a dog sleeps", "cancel my order", "a woman sings", "fees for transfers abroad",
    "a cat indoors", "my card was declined at the shop today", "adults frown", "top up by card", "it rains",
]


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


def tokenized(model, num_columns):
    return [model.tokenize(texts) for texts in (ANCHORS, POSITIVES, NEGATIVES)[:num_columns]]


def slice_rows(features, begin, end):
    return {key: value[begin:end] for key, value in features.items()}


def parameter_grads(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def reference_mnrl(model, features, mini_batch_size=None, seed=0, **st_kwargs):
    """sentence-transformers' MNRL on the model's embeddings, backpropagated through the model in one graph.

    With `mini_batch_size`, the model embeds the rows mini-batch by mini-batch (column after column), which is
    the order GradCache's first pass uses, so dropout draws the same masks as there.
    """
    model.zero_grad()
    torch.manual_seed(seed)
    embeddings = []
    for column in features:
        rows = len(column["input_ids"])
        step = mini_batch_size or rows
        embeddings.append(torch.cat([model(slice_rows(column, b, b + step)) for b in range(0, rows, step)]))
    loss = st_loss(st_losses.MultipleNegativesRankingLoss, *embeddings, **st_kwargs)
    loss.backward()
    return loss.detach(), parameter_grads(model)


def cached_mnrl(model, features, mini_batch_size, seed=0, upstream=1.0, **kwargs):
    model.zero_grad()
    torch.manual_seed(seed)
    loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size, **kwargs)(features)
    (loss * upstream).backward()
    return loss.detach(), parameter_grads(model)


def assert_same_grads(grads, expected_grads, **tolerance):
    assert grads.keys() == expected_grads.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], **(tolerance or TOL), msg=name)


@pytest.mark.parametrize("mini_batch_size,num_columns", [(1, 2), (3, 3), (4, 2), (10, 3), (32, 2)])
def test_equals_full_batch_mnrl_without_dropout(model, mini_batch_size, num_columns):
    model.eval()
    features = tokenized(model, num_columns)
    expected_loss, expected_grads = reference_mnrl(model, features)
    loss, grads = cached_mnrl(model, features, mini_batch_size)
    torch.testing.assert_close(loss, expected_loss, **TOL)
    assert_same_grads(grads, expected_grads)


@pytest.mark.parametrize("num_columns", [2, 3])
def test_equals_mnrl_with_dropout_on(model, num_columns):
    """Dropout on, mini_batch_size 3 < batch 10: the second pass must replay the first pass's dropout masks.

    Full-batch MNRL draws different dropout masks (one big draw per layer instead of one per mini-batch), so
    the reference embeds the same mini-batches in the same order from the same seed, then takes the plain MNRL
    over all of them in one graph.
    """
    model.train()
    features = tokenized(model, num_columns)
    assert not torch.equal(model(features[0]), model(features[0])), "dropout should be active in train mode"
    expected_loss, expected_grads = reference_mnrl(model, features, mini_batch_size=3, seed=123)
    loss, grads = cached_mnrl(model, features, mini_batch_size=3, seed=123)
    torch.testing.assert_close(loss, expected_loss, **TOL)
    assert_same_grads(grads, expected_grads)


def test_without_replaying_the_random_state_the_gradients_differ(model, monkeypatch):
    """Control for the test above: it would notice a GradCache that forgot to replay dropout."""
    model.train()
    features = tokenized(model, 2)
    _, expected_grads = reference_mnrl(model, features, mini_batch_size=3, seed=123)
    monkeypatch.setattr(cached.RandContext, "__enter__", lambda self: None)
    monkeypatch.setattr(cached.RandContext, "__exit__", lambda self, *exc: None)
    _, grads = cached_mnrl(model, features, mini_batch_size=3, seed=123)
    with pytest.raises(AssertionError):
        assert_same_grads(grads, expected_grads)


def test_model_only_sees_mini_batches(model):
    model.eval()
    seen_rows = []
    handle = model.register_forward_hook(lambda module, args, output: seen_rows.append(output.shape[0]))
    try:
        cached_mnrl(model, tokenized(model, 3), mini_batch_size=4)
    finally:
        handle.remove()
    # 3 columns x (4 + 4 + 2 rows), once without and once with gradients.
    assert seen_rows == [4, 4, 2] * 6


def test_directions_are_passed_to_the_loss(model):
    model.eval()
    features = tokenized(model, 3)
    kwargs = dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")
    expected_loss, expected_grads = reference_mnrl(model, features, **kwargs)
    loss, grads = cached_mnrl(model, features, mini_batch_size=4, **kwargs)
    torch.testing.assert_close(loss, expected_loss, **TOL)
    assert_same_grads(grads, expected_grads)


def test_upstream_gradient_scales_the_model_gradients(model):
    model.eval()
    features = tokenized(model, 2)
    _, expected_grads = reference_mnrl(model, features)
    _, grads = cached_mnrl(model, features, mini_batch_size=3, upstream=0.25)
    assert_same_grads(grads, {name: 0.25 * g for name, g in expected_grads.items()})


def test_no_grad_gives_the_value_only(model):
    model.eval()
    features = tokenized(model, 3)
    expected_loss, _ = reference_mnrl(model, features)
    with torch.no_grad():
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=4)(features)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, expected_loss, **TOL)


def test_rand_context_replays_and_restores_the_random_state():
    torch.manual_seed(0)
    context = RandContext()
    first = torch.rand(5)
    following = torch.rand(5)
    torch.manual_seed(0)
    context = RandContext()
    assert torch.equal(torch.rand(5), first)
    with context:
        assert torch.equal(torch.rand(5), first)  # replayed
    assert torch.equal(torch.rand(5), following)  # the outside sequence goes on undisturbed


def test_defaults_and_bad_inputs(model):
    loss_fn = CachedMultipleNegativesRankingLoss(model)
    assert (loss_fn.scale, loss_fn.mini_batch_size, loss_fn.show_progress_bar) == (20.0, 32, False)
    features = tokenized(model, 2)
    with pytest.raises(TypeError, match="list of tokenized batches"):
        loss_fn(features[0])
    with pytest.raises(ValueError, match="at least an anchor and a positive"):
        loss_fn(features[:1])
    with pytest.raises(ValueError, match="same number of rows"):
        loss_fn([features[0], slice_rows(features[1], 0, 5)])
    with pytest.raises(TypeError, match="tokenized batch"):
        loss_fn([features[0], ["not", "tokenized"]])
    with pytest.raises(TypeError, match="needs the model"):
        CachedMultipleNegativesRankingLoss("all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="mini_batch_size"):
        CachedMultipleNegativesRankingLoss(model, mini_batch_size=0)


def test_frozen_model_backward_does_not_fail(model):
    """A model whose parameters are all frozen gets no gradients, and loss.backward() still runs."""
    model.eval()
    features = tokenized(model, 2)
    model.zero_grad(set_to_none=True)
    try:
        model.requires_grad_(False)
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=4)(features)
        loss.backward()
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.requires_grad_(True)
