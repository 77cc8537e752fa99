"""GISTEmbedLoss and CachedGISTEmbedLoss: values and gradients against sentence-transformers 6.3 (on embeddings
through stand-in models, and on the parameters of a tiny BERT with a second one as guide), the false-negative
masking against a naive loop written from the definition."""
from __future__ import annotations

import itertools
import math

import naive_pairs as naive
import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from st_model_stubs import LabkitModelStub, STModelStub, columns, leaves, minilm_tokenizer

from labkit.losses import MultipleNegativesRankingLoss
from labkit.losses.gist import CachedGISTEmbedLoss, GISTEmbedLoss, gist_similarities
from labkit.model import tiny_model

OPTIONS = [dict(margin_strategy=strategy, margin=margin, contrast_anchors=anchors, contrast_positives=positives)
           for strategy, margin, (anchors, positives) in itertools.product(
               ("absolute", "relative"), (0.0, 0.1, 0.3), ((True, True), (False, False), (True, False), (False, True)))]


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def batch(num_columns, batch_size=8, dim=12, guide_dim=10, seed=0):
    """Model embeddings, and guide embeddings that agree with them in part. Rows come from three topics, so
    another row's positive is sometimes as close as the anchor's own: the guide suppresses some negatives."""
    generator = torch.Generator().manual_seed(seed)

    def noise(scale, width=guide_dim):
        return scale * torch.randn(batch_size, width, generator=generator, dtype=torch.float64)

    topics = torch.randn(3, guide_dim, generator=generator, dtype=torch.float64)[torch.arange(batch_size) % 3]
    base = [topics + noise(0.3) for _ in range(num_columns)]
    base[1] = base[0] + noise(0.6)  # positives near their anchors
    guide = [b + noise(0.3) for b in base]
    projection = torch.randn(guide_dim, dim, generator=generator, dtype=torch.float64)
    model = [b @ projection + noise(0.5, dim) for b in base]
    return model, guide


def ours_value_and_grads(loss_class, embeddings, guide, **kwargs):
    mine = leaves(*embeddings)
    model = LabkitModelStub()
    loss = loss_class(model, LabkitModelStub("guide_embedding"), **kwargs)
    value = loss(columns(*mine, guide=guide))
    value.backward()
    return value.detach(), [x.grad for x in mine]


def st_value_and_grads(st_class, embeddings, guide, tokenizer, **kwargs):
    theirs = leaves(*embeddings)
    loss = st_class(STModelStub(tokenizer=tokenizer), STModelStub("guide_embedding", tokenizer=tokenizer), **kwargs)
    value = loss(columns(*theirs, guide=guide), None)
    value.backward()
    return value.detach(), [x.grad for x in theirs]


def naive_gist(embeddings, guide, temperature, margin_strategy, margin, contrast_anchors, contrast_positives):
    """One anchor at a time: collect the candidates the guide lets through, then the cross-entropy."""
    anchor, positive, *negatives = [e.tolist() for e in embeddings]
    g_anchor, g_positive, *g_negatives = [g.tolist() for g in guide]
    total = 0.0
    for i in range(len(anchor)):
        own = naive.cosine(g_anchor[i], g_positive[i])
        threshold = own - margin if margin_strategy == "absolute" else own - abs(own) * margin
        logits = [naive.cosine(anchor[i], positive[i]) / temperature]  # the positive always stays
        candidates = [(anchor[i], positive[j], g_anchor[i], g_positive[j]) for j in range(len(anchor)) if j != i]
        if contrast_anchors:
            candidates += [(anchor[i], anchor[j], g_anchor[i], g_anchor[j]) for j in range(len(anchor)) if j != i]
        if contrast_positives:
            candidates += [(positive[i], positive[j], g_positive[i], g_positive[j])
                           for j in range(len(anchor)) if j != i]
        for negative, g_negative in zip(negatives, g_negatives):
            candidates += [(anchor[i], negative[j], g_anchor[i], g_negative[j]) for j in range(len(anchor))]
        for left, right, g_left, g_right in candidates:
            if naive.cosine(g_left, g_right) <= threshold:  # kept: the guide does not call it a false negative
                logits.append(naive.cosine(left, right) / temperature)
        total += naive.log_sum_exp(logits) - logits[0]
    return total / len(anchor)


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("num_columns", [2, 3])
def test_gist_matches_st_and_naive(options, num_columns, tokenizer):
    embeddings, guide = batch(num_columns, seed=num_columns)
    value, grads = ours_value_and_grads(GISTEmbedLoss, embeddings, guide, temperature=0.05, **options)
    st_value, st_grads = st_value_and_grads(st_losses.GISTEmbedLoss, embeddings, guide, tokenizer,
                                            temperature=0.05, **options)
    torch.testing.assert_close(value, st_value, rtol=1e-12, atol=1e-12)
    for grad, st_grad in zip(grads, st_grads):
        torch.testing.assert_close(grad, st_grad, rtol=1e-9, atol=1e-12)
    assert value.item() == pytest.approx(naive_gist(embeddings, guide, 0.05, **options), rel=1e-10)


