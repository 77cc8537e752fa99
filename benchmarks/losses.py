"""Time and memory of labkit's losses against sentence-transformers, pytorch-metric-learning and the article.

    python benchmarks/losses.py [--quick] [--device cpu|cuda] [--batch-sizes 32 128 512 2048] [--dims 384 768]
                                [--losses BatchHardTripletLoss ...] [--threads N] [--clock wall|thread]
                                [--output report.md]

For every loss, batch size B and embedding size D it runs forward + backward on random embeddings with
each implementation and reports:

* time ratio: labkit against each other implementation in a loop of its own, in rounds: each round
  runs both once on the same inputs (fresh gradients each time), labkit first in even rounds and second
  in odd ones, so that neither always inherits the caches and heap the other left behind. The ratio
  labkit / other of each round; the table shows the median over the rounds (enough rounds for about
  two seconds per comparison, after two warm-up rounds unless a round is slow) and the details its 95%
  confidence interval (order statistics of the median) and the spread (quartiles) of the rounds. A second
  labkit instance, "labkit (again)", is compared in exactly the same way: its ratios (ideally 1.00) are
  the noise floor.
  Wall-clock time by default. On a busy machine use ``--threads 1 --clock thread``: with more threads
  than free cores every small parallel operation waits milliseconds for a descheduled worker thread, and
  even with one thread a step that is descheduled midway counts the time other processes ran; the CPU
  time of the calling thread (which runs the whole forward and, on the CPU, the whole backward) counts
  only the step's own work;
* the heap: on the CPU, glibc hands large freed blocks back to the system, so every step gets fresh pages
  from the kernel again. Those page faults cost as much as the computation of a memory-bound loss and
  vary from round to round (±50% between two runs of the same code on a shared machine). The script
  therefore asks glibc (``mallopt``) to keep freed memory for reuse, as PyTorch's CUDA allocator does on
  a GPU and as a long training loop does in its steady state; ``--system-malloc`` keeps glibc's defaults;
* peak memory of one forward + backward beyond what was allocated before it. CUDA:
  ``torch.cuda.max_memory_allocated``. CPU: the process's peak resident set size (VmHWM in
  /proc/self/status), reset before the run by writing 5 to /proc/self/clear_refs, after ``malloc_trim(0)``
  has handed freed heap pages back to the system; peak RSS minus RSS before the run. It counts every byte
  the operating system had to give the process (tensors, autograd buffers, kernel scratch space), not
  just what Python objects point at (tracemalloc sees none of torch's memory). Resolution is a page; a
  few hundred KiB of noise, so small values print as "<1";
* agreement: the loss value and the gradient with respect to the embeddings, compared with labkit's
  (✓/✗).

References: sentence-transformers' own loss classes, run on the same tensors through a stub model whose
"features" are the embeddings; pytorch-metric-learning (PML) where it has the same loss: batch-hard =
TripletMarginLoss + BatchHardMiner, batch-all = TripletMarginLoss on all triplets, soft-margin batch-hard =
TripletMarginLoss(smooth_loss=True, margin=0) + BatchHardMiner, TripletLoss = TripletMarginLoss on given
triplets, MultipleNegativesRankingLoss = NTXentLoss(temperature=1/scale) on the anchor-positive pairs
(PML's ContrastiveLoss and semi-hard miner define different losses, so they are left out); the original
article's per-anchor loop (``labkit.course.article``) for batch-hard. Every reference gets labkit's defaults
(margin 5, Euclidean distance, scale 20).

A case whose predicted memory or time (extrapolated from the previous batch size) is beyond this machine
is skipped and says so, instead of exhausting memory: sentence-transformers' batch-all and semi-hard losses
build B×B×B tensors (34 GB each at B=2048).

Results, machine and command: benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------------------------------
# Which losses, and what inputs each takes
# ------------------------------------------------------------------------------------------------------------
# kind -> inputs: "labelled": (embeddings, labels); "triplet": (anchor, positive, negative);
# "binary"/"score"/"class": (emb_a, emb_b, labels); "ranking": (anchor, positive).
LOSSES = {
    "BatchHardTripletLoss": "labelled",
    "BatchAllTripletLoss": "labelled",
    "BatchSemiHardTripletLoss": "labelled",
    "BatchHardSoftMarginTripletLoss": "labelled",
    "TripletLoss": "triplet",
    "ContrastiveLoss": "binary",
    "OnlineContrastiveLoss": "binary",
    "CosineSimilarityLoss": "score",
    "CoSENTLoss": "score",
    "AnglELoss": "score",
    "SoftmaxLoss": "class",
    "MultipleNegativesRankingLoss": "ranking",
}
EXAMPLES_PER_CLASS = 8  # labelled batches are P×K with K = 8 (P = B / 8), as in the article
SOFTMAX_LABELS = 3
MARGIN = 5.0  # sentence-transformers' (and labkit's) default triplet margin
SCALE = 20.0  # default scale of MultipleNegativesRankingLoss
ARTICLE_EPS = 1e-6  # nn.TripletMarginLoss's eps: ||a - p + eps|| instead of ||a - p||
MEMORY_PARITY = 1.05  # a peak-memory miss by at most 5% is listed apart as parity (page-level noise)
SELF_CHECK = "labkit (again)"  # a second labkit instance: labkit against itself gives the noise floor
WARMUP_ROUNDS = 2


@dataclass
class Inputs:
    tensors: list  # embedding tensors (leaves with requires_grad)
    labels: Optional[torch.Tensor]


def make_inputs(kind: str, batch_size: int, dim: int, device: torch.device, seed: int) -> Inputs:
    """Random, L2-normalised embeddings shaped like a model's output for each kind of loss."""
    generator = torch.Generator().manual_seed(seed)

    def unit(x):
        return F.normalize(x, dim=1)

    def noise():
        return torch.randn(batch_size, dim, generator=generator)

    if kind == "labelled":
        k = min(EXAMPLES_PER_CLASS, max(2, batch_size // 2))
        labels = torch.arange(batch_size // k).repeat_interleave(k)
        labels = torch.cat([labels, labels[: batch_size - len(labels)]])
        centers = torch.randn(int(labels.max()) + 1, dim, generator=generator)
        tensors = [unit(centers[labels] + 0.8 * noise())]
    elif kind == "triplet":
        anchor = unit(noise())
        tensors = [anchor, unit(anchor + 0.8 * noise()), unit(anchor + 1.2 * noise())]
        labels = None
    elif kind == "ranking":
        anchor = unit(noise())
        tensors, labels = [anchor, unit(anchor + 0.8 * noise())], None
    else:
        emb_a = unit(noise())
        tensors = [emb_a, unit(emb_a + noise())]
        if kind == "binary":
            labels = torch.randint(0, 2, (batch_size,), generator=generator)
        elif kind == "score":
            labels = torch.rand(batch_size, generator=generator)
        else:
            labels = torch.randint(0, SOFTMAX_LABELS, (batch_size,), generator=generator)
    tensors = [t.to(device).requires_grad_(True) for t in tensors]
    return Inputs(tensors, None if labels is None else labels.to(device))


# ------------------------------------------------------------------------------------------------------------
# Implementations: each builds a function () -> loss tensor for given inputs
# ------------------------------------------------------------------------------------------------------------
def labkit_loss_class(name: str):
    import importlib

    for module in ("labkit.losses", "labkit.losses.triplets", "labkit.losses.pairs", "labkit.losses.regression", "labkit.losses.ranking"):
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


class EmbeddingStub(nn.Module):
    """Stands in for a SentenceTransformer: its "features" are the embeddings themselves."""

    def __init__(self, device: torch.device):
        super().__init__()
        self._device = device

    def forward(self, features: dict) -> dict:
        return {"sentence_embedding": features["sentence_embedding"]}

    @property
    def device(self) -> torch.device:
        return self._device


def st_loss_class(name: str):
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 5 layout
        from sentence_transformers import losses
    return getattr(losses, name)


def build_labkit(name: str, dim: int, device: torch.device):
    loss_class = labkit_loss_class(name)
    if loss_class is None:
        return None
    loss = loss_class(embedding_dimension=dim, num_labels=SOFTMAX_LABELS) if name == "SoftmaxLoss" else loss_class()
    loss = loss.to(device)

    def run(inputs: Inputs):
        if inputs.labels is None:
            return loss(*inputs.tensors)
        return loss(*inputs.tensors, inputs.labels)

    return run, loss


def build_st(name: str, dim: int, device: torch.device, labkit_module=None):
    stub = EmbeddingStub(device)
    loss_class = st_loss_class(name)
    if name == "SoftmaxLoss":
        loss = loss_class(stub, embedding_dimension=dim, num_labels=SOFTMAX_LABELS)
        if labkit_module is not None:  # same classifier weights, so the values can be compared
            labkit_module.classifier.load_state_dict(loss.classifier.state_dict())
    else:
        loss = loss_class(stub)
    loss = loss.to(device)

    def run(inputs: Inputs):
        return loss([{"sentence_embedding": t} for t in inputs.tensors], inputs.labels)

    return run


def build_pml(name: str, batch_size: int, device: torch.device):
    """PML's equivalent of the loss, or None where it has none."""
    try:
        from pytorch_metric_learning import distances, losses, miners, reducers
    except ImportError:
        return None
    euclidean = distances.LpDistance(normalize_embeddings=False, p=2, power=1)
    if name in ("BatchHardTripletLoss", "BatchHardSoftMarginTripletLoss"):
        soft = name == "BatchHardSoftMarginTripletLoss"
        loss = losses.TripletMarginLoss(
            margin=0.0 if soft else MARGIN, smooth_loss=soft, distance=euclidean, reducer=reducers.MeanReducer()
        )
        miner = miners.BatchHardMiner(distance=euclidean)

        def run(inputs: Inputs):
            (embeddings,) = inputs.tensors
            return loss(embeddings, inputs.labels, miner(embeddings, inputs.labels))

        return run
    if name == "BatchAllTripletLoss":  # no miner: all valid triplets, averaged over the non-zero ones
        loss = losses.TripletMarginLoss(margin=MARGIN, distance=euclidean)
        return lambda inputs: loss(inputs.tensors[0], inputs.labels)
    if name == "TripletLoss":
        loss = losses.TripletMarginLoss(margin=MARGIN, distance=euclidean, reducer=reducers.MeanReducer())
        rows = torch.arange(batch_size, device=device)
        triplets = (rows, rows + batch_size, rows + 2 * batch_size)
        return lambda inputs: loss(torch.cat(inputs.tensors), indices_tuple=triplets)
    if name == "MultipleNegativesRankingLoss":
        # Pairs of the concatenation [anchors; positives]: positives (i, B+i), negatives (i, B+j) for j != i.
        loss = losses.NTXentLoss(temperature=1.0 / SCALE)
        rows = torch.arange(batch_size, device=device)
        anchor_of_negative, candidate = torch.meshgrid(rows, rows, indexing="ij")
        off_diagonal = anchor_of_negative != candidate
        pairs = (rows, rows + batch_size, anchor_of_negative[off_diagonal], candidate[off_diagonal] + batch_size)
        return lambda inputs: loss(torch.cat(inputs.tensors), indices_tuple=pairs)
    return None


def build_article(name: str):
    if name != "BatchHardTripletLoss":
        return None
    from labkit.course.article import article_batch_hard_loss

    return lambda inputs: article_batch_hard_loss(inputs.tensors[0], inputs.labels, margin=MARGIN)


# ------------------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward(run: Callable, inputs: Inputs) -> torch.Tensor:
    for tensor in inputs.tensors:
        tensor.grad = None
    loss = run(inputs)
    loss.backward()
    return loss.detach()


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def timed_run(run: Callable, inputs: Inputs, device: torch.device, clock: Callable = time.perf_counter) -> float:
    synchronize(device)
    start = clock()
    forward_backward(run, inputs)
    synchronize(device)
    return clock() - start


def paired_rounds(labkit_run: Callable, other_run: Callable, inputs: Inputs, device: torch.device, clock: Callable,
                  rounds: int, warmup_rounds: int = WARMUP_ROUNDS) -> tuple[list, list]:
    """(labkit's times, the other's times), one of each per round, labkit first in even rounds only.

    Alternating the order matters: the implementation that runs second finds the caches and the heap the
    first one left behind, and always being first or second shifts a ratio by several percent.
    """
    labkit_times, other_times = [], []
    collecting = gc.isenabled()
    gc.disable()  # a collection triggered by one implementation's garbage would be billed to whichever runs
    try:
        for round_index in range(warmup_rounds + rounds):
            if round_index % 2 == 0:
                ours = timed_run(labkit_run, inputs, device, clock)
                theirs = timed_run(other_run, inputs, device, clock)
            else:
                theirs = timed_run(other_run, inputs, device, clock)
                ours = timed_run(labkit_run, inputs, device, clock)
            if round_index >= warmup_rounds:
                labkit_times.append(ours)
                other_times.append(theirs)
    finally:
        if collecting:
            gc.enable()
    return labkit_times, other_times


def median_confidence_interval(values: list, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of the median, from order statistics (no assumption on the distribution).

    The median's rank in a sample of n is about Binomial(n, 1/2): n/2 ± z·√n/2 covers it 95% of the time.
    """
    ordered = sorted(values)
    n = len(ordered)
    half_width = z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half_width))
    high = min(n - 1, math.ceil(n / 2 + half_width) - 1)
    return ordered[low], ordered[high]


def quartiles(values: list) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    first, _, third = statistics.quantiles(values, n=4)
    return first, third


try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: no malloc_trim
    _LIBC = None

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system after every step.

    Blocks up to 32 MiB (glibc's largest mmap threshold) then come from the heap, and the heap is never
    trimmed except by `peak_memory_bytes`' explicit ``malloc_trim(0)``. True if glibc accepted.
    """
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)) and bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, 2**30))


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def cpu_memory_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        _status_kib("VmHWM")
        return True
    except OSError:
        return False


