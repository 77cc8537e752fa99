"""`setup()`: the one call at the top of every notebook.

It makes a run reproducible (seeds), picks the fastest device, tells Colab users how to get a GPU, and
chooses the *budgets* — training steps, subset sizes, sequence length, UMAP points — so the same cells
run in seconds in CI (fast mode) and in minutes for a learner (full mode).

Fast mode is on when `LABKIT_FAST=1`, or when `CI` is set (unless `LABKIT_FAST=0`), or `setup(fast=True)`.
"""
from __future__ import annotations

import functools
import os
import platform
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Budget:
    """How much work a notebook does. Notebooks read these instead of writing numbers of their own."""

    train_steps: int  # optimizer steps in a training run
    eval_every: int  # evaluate on the dev split every this many steps
    train_subset: int  # examples taken from a training split (0 = all)
    eval_subset: int  # examples taken from an evaluation split (0 = all)
    max_length: int  # tokens per text
    batch_p: int  # classes per P×K batch
    batch_k: int  # examples per class in a P×K batch
    umap_points: int  # points drawn in a UMAP map
    encode_batch_size: int
    benchmark_repeats: int  # repeats of a timed cell
    compare_steps: int  # optimizer steps per loss when several losses are compared (notebook 11)
    projection: str  # 2-D maps: "umap" (the real picture) or "pca" (instant; UMAP's first call compiles for ~1 min)
    # Retrieval fine-tuning (notebooks 14 and 15): a BEIR collection, scored against its corpus
    retrieval_steps: int  # optimizer steps per run
    retrieval_seeds: int  # seeds per method (seed noise needs at least 2)
    retrieval_batch: int  # (query, passage) pairs per batch
    retrieval_max_length: int  # tokens per query or passage (abstracts run to ~300: the CPU budget reads their start)
    retrieval_queries: int  # queries kept of each split (0 = all)
    retrieval_corpus: int  # documents kept of the corpus (0 = all), every relevant one included
    retrieval_dev_corpus: int  # documents of the dev split's sampled corpus (model selection only)
    distillation_steps: int  # optimizer steps per student (notebook 15): a cut model has more to relearn
    distillation_lr: float  # the students' learning rate


FULL = Budget(
    train_steps=300, eval_every=50, train_subset=0, eval_subset=0, max_length=64,
    batch_p=8, batch_k=4, umap_points=3000, encode_batch_size=64, benchmark_repeats=5,
    compare_steps=100, projection="umap",
    retrieval_steps=16, retrieval_seeds=2, retrieval_batch=32, retrieval_max_length=64, retrieval_queries=0,
    retrieval_corpus=0, retrieval_dev_corpus=500, distillation_steps=64, distillation_lr=1e-4,
)
FAST = Budget(
    train_steps=6, eval_every=3, train_subset=400, eval_subset=200, max_length=32,
    batch_p=4, batch_k=4, umap_points=300, encode_batch_size=64, benchmark_repeats=1,
    compare_steps=4, projection="pca",
    retrieval_steps=2, retrieval_seeds=2, retrieval_batch=8, retrieval_max_length=32, retrieval_queries=40,
    retrieval_corpus=300, retrieval_dev_corpus=100, distillation_steps=2, distillation_lr=1e-4,
)


@dataclass(frozen=True)
class Lab:
    """What `setup()` decided; notebooks use `lab.device`, `lab.fast` and `lab.budget`."""

    device: torch.device
    fast: bool
    budget: Budget
    seed: int
    on_colab: bool
    gpu_name: str | None
    bf16: bool

    def describe(self) -> str:
        where = self.gpu_name or str(self.device)
        mode = "fast mode (CI budgets)" if self.fast else "full mode"
        return (f"labkit: device={self.device} ({where}), bf16={'yes' if self.bf16 else 'no'}, {mode}, seed={self.seed}\n"
                f"training precision: {precision_reason(self.device)}")


_current: Lab | None = None


