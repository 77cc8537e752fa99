"""`setup()`: the one call at the top of every notebook.

It makes a run reproducible (seeds), picks the fastest device, tells Colab users how to get a GPU, and
chooses the *budgets* — training steps, subset sizes, sequence length, UMAP points — so the same cells
run in seconds in CI (fast mode) and in minutes for a learner (full mode).

Fast mode is on when `LABKIT_FAST=1`, or when `CI` is set (unless `LABKIT_FAST=0`), or `setup(fast=True)`.
"""
from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass, replace

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


FULL = Budget(
    train_steps=300, eval_every=50, train_subset=0, eval_subset=0, max_length=64,
    batch_p=8, batch_k=4, umap_points=3000, encode_batch_size=64, benchmark_repeats=5,
    compare_steps=100, projection="umap",
)
FAST = Budget(
    train_steps=6, eval_every=3, train_subset=400, eval_subset=200, max_length=32,
    batch_p=4, batch_k=4, umap_points=300, encode_batch_size=64, benchmark_repeats=1,
    compare_steps=4, projection="pca",
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
        return f"labkit: device={self.device} ({where}), bf16={'yes' if self.bf16 else 'no'}, {mode}, seed={self.seed}"


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


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays on Ampere and newer GPUs; a T4 (Colab's free GPU) has fp16 only."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


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