def test_the_test_batches_have_suppressed_and_kept_negatives():
    """The batches above exercise the masking: in every block some candidates go and some stay."""
    for num_columns, seed in ((2, 2), (3, 3), (2, 12), (4, 14), (3, 6)):
        embeddings, guide = batch(num_columns, seed=seed)
        for margin in (0.0, 0.1):
            suppressed = gist_similarities(embeddings, guide, margin=margin)[2]
            off_diagonal = ~torch.eye(8, dtype=torch.bool)
            counts = {block: int(mask[off_diagonal].sum()) for block, mask in suppressed.items()}
            assert sum(counts.values()) > 0 and all(count < 56 for count in counts.values()), (margin, counts)
            assert counts["anchor_positive"] > 0, (num_columns, margin, counts)


@pytest.mark.parametrize("options", OPTIONS[::5])
@pytest.mark.parametrize("mini_batch_size", [1, 3, 32])
@pytest.mark.parametrize("num_columns", [2, 4])
def test_cached_gist_matches_st_cached_and_plain(num_columns, mini_batch_size, options, tokenizer):
    embeddings, guide = batch(num_columns, seed=10 + num_columns)
    kwargs = dict(temperature=0.05, mini_batch_size=mini_batch_size, **options)
    value, grads = ours_value_and_grads(CachedGISTEmbedLoss, embeddings, guide, **kwargs)
    st_value, st_grads = st_value_and_grads(st_losses.CachedGISTEmbedLoss, embeddings, guide, tokenizer, **kwargs)
    plain_value, plain_grads = ours_value_and_grads(GISTEmbedLoss, embeddings, guide, temperature=0.05, **options)
    torch.testing.assert_close(value, st_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(value, plain_value, rtol=1e-12, atol=1e-12)
    for grad, st_grad, plain_grad in zip(grads, st_grads, plain_grads):
        torch.testing.assert_close(grad, st_grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grad, plain_grad, rtol=1e-9, atol=1e-12)


def test_gist_without_suppression_or_contrast_is_mnrl():
    embeddings, _ = batch(3, seed=5)
    far_guide = [torch.eye(8, dtype=torch.float64)] * 3  # the guide sees every pair as unrelated (cosine 0)
    far_guide[1] = far_guide[0]  # ... except each anchor with its positive (cosine 1)
    loss_fn = GISTEmbedLoss(LabkitModelStub(), LabkitModelStub(), temperature=0.05, contrast_anchors=False,
                            contrast_positives=False)
    torch.testing.assert_close(loss_fn.compute_loss_from_embeddings(embeddings, far_guide),
                               MultipleNegativesRankingLoss(scale=20.0)(*embeddings))


@pytest.mark.parametrize("loss_class", [GISTEmbedLoss, CachedGISTEmbedLoss])
def test_matches_st_on_the_parameters_of_a_tiny_model_with_a_tiny_guide(loss_class, tokenizer):
    model, guide = tiny_model(seed=0).double(), tiny_model(seed=1, hidden_size=16).double()
    texts = [["a cat", "a dog", "the sun", "rain falls", "my card", "a kitten"],
             ["a kitten", "a puppy", "sunshine", "a storm", "the pin", "small cat"],
             ["a car", "a tree", "the moon", "snow", "a refund", "a big dog"]]
    features = [model.tokenize(t) for t in texts]
    options = dict(temperature=0.05, margin=0.05)

    model.zero_grad()
    embeddings = [model(f) for f in features]
    with torch.no_grad():
        guide_embeddings = [guide(f) for f in features]
    st_loss = st_losses.GISTEmbedLoss(STModelStub(tokenizer=tokenizer),
                                      STModelStub("guide_embedding", tokenizer=tokenizer), **options)
    st_value = st_loss(columns(*embeddings, guide=guide_embeddings), None)
    st_value.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    extra = dict(mini_batch_size=2) if loss_class is CachedGISTEmbedLoss else {}
    value = loss_class(model, guide, **options, **extra)(features)
    value.backward()
    assert value.item() == pytest.approx(st_value.item(), rel=1e-10)
    assert len(expected) > 10 and all(p.grad is None for p in guide.parameters())
    for name, parameter in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-8, atol=1e-10)


