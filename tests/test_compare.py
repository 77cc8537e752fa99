"""labkit.course.compare: one budget for every loss, checkpoints chosen on dev (never test), the base model untouched,
one tidy table, clear errors."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

import labkit
from labkit.course.compare import (
    BEFORE, DEFAULT_HYPERPARAMETERS, compare_losses, describe_hyperparameters, plot_cluster_grid, random_subset,
    split_dev,
)
from labkit.experiment import LOSSES_FOR
from labkit.losses import build_loss

WORDS = ["card", "loan", "cash", "fee", "atm", "pin"]
STEPS, P, K = 2, 2, 2


def labelled_frame(classes: int = 4, per_class: int = 4, offset: int = 0) -> pd.DataFrame:
    texts = [f"my {WORDS[c]} question number {j + offset}" for c in range(classes) for j in range(per_class)]
    return pd.DataFrame({"text": texts, "label": np.repeat(np.arange(classes), per_class)})


def sts_frame(n: int = 12, seed: int = 0, offset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"sentence1": [f"a {WORDS[i % 6]} sentence {i + offset}" for i in range(n)],
                         "sentence2": [f"another {WORDS[(i * 5) % 6]} one {i + offset}" for i in range(n)],
                         "score": rng.random(n)})


DEV = labelled_frame(offset=200)  # the dev split the tests choose checkpoints on: no text of it is a test text
STS_DEV = sts_frame(6, seed=2, offset=200)


def state_copy(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def base():
    return labkit.tiny_model(seed=0)


@pytest.fixture(scope="module")
def labelled(base):
    before = state_copy(base)
    comparison = compare_losses(base, labelled_frame(), labelled_frame(offset=100), dev=DEV, steps=STEPS, p=P, k=K,
                                seed=3)
    return comparison, before


@pytest.fixture(scope="module")
def sts(base):
    return compare_losses(base, sts_frame(), sts_frame(8, seed=1, offset=100), dev=STS_DEV, steps=STEPS, p=P, k=K, seed=3)


# ---------------------------------------------------------------------------------------------------------
# One budget for every loss
# ---------------------------------------------------------------------------------------------------------
def test_every_labelled_loss_gets_the_same_steps_and_texts(labelled):
    comparison, _ = labelled
    rows = comparison.table[comparison.table["loss"] != BEFORE]
    assert sorted(rows["loss"]) == sorted(LOSSES_FOR["labelled"])
    assert (rows["steps"] == STEPS).all()
    # P×K batches give P·K texts; MNRL gets P·K/2 pairs, i.e. the same P·K texts (counted inside each run)
    assert (rows["texts_per_step"] == P * K).all()
    assert (rows["texts_seen"] == STEPS * P * K).all()
    for name in rows["loss"]:
        assert len([r for r in comparison.histories[name] if "loss" in r]) == STEPS


def test_every_sts_loss_gets_the_same_steps_and_texts(sts):
    rows = sts.table[sts.table["loss"] != BEFORE]
    assert sorted(rows["loss"]) == sorted(LOSSES_FOR["scored_pairs"])
    assert (rows["steps"] == STEPS).all() and (rows["texts_per_step"] == P * K).all()
    assert (rows["texts_seen"] == STEPS * P * K).all()


def test_base_model_is_not_modified_but_the_copies_are_trained(base, labelled):
    comparison, before = labelled
    after = base.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the copies did move: their held-out embeddings differ from the base model's
    moved = [not np.allclose(comparison.embeddings[name], comparison.embeddings[BEFORE], atol=1e-6)
             for name in LOSSES_FOR["labelled"]]
    assert all(moved)


def test_before_row_matches_a_direct_evaluation_of_the_base_model(base, labelled):
    comparison, _ = labelled
    heldout = labelled_frame(offset=100)
    direct = labkit.evaluate.evaluate_retrieval(base, heldout["text"], heldout["label"].to_numpy())
    row = comparison.table.iloc[0]
    assert row["loss"] == BEFORE and row["steps"] == 0
    assert row["mean_average_precision_at_r"] == pytest.approx(direct["mean_average_precision_at_r"], abs=1e-6)
    assert row["precision_at_1"] == pytest.approx(direct["precision_at_1"], abs=1e-6)


# ---------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------
def test_labelled_table_columns_order_and_change(labelled):
    comparison, _ = labelled
    table = comparison.table
    assert list(table.columns) == [
        "loss", "steps", "best_step", "texts_per_step", "texts_seen", "hyperparameters", "lr",
        "dev_mean_average_precision_at_r", "mean_average_precision_at_r",
        "precision_at_1", "r_precision", "silhouette", "knn_accuracy", "mean_average_precision_at_r_change",
        "seconds"]
    assert comparison.kind == "labelled" and comparison.main_metric == "mean_average_precision_at_r"
    main = table["mean_average_precision_at_r"]
    assert table["loss"].iloc[0] == BEFORE
    assert list(main.iloc[1:]) == sorted(main.iloc[1:], reverse=True)  # best first after the base row
    assert np.allclose(table["mean_average_precision_at_r_change"], main - main.iloc[0])
    assert list(comparison.embeddings) == list(table["loss"])  # maps in table order
    assert comparison.labels.tolist() == labelled_frame(offset=100)["label"].tolist()


def test_hyperparameters_are_stated_in_the_table(labelled):
    table = labelled[0].table.set_index("loss")
    for name in ("BatchAllTripletLoss", "BatchHardTripletLoss", "BatchSemiHardTripletLoss"):
        assert table.loc[name, "hyperparameters"] == "margin=0.5"
    assert table.loc["MultipleNegativesRankingLoss", "hyperparameters"] == "scale=20"
    assert (table.drop(index=BEFORE)["lr"] == 3e-5).all()


def test_sts_table_has_spearman_and_no_maps(sts):
    assert {"spearman_cosine", "pearson_cosine", "spearman_cosine_change"} <= set(sts.table.columns)
    assert sts.embeddings == {} and sts.labels is None
    assert sts.table.set_index("loss").loc["CoSENTLoss", "hyperparameters"] == "scale=20"


def test_same_seed_same_result_and_without_before_row(base):
    train, heldout = labelled_frame(), labelled_frame(offset=100)
    runs = [compare_losses(base, train, heldout, ["BatchHardTripletLoss"], dev=DEV, steps=STEPS, p=P, k=K, seed=5,
                           include_before=False) for _ in range(2)]
    assert list(runs[0].table["loss"]) == ["BatchHardTripletLoss"]
    assert "mean_average_precision_at_r_change" not in runs[0].table.columns
    np.testing.assert_allclose(runs[0].embeddings["BatchHardTripletLoss"], runs[1].embeddings["BatchHardTripletLoss"],
                               atol=1e-6)


def test_hyperparameters_override_the_defaults(base):
    result = compare_losses(base, labelled_frame(), labelled_frame(offset=100), "BatchHardTripletLoss", dev=DEV, steps=1,
                            p=P, k=K, hyperparameters={"BatchHardTripletLoss": {"margin": 5.0}}, include_before=False)
    assert result.table["hyperparameters"].tolist() == ["margin=5"]


# ---------------------------------------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------------------------------------
def test_loss_that_does_not_fit_the_data_is_refused_before_training(base):
    with pytest.raises(ValueError, match="CoSENTLoss does not fit labelled data; use one of: BatchAllTripletLoss"):
        compare_losses(base, labelled_frame(), labelled_frame(), ["BatchHardTripletLoss", "CoSENTLoss"], dev=DEV,
                       steps=1)
    with pytest.raises(ValueError, match="BatchHardTripletLoss does not fit scored pairs data"):
        compare_losses(base, sts_frame(), sts_frame(), ["BatchHardTripletLoss"], dev=STS_DEV, steps=1)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"steps": 0}, ValueError, "steps must be a positive integer"),
    ({"steps": 2, "eval_every": 0}, ValueError, "eval_every must be a positive integer"),
    ({"steps": 1, "losses": []}, ValueError, "losses is empty"),
    ({"steps": 1, "losses": ["MultipleNegativesRankingLoss"], "p": 3, "k": 1}, ValueError, "is odd"),
    ({"steps": 1, "hyperparameters": {"BatchHardTripletLoss": {"margn": 0.5}}}, TypeError,
     "BatchHardTripletLoss does not accept"),
])
def test_bad_arguments_get_clear_errors(base, kwargs, error, message):
    with pytest.raises(error, match=message):
        compare_losses(base, labelled_frame(), labelled_frame(offset=100), dev=DEV, **kwargs)


def test_train_dev_and_test_of_different_kinds_are_refused(base):
    with pytest.raises(ValueError, match="train holds labelled data but test holds scored pairs data"):
        compare_losses(base, labelled_frame(), sts_frame(), dev=DEV, steps=1)
    with pytest.raises(ValueError, match="train holds labelled data but dev holds scored pairs data"):
        compare_losses(base, labelled_frame(), labelled_frame(), dev=STS_DEV, steps=1)
    with pytest.raises(TypeError, match="train must be a pandas DataFrame"):
        compare_losses(base, [("a", 0)], labelled_frame(), dev=DEV, steps=1)
    with pytest.raises(ValueError, match="test is empty"):
        compare_losses(base, labelled_frame(), labelled_frame().iloc[:0], dev=DEV, steps=1)
    with pytest.raises(ValueError, match="dev is empty"):
        compare_losses(base, labelled_frame(), labelled_frame(), dev=DEV.iloc[:0], steps=1)


def test_the_test_data_as_dev_is_refused(base):
    test = labelled_frame(offset=100)
    with pytest.raises(ValueError, match="dev is the test data: choose checkpoints on a dev split carved from"):
        compare_losses(base, labelled_frame(), test, dev=test.copy(), steps=1)
    with pytest.raises(TypeError, match="dev"):  # no silent default: the caller names the dev split
        compare_losses(base, labelled_frame(), test, steps=1)


# ---------------------------------------------------------------------------------------------------------
# Model selection on dev, test once at the end
# ---------------------------------------------------------------------------------------------------------
def test_checkpoints_are_selected_on_dev_texts_and_test_is_encoded_once_per_model(base, monkeypatch):
    """Spy on every encode() call: inside fit() (checkpoint selection) only dev texts, none of them a test
    text; outside it, the test texts, once for the base model and once per trained loss."""
    import labkit.train

    train, test = labelled_frame(), labelled_frame(offset=100)
    dev = split_dev(labelled_frame(per_class=6, offset=300), dev_size=0.5, seed=1)[1]
    calls, in_fit = [], []
    encode, fit = type(base).encode, labkit.train.fit

    def spy_encode(self, texts, *args, **kwargs):
        calls.append((bool(in_fit), list(texts)))
        return encode(self, texts, *args, **kwargs)

    def spy_fit(*args, **kwargs):
        in_fit.append(True)
        try:
            return fit(*args, **kwargs)
        finally:
            in_fit.clear()

    monkeypatch.setattr(type(base), "encode", spy_encode)
    monkeypatch.setattr(labkit.train, "fit", spy_fit)
    names = ["BatchHardTripletLoss", "MultipleNegativesRankingLoss"]
    steps, eval_every = 4, 2
    result = compare_losses(base, train, test, names, dev=dev, steps=steps, eval_every=eval_every, p=P, k=K, seed=3)

    selecting = [texts for inside, texts in calls if inside]
    testing = [texts for inside, texts in calls if not inside]
    assert set(dev["text"]).isdisjoint(test["text"])
    # per loss: the base model at step 0, then steps 2 and 4; each call encodes exactly the dev texts
    assert len(selecting) == len(names) * (1 + steps // eval_every)
    assert all(texts == list(dev["text"]) for texts in selecting)
    assert testing == [list(test["text"])] * (1 + len(names))
    # the table's dev score and kept step are the best of fit()'s dev evaluations (steps 2 and 4; step 0 is
    # the untouched base model, not a candidate)
    table = result.table.set_index("loss")
    for name in names:
        candidates = [row for row in result.histories[name] if "loss" not in row and row["step"] > 0]
        assert [row["step"] for row in candidates] == [2, 4]
        best = max(candidates, key=lambda row: row["mean_average_precision_at_r"])
        assert table.loc[name, "dev_mean_average_precision_at_r"] == best["mean_average_precision_at_r"]
        assert table.loc[name, "best_step"] == best["step"]


def test_sts_selection_is_on_dev_pairs(sts):
    for name in LOSSES_FOR["scored_pairs"]:
        evaluations = [row for row in sts.histories[name] if "loss" not in row]
        assert [row["step"] for row in evaluations] == [0, 1, 2]  # eval_every defaults to max(1, steps // 4)
        assert set(evaluations[0]) == {"step", "spearman_cosine"}
    assert {"best_step", "dev_spearman_cosine"} <= set(sts.table.columns)


def test_split_dev_is_disjoint_deterministic_and_keeps_classes():
    frame = labelled_frame(classes=4, per_class=10)
    train, dev = split_dev(frame, dev_size=0.2, seed=7)
    assert len(dev) == 8 and len(train) == 32 and set(train["text"]).isdisjoint(dev["text"])
    assert dev["label"].value_counts().tolist() == [2, 2, 2, 2]  # stratified: each class keeps its share
    assert dev.equals(split_dev(frame, dev_size=0.2, seed=7)[1])
    pairs = sts_frame(20)
    train, dev = split_dev(pairs, dev_size=0.25, seed=7)
    assert len(dev) == 5 and len(train) == 15
    assert sorted(train["sentence1"].tolist() + dev["sentence1"].tolist()) == sorted(pairs["sentence1"])
    assert not dev.equals(split_dev(pairs, dev_size=0.25, seed=8)[1])
    with pytest.raises(ValueError, match="dev_size must be a fraction"):
        split_dev(pairs, dev_size=5)
    with pytest.raises(ValueError, match="too few"):
        split_dev(sts_frame(2), dev_size=0.1)


def test_build_loss_uses_the_settings_and_checks_the_kind():
    loss = build_loss("BatchSemiHardTripletLoss", "labelled", **DEFAULT_HYPERPARAMETERS["BatchSemiHardTripletLoss"])
    assert type(loss).__name__ == "BatchSemiHardTripletLoss" and loss.margin == 0.5
    with pytest.raises(ValueError, match="AnglELoss does not fit labelled data"):
        build_loss("AnglELoss", "labelled")
    # every margin loss of the comparison gets a margin below 2, the largest distance between unit vectors
    for name, settings in DEFAULT_HYPERPARAMETERS.items():
        if "margin" in settings:
            assert settings["margin"] < 2, name
    assert describe_hyperparameters({}) == "—"
    assert describe_hyperparameters({"margin": 0.5, "scale": 20.0}) == "margin=0.5, scale=20"


def test_random_subset():
    frame = sts_frame(20)
    assert random_subset(frame, 0) is frame and random_subset(frame, 50) is frame
    part = random_subset(frame, 5, seed=1)
    assert len(part) == 5 and part.equals(random_subset(frame, 5, seed=1))
    assert set(part["sentence1"]) <= set(frame["sentence1"])


# ---------------------------------------------------------------------------------------------------------
# The grid of maps
# ---------------------------------------------------------------------------------------------------------
def test_plot_cluster_grid_one_panel_per_model(labelled):
    comparison, _ = labelled
    threads = torch.get_num_threads()
    fig = plot_cluster_grid(comparison.embeddings, comparison.labels, projection="pca", ncols=4, max_points=10)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(comparison.embeddings)  # 6 maps in a 2×4 grid: two panels hidden
    for ax, name in zip(visible, comparison.embeddings):
        assert ax.get_title().startswith(name) and "silhouette" in ax.get_title()
        assert len(ax.collections[0].get_offsets()) == 10  # the same max_points points in every map
    assert torch.get_num_threads() == threads


def test_plot_cluster_grid_errors(labelled):
    comparison, _ = labelled
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_cluster_grid({}, comparison.labels)
    with pytest.raises(ValueError, match="rows but there are"):
        plot_cluster_grid({"x": np.zeros((3, 4))}, comparison.labels, projection="pca")
    with pytest.raises(ValueError, match="Unknown projection"):
        plot_cluster_grid(comparison.embeddings, comparison.labels, projection="tsne")


def test_sts_before_row_matches_evaluate_sts(base, sts):
    heldout = sts_frame(8, seed=1, offset=100)
    direct = labkit.evaluate.evaluate_sts(base, heldout["sentence1"], heldout["sentence2"], heldout["score"])
    row = sts.table.iloc[0]
    assert row["loss"] == BEFORE
    assert row["spearman_cosine"] == pytest.approx(direct["spearman_cosine"], abs=1e-6)
    assert row["pearson_cosine"] == pytest.approx(direct["pearson_cosine"], abs=1e-6)
