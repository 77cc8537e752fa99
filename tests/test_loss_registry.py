"""labkit.losses.REGISTRY: every loss that can be picked by name, its data kinds and knobs; the tables derived from it."""
from __future__ import annotations

import inspect

import pytest
import torch

from labkit import losses as L
from labkit.course import compare, playground
from labkit.experiment import LOSSES_FOR, MAIN_METRIC, SAME_CLASS_PAIR_LOSSES
from labkit.losses import (
    DATA_KINDS, INPUTS, NOT_REGISTERED, REGISTRY, LossArgumentError, build_loss, losses_for,
)

KNOB_NAMES = ("margin", "scale", "temperature", "positive_margin", "negative_margin")


@pytest.fixture(scope="module")
def needs():
    """What a training run hands the losses that run a model: the model (and a guide) to run."""
    from labkit.model import tiny_model

    return {"model": tiny_model(seed=0), "guide": tiny_model(seed=1)}


EXPORTED_LOSSES = {name for name in L.__all__
                   if isinstance(getattr(L, name), type) and issubclass(getattr(L, name), torch.nn.Module)}


# ---------------------------------------------------------------------------------------------------------
# The registry itself
# ---------------------------------------------------------------------------------------------------------
def test_every_exported_loss_is_registered_or_says_why_not():
    assert set(REGISTRY).isdisjoint(NOT_REGISTERED)
    assert set(REGISTRY) | set(NOT_REGISTERED) == EXPORTED_LOSSES
    assert set(NOT_REGISTERED) == {"SoftmaxLoss", "ClassificationLoss", "MatryoshkaLoss", "AdaptiveLayerLoss",
                                   "Matryoshka2dLoss", "DenoisingAutoEncoderLoss"}
    assert all(reason for reason in NOT_REGISTERED.values())


def test_entries_name_the_exported_classes_and_use_known_kinds_and_inputs():
    for name, entry in REGISTRY.items():
        assert entry.name == name and entry.loss_class is getattr(L, name)
        assert entry.inputs in INPUTS, name
        assert entry.data_kinds and set(entry.data_kinds) <= set(DATA_KINDS), name
        parameters = inspect.signature(entry.loss_class).parameters
        for knob in entry.knobs:
            assert knob.name in KNOB_NAMES and knob.keyword in parameters, (name, knob)
        assert set(entry.needs) <= {"model", "guide"} and all(need in parameters for need in entry.needs), name
        assert bool(entry.needs) == (entry.inputs == "runs the model") == getattr(entry.loss_class, "runs_the_model",
                                                                                   False), name
    assert set(MAIN_METRIC) <= set(DATA_KINDS)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_loss_builds_with_its_knobs_for_each_of_its_kinds(name, needs):
    entry = REGISTRY[name]
    given = {need: needs[need] for need in entry.needs}
    for kind in entry.data_kinds:
        loss = build_loss(name, kind, **entry.knob_defaults, **given)
        assert type(loss) is entry.loss_class
        for knob in entry.knobs:  # the value reached the loss (some triplet losses store it as triplet_margin)
            value = getattr(loss, knob.name) if hasattr(loss, knob.name) else loss.triplet_margin
            assert value == pytest.approx(knob.default), (name, knob)
        assert type(build_loss(name, kind, **given)) is entry.loss_class  # sentence-transformers' defaults


def test_the_course_and_sentence_transformers_defaults():
    margin_losses = ("BatchAllTripletLoss", "BatchHardTripletLoss", "BatchSemiHardTripletLoss")
    for name in margin_losses:
        assert REGISTRY[name].knob_defaults == {"margin": 0.5}
        assert REGISTRY[name].sentence_transformers_defaults == {"margin": 5}
    assert REGISTRY["TripletLoss"].knob_defaults == {"triplet_margin": 0.5}
    assert REGISTRY["TripletLoss"].sentence_transformers_defaults == {"triplet_margin": 5}
    for name in ("ContrastiveLoss", "OnlineContrastiveLoss"):
        assert REGISTRY[name].knob_defaults == REGISTRY[name].sentence_transformers_defaults == {"margin": 0.5}
    for name in ("CoSENTLoss", "AnglELoss", "MultipleNegativesRankingLoss", "MultipleNegativesSymmetricRankingLoss",
                 "ContrastiveTensionLossInBatchNegatives"):
        assert REGISTRY[name].knob_defaults == REGISTRY[name].sentence_transformers_defaults == {"scale": 20.0}
    for name in ("BatchHardSoftMarginTripletLoss", "CosineSimilarityLoss"):
        assert REGISTRY[name].knobs == () and REGISTRY[name].knob_defaults == {}


