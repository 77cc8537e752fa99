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


# A run in a child process whose steps are slowed down (the loss is unchanged), so that the test can kill it between
# two checkpoints, whatever the machine's speed.
SLOW_CHILD = """
import sys, time
import labkit.train
from labkit.cli import main

computed = labkit.train.compute_loss
labkit.train.compute_loss = lambda *args: (time.sleep(0.5), computed(*args))[1]
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_resumes_to_the_weights_and_metrics_of_an_unbroken_one(tmp_path, tiny_folder, labelled_csv):
    import subprocess
    import sys
    import time

    import torch
    from safetensors.torch import load_file

    args = ["train", "--data", str(labelled_csv), "--text-column", "question", "--label-column", "intent",
            "--loss", "BatchHardTripletLoss", "--model", str(tiny_folder), "--steps", "8", "--batch", "2x4",
            "--dev-size", "8", "--eval-every", "2", "--checkpoint-every", "2", "--seed", "3", "--lr", "1e-3"]
    killed = tmp_path / "killed"
    with open(tmp_path / "child.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, *args, "--out", str(killed)], stdout=log,
                                 stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not (killed / "checkpoint.pt").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.kill()  # SIGKILL: no Ctrl-C handler, no last checkpoint
        child.wait()
    assert (killed / "checkpoint.pt").exists(), (tmp_path / "child.log").read_text()[-3000:]
    stopped_at = torch.load(killed / "checkpoint.pt", weights_only=False)["step"]
    assert 0 < stopped_at < 8 and not (killed / "model").exists() and not (killed / "metrics.json").exists()
    assert json.loads((killed / "args.json").read_text())["steps"] == 8 and (killed / "before.json").exists()

    assert main(["train", "--resume", str(killed), "--steps", "9"]) == 2  # another length: refused
    assert main(["train", "--resume", str(killed), "--checkpoint-every", "3"]) == 0  # when to save may change
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole)]) == 0

    resumed, unbroken = (json.loads((out / "metrics.json").read_text()) for out in (killed, whole))
    resumed.pop("seconds"), unbroken.pop("seconds")
    assert resumed == unbroken  # the test metrics, before and after, and every dev evaluation
    assert unbroken["dev"]["rows"] == 8 and [row["step"] for row in unbroken["dev"]["evaluations"]] == [0, 2, 4, 6, 8]
    weights = [load_file(out / "model" / "model.safetensors") for out in (killed, whole)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])  # bit for bit


def test_dev_selection_keeps_the_best_dev_checkpoint_and_reports_test_once(tmp_path, tiny_folder, labelled_csv):
    from labkit.experiment import MAIN_METRIC

    out = tmp_path / "run"
    assert main(["train", "--data", str(labelled_csv), "--text-column", "question", "--label-column", "intent",
                 "--loss", "BatchHardTripletLoss", "--model", str(tiny_folder), "--steps", "4", "--batch", "2x4",
                 "--dev-size", "8", "--eval-every", "2", "--lr", "1e-3", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    dev = metrics["dev"]
    assert dev["rows"] == 8 and dev["metric"] == MAIN_METRIC["labelled"]  # 8 of the 32 training rows, 2 per class
    scores = {row["step"]: row[dev["metric"]] for row in dev["evaluations"]}
    assert sorted(scores) == [0, 2, 4] and dev["best"] == max(scores.values())
    assert scores[dev["best_step"]] == dev["best"]
    assert metrics["test"]["rows"] == 8  # the test rows are not the dev rows: 40 = 8 test + 8 dev + 24 train

    # the kept model is the best dev evaluation's: evaluating it on the dev rows gives the best dev score again
    from labkit.experiment import evaluate_model, load_experiment_data

    exp = load_experiment_data(str(labelled_csv), text_column="question", label_column="intent", dev_size=8)
    kept = labkit.load_model(str(out / "model"), device="cpu")
    assert evaluate_model(kept, exp, exp.dev)[dev["metric"]] == pytest.approx(dev["best"], abs=1e-6)


def test_group_by_length_trains_mnrl_and_is_refused_for_a_batch_loss(tmp_path, tiny_folder, labelled_csv, capsys):
    common = ["train", "--data", str(labelled_csv), "--text-column", "question", "--label-column", "intent",
              "--model", str(tiny_folder), "--steps", "2", "--group-by-length"]
    out = tmp_path / "grouped"
    assert main(common + ["--loss", "MultipleNegativesRankingLoss", "--batch", "4", "--out", str(out)]) == 0
    assert json.loads((out / "args.json").read_text())["group_by_length"] is True
    capsys.readouterr()
    assert main(common + ["--loss", "BatchHardTripletLoss", "--batch", "2x4", "--out", str(tmp_path / "hard")]) == 2
    assert "group_by_length" in capsys.readouterr().err
