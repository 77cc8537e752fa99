"""benchmarks/losses.py runs end to end (--quick), its implementations agree, and its measurements are sound.

This is not a timing test: no assertion depends on how fast anything is.
"""
from __future__ import annotations

import gc
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark_script import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "losses.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("losses")


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "report.md"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout, output.read_text(encoding="utf-8")


def test_quick_run_reports_every_loss_with_machine_and_command(quick_report, bench):
    stdout, report = quick_report
    assert "Machine: CPU:" in report and f"torch {torch.__version__}" in report
    assert "Command: `python benchmarks/losses.py --quick" in report
    ratio_section = report.split("## Time ratio")[1].split("## Targets")[0]
    for loss in bench.LOSSES:
        assert f"| {loss} | sentence-transformers |" in ratio_section
    assert "| BatchHardTripletLoss | article loop |" in ratio_section
    assert "| BatchHardTripletLoss | pytorch-metric-learning |" in ratio_section
    assert report.strip() in stdout or report.split("## Targets")[1] in stdout


def test_quick_run_finds_all_implementations_in_agreement(quick_report):
    _, report = quick_report
    assert "every implementation agrees with labkit (value and gradients): yes" in report
    details = report.split("## Details")[1]
    assert "✗" not in details and details.count("✓") > 12


def test_every_target_gets_a_verdict(quick_report):
    _, report = quick_report
    targets = report.split("## Targets")[1].split("## Details")[0]
    for target in ("≤ 1.0×", "peak memory", "≥ 512", "B=128", "B=2048"):
        line = next(line for line in targets.splitlines() if target in line)
        assert any(verdict in line for verdict in ("holds", "does NOT hold", "not measured"))


def test_a_case_predicted_to_exhaust_memory_is_skipped_not_run(bench):
    settings = bench.parse_args(["--quick"])
    gc.freeze()  # as the script does: collections then skip the libraries' many objects
    try:
        results = run_after_a_huge_measurement(bench, settings)
    finally:
        gc.unfreeze()
    by_impl = {r.implementation: r for r in results}
    assert by_impl["sentence-transformers"].skipped.startswith("skipped")
    assert by_impl["sentence-transformers"].time_s is None
    assert by_impl["labkit"].time_s is not None and not by_impl["labkit"].skipped


def run_after_a_huge_measurement(bench, settings):
    history = bench.History()
    # Pretend sentence-transformers needed 1 TiB at B=4: the cubic prediction for B=8 is far beyond this machine.
    history.add(("sentence-transformers", "BatchAllTripletLoss", 16), 4, 2**40, 0.001)
    return bench.measure_case("BatchAllTripletLoss", 8, 16, torch.device("cpu"), settings, history)


def test_prediction_follows_the_measured_growth(bench):
    history = bench.History()
    mib = 2**20
    history.add("quadratic", 100, 4 * mib, 0.01)
    history.add("quadratic", 200, 16 * mib, 0.04)
    predicted_bytes, _ = history.predict("quadratic", 400)
    assert predicted_bytes == pytest.approx(64 * mib, rel=1e-6)
    history.add("single", 100, 8 * mib, 0.01)
    predicted_bytes, _ = history.predict("single", 200)
    assert predicted_bytes == pytest.approx(8 * mib * 2**3, rel=1e-6)  # one point: assume B^3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU peak memory is read from /proc")
def test_cpu_peak_memory_sees_a_known_allocation(bench):
    if not bench.cpu_memory_supported():
        pytest.skip("/proc/self/clear_refs is not writable here")
    size = 64 * 2**20
    x = torch.randn(16, requires_grad=True)

    def allocate_and_use(inputs):
        big = torch.ones(size // 4)  # 64 MiB of float32, written so its pages are really used
        return (inputs.tensors[0].sum() * big[0]) + big.sum() * 0

    inputs = bench.Inputs([x], None)
    measured = bench.peak_memory_bytes(allocate_and_use, inputs, torch.device("cpu"))
    assert size * 0.9 <= measured <= size * 3
    nothing = bench.peak_memory_bytes(lambda inputs: inputs.tensors[0].sum(), inputs, torch.device("cpu"))
    assert nothing < size / 8


@pytest.mark.parametrize(
    "argv, words",
    [(["--batch-sizes", "7"], "even"), (["--threads", "0"], "threads"), (["--clock", "thread", "--threads", "2"], "--threads 1")],
)
def test_bad_arguments_are_explained(bench, argv, words, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert words in capsys.readouterr().err


def test_quick_run_times_labkit_against_itself_for_the_noise_floor(quick_report, bench):
    _, report = quick_report
    ratio_section = report.split("## Time ratio")[1].split("## Targets")[0]
    for loss in bench.LOSSES:
        assert f"| {loss} | {bench.SELF_CHECK} |" in ratio_section
    targets = report.split("## Targets")[1].split("## Details")[0]
    assert "noise floor (labkit against itself" in targets


def test_paired_rounds_alternate_which_implementation_runs_first(bench):
    calls = []

    def recorder(name):
        def run(inputs):
            calls.append(name)
            return (inputs.tensors[0] * 2).sum()

        return run

    inputs = bench.Inputs([torch.randn(4, 3, requires_grad=True)], None)
    ours, theirs = bench.paired_rounds(
        recorder("labkit"), recorder("other"), inputs, torch.device("cpu"), bench.CLOCKS["thread"], rounds=5, warmup_rounds=2
    )
    assert len(ours) == len(theirs) == 5 and all(t >= 0 for t in ours + theirs)
    rounds = [calls[i : i + 2] for i in range(0, len(calls), 2)]
    assert len(rounds) == 7  # 2 warm-up rounds + 5 timed
    for index, pair in enumerate(rounds):
        assert pair == (["labkit", "other"] if index % 2 == 0 else ["other", "labkit"])


def test_median_confidence_interval_covers_the_true_median_about_95_percent_of_the_time(bench):
    generator = torch.Generator().manual_seed(0)
    trials, covered = 400, 0
    for _ in range(trials):
        sample = torch.empty(41).exponential_(generator=generator).tolist()  # skewed, like timings
        low, high = bench.median_confidence_interval(sample)
        assert low <= sorted(sample)[20] <= high
        covered += low <= math.log(2) <= high  # the exponential distribution's median
    assert 0.90 <= covered / trials <= 0.995


def test_targets_tell_a_real_slowdown_from_noise(bench):
    def pair(loss, ratios):
        ours = bench.Result(loss, 32, 8, "labkit", time_s=1.0)
        other = bench.Result(loss, 32, 8, "sentence-transformers", time_s=1.0, ratios=ratios)
        return [ours, other]

    steady_slowdown = [1.10 + 0.001 * i for i in range(40)]
    noisy_parity = [0.9 + 0.25 * ((i * 7) % 10) / 10 for i in range(40)]  # from 0.90 to 1.125, median above 1
    assert statistics.median(noisy_parity) > 1.0
    lines = bench.check_targets(pair("ContrastiveLoss", steady_slowdown) + pair("SoftmaxLoss", noisy_parity), torch.device("cpu"))
    slower = next(line for line in lines if "slower beyond noise" in line)
    within = next(line for line in lines if "within noise" in line)
    assert "ContrastiveLoss" in slower and "SoftmaxLoss" not in slower
    assert "SoftmaxLoss" in within and "ContrastiveLoss" not in within