def test_losses_that_run_a_model_need_it():
    runs_a_model = [name for name, entry in REGISTRY.items() if entry.needs]
    assert set(runs_a_model) == {"CachedMultipleNegativesRankingLoss", "CachedMultipleNegativesSymmetricRankingLoss",
                                 "GISTEmbedLoss", "CachedGISTEmbedLoss"}
    assert REGISTRY["GISTEmbedLoss"].needs == REGISTRY["CachedGISTEmbedLoss"].needs == ("model", "guide")
    with pytest.raises(LossArgumentError, match="GISTEmbedLoss runs a model itself, so it needs guide"):
        build_loss("GISTEmbedLoss", "triplets", model=torch.nn.Linear(2, 2))
    with pytest.raises(LossArgumentError, match=r"CachedMultipleNegativesRankingLoss runs a model itself, so it needs "
                                                r"model: build_loss\('CachedMultipleNegativesRankingLoss', "
                                                r"'positive_pairs', model=\.\.\.\)"):
        build_loss("CachedMultipleNegativesRankingLoss", "positive_pairs", scale=20.0)
    for kind in ("labelled", "scored_pairs", "binary_pairs"):  # the kinds the command line trains on
        assert not set(runs_a_model) & set(losses_for(kind))


def test_build_loss_errors():
    with pytest.raises(ValueError, match=r"^CoSENTLoss does not fit labelled data; use one of: BatchAllTripletLoss, "
                                         r"BatchHardTripletLoss, BatchHardSoftMarginTripletLoss, "
                                         r"BatchSemiHardTripletLoss, MultipleNegativesRankingLoss\.$"):
        build_loss("CoSENTLoss", "labelled")
    with pytest.raises(ValueError, match="SoftmaxLoss does not fit scored pairs data"):
        build_loss("SoftmaxLoss", "scored_pairs")
    with pytest.raises(LossArgumentError, match=r"BatchHardTripletLoss does not accept 'margn' \(.*\); "
                                                r"its arguments are: distance_metric, margin\.$") as caught:
        build_loss("BatchHardTripletLoss", "labelled", margn=0.5)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)
    with pytest.raises(ValueError, match="unknown data kind 'nli'; the kinds are: labelled, scored_pairs"):
        losses_for("nli")


# ---------------------------------------------------------------------------------------------------------
# What is derived from it
# ---------------------------------------------------------------------------------------------------------
def test_losses_for_is_derived_from_the_registry():
    assert list(LOSSES_FOR) == list(MAIN_METRIC)
    for kind, names in LOSSES_FOR.items():
        assert names == losses_for(kind) == tuple(n for n, e in REGISTRY.items() if kind in e.data_kinds)
    assert LOSSES_FOR == {  # as it was before the registry
        "labelled": ("BatchAllTripletLoss", "BatchHardTripletLoss", "BatchHardSoftMarginTripletLoss",
                     "BatchSemiHardTripletLoss", "MultipleNegativesRankingLoss"),
        "scored_pairs": ("CosineSimilarityLoss", "CoSENTLoss", "AnglELoss"),
        "binary_pairs": ("ContrastiveLoss", "OnlineContrastiveLoss"),
    }
    assert SAME_CLASS_PAIR_LOSSES == ("MultipleNegativesRankingLoss",)


def test_compare_settings_are_the_registry_knobs_of_every_experiment_loss():
    expected = [name for names in LOSSES_FOR.values() for name in names]
    assert list(compare.DEFAULT_HYPERPARAMETERS) == expected
    for name, settings in compare.DEFAULT_HYPERPARAMETERS.items():
        assert settings == REGISTRY[name].knob_defaults
    assert compare.DEFAULT_HYPERPARAMETERS["BatchHardTripletLoss"] == {"margin": 0.5}
    assert compare.DEFAULT_HYPERPARAMETERS["MultipleNegativesRankingLoss"] == {"scale": 20.0}
    assert not hasattr(compare, "make_loss")


def test_playground_menu_is_derived_from_the_registry():
    offered = [name for name, entry in REGISTRY.items() if entry.inputs in playground.FAMILIES]
    assert sorted(playground.LOSSES) == sorted(offered)
    assert "ContrastiveTensionLossInBatchNegatives" not in playground.LOSSES  # two encoders: not a point cloud
    assert list(playground.LOSSES)[:4] == ["BatchHardTripletLoss", "BatchHardSoftMarginTripletLoss",
                                           "BatchSemiHardTripletLoss", "BatchAllTripletLoss"]
    rest = [name for name in playground.LOSSES if name not in list(playground.LOSSES)[:3]]
    assert rest == [name for name in offered if name in rest]  # registry order after the first three
    for name, spec in playground.LOSSES.items():
        entry = REGISTRY[name]
        assert spec.family == entry.inputs
        assert spec.knobs == tuple(knob.name for knob in entry.knobs)
        assert spec.distances == (("cosine",) if "scored_pairs" in entry.data_kinds else playground.DISTANCES)
    assert not hasattr(playground, "build_loss") or playground.build_loss is build_loss


def test_playground_builds_through_the_registry():
    loss = playground.playground_loss("TripletLoss", "euclidean", margin=0.7)
    assert type(loss) is L.TripletLoss and loss.triplet_margin == 0.7
    loss = playground.playground_loss("MultipleNegativesRankingLoss", "cosine", scale=7.0)
    assert type(loss) is L.MultipleNegativesRankingLoss and loss.scale == 7.0
