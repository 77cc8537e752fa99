"""labkit.course.recipes: notebook 09's splits and training run as functions, and the trained-model cache.

The training tests use the random tiny BERT and a tiny budget (2 steps of 2×2 batches), so they take seconds;
every test gets its own empty cache folder (LABKIT_CACHE_DIR), so none reads a model a notebook saved.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import labkit
from labkit import data
from labkit.course import recipes
from labkit.env import FAST

TINY = replace(FAST, train_steps=2, train_subset=300, eval_subset=200, max_length=16, batch_p=2, batch_k=2)
TEXTS = ["my card has not arrived yet", "how do I top up by bank transfer?", "what is the exchange rate"]


@pytest.fixture()
def cache(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    return tmp_path


def embeddings(model):
    return model.encode(TEXTS, show_progress_bar=False)


def train(seed_of_model=0, **kwargs):
    model = labkit.tiny_model(seed=seed_of_model)
    kwargs.setdefault("show_progress", False)
    return recipes.train_banking77_batch_hard(model, TINY, 7, device="cpu", **kwargs)


def test_splits_are_those_notebook_09_builds(data_dir):
    train_split, dev, heldout = recipes.banking77_splits(TINY, 7, data_dir=data_dir)
    expected_train, expected_dev = data.train_dev_split(data.load_banking77("train", data_dir), dev_size=0.1, seed=7)
    expected_train = data.drop_small_classes(
        data.stratified_subset(expected_train, TINY.train_subset, seed=7), TINY.batch_k)
    expected_dev = data.stratified_subset(expected_dev, TINY.eval_subset, seed=7)
    assert dev[["text", "label"]].equals(expected_dev[["text", "label"]])
    expected_heldout = data.stratified_subset(data.load_banking77("test", data_dir), TINY.eval_subset, seed=7)
    assert train_split[["text", "label", "label_name"]].equals(expected_train[["text", "label", "label_name"]])
    assert heldout[["text", "label", "label_name"]].equals(expected_heldout[["text", "label", "label_name"]])
    assert train_split["label"].value_counts().min() >= TINY.batch_k
    names = heldout.attrs["label_names"]
    assert len(names) == 77 and all(names[label] == name for label, name in zip(heldout["label"], heldout["label_name"]))


def test_recipe_is_fit_with_notebook_09_settings(cache, data_dir):
    """The recipe's weights equal those of the fit() call notebook 09 writes out, seeded the same way."""
    from labkit.env import seed_everything
    from labkit.losses.triplets import BatchHardTripletLoss
    from labkit.sampling import PKBatchSampler
    from labkit.collate import TextDataset
    from labkit.evaluate import evaluate_retrieval
    from labkit.train import fit

    trained, result = train(cache=False)
    assert result is not None and result.steps == TINY.train_steps

    train_split, dev, _ = recipes.banking77_splits(TINY, 7)
    by_hand = labkit.tiny_model(seed=0)
    seed_everything(7)
    fit(by_hand, BatchHardTripletLoss(margin=0.5), TextDataset(train_split["text"].tolist(), train_split["label"].tolist()),
        batch_sampler=PKBatchSampler(train_split["label"], TINY.batch_p, TINY.batch_k, seed=7),
        steps=TINY.train_steps, lr=1e-4, warmup_ratio=0.1, max_length=min(TINY.max_length, 32), seed=7,
        device="cpu", show_progress=False, live_plot=False,
        evaluator=lambda m: evaluate_retrieval(m, dev["text"], dev["label"].to_numpy(), batch_size=TINY.encode_batch_size),
        metric="mean_average_precision_at_r", eval_every=TINY.eval_every)
    for (name, a), (_, b) in zip(trained.state_dict().items(), by_hand.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.equal(trained.state_dict()["transformer.embeddings.word_embeddings.weight"],
                           labkit.tiny_model(seed=0).state_dict()["transformer.embeddings.word_embeddings.weight"])
    assert not list(cache.glob("models/*")), "cache=False must not write anything"


def test_cache_hit_gives_identical_embeddings_without_training(cache):
    first, result = train()
    assert result is not None
    folders = list((cache / "models").iterdir())
    assert len(folders) == 1 and (folders[0] / recipes.RECIPE_FILE).exists()
    settings = json.loads((folders[0] / recipes.RECIPE_FILE).read_text())
    assert (settings["steps"], settings["margin"], settings["lr"], settings["seed"]) == (2, 0.5, 1e-4, 7)

    second, result = train()
    assert result is None
    assert np.array_equal(embeddings(first), embeddings(second))
    assert recipes.cached_model_dir(labkit.tiny_model(seed=0), TINY, 7, device="cpu") == folders[0]
    # The folder is an ordinary saved model, too.
    assert np.array_equal(embeddings(labkit.load_model(folders[0], device="cpu")), embeddings(first))


@pytest.mark.parametrize("change", [{"margin": 0.3}, {"lr": 3e-5}, {"seed_of_model": 1}, {"budget": "steps"}])
def test_a_changed_setting_misses_the_cache(cache, change):
    train()
    if change.get("budget"):
        model = labkit.tiny_model(seed=0)
        _, result = recipes.train_banking77_batch_hard(model, replace(TINY, train_steps=3), 7, device="cpu",
                                                       show_progress=False)
    else:
        _, result = train(**change)
    assert result is not None, f"{change} must train afresh"
    assert len(list((cache / "models").iterdir())) == 2


def test_an_already_trained_model_does_not_match_the_pristine_one(cache):
    model, _ = train()
    # Same name, pooling and settings, but different starting weights: training it again must not load.
    _, result = recipes.train_banking77_batch_hard(model, TINY, 7, device="cpu", show_progress=False)
    assert result is not None


def test_incomplete_cache_folder_is_ignored_and_replaced(cache):
    folder = recipes.cached_model_dir(labkit.tiny_model(seed=0), TINY, 7, device="cpu")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{")  # a half-written folder from some crash
    _, result = train()
    assert result is not None and (folder / recipes.RECIPE_FILE).exists()
    _, result = train()
    assert result is None


def test_bad_arguments_say_what_is_wrong(cache):
    model = labkit.tiny_model()
    with pytest.raises(TypeError, match="Budget"):
        recipes.train_banking77_batch_hard(model, {"train_steps": 2}, 7)
    with pytest.raises(ValueError, match="margin"):
        recipes.train_banking77_batch_hard(model, TINY, 7, margin=0)
    with pytest.raises(ValueError, match="train_steps"):
        recipes.train_banking77_batch_hard(model, replace(TINY, train_steps=0), 7)
    with pytest.raises(TypeError, match="EmbeddingModel"):
        recipes.train_banking77_batch_hard(torch.nn.Linear(2, 2), TINY, 7)
