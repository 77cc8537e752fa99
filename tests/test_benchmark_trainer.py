"""benchmarks/trainer.py: labkit's fit() and sentence-transformers' trainer really get the same run, and both train.

Smallest configuration: the tiny random BERT, 48 short texts, 2–3 optimizer steps. Nothing here depends on speed.
The expected batches and learning rates are computed in the tests from the sampler and from the two schedules'
published formulas, not taken from the script.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("datasets", reason="the sentence-transformers trainer needs `datasets` (sentence-transformers[train])")
pytest.importorskip("accelerate", reason="the sentence-transformers trainer needs `accelerate` (sentence-transformers[train])")

from benchmark_script import load_benchmark

STEPS = 3
MAX_LEN = 16


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("trainer")


@pytest.fixture(scope="module")
def texts() -> pd.DataFrame:
    topics = ["card", "transfer", "refund", "account", "atm", "exchange"]
    rows = [(f"question {i} about my {topic} number {i * 7 + j}", j) for j, topic in enumerate(topics) for i in range(8)]
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(scope="module")
def start_folder(bench, tmp_path_factory):
    return bench.save_start_model(bench.build_start_model("tiny", MAX_LEN), tmp_path_factory.mktemp("start") / "model")


@pytest.fixture(scope="module")
def settings(bench):
    return bench.Settings(steps=STEPS, p=3, k=2, batch_size=4, max_seq_length=MAX_LEN, seed=0, device="cpu")


@pytest.fixture(scope="module")
def both_runs(bench, start_folder, texts, settings):
    return {name: train(start_folder, texts, settings) for name, train in bench.TRAINERS.items()}


def expected_token_ids(tokenizer, texts: list[str], batches) -> list[torch.Tensor]:
    return [tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=MAX_LEN,
                      return_tensors="pt")["input_ids"] for batch in batches]


def test_both_frameworks_are_fed_the_samplers_batches_in_order(bench, both_runs, texts, settings, start_folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(start_folder)
    sampler = bench.make_sampler(texts, settings)
    batches = [b for epoch in range(3) for b in sampler.batches_for_epoch(epoch)][:STEPS]
    expected = expected_token_ids(tokenizer, texts["text"].tolist(), batches)
    for framework, (_, record) in both_runs.items():
        assert len(record.batches) == STEPS, framework
        for seen, wanted in zip(record.batches, expected):
            assert torch.equal(seen, wanted), framework
    assert bench.same_batches(both_runs[bench.LABKIT][1], both_runs[bench.ST][1])


def test_same_number_of_optimizer_steps_and_both_models_changed(bench, both_runs, start_folder, settings):
    start = bench.load_labkit(start_folder, settings).transformer.state_dict()
    start = {k: v for k, v in start.items() if not k.startswith("pooler.")}  # unused by mean pooling; random at load
    for framework, (model, record) in both_runs.items():
        assert record.optimizer_steps == record.reported_steps == STEPS, framework
        trained = (model.transformer if framework == bench.LABKIT else bench.st_transformer(model)).state_dict()
        change = max(float((trained[k].cpu() - v).abs().max()) for k, v in start.items())
        assert change > 0, f"{framework} did not change the weights"
        assert change == pytest.approx(record.weight_change)


def test_learning_rates_follow_each_frameworks_schedule(bench, both_runs, settings):
    """labkit: (s+1)/W during warm-up, HF: s/W (first step at lr 0); both then (N-s)/(N-W). W: floor vs ceil."""
    n, lr = settings.steps, settings.lr
    labkit_w, hf_w = int(settings.warmup_ratio * n), math.ceil(settings.warmup_ratio * n)
    labkit_expected = [lr * ((s + 1) / labkit_w if s < labkit_w else (n - s) / max(1, n - labkit_w)) for s in range(n)]
    hf_expected = [lr * (s / max(1, hf_w) if s < hf_w else (n - s) / max(1, n - hf_w)) for s in range(n)]
    assert both_runs[bench.LABKIT][1].learning_rates == pytest.approx(labkit_expected)
    assert both_runs[bench.ST][1].learning_rates == pytest.approx(hf_expected)


def test_optimizers_match_except_for_the_no_decay_group(bench, both_runs, start_folder, settings):
    """Same AdamW betas/eps; labkit decays every weight, HF exempts biases and LayerNorm weights (it says so)."""
    labkit_opt, st_opt = (both_runs[f][1].optimizer for f in bench.FRAMEWORKS)
    assert labkit_opt["class"] == st_opt["class"] == "AdamW"
    assert labkit_opt["betas"] == st_opt["betas"] and labkit_opt["eps"] == st_opt["eps"]
    transformer = bench.load_labkit(start_folder, settings).transformer
    names = [n for n, p in transformer.named_parameters() if p.requires_grad]
    no_decay = [n for n in names if "bias" in n or "LayerNorm" in n]
    assert labkit_opt["weight_decay_by_group"] == [
        {"weight_decay": settings.weight_decay, "tensors": len(names),
         "values": sum(p.numel() for p in transformer.parameters() if p.requires_grad)}]
    st_groups = {g["weight_decay"]: g["tensors"] for g in st_opt["weight_decay_by_group"]}
    assert st_groups == {settings.weight_decay: len(names) - len(no_decay), 0.0: len(no_decay)}


def test_evaluation_is_the_same_code_for_both(bench, both_runs, texts, settings, start_folder):
    """The ST-trained transformer evaluated through labkit gives what ST's own encode gives."""
    from labkit.evaluate import retrieval_metrics

    st_model = both_runs[bench.ST][0]
    via_labkit = bench.evaluate_as_labkit(st_model, bench.ST, start_folder, settings, texts)
    st_model.eval()
    embeddings = st_model.encode(texts["text"].tolist(), normalize_embeddings=True, convert_to_numpy=True)
    direct = retrieval_metrics(embeddings, texts["label"].to_numpy(), ks=(1,))
    assert via_labkit["map_at_r"] == pytest.approx(direct["mean_average_precision_at_r"], abs=1e-5)
    assert via_labkit["p_at_1"] == pytest.approx(direct["precision_at_1"], abs=1e-5)