def fast_mode_requested() -> bool:
    """LABKIT_FAST=1 forces fast mode, LABKIT_FAST=0 forbids it; otherwise CI being set turns it on."""
    flag = os.environ.get("LABKIT_FAST", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag in ("0", "false", "no", "off"):
        return False
    return bool(os.environ.get("CI"))


def on_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what Python knows), for benchmark reports."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """CUDA if present, then Apple's MPS, then the CPU (or `preferred`, if given)."""
    if preferred is not None:
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.lru_cache(maxsize=None)
def native_cpu_bf16() -> str | None:
    """The CPU's native bf16 units ("AMX + avx512_bf16", "avx512_bf16", ...), or None when it has none.

    Read from the flags PyTorch's own CPU dispatcher uses (`torch.cpu._is_amx_tile_supported`,
    `_is_avx512_bf16_supported`), else from Linux's /proc/cpuinfo; cached, so it costs nothing after the first
    call. On such a CPU a MiniLM training step under bf16 autocast took 0.59-0.60x the fp32 time (the
    course's 2-core development machine, AMX + avx512_bf16); without native bf16 the same autocast emulates it and is slower than fp32.
    """
    found = []
    probes = (("AMX", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
    cpu = getattr(torch, "cpu", None)
    if all(hasattr(cpu, probe) for _, probe in probes):
        found = [name for name, probe in probes if getattr(cpu, probe)()]
    elif Path("/proc/cpuinfo").is_file():
        flags = set(Path("/proc/cpuinfo").read_text(errors="replace").split())
        found = [name for name, flag in (("AMX", "amx_bf16"), ("avx512_bf16", "avx512_bf16")) if flag in flags]
    return " + ".join(found) or None


def _cuda_bf16(device: torch.device) -> bool:
    try:  # torch >= 2.3 would otherwise count slow emulated bf16 (a T4) as support
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        return torch.cuda.is_bf16_supported()


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays on Ampere and newer GPUs and on CPUs with native bf16 units (AMX, avx512_bf16);
    a T4 (Colab's free GPU) has fp16 only, and most laptop CPUs neither."""
    if device.type == "cuda":
        return _cuda_bf16(device)
    if device.type == "cpu":
        return native_cpu_bf16() is not None
    return False


def precision_reason(device: torch.device) -> str:
    """Why `labkit.train.precision_for(device)` picks what it picks, in one line (`setup()` prints it)."""
    if device.type == "cuda":
        return ("bf16 autocast: this GPU has bf16 tensor cores" if bf16_supported(device)
                else "fp16 autocast with a gradient scaler: this GPU has no native bf16 (a T4 does not)")
    if device.type == "cpu":
        units = native_cpu_bf16()
        return (f"bf16 autocast: this CPU has native bf16 ({units}), a training step takes about 0.6x fp32's time"
                if units else "fp32: this CPU has no native bf16 (AMX or avx512_bf16), so autocast would be slower")
    return f"fp32 on {device.type}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA devices too
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def setup(seed: int = 42, fast: bool | None = None, device: str | None = None, quiet: bool = False) -> Lab:
    """Seed, pick the device, choose budgets, set plotting/progress-bar defaults, and print what was chosen.

    >>> lab = setup()
    >>> lab.budget.train_steps   # small in fast mode, larger in full mode
    """
    global _current
    seed_everything(seed)
    chosen = pick_device(device)
    fast = fast_mode_requested() if fast is None else fast
    lab = Lab(
        device=chosen,
        fast=fast,
        budget=FAST if fast else FULL,
        seed=seed,
        on_colab=on_colab(),
        gpu_name=torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else None,
        bf16=bf16_supported(chosen),
    )
    _current = lab
    _plot_and_progress_defaults(fast)
    if not quiet:
        print(lab.describe())
        if lab.on_colab and chosen.type == "cpu":
            print("No GPU: in Colab choose Runtime → Change runtime type → T4 GPU, then run this cell again.")
    return lab


def current() -> Lab:
    """The Lab chosen by the last `setup()` call (calls `setup()` quietly if there was none)."""
    return _current if _current is not None else setup(quiet=True)


def budget(**overrides) -> Budget:
    """The current budget, optionally with some fields changed: `budget(train_steps=50)`."""
    return replace(current().budget, **overrides)


def _plot_and_progress_defaults(fast: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # silences fork warnings from DataLoader workers
    if fast:
        os.environ.setdefault("TQDM_DISABLE", "1")  # CI logs and test outputs stay readable
    try:
        import matplotlib as mpl

        mpl.rcParams.update({"figure.figsize": (6.4, 4.0), "figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3})
    except ImportError:
        pass