def test_a_guide_that_truncates_sooner_gets_the_texts_re_tokenized():
    model, guide = tiny_model(seed=0), tiny_model(seed=1)
    guide.max_seq_length = 4
    loss_fn = GISTEmbedLoss(model, guide)
    assert loss_fn.must_retokenize and not GISTEmbedLoss(model, tiny_model(seed=1)).must_retokenize
    texts = ["a cat sat on the mat today", "a dog"]
    (embedding,) = loss_fn.guide_embeddings([model.tokenize(texts)])
    with torch.no_grad():
        torch.testing.assert_close(embedding, guide(guide.tokenize(texts)))


def test_explain_shows_the_suppressed_candidates_and_the_loss():
    embeddings, guide = batch(3, seed=6)
    loss_fn = GISTEmbedLoss(LabkitModelStub(), LabkitModelStub(), temperature=0.05, margin=0.1)
    explanation = loss_fn.explain(embeddings, guide)
    torch.testing.assert_close(explanation.loss, loss_fn.compute_loss_from_embeddings(embeddings, guide))
    assert list(explanation.logits) == ["anchor_positive", "anchor_anchor", "positive_positive", "anchor_negative_1"]
    for block, suppressed in explanation.suppressed.items():
        assert torch.isinf(explanation.similarity[block][suppressed]).all(), block
    assert not explanation.suppressed["anchor_positive"].diagonal().any()
    total = sum(p.sum(dim=1) for p in explanation.probabilities.values())
    torch.testing.assert_close(total, torch.ones(8, dtype=torch.float64))
    frame = explanation.to_frame("suppressed", "anchor_negative_1")
    assert list(frame.columns)[:2] == ["n1_0", "n1_1"] and list(frame.index)[:2] == ["a0", "a1"]


def test_guide_is_not_a_parameter_of_the_loss_and_bad_arguments():
    model, guide = tiny_model(seed=0), tiny_model(seed=1)
    loss_fn = CachedGISTEmbedLoss(model, guide)
    assert {id(p) for p in loss_fn.parameters()} == {id(p) for p in model.parameters()}
    assert loss_fn.get_config_dict()["temperature"] == 0.01 and loss_fn.runs_the_model
    with pytest.raises(ValueError, match="margin_strategy must be 'absolute' or 'relative'"):
        GISTEmbedLoss(model, guide, margin_strategy="percent")
    with pytest.raises(TypeError, match="needs a guide model"):
        GISTEmbedLoss(model, "all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="temperature must be positive"):
        GISTEmbedLoss(model, guide, temperature=0.0)
    anchors = torch.randn(4, 8)
    with pytest.raises(ValueError, match="as many guide embeddings"):
        GISTEmbedLoss(model, guide).compute_loss_from_embeddings([anchors, anchors], [anchors])
    assert math.isfinite(GISTEmbedLoss(model, guide).compute_loss_from_embeddings([anchors, anchors],
                                                                                  [anchors, anchors]).item())


def test_the_training_loop_hands_gist_the_tokenized_columns():
    from labkit.train import compute_loss

    model, guide = tiny_model(seed=0), tiny_model(seed=1)
    features = [model.tokenize(["a cat", "a dog", "rain"]), model.tokenize(["a kitten", "a puppy", "a storm"])]
    for loss_fn in (GISTEmbedLoss(model, guide), CachedGISTEmbedLoss(model, guide, mini_batch_size=2)):
        with torch.no_grad():
            torch.testing.assert_close(compute_loss(model, loss_fn, features, None), loss_fn(features))
