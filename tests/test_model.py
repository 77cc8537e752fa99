from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch

import labkit
from labkit.model import ModelNotAvailableError, default_model_path, load_model

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "How do I top up my card?",
    "My card payment was declined twice today, what is going on with my account?",
]


@pytest.fixture(scope="module")
def st_reference():
    """sentence-transformers' own loading of the same bundled model: the reference for our embeddings."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_path()), device="cpu")


def test_offline_default_reads_its_sentence_transformers_config(minilm):
    assert minilm.embedding_dim == 384
    assert minilm.pooling == "mean" and minilm.normalize and minilm.max_seq_length == 256


def test_default_embeddings_equal_sentence_transformers(minilm, st_reference):
    ours = minilm.encode(SENTENCES, batch_size=2)
    theirs = st_reference.encode(SENTENCES, batch_size=2)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_encode_keeps_input_order_despite_length_sorting(minilm):
    together = minilm.encode(SENTENCES, batch_size=2)
    one_by_one = np.stack([minilm.encode([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_encode_normalize_gives_unit_vectors(tiny):
    emb = tiny.encode(SENTENCES, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_local_folder_goes_through_the_same_path(tmp_path, minilm):
    folder = tmp_path / "copy"
    shutil.copytree(default_model_path(), folder)
    model = load_model(folder, device="cpu")
    np.testing.assert_allclose(model.encode(SENTENCES), minilm.encode(SENTENCES), atol=1e-6)


def test_pooling_is_read_from_the_model_config(tmp_path):
    folder = tmp_path / "cls-model"
    shutil.copytree(default_model_path(), folder)
    config = json.loads((folder / "1_Pooling" / "config.json").read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))
    assert load_model(folder, device="cpu").pooling == "cls"


def test_saved_model_loads_in_sentence_transformers_with_same_embeddings(tmp_path, tiny):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    tiny.normalize = True
    path = tiny.save(tmp_path / "out" / "model")
    theirs = SentenceTransformer(str(path), device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(tiny.encode(SENTENCES), theirs, atol=1e-5)
    assert AutoModel.from_pretrained(path).config.hidden_size == tiny.embedding_dim  # also a plain HF folder
    assert [p.name for p in path.parent.iterdir()] == ["model"]  # no temporary folder left behind


def test_uncached_hub_model_offline_fails_fast_with_fixes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("thenlper/gte-base-not-cached-here")
    assert time.perf_counter() - start < 10
    message = str(err.value)
    assert "not in the local Hugging Face cache" in message and "load_model() with no argument" in message


def test_unreachable_hub_is_detected_without_offline_flag(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ModelNotAvailableError, match="cannot be reached"):
        load_model("someone/some-model-not-cached")


@pytest.mark.parametrize("bad", ["./no/such/folder", "not a model id!"])
def test_missing_folder_or_malformed_id_is_a_clear_error(bad):
    with pytest.raises(ModelNotAvailableError, match="neither an existing folder"):
        load_model(bad)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "texts, error, match",
    [
        ("just one string", TypeError, "single string"),
        ([], ValueError, "empty list"),
        (["fine", None], TypeError, "index 1"),
        (["fine", "   "], ValueError, "index 1"),
    ],
)
def test_bad_texts_are_refused_with_the_reason(tiny, texts, error, match):
    with pytest.raises(error, match=match):
        tiny.encode(texts)


def test_forward_gives_gradients_to_the_transformer(tiny):
    emb = tiny(tiny.tokenize(SENTENCES[:3]))
    emb.sum().backward()
    grads = [p.grad for p in tiny.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_tiny_model_is_deterministic_for_a_seed():
    a = labkit.tiny_model(seed=3).encode(SENTENCES)
    b = labkit.tiny_model(seed=3).encode(SENTENCES)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, labkit.tiny_model(seed=4).encode(SENTENCES))


def test_tokenize_pads_only_to_the_longest_text(tiny):
    features = tiny.tokenize(["short", "a somewhat longer sentence here"])
    lengths = features["attention_mask"].sum(1)
    assert features["input_ids"].shape[1] == lengths.max().item()
    assert torch.equal(features["attention_mask"][0, lengths[0]:], torch.zeros_like(features["attention_mask"][0, lengths[0]:]))


def test_loaded_models_start_in_eval_mode_so_forward_is_deterministic(minilm, tiny):
    for model in (minilm, tiny):
        assert not model.training and not model.transformer.training
        model.encode(SENTENCES[:2])
        features = model.tokenize(SENTENCES[:2])
        torch.testing.assert_close(model(features), model(features))


def test_encode_layers_gives_every_depth_in_texts_order_and_its_last_row_is_encode():
    from labkit.model import keep_first_layers, tiny_model

    model = tiny_model(seed=0, num_layers=3)
    texts = ["a short one", "a much longer text about cells, genes and proteins", "mid length text"]
    layers = model.encode_layers(texts, batch_size=2, max_length=16)
    assert layers.shape == (4, 3, model.embedding_dim) and not layers.is_inference()
    assert torch.equal(layers[-1], model.encode(texts, batch_size=2, max_length=16, convert_to_tensor=True))
    assert torch.allclose(layers[1], keep_first_layers(model, 1).encode(texts, max_length=16, convert_to_tensor=True),
                          atol=1e-5)
