"""AdaptiveLayerLoss and Matryoshka2dLoss against sentence-transformers' on the same weights and batch (values and
parameter gradients), `layer_embeddings` against cutting the model, the layer weightings, and bad arguments."""
from __future__ import annotations

import math
import random

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses as st_losses

from labkit.losses import CachedMultipleNegativesRankingLoss, CoSENTLoss, MultipleNegativesRankingLoss
from labkit.losses.adaptive_layer import AdaptiveLayerLoss, Matryoshka2dLoss
from labkit.model import tiny_model

ANCHORS = ["a cat sat on the mat", "a dog ran", "the sun is hot today", "rain falls on the roof"]
POSITIVES = ["a kitten on a rug", "a puppy running", "sunshine and heat", "a storm outside"]


def both_models(folder):
    from labkit.model import load_model

    ours = load_model(str(folder), device="cpu").eval()
    theirs = SentenceTransformer(str(folder), device="cpu").eval()
    return ours, theirs


def gradients(module):
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def compare(ours_loss, ours_model, st_loss, st_model, features, labels=None, seed=0):
    random.seed(seed)
    ours = ours_loss(features, labels)
    random.seed(seed)
    theirs = st_loss([dict(f) for f in features], labels)
    ours.backward(), theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    ours_grads = gradients(ours_model.transformer)
    st_grads = {name.split(".", 2)[2]: g for name, g in gradients(st_model).items()}  # "0.model.<name>"
    assert set(ours_grads) == set(st_grads) and ours_grads
    for name, grad in ours_grads.items():
        # Summed over every token, some entries (token_type_embeddings) are large sums that nearly cancel: their
        # rounding depends on the CPU's summation order, so the floor scales with the largest entry.
        floor = max(1e-6, 1e-5 * float(st_grads[name].abs().max()))
        torch.testing.assert_close(grad, st_grads[name], rtol=1e-4, atol=floor, msg=name)


@pytest.mark.parametrize("settings", [
    {"n_layers_per_step": -1},
    {"n_layers_per_step": 1},
    {"n_layers_per_step": 2, "layer_weighting": "log", "kl_temperature": 0.5, "prior_layers_weight": 0.5},
    {"n_layers_per_step": -1, "layer_weighting": "linear", "kl_temperature": 0, "last_layer_weight": 2.0},
])
def test_adaptive_layer_matches_sentence_transformers(tiny_model_folder, settings):
    ours_model, st_model = both_models(tiny_model_folder)
    features = [ours_model.tokenize(ANCHORS), ours_model.tokenize(POSITIVES)]
    compare(AdaptiveLayerLoss(ours_model, MultipleNegativesRankingLoss(), **settings), ours_model,
            st_losses.AdaptiveLayerLoss(st_model, st_losses.MultipleNegativesRankingLoss(st_model), **settings),
            st_model, features, seed=5)


def test_adaptive_layer_with_a_scored_pair_loss_matches_sentence_transformers(tiny_model_folder):
    ours_model, st_model = both_models(tiny_model_folder)
    features = [ours_model.tokenize(ANCHORS), ours_model.tokenize(POSITIVES)]
    scores = torch.tensor([0.9, 0.1, 0.5, 0.7])
    compare(AdaptiveLayerLoss(ours_model, CoSENTLoss(), n_layers_per_step=-1), ours_model,
            st_losses.AdaptiveLayerLoss(st_model, st_losses.CoSENTLoss(st_model), n_layers_per_step=-1),
            st_model, features, labels=scores)


@pytest.mark.parametrize("seed", [0, 1])
def test_matryoshka_2d_matches_sentence_transformers(tiny_model_folder, seed):
    ours_model, st_model = both_models(tiny_model_folder)
    features = [ours_model.tokenize(ANCHORS), ours_model.tokenize(POSITIVES)]
    dims = [32, 16, 8]
    compare(Matryoshka2dLoss(ours_model, MultipleNegativesRankingLoss(), dims), ours_model,
            st_losses.Matryoshka2dLoss(st_model, st_losses.MultipleNegativesRankingLoss(st_model), dims),
            st_model, features, seed=seed)


def test_layer_embeddings_equal_a_model_cut_to_that_many_layers():
    model = tiny_model(seed=0, hidden_size=32, num_layers=3).eval()
    features = model.tokenize(ANCHORS)
    with torch.no_grad():
        layers = model.layer_embeddings(features)
        assert len(layers) == 4
        torch.testing.assert_close(layers[-1], model(features))
        model.transformer.encoder.layer = model.transformer.encoder.layer[:2]  # keep the first two layers
        torch.testing.assert_close(layers[2], model(features))


def test_layer_weightings():
    loss = AdaptiveLayerLoss(tiny_model(seed=0), MultipleNegativesRankingLoss(), layer_weighting="log")
    assert loss.layer_weight(0) == 1.0 and loss.layer_weight(3) == pytest.approx(1 / (1 + math.log(4)))
    loss.layer_weighting = "linear"
    assert loss.layer_weight(3) == 0.25
    loss.layer_weighting = lambda layer: 10.0 * layer
    assert loss.layer_weight(2) == 20.0


def test_bad_arguments_say_what_to_do():
    model = tiny_model(seed=0)
    with pytest.raises(ValueError, match="layer_weighting must be one of"):
        AdaptiveLayerLoss(model, MultipleNegativesRankingLoss(), layer_weighting="cubic")
    with pytest.raises(TypeError, match="cached loss"):
        AdaptiveLayerLoss(model, CachedMultipleNegativesRankingLoss(model))
    with pytest.raises(TypeError, match="EmbeddingModel"):
        AdaptiveLayerLoss(torch.nn.Linear(2, 2), MultipleNegativesRankingLoss())


def test_keep_first_layers_gives_the_layer_embeddings_of_the_full_model():
    from labkit.model import keep_first_layers

    model = tiny_model(seed=0, hidden_size=32, num_layers=3).eval()
    features = model.tokenize(ANCHORS)
    student = keep_first_layers(model, 2).eval()
    with torch.no_grad():
        torch.testing.assert_close(student(features), model.layer_embeddings(features)[2])
    assert len(model.transformer.encoder.layer) == 3  # the original is untouched
    assert student.transformer.config.num_hidden_layers == 2
    for bad in (0, 4):
        with pytest.raises(ValueError, match="between 1 and the model's 3 layers"):
            keep_first_layers(model, bad)