def peak_memory_bytes(run: Callable, inputs: Inputs, device: torch.device) -> Optional[int]:
    """Extra memory at the peak of one forward + backward (see the module docstring for how)."""
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        forward_backward(run, inputs)
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not cpu_memory_supported():
        return None
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset the peak-RSS counter to the current RSS
    before = _status_kib("VmRSS")
    forward_backward(run, inputs)
    return max(0, _status_kib("VmHWM") - before) * 1024


def agreement(reference, other, atol_value: float) -> bool:
    """Same value (to float32 precision, or atol_value) and the same gradients (relative 1e-3)."""
    (value_ref, grads_ref), (value, grads) = reference, other
    if not math.isclose(float(value), float(value_ref), rel_tol=1e-4, abs_tol=atol_value):
        return False
    for g_ref, g in zip(grads_ref, grads):
        scale = float(g_ref.abs().max()) if g_ref.numel() else 0.0
        if float((g - g_ref).abs().max()) > 1e-3 * scale + 1e-7:
            return False
    return True


@dataclass
class Result:
    loss: str
    batch_size: int
    dim: int
    implementation: str
    time_s: Optional[float] = None
    peak_bytes: Optional[int] = None
    agrees: Optional[bool] = None
    skipped: str = ""
    times: list = field(default_factory=list)  # seconds per timed run
    # Against labkit (for the other implementations): per-round ratios labkit / this, and labkit's times
    # in the same rounds.
    ratios: list = field(default_factory=list)
    labkit_times: list = field(default_factory=list)

    @property
    def ratio(self) -> Optional[float]:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def labkit_time_s(self) -> Optional[float]:
        return statistics.median(self.labkit_times) if self.labkit_times else None