def test_quality_report(bench, start_folder, texts, settings):
    report = bench.run_quality(start_folder, texts, texts, settings, seeds=[0, 1], progress=lambda _: None)
    assert [(r["framework"], r["seed"]) for r in report["runs"]] == [
        (f, s) for s in (0, 1) for f in (bench.LABKIT, bench.ST)
    ]
    for run in report["runs"]:
        assert run["optimizer_steps"] == run["reported_steps"] == STEPS
        assert run["weight_change"] > 0
        assert 0 <= run["map_at_r"] <= 1 and 0 <= run["p_at_1"] <= 1
    assert all(c["same_batches"] and c["both_trained"] for c in report["checks"])
    for metric in ("map_at_r", "p_at_1"):
        summary = report["summary"][metric]
        values = {f: [r[metric] for r in report["runs"] if r["framework"] == f] for f in bench.FRAMEWORKS}
        assert summary[bench.LABKIT]["mean"] == pytest.approx(np.mean(values[bench.LABKIT]))
        assert summary[bench.ST]["std"] == pytest.approx(np.std(values[bench.ST], ddof=1))
        assert summary["difference"] == pytest.approx(np.mean(values[bench.LABKIT]) - np.mean(values[bench.ST]))
        assert summary["paired_differences"] == pytest.approx(np.subtract(values[bench.LABKIT], values[bench.ST]))
    text = bench.format_quality(report)
    assert "| labkit | 2 |" in text and "| sentence-transformers | 2 |" in text and "lr labkit" in text
    json.dumps(report)  # the --json output must serialise


