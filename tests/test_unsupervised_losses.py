"""ContrastiveTensionLoss and DenoisingAutoEncoderLoss (TSDAE) against sentence-transformers' (values and gradients)
and against the definitions written out; the data helpers; TSDAE offline with the bundled MiniLM."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses as st_losses

from labkit.losses.unsupervised import (
    ContrastiveTensionLoss,
    DenoisingAutoEncoderLoss,
    contrastive_tension_pairs,
    delete_words,
    denoising_pairs,
)
from labkit.model import load_model, tiny_model
from st_stub import EmbeddingStub


def test_contrastive_tension_matches_sentence_transformers_and_the_formula():
    generator = torch.Generator().manual_seed(0)
    emb_1, emb_2 = (torch.randn(8, 6, generator=generator, dtype=torch.float64).requires_grad_() for _ in range(2))
    labels = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0], dtype=torch.float64)
    st_1, st_2 = (e.detach().clone().requires_grad_() for e in (emb_1, emb_2))
    ours = ContrastiveTensionLoss()(emb_1, emb_2, labels)
    theirs = st_losses.ContrastiveTensionLoss(EmbeddingStub())(
        [{"sentence_embedding": st_1}, {"sentence_embedding": st_2}], labels)
    dots = [float(emb_1[i] @ emb_2[i]) for i in range(8)]
    by_hand = sum(math.log1p(math.exp(-d)) if y else math.log1p(math.exp(d)) for d, y in zip(dots, labels.tolist()))
    ours.backward(), theirs.backward()
    assert float(ours) == pytest.approx(by_hand, rel=1e-12)
    torch.testing.assert_close(ours, theirs.to(ours.dtype))
    torch.testing.assert_close(emb_1.grad, st_1.grad), torch.testing.assert_close(emb_2.grad, st_2.grad)


def test_contrastive_tension_needs_labels():
    with pytest.raises(ValueError, match="contrastive_tension_pairs"):
        ContrastiveTensionLoss()(torch.randn(4, 3), torch.randn(4, 3), torch.ones(3))


def test_contrastive_tension_pairs_follow_the_data_loader_layout():
    sentences = [f"sentence {i}" for i in range(100)]
    rows = contrastive_tension_pairs(sentences, batch_size=16, pos_neg_ratio=8, seed=1)
    assert len(rows) == 100 // (2 * 16 - 2) * 16  # 30 sentences per batch of 16 pairs: 3 batches
    assert rows["label"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0] * 6
    same = rows["label"] == 1
    assert (rows.loc[same, "text"] == rows.loc[same, "text_pair"]).all()
    assert (rows.loc[~same, "text"] != rows.loc[~same, "text_pair"]).all()
    used = rows.loc[same, "text"].tolist() + rows.loc[~same, "text"].tolist() + rows.loc[~same, "text_pair"].tolist()
    assert len(used) == len(set(used)) == 90  # every sentence at most once
    assert rows.equals(contrastive_tension_pairs(sentences, batch_size=16, pos_neg_ratio=8, seed=1))
    with pytest.raises(ValueError, match="multiple of pos_neg_ratio"):
        contrastive_tension_pairs(sentences, batch_size=10)
    with pytest.raises(ValueError, match="fewer than one batch"):
        contrastive_tension_pairs(sentences[:10], batch_size=16)


def test_delete_words_keeps_order_and_at_least_one_word():
    rng = np.random.default_rng(0)
    text = "the quick brown fox jumps over the lazy dog"
    for _ in range(50):
        noisy = delete_words(text, 0.6, rng).split()
        assert 1 <= len(noisy) <= 9
        positions = iter(range(9))
        words = text.split()
        assert all(any(words[p] == w for p in positions) for w in noisy)  # a subsequence of the original
    assert delete_words("word", 1.0, rng) == "word"
    kept = [len(delete_words(text, 0.6, rng).split()) for _ in range(2000)]
    assert np.mean(kept) == pytest.approx(9 * 0.4, abs=0.15)  # each word survives with probability 0.4
    pairs = denoising_pairs([text, "a b c"], seed=3)
    assert pairs["text_pair"].tolist() == [text, "a b c"]
    assert pairs.equals(denoising_pairs([text, "a b c"], seed=3))


def test_tsdae_matches_sentence_transformers_on_value_and_gradients(tiny_model_folder):
    ours_model = load_model(str(tiny_model_folder), device="cpu").eval()
    st_model = SentenceTransformer(str(tiny_model_folder), device="cpu").eval()
    ours = DenoisingAutoEncoderLoss(ours_model)
    theirs = st_losses.DenoisingAutoEncoderLoss(st_model)
    # The decoders' new weights (cross-attention, LM head) are random: give both the same ones.
    ours.decoder.load_state_dict(theirs.decoder.state_dict())
    ours.eval(), theirs.eval()
    noisy = ours_model.tokenize(["cat mat", "sun hot", "rain roof"])
    original = ours_model.tokenize(["the cat sat on the mat", "the sun is hot", "rain falls on the roof"])
    ours_value = ours([noisy, original])
    st_value = theirs([dict(noisy), dict(original)], None)
    ours_value.backward(), st_value.backward()
    torch.testing.assert_close(ours_value, st_value, rtol=1e-5, atol=1e-6)
    ours_grads = {n: p.grad for n, p in ours.named_parameters() if p.grad is not None}
    st_grads = {n: p.grad for n, p in theirs.named_parameters() if p.grad is not None}
    decoder_grads = {n for n in ours_grads if n.startswith("decoder.")}
    assert decoder_grads and decoder_grads == {n for n in st_grads if n.startswith("decoder.")}
    for name in decoder_grads:
        torch.testing.assert_close(ours_grads[name], st_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_tsdae_ties_the_encoder_to_the_decoder_and_keeps_the_encoders_weights():
    model = tiny_model(seed=0, hidden_size=32)
    before = {n: p.detach().clone() for n, p in model.transformer.named_parameters()}
    loss = DenoisingAutoEncoderLoss(model)
    shared = loss.decoder.bert.embeddings.word_embeddings.weight
    assert model.transformer.embeddings.word_embeddings.weight is shared
    assert loss.decoder.get_output_embeddings().weight is shared  # the LM head reads the same table
    for name, param in model.transformer.named_parameters():
        torch.testing.assert_close(param, before[name], msg=name)  # tying kept the encoder's values


def test_tsdae_runs_offline_with_the_bundled_minilm():
    model = load_model()  # the offline all-MiniLM-L6-v2
    loss = DenoisingAutoEncoderLoss(model)
    pairs = denoising_pairs(["How do I reset my card PIN?", "My transfer has not arrived yet."], seed=0)
    value = loss([model.tokenize(pairs["text"].tolist()), model.tokenize(pairs["text_pair"].tolist())])
    value.backward()
    assert math.isfinite(float(value)) and float(value) > 0
    assert model.transformer.encoder.layer[0].attention.self.query.weight.grad is not None


def test_tsdae_bad_arguments():
    with pytest.raises(ValueError, match="decoder_name_or_path"):
        DenoisingAutoEncoderLoss(tiny_model(seed=0), tie_encoder_decoder=False)
    with pytest.raises(TypeError, match="EmbeddingModel"):
        DenoisingAutoEncoderLoss(torch.nn.Linear(2, 2))