@dataclass
class History:
    """Last measured (batch size, peak bytes, seconds) per (implementation, loss, dim), to predict the next."""

    points: dict = field(default_factory=dict)

    def predict(self, key, batch_size: int):
        previous = self.points.get(key, [])
        if not previous:
            return None
        b1, m1, t1 = previous[-1]
        exponent = 3.0  # cubic unless two measurements say otherwise (B^2 and B^3 losses both exist)
        if len(previous) >= 2:
            b0, m0, _ = previous[-2]
            if m0 > 2**20 and m1 > 2**20:
                exponent = min(3.0, max(2.0, math.log(m1 / m0) / math.log(b1 / b0)))
        factor = batch_size / b1
        return (m1 or 0) * factor**exponent, t1 * factor**3

    def add(self, key, batch_size: int, peak: Optional[int], seconds: float) -> None:
        self.points.setdefault(key, []).append((batch_size, peak or 0, seconds))


def available_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return _status_meminfo_available()
    except OSError:
        return 8 * 2**30


def _status_meminfo_available() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("MemAvailable not found")


def measure_case(name: str, batch_size: int, dim: int, device: torch.device, settings, history: History) -> list:
    """Time, memory and agreement of every implementation of one loss at one (B, D)."""
    inputs = make_inputs(LOSSES[name], batch_size, dim, device, seed=batch_size * 1000 + dim)
    built = build_labkit(name, dim, device)
    implementations = {}
    if built is not None:
        implementations["labkit"] = built[0]
    implementations["sentence-transformers"] = build_st(name, dim, device, built[1] if built else None)
    pml = build_pml(name, batch_size, device)
    if pml is not None:
        implementations["pytorch-metric-learning"] = pml
    article = build_article(name)
    if article is not None:
        implementations["article loop"] = article
    if built is not None and settings.self_check:
        again = build_labkit(name, dim, device)
        if name == "SoftmaxLoss":  # same classifier weights
            again[1].classifier.load_state_dict(built[1].classifier.state_dict())
        implementations[SELF_CHECK] = again[0]

    results = {impl: Result(name, batch_size, dim, impl) for impl in implementations}
    if built is None:
        results["labkit"] = Result(name, batch_size, dim, "labkit", skipped="labkit loss not found")
    budget_bytes = settings.memory_fraction * available_memory_bytes(device)
    active = {}
    for impl, run in implementations.items():
        predicted = history.predict((impl, name, dim), batch_size)
        if predicted is not None and predicted[0] > budget_bytes:
            results[impl].skipped = f"skipped: ~{predicted[0] / 2**30:.0f} GiB predicted"
        elif predicted is not None and predicted[1] > settings.max_seconds:
            results[impl].skipped = f"skipped: ~{predicted[1]:.0f} s per step predicted"
        else:
            active[impl] = run

    # Warm-up (also the agreement check: value and gradients of each implementation).
    outputs, first_times = {}, {}
    for impl, run in active.items():
        start = time.perf_counter()
        value = forward_backward(run, inputs)
        synchronize(device)
        first_times[impl] = time.perf_counter() - start
        outputs[impl] = (value, [t.grad.detach().clone() for t in inputs.tensors])
    if "labkit" in outputs:
        for impl in outputs:
            if impl != "labkit":
                atol = 2 * ARTICLE_EPS * math.sqrt(dim) + 1e-5 if impl == "article loop" else 1e-5
                results[impl].agrees = agreement(outputs["labkit"], outputs[impl], atol)

    # Timing: labkit against each other implementation in paired, alternating rounds (see paired_rounds).
    clock = CLOCKS[settings.clock]
    for impl, run in active.items():
        if "labkit" not in active:  # nothing to compare with: time it alone
            results[impl].times = [timed_run(run, inputs, device, clock) for _ in range(settings.min_rounds)]
            continue
        if impl == "labkit":
            continue
        round_seconds = first_times["labkit"] + first_times[impl]
        rounds = int(min(settings.max_rounds, max(settings.min_rounds, settings.target_seconds / max(round_seconds, 1e-6))))
        # Slow pairs (a reference 100× slower than labkit) were warmed up by the agreement run already.
        warmup = WARMUP_ROUNDS if round_seconds < settings.target_seconds / 4 else 0
        ours, theirs = paired_rounds(active["labkit"], run, inputs, device, clock, rounds, warmup)
        results[impl].times, results[impl].labkit_times = theirs, ours
        results[impl].ratios = [a / b for a, b in zip(ours, theirs)]
        results["labkit"].times.extend(ours)
    for impl, run in active.items():
        results[impl].time_s = statistics.median(results[impl].times)
        results[impl].peak_bytes = peak_memory_bytes(run, inputs, device)
        history.add((impl, name, dim), batch_size, results[impl].peak_bytes, results[impl].time_s)
    return list(results.values())


