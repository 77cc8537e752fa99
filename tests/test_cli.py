"""The command line on small files a user might bring, with a tiny model so it runs in seconds."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

import labkit
from labkit.cli import main, parse_batch
from labkit.experiment import same_class_pairs

WORDS = {0: "card payment declined", 1: "transfer money abroad", 2: "lost my phone", 3: "change my address"}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return labkit.tiny_model(seed=0).save(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture()
def labelled_csv(tmp_path):
    rows = [{"question": f"{WORDS[c]} please help {i}", "intent": f"intent_{c}"} for c in WORDS for i in range(10)]
    path = tmp_path / "intents.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_train_writes_model_metrics_and_figures(tmp_path, tiny_folder, labelled_csv, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(labelled_csv), "--text-column", "question", "--label-column", "intent",
                 "--loss", "BatchHardTripletLoss", "--model", str(tiny_folder), "--steps", "2", "--batch", "2x4",
                 "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loss"] == "BatchHardTripletLoss" and metrics["steps"] == 2
    assert metrics["test"]["rows"] == 8  # 20% of 40 rows, stratified
    for when in ("before", "after"):
        assert 0 <= metrics["test"][when]["mean_average_precision_at_r"] <= 1
    assert metrics["dev"] is None  # no --dev-size: nothing is selected
    assert (out / "model" / "modules.json").exists() and (out / "curves.png").exists() and (out / "umap.png").exists()

    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(labelled_csv), "--text-column", "question",
                 "--label-column", "intent"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["precision_at_1"] == pytest.approx(metrics["test"]["after"]["precision_at_1"], abs=1e-6)


def test_scored_pairs_train_with_cosent(tmp_path, tiny_folder):
    rows = [{"a": f"{WORDS[i % 4]} {i}", "b": f"{WORDS[(i + j) % 4]} {i}", "sim": float(j == 0)}
            for i in range(20) for j in range(2)]
    path = tmp_path / "pairs.tsv"
    pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(path, sep="\t", index=False)
    out = tmp_path / "sts"
    assert main(["train", "--data", str(path), "--text-column", "a", "--text-pair-column", "b", "--score-column", "sim",
                 "--loss", "CoSENTLoss", "--model", str(tiny_folder), "--steps", "2", "--batch", "8",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "scored_pairs" and "spearman_cosine" in metrics["test"]["after"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label-column", "nope"], "has no column 'nope'"),
        (["--label-column", "intent", "--loss", "CoSENTLoss"], "does not fit labelled data"),
        (["--label-column", "intent", "--batch", "32"], "need P×K batches"),
        (["--label-column", "intent", "--loss-args", "margn=0.5"], "does not accept 'margn'"),
    ],
)
def test_mistakes_get_a_clear_message_and_no_traceback(tmp_path, tiny_folder, labelled_csv, capsys, extra, message):
    args = ["train", "--data", str(labelled_csv), "--text-column", "question", "--model", str(tiny_folder),
            "--steps", "1", "--out", str(tmp_path / "x")]
    if "--loss" not in extra:
        args += ["--loss", "BatchHardTripletLoss"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_batch_argument():
    assert parse_batch("8x4") == (8, 4, 32) and parse_batch("4×2") == (4, 2, 8) and parse_batch("32") == (0, 0, 32)


def test_same_class_pairs_pick_another_member_of_the_class():
    labels = np.array([0, 1, 0, 2, 1, 0, 3])
    partner = same_class_pairs(labels, seed=1)
    for i, j in enumerate(partner):
        if (labels == labels[i]).sum() == 1:
            assert j == -1  # a class of one has no partner
        else:
            assert j != i and labels[j] == labels[i]


def test_loss_args_are_parsed_and_reach_the_loss(tmp_path, tiny_folder, labelled_csv):
    from labkit.cli import parse_loss_args

    assert parse_loss_args("margin=0.5, scale=20,symmetric=true,distance_metric=cosine") == {
        "margin": 0.5, "scale": 20, "symmetric": True, "distance_metric": "cosine"}
    with pytest.raises(argparse.ArgumentTypeError, match="margin=0.5"):
        parse_loss_args("margin")
    out = tmp_path / "run"
    assert main(["train", "--data", str(labelled_csv), "--text-column", "question", "--label-column", "intent",
                 "--loss", "BatchHardTripletLoss", "--loss-args", "margin=0.5", "--model", str(tiny_folder),
                 "--steps", "1", "--batch", "2x4", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["loss_args"] == {"margin": 0.5}
