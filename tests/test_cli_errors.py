"""Mistakes on the command line: one table of bad inputs, each with the message that names the fix.

Every case runs `labkit.cli.main([...])` in this process and checks the exit code and the ``error: ...`` line on
stderr (no traceback). Most cases fail before a model is loaded, so the table runs in seconds; the cases that
must train (a fix applied) use a tiny model and one step.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

import pandas as pd
import pytest

import labkit
from labkit.cli import main

WORDS = {0: "card payment declined", 1: "transfer money abroad", 2: "lost my phone", 3: "change my address"}
LABELLED = "question,intent\n" + "".join(f"{WORDS[c]} please help {i},intent_{c}\n" for c in WORDS for i in range(10))
SCORED_0_TO_5 = "a,b,sim\n" + "".join(f"{WORDS[i % 4]} {i},{WORDS[(i + 1) % 4]} {i},{i % 6}\n" for i in range(40))
ON_LINUX = sys.platform.startswith("linux") and os.path.isdir("/sys/kernel")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

LABELLED_ARGS = ["--text-column", "question", "--label-column", "intent", "--loss", "BatchHardTripletLoss",
                 "--batch", "2x4", "--steps", "1"]
PAIR_ARGS = ["--text-column", "a", "--text-pair-column", "b", "--score-column", "sim", "--batch", "8", "--steps", "1"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return labkit.tiny_model(seed=0).save(tmp_path_factory.mktemp("models") / "tiny")


def _read_only_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    return str(folder / "run")


# (case, the data file's bytes, arguments ({data}, {out}, {tmp} are filled in), fragments of stderr, exit code).
# A case whose --out is "OUT_..." gets a special folder; "--model no/such-model" proves a check runs before the
# model is loaded (that model would fail with another message).
CASES = [
    ("header but no rows", b"question,intent\n", LABELLED_ARGS, ["intents.csv has a header but no rows"], 2),
    ("latin-1 file", LABELLED.replace("card", "caf\xe9").encode("latin-1"), LABELLED_ARGS,
     ["is not utf-8 text", "byte 0xe9 at offset", "(line 2)", "--encoding latin-1"], 2),
    ("class of one named by its label", (LABELLED + "where is my refund,refund_status\n").encode(), LABELLED_ARGS,
     ["1 class(es) of the training data have fewer than K=4", "'refund_status' (1)", "--batch 2x2"], 2),
    ("scores 0..5 for CosineSimilarityLoss", SCORED_0_TO_5.encode(), PAIR_ARGS + ["--loss", "CosineSimilarityLoss"],
     ["scores must lie in 0..1", "range from 0 to 5", "--rescale-scores 5", "--rescale-scores minmax"], 2),
    ("out under a file", LABELLED.encode(), LABELLED_ARGS + ["--out", "{tmp}/a_file/run", "--model", "no/such-model"],
     ["--out", "a_file is a file, not a folder", "choose another --out"], 2),
    pytest.param("out in a read-only folder", LABELLED.encode(),
                 LABELLED_ARGS + ["--out", "OUT_READ_ONLY", "--model", "no/such-model"],
                 ["cannot be written", "Permission denied"], 2,
                 marks=pytest.mark.skipif(AS_ROOT, reason="root writes into read-only folders")),
    pytest.param("out where nobody may write", LABELLED.encode(),
                 LABELLED_ARGS + ["--out", "/sys/labkit-run", "--model", "no/such-model"],
                 ["--out /sys/labkit-run cannot be written", "Operation not permitted"], 2,
                 marks=pytest.mark.skipif(not ON_LINUX, reason="needs Linux's /sys")),
    ("resume without a run", LABELLED.encode(), ["--resume", "{tmp}"], ["no run to go on with", "--out"], 2),
    ("no loss, no length", LABELLED.encode(), ["--text-column", "question", "--label-column", "intent"],
     ["train needs --loss, --out, --steps or --epochs", "--resume OUT"], 2),
    ("dev split too small to retrieve in", LABELLED.encode(), LABELLED_ARGS + ["--dev-size", "4", "--eval-every", "1"],
     ["the dev data (4 rows) has no class with two examples", "a larger --dev-size"], 2),
    ("rescale labelled data", LABELLED.encode(), LABELLED_ARGS + ["--rescale-scores", "5"],
     ["--rescale-scores only applies to pairs with scores"], 2),
    # already good before: they must stay good
    ("wrong column", LABELLED.encode(), LABELLED_ARGS + ["--label-column", "nope"],
     ["has no column 'nope'", "its columns are: question, intent"], 2),
    ("one class", "question,intent\n".encode() + b"".join(f"text {i},same\n".encode() for i in range(20)),
     LABELLED_ARGS, ["Only 1 class(es) in the labels", "p=2"], 2),
    ("empty text", (LABELLED + " ,intent_0\n").encode(), LABELLED_ARGS,
     ["column 'question' has empty or non-text values", "data rows 40", "drop or fix those rows"], 2),
    ("missing label", (LABELLED + "some question,\n").encode(), LABELLED_ARGS,
     ["column 'intent' has missing labels", "data rows 40", "drop or fill those rows"], 2),
    ("empty file", b"", LABELLED_ARGS, ["intents.csv is empty"], 2),
    ("binary file", b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)), LABELLED_ARGS,
     ["looks like a binary file", "export the data as CSV"], 2),
    ("unknown model offline", LABELLED.encode(), LABELLED_ARGS + ["--model", "no/such-model"],
     ["'no/such-model' is not in the local Hugging Face cache", "python -m labkit download --model no/such-model"], 2),
]


@pytest.mark.parametrize("case, content, arguments, fragments, code", CASES, ids=[
    c.values[0] if hasattr(c, "values") else c[0] for c in CASES])
def test_a_mistake_gets_one_clear_line(tmp_path, tiny_folder, capsys, monkeypatch, case, content, arguments,
                                       fragments, code):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "intents.csv"
    data.write_bytes(content)
    (tmp_path / "a_file").write_text("in the way")
    filled = [a.format(tmp=tmp_path) for a in arguments]
    filled = [_read_only_folder(tmp_path) if a == "OUT_READ_ONLY" else a for a in filled]
    argv = ["train", "--data", str(data), "--model", str(tiny_folder), "--out", str(tmp_path / "run"), *filled]
    if case == "no loss, no length":
        argv = ["train", "--data", str(data), *filled]
    if case == "resume without a run":
        argv = ["train", *filled]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{case}: {fragment!r} not in {err!r}"
    assert not (tmp_path / "run" / "model").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("data, arguments", [
    ("latin-1", LABELLED_ARGS + ["--encoding", "latin-1"]),
    ("scores 0..5", PAIR_ARGS + ["--loss", "CosineSimilarityLoss", "--rescale-scores", "5"]),
    ("scores 0..5", PAIR_ARGS + ["--loss", "CosineSimilarityLoss", "--rescale-scores", "minmax"]),
    ("scores 0..5", PAIR_ARGS + ["--loss", "CoSENTLoss"]),  # CoSENT only uses the scores' order: no rescaling needed
])
def test_with_the_fix_it_trains(tmp_path, tiny_folder, data, arguments):
    path = tmp_path / "data.csv"
    path.write_bytes(LABELLED.replace("card", "caf\xe9").encode("latin-1") if data == "latin-1"
                     else SCORED_0_TO_5.encode())
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--model", str(tiny_folder), "--out", str(out), *arguments]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 1 and metrics["test"]["after"]


def test_rescaled_scores_lie_in_0_1():
    from labkit.experiment import ExperimentData, rescale

    frame = pd.DataFrame({"text": ["a", "b", "c"], "text_pair": ["d", "e", "f"], "score": [1.0, 3.0, 5.0]})
    exp = ExperimentData("scored_pairs", frame, frame.assign(score=[0.0, 5.0, 6.0]))
    assert rescale(exp, 5.0).train["score"].tolist() == [0.2, 0.6, 1.0]
    minmax = rescale(exp, "minmax")  # fitted on the training scores 1..5, applied to the held-out ones, clipped
    assert minmax.train["score"].tolist() == [0.0, 0.5, 1.0] and minmax.heldout["score"].tolist() == [0.0, 1.0, 1.0]


def test_a_batch_of_one_class_warns_once_and_names_the_sampler():
    from labkit.collate import TextDataset
    from labkit.losses import BatchHardTripletLoss
    from labkit.sampling import PKBatchSampler
    from labkit.train import fit

    texts = [f"sentence {i} about {WORDS[i % 4]}" for i in range(16)]
    two_classes = TextDataset(texts, [0] * 8 + [1] * 8)
    with pytest.warns(UserWarning, match="PKBatchSampler") as caught:
        fit(labkit.tiny_model(seed=0), BatchHardTripletLoss(), TextDataset(texts, [3] * 16), batch_size=8, steps=3,
            show_progress=False, device="cpu")
    assert sum("single class" in str(w.message) for w in caught) == 1 and "--batch PxK" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # P×K batches always mix classes: no warning
        fit(labkit.tiny_model(seed=0), BatchHardTripletLoss(), two_classes, batch_sampler=PKBatchSampler(
            [0] * 8 + [1] * 8, p=2, k=4, seed=0), steps=2, show_progress=False, device="cpu")


@pytest.mark.parametrize("name, write", [
    ("data.tsv", lambda rows: "text\tlabel\n" + "".join(f"{t}\t{c}\n" for t, c in rows)),
    ("data.jsonl", lambda rows: "".join(json.dumps({"text": t, "label": c}, ensure_ascii=False) + "\n"
                                        for t, c in rows)),
])
def test_encoding_reads_tsv_and_jsonl_too(tmp_path, name, write):
    from labkit.data import from_file

    path = tmp_path / name
    path.write_bytes(write([("caf\xe9 au lait", "drinks"), ("cr\xe8me br\xfbl\xe9e", "desserts")]).encode("latin-1"))
    with pytest.raises(ValueError, match="is not utf-8 text: byte 0xe9 at offset .*--encoding latin-1"):
        from_file(path, label_column="label")
    frame = from_file(path, label_column="label", encoding="latin-1")
    assert frame["text"].tolist() == ["caf\xe9 au lait", "cr\xe8me br\xfbl\xe9e"]


def test_retrieval_data_takes_pair_losses_only(capsys, data_dir):
    from labkit import cli

    code = cli.main(["train", "--data", "scifact", "--loss", "BatchHardTripletLoss", "--steps", "1",
                     "--batch", "4", "--out", "/tmp/labkit-scifact-refused"])
    assert code == 2
    assert "does not train on retrieval data" in capsys.readouterr().err  # and names the losses that do