# ------------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------------
def machine_description(device: torch.device) -> str:
    from labkit.env import cpu_name

    cpu = cpu_name()
    parts = [
        f"CPU: {cpu}, {os.cpu_count()} cores, torch threads: {torch.get_num_threads()}",
        f"Python {platform.python_version()}, torch {torch.__version__}",
    ]
    try:
        import sentence_transformers

        parts.append(f"sentence-transformers {sentence_transformers.__version__}")
    except ImportError:
        pass
    try:
        import pytorch_metric_learning

        parts.append(f"pytorch-metric-learning {pytorch_metric_learning.__version__}")
    except ImportError:
        pass
    if device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    else:
        parts.append("device: cpu")
    return "; ".join(parts)


def format_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def format_mib(peak: Optional[int]) -> str:
    if peak is None:
        return "–"
    mib = peak / 2**20
    return "<1" if mib < 1 else f"{mib:.0f}" if mib >= 10 else f"{mib:.1f}"


def detail_table(results: list) -> list:
    """One row per (loss, B, D, other implementation): times, ratio with its uncertainty, memory, agreement.

    labkit's time is its median in the rounds against that implementation; the ratio is the median of the
    per-round ratios (so it need not equal the ratio of the two medians).
    """
    lines = [
        "| loss | B | D | compared with | rounds | labkit ms | other ms | time ratio | 95% CI | quartiles "
        "| labkit MiB | other MiB | agrees |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|---|---:|---:|:-:|",
    ]
    by_case = {}
    for result in results:
        by_case.setdefault((result.loss, result.batch_size, result.dim), {})[result.implementation] = result
    for (loss, batch_size, dim), implementations in by_case.items():
        ours = implementations.get("labkit")
        for impl, other in implementations.items():
            if impl == "labkit":
                continue
            if other.skipped or (ours and ours.skipped):
                why = other.skipped or ours.skipped
                lines.append(
                    f"| {loss} | {batch_size} | {dim} | {impl} | – | {format_ms(ours.time_s if ours else None)} | {why} "
                    f"| – | – | – | {format_mib(ours.peak_bytes if ours else None)} | – | – |"
                )
                continue
            if not other.ratios:
                continue
            low, high = median_confidence_interval(other.ratios)
            first, third = quartiles(other.ratios)
            lines.append(
                f"| {loss} | {batch_size} | {dim} | {impl} | {len(other.ratios)} | {format_ms(other.labkit_time_s)} "
                f"| {format_ms(other.time_s)} | {other.ratio:.2f} | {low:.2f}–{high:.2f} | {first:.2f}–{third:.2f} "
                f"| {format_mib(ours.peak_bytes)} | {format_mib(other.peak_bytes)} | {'✓' if other.agrees else '✗'} |"
            )
    return lines


