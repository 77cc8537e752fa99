"""benchmarks/ir_evaluation.py runs end to end on a small problem, and its labkit / ST numbers agree.

Not a timing test: no assertion depends on how fast anything is.
"""
from __future__ import annotations

import pytest
import torch

from benchmark_script import load_benchmark
from labkit.validation import as_embeddings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_small_run_reports_every_setting_in_agreement_with_sentence_transformers(data_dir, capsys):
    bench = load_benchmark("ir_evaluation")
    code = bench.main(["--data-dir", str(data_dir), "--queries", "12", "--rounds", "1", "--max-length", "16",
                       "--synthetic", "300", "--small-chunk", "50"])
    report = capsys.readouterr().out
    assert code == 0, report
    rows = [line for line in report.splitlines() if line.startswith("| ") and "setting" not in line]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == list(bench.SETTINGS)
    for row in rows:
        difference = float(row.split(" | ")[2])
        assert difference <= 1e-6
    assert "12 queries against" in report and "(300 of them synthetic)" in report


def test_the_finiteness_check_refuses_nan_and_inf_but_not_large_finite_rows():
    huge = torch.full((2, 4), 3e38)  # finite values whose row sum overflows to inf
    assert torch.equal(as_embeddings(huge), huge)
    for bad in (float("nan"), float("inf")):
        rows = torch.ones(3, 4)
        rows[1, 2] = bad
        with pytest.raises(ValueError, match="in 1 row"):
            as_embeddings(rows)