def test_throughput_report(bench, start_folder, texts, settings):
    data = {bench.BATCH_HARD: texts, bench.MNRL: bench.pairs_from_classes(texts)}
    report = bench.run_throughput(start_folder, data, bench.Settings(**{**settings.__dict__, "steps": 2, "clock": "thread"}),
                                  warmup_steps=1, peak_flops=1e12, progress=lambda _: None)
    rows = {(r["loss"], r["framework"]): r for r in report["rows"]}
    assert set(rows) == {(loss, f) for loss in (bench.BATCH_HARD, bench.MNRL) for f in bench.FRAMEWORKS}
    transformer = bench.load_labkit(start_folder, settings).transformer
    tables = {id(p) for m in transformer.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    matmul_parameters = sum(p.numel() for p in transformer.parameters() if id(p) not in tables)
    assert report["non_embedding_parameters"] == matmul_parameters
    for (loss, framework), row in rows.items():
        assert row["optimizer_steps"] == 3 and row["steps_timed"] == 2
        per_step = 3 * 2 if loss == bench.BATCH_HARD else 2 * 4
        assert row["samples_per_s"] == pytest.approx(2 * per_step / row["seconds"])
        assert row["mfu_estimate"] == pytest.approx(6 * matmul_parameters * row["tokens_per_s"] / 1e12)
        assert row["peak_memory_mib"] > 0
    assert all(c["same_batches"] and c["both_trained"] and c["optimizer_steps"] == [3, 3] for c in report["checks"])
    text = bench.format_throughput(report)
    assert "samples/s labkit / ST" in text and bench.MNRL in text


def test_pairs_come_from_one_class_and_never_repeat_a_text(bench, texts):
    pairs = bench.pairs_from_classes(texts, seed=3)
    label_of = dict(zip(texts["text"], texts["label"]))
    assert len(pairs) == len(texts) // 2
    for anchor, positive in zip(pairs["anchor"], pairs["positive"]):
        assert anchor != positive and label_of[anchor] == label_of[positive]
    assert len(set(pairs["anchor"]) | set(pairs["positive"])) == 2 * len(pairs)


def test_command_line_writes_json(bench, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    output = tmp_path / "report.json"
    bench.main(["--mode", "throughput", "--model", "tiny", "--steps", "1", "--warmup-steps", "1", "--train-size", "300",
                "--max-seq-length", "16", "--losses", "BatchHardTripletLoss", "--no-memory", "--device", "cpu",
                "--json", str(output)])
    report = json.loads(output.read_text())
    assert report["mode"] == "throughput" and report["machine"]["torch"] == torch.__version__
    assert [r["framework"] for r in report["rows"]] == [bench.LABKIT, bench.ST]
    assert report["checks"][0]["same_batches"]


def test_peak_flops_table_and_override(bench):
    assert bench.device_peak_flops(torch.device("cpu"), None) is None
    assert bench.device_peak_flops(torch.device("cpu"), 2.5) == 2.5e12


def test_several_precisions_make_one_report_with_same_precision_and_default_ratios(bench):
    def run(precision, labkit_speed, st_speed):
        rows = [{"loss": bench.MNRL, "framework": framework, "precision": precision, "samples_per_s": speed,
                 "tokens_per_s": 10 * speed, "model_flops_per_s": 1e9, "peak_memory_mib": memory}
                for framework, speed, memory in ((bench.LABKIT, labkit_speed, 300.0), (bench.ST, st_speed, 400.0))]
        check = {"loss": bench.MNRL, "precision": precision, "same_batches": True, "optimizer_steps": [3, 3],
                 "both_trained": True}
        return {"mode": "throughput", "precision": precision, "auto_precision": "bf16", "rows": rows, "checks": [check]}

    report = bench.merge_throughput([run("fp32", 20.0, 25.0), run("bf16", 45.0, 30.0)])
    assert report["precision"] == ["fp32", "bf16"] and len(report["rows"]) == 4 and len(report["checks"]) == 2
    text = bench.format_throughput(report)
    assert f"| {bench.MNRL} | fp32 | {20 / 25:.2f} | {300 / 400:.2f} |" in text
    assert f"| {bench.MNRL} | bf16 | {45 / 30:.2f} | {300 / 400:.2f} |" in text
    assert f"| {bench.MNRL} | {45 / 25:.2f} | {300 / 400:.2f} |" in text  # labkit auto (bf16) / ST default (fp32)
    assert bench.merge_throughput([run("fp32", 1.0, 1.0)]) == run("fp32", 1.0, 1.0)