def ratio_table(results: list, batch_sizes: list, dims: list) -> list:
    """Median per-round time ratio labkit / other, one row per (loss, other), one column per (B, D).

    Below 1: labkit faster. The "labkit (again)" rows compare labkit with itself: the noise floor.
    """
    columns = [(b, d) for d in dims for b in batch_sizes]
    lines = [
        "| loss | vs | " + " | ".join(f"B={b} D={d}" for b, d in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    cells = {}
    for result in results:
        cells[(result.loss, result.implementation, result.batch_size, result.dim)] = result
    rows = []
    for result in results:
        key = (result.loss, result.implementation)
        if result.implementation != "labkit" and key not in rows:
            rows.append(key)
    for loss, impl in rows:
        row = []
        for b, d in columns:
            other, ours = cells.get((loss, impl, b, d)), cells.get((loss, "labkit", b, d))
            if other is None or ours is None:
                row.append("–")
            elif other.skipped:
                row.append("(ref. skipped)")
            elif ours.skipped or other.ratio is None:
                row.append("–")
            else:
                row.append(f"{other.ratio:.2f}")
        lines.append(f"| {loss} | {impl} | " + " | ".join(row) + " |")
    return lines


def check_targets(results: list, device: torch.device) -> list:
    """The performance targets, each with whether it holds and, if not, by how much."""
    cells = {(r.loss, r.implementation, r.batch_size, r.dim): r for r in results}

    def measured(result):
        return result is not None and not result.skipped and result.time_s is not None

    lines = []
    # 1. labkit at most as slow as sentence-transformers and PML everywhere. A median ratio above 1.00 is
    # "within noise" when its 95% confidence interval still reaches 1.00, "slower" when the interval lies above.
    within_noise, slower, compared = [], [], 0
    for (loss, impl, b, d), other in cells.items():
        ours = cells.get((loss, "labkit", b, d))
        if impl in ("sentence-transformers", "pytorch-metric-learning") and measured(other) and measured(ours) and other.ratios:
            compared += 1
            if other.ratio > 1.0:
                low, high = median_confidence_interval(other.ratios)
                text = f"{loss} vs {impl} at B={b} D={d}: {other.ratio:.2f} (95% CI {low:.2f}–{high:.2f})"
                (within_noise if low <= 1.0 else slower).append(text)
    verdict = (
        "holds" if not within_noise and not slower
        else f"does NOT hold in {len(within_noise) + len(slower)} of {compared} cases"
    )
    lines.append(f"- labkit time ≤ 1.0× sentence-transformers and PML for every loss and size: {verdict}")
    if slower:
        lines.append(f"  - slower beyond noise (the whole 95% CI above 1.00) ({len(slower)}): {'; '.join(slower)}")
    if within_noise:
        lines.append(f"  - above 1.00 within noise (the 95% CI reaches 1.00) ({len(within_noise)}): {'; '.join(within_noise)}")
    self_checks = [r for r in results if r.implementation == SELF_CHECK and r.ratios and not r.skipped]
    if self_checks:
        medians = [r.ratio for r in self_checks]
        half_widths = [(lambda ci: (ci[1] - ci[0]) / 2)(median_confidence_interval(r.ratios)) for r in self_checks]
        lines.append(
            f"- noise floor (labkit against itself, {len(self_checks)} cases): median ratios "
            f"{min(medians):.2f}–{max(medians):.2f}, typical 95% CI half-width ±{statistics.median(half_widths):.2f}"
        )
    # 2. Batch-all peak memory at most sentence-transformers'.
    parity, misses, notes = [], [], []
    for (loss, impl, b, d), other in cells.items():
        if loss != "BatchAllTripletLoss" or impl != "sentence-transformers":
            continue
        ours = cells.get((loss, "labkit", b, d))
        if other.skipped and measured(ours):
            notes.append(f"B={b} D={d}: sentence-transformers {other.skipped}, labkit {format_mib(ours.peak_bytes)} MiB")
        elif measured(other) and measured(ours) and ours.peak_bytes is not None and other.peak_bytes is not None:
            if ours.peak_bytes > other.peak_bytes and ours.peak_bytes > 2**20:
                text = f"B={b} D={d}: {format_mib(ours.peak_bytes)} vs {format_mib(other.peak_bytes)} MiB"
                (parity if ours.peak_bytes <= MEMORY_PARITY * other.peak_bytes else misses).append(text)
    verdict = "holds" if not parity and not misses else "does NOT hold"
    if misses:
        verdict += f" ({'; '.join(misses)})"
    if parity:
        verdict += f" (within {MEMORY_PARITY:.2f}×: {'; '.join(parity)})"
    lines.append("- BatchAllTripletLoss peak memory ≤ sentence-transformers': " + verdict + (f" ({'; '.join(notes)})" if notes else ""))
    # 3. Batch-hard at B >= 512 at most 0.6× sentence-transformers' time.
    misses, seen = [], 0
    for (loss, impl, b, d), other in cells.items():
        ours = cells.get((loss, "labkit", b, d))
        if loss == "BatchHardTripletLoss" and impl == "sentence-transformers" and b >= 512 and measured(other) and measured(ours):
            seen += 1
            r = ours.time_s / other.time_s
            if r > 0.6:
                misses.append(f"B={b} D={d}: {r:.2f}")
    lines.append(
        "- BatchHardTripletLoss at B ≥ 512 ≤ 0.6× sentence-transformers' time: "
        + ("not measured (no B ≥ 512)" if not seen else "holds" if not misses else f"does NOT hold ({'; '.join(misses)})")
    )
    # 4. Faster than the article's loop: >= 10x at B=128, >= 20x at B=2048 (a CPU target).
    for b, needed in ((128, 10), (2048, 20)):
        speedups = []
        for (loss, impl, bb, d), other in cells.items():
            ours = cells.get((loss, "labkit", bb, d))
            if impl == "article loop" and bb == b and measured(other) and measured(ours):
                speedups.append((d, other.time_s / ours.time_s))
        if not speedups:
            lines.append(f"- labkit ≥ {needed}× faster than the article's loop at B={b}: not measured")
            continue
        held = all(s >= needed for _, s in speedups)
        detail = ", ".join(f"D={d}: {s:.1f}×" for d, s in speedups)
        lines.append(
            f"- labkit ≥ {needed}× faster than the article's loop at B={b}{' (a CPU target)' if device.type != 'cpu' else ''}: "
            + ("holds" if held else "does NOT hold") + f" ({detail})"
        )
    disagreements = [f"{r.loss} vs {r.implementation} at B={r.batch_size} D={r.dim}" for r in results if r.agrees is False]
    lines.append(
        "- every implementation agrees with labkit (value and gradients): "
        + ("yes" if not disagreements else f"NO: {'; '.join(disagreements)}")
    )
    return lines


# ------------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats: checks the script in seconds")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 32 128 512 2048")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="default 384 768")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES), metavar="LOSS")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 with --quick)")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall: elapsed time; thread: CPU time of the calling thread (needs --threads 1 and a CPU run; "
        "unaffected by other processes taking the core)",
    )
    parser.add_argument("--output", default=None, help="also write the report (markdown) to this file")
    parser.add_argument(
        "--no-self-check", dest="self_check", action="store_false",
        help="do not time labkit against a second labkit instance (the noise floor)",
    )
    parser.add_argument(
        "--system-malloc", action="store_true",
        help="keep glibc's defaults (freed memory goes back to the system, every step page-faults fresh memory)",
    )
    args = parser.parse_args(argv)
    if args.batch_sizes is None:
        args.batch_sizes = [8, 16] if args.quick else [32, 128, 512, 2048]
    if args.dims is None:
        args.dims = [16] if args.quick else [384, 768]
    if any(b < 4 or b % 2 for b in args.batch_sizes):
        parser.error("batch sizes must be even and >= 4 (labelled batches need at least 2 classes of 2)")
    if any(d < 2 for d in args.dims):
        parser.error("dims must be >= 2")
    if args.threads is None and args.quick:
        args.threads = 1
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.clock == "thread" and (args.device != "cpu" or args.threads != 1):
        parser.error("--clock thread measures one thread's CPU time: use it with --device cpu --threads 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    # How long to measure: rounds fill about target_seconds per comparison, within [min_rounds, max_rounds].
    args.target_seconds = 0.05 if args.quick else 2.0
    args.min_rounds, args.max_rounds = (4, 8) if args.quick else (5, 400)
    args.max_seconds = 60.0  # skip a case predicted to take longer than this per step
    args.memory_fraction = 0.6  # skip a case predicted to need more than this share of free memory
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    command = "python benchmarks/losses.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = f" Load average at the start: {os.getloadavg()[0]:.1f}." if hasattr(os, "getloadavg") else ""
    clock = "CPU time of the calling thread" if args.clock == "thread" else "wall-clock time"
    heap = ""
    if device.type == "cpu":
        kept = not args.system_malloc and keep_freed_memory()
        heap = " Freed memory is kept for reuse (mallopt)." if kept else " glibc's default heap (freed memory returned)."
    header = (
        f"# Loss benchmark\n\nMachine: {machine_description(device)}\n\nCommand: `{command.strip()}`{load} "
        f"Times are {clock}.{heap}\n"
    )
    print(header, flush=True)
    gc.freeze()  # the libraries' objects are permanent: later gc.collect() calls only visit the benchmark's own
    history, results = History(), []
    started = time.perf_counter()
    for name in args.losses:
        for dim in args.dims:
            for batch_size in sorted(args.batch_sizes):
                case_results = measure_case(name, batch_size, dim, device, args, history)
                results.extend(case_results)
                summary = ", ".join(
                    f"{r.implementation} {r.skipped or format_ms(r.time_s) + ' ms'}" for r in case_results
                )
                print(f"  {name} B={batch_size} D={dim}: {summary}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    load = f" Load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}." if hasattr(os, "getloadavg") else ""
    report = [
        "## Time ratio labkit / other (median forward + backward; below 1.00 = labkit faster)",
        "",
        *ratio_table(results, sorted(args.batch_sizes), args.dims),
        "",
        "## Targets",
        "",
        *check_targets(results, device),
        "",
        "## Details",
        "",
        *detail_table(results),
        "",
        f"Total benchmark time: {elapsed:.0f} s.{load}",
    ]
    text = "\n".join(report)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(header + "\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
