"""benchmarks/gradcache.py: its pieces run on a tiny model, measure what they claim, and report honestly.

Not a timing test: no assertion depends on how fast anything is. Memory assertions are about shape
(plain MNRL grows with the batch, the cached loss does not), never about numbers copied from a run.
"""
from __future__ import annotations


import pandas as pd
import pytest
import torch

import labkit

from benchmark_script import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("gradcache")


def synthetic_pairs(count: int) -> pd.DataFrame:
    """Distinct (anchor, positive) texts of ~20 tokens, so activations, not weights, dominate the memory."""
    words = "red blue green small large old new fast slow warm cold".split()
    anchors = [" ".join(words[(i + k) % len(words)] for k in range(12)) + f" item {i}" for i in range(count)]
    positives = [f"the {i} " + " ".join(words[(3 * i + k) % len(words)] for k in range(10)) for i in range(count)]
    return pd.DataFrame({"anchor": anchors, "positive": positives})


def test_plain_memory_grows_with_the_batch_and_cached_memory_does_not(bench):
    model = labkit.tiny_model(seed=0)
    # Frozen word table: its 30,522-row gradient (4 MiB) would otherwise hide the tiny model's activations.
    model.transformer.embeddings.word_embeddings.weight.requires_grad_(False)
    results = bench.run(model, synthetic_pairs(32), plain_sizes=[8, 16], cached_sizes=[8, 32],
                        mini_batch_sizes=[4], max_length=32, device="cpu")
    assert [(r.loss, r.batch_size, r.mini_batch_size) for r in results] == [
        ("MNRL", 8, None), ("MNRL", 16, None), ("cached", 8, 4), ("cached", 32, 4)]
    plain_8, plain_16, cached_8, cached_32 = results
    assert all(r.peak_bytes > 0 and r.wall_s > 0 and torch.isfinite(torch.tensor(r.loss_value)) for r in results)
    assert plain_16.peak_bytes > 1.5 * plain_8.peak_bytes  # activations of every text are kept for backward
    assert cached_32.peak_bytes < 1.5 * cached_8.peak_bytes  # one mini-batch of activations at a time
    assert cached_32.peak_bytes < plain_16.peak_bytes  # twice the batch in less memory: the point of GradCache
    assert "holds" in bench.target_check(results) and "NOT" not in bench.target_check(results)


def test_cached_and_plain_steps_make_the_same_update(bench):
    """GradCache gives MNRL's loss and gradients, so one AdamW step must move the weights identically."""
    pairs = synthetic_pairs(8)
    updated = []
    for mini_batch_size in (None, 2):
        model = labkit.tiny_model(seed=0).double().eval()  # eval: no dropout, so both see the same function
        optimizer = bench.make_optimizer(model, torch.device("cpu"))
        features = bench.tokenize_pairs(model, pairs, max_length=24)
        value = bench.training_step(model, bench.make_loss(model, mini_batch_size), optimizer, features)
        assert all(p.grad is None for p in model.parameters())  # freed after the step, as fit() does
        updated.append((value, [p.detach().clone() for p in model.parameters()]))
    (plain_value, plain_weights), (cached_value, cached_weights) = updated
    assert plain_value == pytest.approx(cached_value, rel=1e-12)
    for plain, cached in zip(plain_weights, cached_weights):
        torch.testing.assert_close(cached, plain, rtol=1e-9, atol=1e-12)


def test_tokenize_pairs_pads_every_text_to_max_length(bench):
    model = labkit.tiny_model(seed=0)
    anchors, positives = bench.tokenize_pairs(model, synthetic_pairs(3), max_length=40)
    assert anchors["input_ids"].shape == positives["input_ids"].shape == (3, 40)


def test_target_check_compares_the_largest_cached_batch_with_plain_mnrl(bench):
    def measured(loss, batch, mini, mib):
        return bench.StepMeasurement(loss, batch, mini, int(mib * 2**20), 1.0, 1.0, 0.5)

    plain = [measured("MNRL", 128, None, 1500), measured("MNRL", 256, None, 3000)]
    fits = bench.target_check(plain + [measured("cached", 4096, 32, 600), measured("cached", 4096, 64, 900)])
    assert "batch 4,096" in fits and ": holds (600 MiB vs 3,000 MiB, 0.20×)" in fits and "mini-batch 32" in fits
    too_big = bench.target_check(plain + [measured("cached", 4096, 32, 3100)])
    assert "does NOT hold" in too_big
    assert "not checked" in bench.target_check(plain)
    assert "not checked" in bench.target_check(plain + [measured("cached", 512, 32, 10)], budget_batch=64)


def test_results_table_has_one_row_per_measurement(bench):
    rows = [bench.StepMeasurement("MNRL", 32, None, 2**30, 2.5, 2.0, 0.4),
            bench.StepMeasurement("cached", 4096, 32, 2**29, 300.0, 250.0, 1.2)]
    table = bench.results_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[2].startswith("| MNRL | 32 | 64 | 1,024 | 32.00 |")
    assert table[3].startswith("| cached (mini-batch 32) | 4,096 | 8,192 | 512 | 0.12 |")


def test_bad_sizes_are_refused_clearly(bench):
    model = labkit.tiny_model(seed=0)
    pairs = synthetic_pairs(8)
    with pytest.raises(ValueError, match="more pairs"):
        bench.run(model, pairs, plain_sizes=[16], cached_sizes=[])
    with pytest.raises(ValueError, match="at least 2"):
        bench.run(model, pairs, plain_sizes=[1], cached_sizes=[])
    with pytest.raises(ValueError, match="mini_batch_sizes"):
        bench.run(model, pairs, plain_sizes=[], cached_sizes=[4], mini_batch_sizes=[0])


def test_unique_pairs_never_repeat_a_text(bench, data_dir):
    pairs = bench.unique_pairs(500, seed=1, data_dir=data_dir)
    assert len(pairs) == 500
    assert pairs["anchor"].is_unique and pairs["positive"].is_unique
    assert not set(pairs["anchor"]) & set(pairs["positive"])
    with pytest.raises(ValueError, match="distinct"):
        bench.unique_pairs(10**6, data_dir=data_dir)


def test_quick_run_writes_a_report(bench, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    output = tmp_path / "report.md"
    assert bench.main(["--quick", "--device", "cpu", "--output", str(output)]) == 0
    report = output.read_text(encoding="utf-8")
    assert "Machine: CPU:" in report and f"torch {torch.__version__}" in report
    assert "Command: `python benchmarks/gradcache.py --quick" in report
    assert report.count("| MNRL |") == len(bench.QUICK_PLAIN_SIZES)
    assert report.count("| cached (mini-batch 4) |") == len(bench.QUICK_CACHED_SIZES)
    assert "within the memory of plain MNRL" in report
    assert report.strip() in capsys.readouterr().out
