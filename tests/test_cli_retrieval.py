"""The command line on retrieval data: `train`, `mine` and `evaluate` on a tiny BEIR folder and a pairs file, with a
tiny model, and the one-line errors for broken collections (each before any model is loaded)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import labkit
from labkit.cli import main
from labkit.data import load_beir
from labkit.hard_negatives import mine_hard_negatives
from labkit.retrieval import evaluate_ir
from labkit.retrieval_experiment import load_retrieval_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = ["card payment declined at the shop", "transfer money to an account abroad", "lost my phone on the train",
          "change the address on my account", "exchange rate for dollars", "cancel a standing order",
          "refund for a broken kettle", "top up the prepaid card", "pin code blocked after three tries",
          "interest on the savings account", "travel insurance for skiing", "close the joint account"]
TRAIN = {f"q{i}": [f"d{i}"] for i in range(8)}
TRAIN["q0"].append("d8")  # a query with two relevant documents
TEST = {f"q{i}": [f"d{i}"] for i in range(8, 12)}


def write_beir(folder, queries=None, train=TRAIN, test=TEST):
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i, topic in enumerate(TOPICS):
            f.write(json.dumps({"_id": f"d{i}", "title": f"Help {i}", "text": f"How to deal with {topic}."}) + "\n")
    queries = queries or {f"q{i}": f"what about {topic}?" for i, topic in enumerate(TOPICS)}
    with open(folder / "queries.jsonl", "w") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, qrels in (("train", train), ("test", test)):
        rows = "".join(f"{q}\t{d}\t1\n" for q, docs in qrels.items() for d in docs)
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


@pytest.fixture()
def beir(tmp_path):
    return write_beir(tmp_path / "beir")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return labkit.tiny_model(seed=0).save(tmp_path_factory.mktemp("models") / "tiny")


def test_train_tests_before_and_after_and_selects_on_dev_queries_of_the_train_split(tmp_path, beir, tiny_folder,
                                                                                   capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(beir), "--loss", "MultipleNegativesRankingLoss", "--model", str(tiny_folder),
                 "--steps", "2", "--batch", "4", "--dev-size", "2", "--eval-every", "1", "--lr", "1e-3",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "retrieval" and metrics["main_metric"] == "cosine_ndcg@10" and metrics["steps"] == 2
    test = metrics["test"]
    assert test["split"] == "test" and test["queries"] == 4 and test["corpus"] == 12
    for when in ("before", "after"):
        assert {"cosine_ndcg@10", "cosine_mrr@10", "cosine_recall@100"} <= set(test[when])
        assert 0 <= test[when]["cosine_ndcg@10"] <= 1
    assert '"cosine_ndcg@10"' in printed and f"written to {out}/" in printed

    dev = metrics["dev"]
    assert dev["queries"] == 2 and dev["metric"] == "cosine_ndcg@10"
    assert set(dev["query_ids"]) <= set(TRAIN) and not set(dev["query_ids"]) & set(TEST)
    scores = {row["step"]: row["cosine_ndcg@10"] for row in dev["evaluations"]}
    assert sorted(scores) == [0, 1, 2] and dev["best"] == max(scores.values()) == scores[dev["best_step"]]

    # the trained queries are the train split's minus the dev ones (the same split, rebuilt from the same seed)
    exp = load_retrieval_experiment(str(beir), dev_size=2, seed=42)
    assert list(exp.dev.queries) == dev["query_ids"]
    trained = set(exp.rows["anchor"])
    assert metrics["train"] == {"split": "train", "queries": 6, "rows": len(exp.rows)}
    assert trained == {exp.train.queries[q] for q in exp.train.queries} and len(trained) == 6
    assert not trained & {exp.dev.queries[q] for q in exp.dev.queries}
    assert not trained & {exp.test.queries[q] for q in exp.test.queries}

    # evaluate prints evaluate_ir's numbers; on the kept model they are the run's test metrics after training
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(beir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["metrics"] == pytest.approx(test["after"], abs=1e-6)


@pytest.mark.parametrize("guide", [None, "tiny"])
def test_gist_trains_with_the_starting_model_or_a_given_guide(tmp_path, beir, tiny_folder, capsys, guide):
    out = tmp_path / "run"
    extra = [] if guide is None else ["--guide", str(tiny_folder)]
    assert main(["train", "--data", str(beir), "--loss", "GISTEmbedLoss", "--model", str(tiny_folder), "--steps", "2",
                 "--batch", "4", "--lr", "1e-3", "--out", str(out), *extra]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loss"] == "GISTEmbedLoss" and metrics["steps"] == 2
    assert {"cosine_ndcg@10", "cosine_mrr@10"} <= set(metrics["test"]["after"])

    trained, start = (labkit.load_model(str(folder), device="cpu") for folder in (out / "model", tiny_folder))
    moved = [not torch.equal(a, b) for a, b in zip(trained.parameters(), start.parameters())]
    assert any(moved)  # the model trained (a guide is a frozen copy: the loss has nothing else to train)


def test_evaluate_prints_evaluate_ir_of_the_split(beir, tiny_folder, capsys):
    assert main(["evaluate", "--model", str(tiny_folder), "--data", str(beir), "--split", "train"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = evaluate_ir(labkit.load_model(str(tiny_folder)), load_beir(beir, "train"),
                           precision_recall_at_k=(1, 3, 5, 10, 100))  # ST's k lists and Recall@100
    assert printed["kind"] == "retrieval" and printed["split"] == "train" and printed["queries"] == 8
    assert printed["metrics"] == expected


def test_a_pairs_file_is_tested_on_its_held_out_queries(tmp_path, tiny_folder, capsys):
    rows = [{"question": f"what about {topic}?", "answer": f"How to deal with {topic}."} for topic in TOPICS]
    rows += [{"question": f"what about {TOPICS[0]}?", "answer": "Call the bank about the declined card."}]
    path = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--loss", "MultipleNegativesRankingLoss", "--model", str(tiny_folder),
                 "--steps", "1", "--batch", "4", "--seed", "7", "--out", str(out)]) == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    # 20% of the 12 distinct questions, ranked against every answer of the file (13 distinct)
    assert test["split"] == "heldout" and test["queries"] == 2 and test["corpus"] == 13
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(path), "--seed", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == pytest.approx(test["after"], abs=1e-6)


def test_a_pairs_file_with_other_column_names_is_read_with_query_and_passage_columns(tmp_path, tiny_folder, capsys):
    rows = [{"claim": f"what about {topic}?", "abstract": f"How to deal with {topic}.", "id": i}
            for i, topic in enumerate(TOPICS)]
    path = tmp_path / "claims.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    columns = ["--query-column", "claim", "--passage-column", "abstract"]
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--loss", "MultipleNegativesRankingLoss", "--model", str(tiny_folder),
                 "--steps", "1", "--batch", "4", "--out", str(out), *columns]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "retrieval" and metrics["test"]["queries"] == 2 and metrics["test"]["corpus"] == 12
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(path), *columns]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == pytest.approx(metrics["test"]["after"], abs=1e-6)
    mined = tmp_path / "mined.jsonl"
    assert main(["mine", "--data", str(path), "--out", str(mined), "--model", str(tiny_folder), *columns]) == 0
    first = json.loads(mined.read_text().splitlines()[0])
    assert set(first) == {"anchor", "positive", "negative"} and first["anchor"].startswith("what about")
    # without the names the file is not retrieval data: no query or passage column is found by name
    assert main(["mine", "--data", str(path), "--out", str(tmp_path / "none.jsonl"), "--model", str(tiny_folder)]) == 2
    assert "mine needs retrieval data" in capsys.readouterr().err


def _relevant_texts(folder, split="train"):
    data = load_beir(folder, split)
    return data, {data.queries[q]: {data.corpus[d] for d in docs} for q, docs in data.qrels.items()}


@pytest.mark.parametrize("strategy, output_format", [("top", "triplet"), ("random", "n-tuple")])
def test_mine_writes_negatives_that_are_never_relevant(tmp_path, beir, tiny_folder, capsys, strategy, output_format):
    out = tmp_path / "mined" / "negatives.jsonl"
    assert main(["mine", "--data", str(beir), "--out", str(out), "--model", str(tiny_folder), "--num-negatives", "2",
                 "--sampling-strategy", strategy, "--output-format", output_format]) == 0
    printed = capsys.readouterr().out
    assert "Metric" in printed and "Positive" in printed and f"written to {out}" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    data, relevant = _relevant_texts(beir)
    negatives = ["negative"] if output_format == "triplet" else ["negative_1", "negative_2"]
    assert rows and all(list(row) == ["anchor", "positive", *negatives] for row in rows)
    for row in rows:
        assert row["positive"] in relevant[row["anchor"]]
        assert all(row[n] not in relevant[row["anchor"]] and row[n] in data.corpus.values() for n in negatives)
    assert not list(out.parent.glob(".*tmp*"))  # no temporary file left behind
    if strategy == "top":
        pairs = data.pairs()
        direct = mine_hard_negatives(labkit.load_model(str(tiny_folder)), list(pairs["anchor"]),
                                     list(pairs["positive"]), corpus=list(data.corpus.values()), num_negatives=2)
        assert rows == direct.rows()


def _without(folder, name):
    (folder / name).unlink()
    return folder


# (case, how the BEIR folder is broken, the command and its arguments, fragments of stderr). Every case passes
# --model no/such-model: a check that ran after loading the model would fail with another message.
ERRORS = [
    ("qrels name missing ids", lambda f: write_beir(f, test={"q9": ["d9"], "q99": ["d1"], "q8": ["d77", "d78"]}),
     ["train"], ["qrels/test.tsv names ids its collection lacks", "1 ('q99') query id(s) not in queries.jsonl",
                 "2 ('d77', 'd78') doc id(s) not in corpus.jsonl"]),
    ("empty query text", lambda f: write_beir(f, queries={**{f"q{i}": f"query {i}" for i in range(12)}, "q9": " "}),
     ["evaluate"], ["queries.jsonl", "1 ('q9') quer(ies) of the 'test' split have an empty text"]),
    ("chunk over the memory bound", write_beir, ["evaluate", "--max-chunk-bytes", "17000"],
     ["the evaluation collection ('test' split)", "more than --max-chunk-bytes=17,000",
      "Lower --corpus-chunk-size to 6 or less"]),
    ("chunk over the memory bound in train", write_beir, ["train", "--max-chunk-bytes", "17000"],
     ["the test collection ('test' split)", "Lower --corpus-chunk-size to 6 or less"]),
    ("missing queries file", lambda f: _without(write_beir(f), "queries.jsonl"), ["mine"],
     ["is not a BEIR folder for split 'train': missing", "queries.jsonl"]),
    ("missing train qrels", lambda f: _without(write_beir(f), "qrels/train.tsv"), ["train"],
     ["missing", "qrels/train.tsv", "its qrels splits are: test"]),
    ("unknown data", None, ["evaluate"], ["--data 'no-such-data' is neither a dataset name", "scifact"]),
    ("unknown data for mine", None, ["mine"], ["--data 'no-such-data' is neither a dataset name"]),
    ("mine settings", write_beir, ["mine", "--range-min", "5", "--range-max", "3"],
     ["--range-min must be smaller than --range-max"]),
    ("not a pair loss", write_beir, ["train", "--loss", "BatchHardTripletLoss"],
     ["BatchHardTripletLoss does not train on retrieval data", "MultipleNegativesRankingLoss",
      "CachedMultipleNegativesRankingLoss"]),
    ("a guide for a loss without one", write_beir, ["train", "--guide", "no/such-guide"],
     ["--guide is for a loss that filters negatives with a guide model", "MultipleNegativesRankingLoss takes none"]),
    ("pair columns for a BEIR folder", write_beir, ["evaluate", "--query-column", "claim"],
     ["--query-column / --passage-column name the columns of a pairs file", "is not a file"]),
    ("P×K batch", write_beir, ["train", "--batch", "2x2"], ["not P×K: pass --batch 4"]),
    ("batch larger than the pairs", write_beir, ["train", "--batch", "64"], ["9 (query, passage) rows, fewer than "
                                                                             "--batch 64"]),
]


@pytest.mark.parametrize("case, build, command, fragments", ERRORS, ids=[e[0] for e in ERRORS])
def test_a_broken_collection_gets_one_clear_line(tmp_path, capsys, case, build, command, fragments):
    folder = tmp_path / "beir"
    data = str(build(folder)) if build else "no-such-data"
    name, *extra = command
    argv = [name, "--data", data, "--model", "no/such-model", *extra]
    if name == "train":
        argv += ["--out", str(tmp_path / "run"), "--steps", "1"]
        argv += [] if "--loss" in extra else ["--loss", "MultipleNegativesRankingLoss"]
        argv += [] if "--batch" in extra else ["--batch", "4"]
    if name == "mine":
        argv += ["--out", str(tmp_path / "mined.jsonl")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1
    for fragment in fragments:
        assert fragment in err, f"{case}: {fragment!r} not in {err!r}"
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "mined.jsonl").exists()


def test_retrieval_options_are_refused_for_labelled_data(tmp_path, capsys):
    path = tmp_path / "intents.csv"
    path.write_text("text,label\n" + "".join(f"text {i},c{i % 2}\n" for i in range(10)))
    assert main(["evaluate", "--model", "no/such-model", "--data", str(path), "--label-column", "label",
                 "--split", "test"]) == 2
    assert "--split only applies to retrieval data" in capsys.readouterr().err
