"""Peak memory of a piece of work (a training step), measured the same way on CPU and GPU.

`peak_memory(fn)` runs ``fn()`` once and reports the largest amount of **tensor memory** that was live at
any moment during it, above what was already live when it started: activations kept for backward,
gradients, temporaries, the B x B similarity matrix. That is the number that decides whether a batch fits.

How it is measured, and why that way:

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was allocated at
  the start. Exact: the caching allocator counts every byte it hands to a tensor.
* CPU: PyTorch's profiler with ``profile_memory=True`` records one event per tensor allocation and free
  (``[memory]`` events with a signed byte count). Adding them up in time order gives the live tensor
  memory at every moment; its maximum is the peak. This is the same quantity as on CUDA (bytes handed to
  tensors by PyTorch's allocator), so CPU and GPU tables can be compared.

  The obvious alternative, sampling the process's resident memory (RSS) in a thread, measures something
  else and measures it badly: it includes the Python interpreter, libraries and the allocator's caches;
  the C allocator keeps freed memory instead of giving it back, so RSS only ever grows and the second of
  two measurements in one process under-reports; and a short peak between two samples is missed.
  The profiler costs some time per operation (not per element), fine for a step of a small model.
* Apple MPS: no peak counter exists; ``torch.mps.current_allocated_memory`` is sampled every millisecond
  in a thread (approximate: a shorter peak can be missed).

Not counted anywhere: memory outside PyTorch tensors (Python objects, the tokenizer, libraries). On the
CPU, freeing a tensor that existed before the call does not lower the count (the profiler never saw it
allocated, and PyTorch prints a one-time note saying so): there the figure is the peak of the memory
allocated *during* ``fn``. A training step frees only what it allocated, so for one step CPU and CUDA
figures mean the same thing. One exception, and what is done about it: a tensor allocated during an
*earlier* profiled call is known to the profiler, and if Python's cyclic garbage collector frees it during
``fn`` (the Hugging Face trainer leaves reference cycles), its free is subtracted and the peak comes out too
low. So `peak_memory` runs ``gc.collect()`` before it starts measuring. Measure one step per call: over
several steps the CPU running sum drifts (benchmarks/README.md, sections "GradCache" and "labkit fit vs
sentence-transformers' trainer").

`training_step_memory(model, loss, optimizer, features)` measures one complete training step (forward,
backward, optimizer step, gradients freed as `labkit.train.fit` does), for a plain loss or a cached one
(GradCache) alike: the question "does a batch of B fit?".

Taught in notebooks/07_in_batch_negatives.ipynb (MultipleNegativesRankingLoss against its cached version) and
notebooks/13_scaling_up.ipynb (peak memory against batch size, with and without GradCache).
"""
from __future__ import annotations

import gc
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["MemoryMeasurement", "peak_memory", "training_step_memory"]

MIB = 2**20


@dataclass
class MemoryMeasurement:
    """What `peak_memory` measured."""

    peak_bytes: int  # the most tensor memory live at once during fn, above what was live when it started
    device: torch.device
    method: str  # how it was measured (see the module docstring)
    result: Any  # what fn returned

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / MIB


def peak_memory(fn: Callable[[], Any], device: str | torch.device | None = None) -> MemoryMeasurement:
    """Run ``fn()`` once; return the peak tensor memory it needed on `device` (default: labkit's device).

    Tensors alive before the call (the model's weights, existing gradients, the data) are not counted;
    tensors ``fn`` creates and keeps (e.g. gradients made by a first ``backward``) are.

    >>> import torch
    >>> measured = peak_memory(lambda: torch.ones(1024, 1024).sum(), device="cpu")   # a 4 MiB temporary
    >>> round(measured.peak_mib)
    4
    """
    if not callable(fn):
        raise TypeError(f"peak_memory needs a function to call (e.g. a lambda running one step), got {type(fn).__name__}.")
    device = _resolve_device(device)
    gc.collect()  # garbage of earlier calls must not be freed (and subtracted) while fn is measured
    if device.type == "cuda":
        return _peak_cuda(fn, device)
    if device.type == "cpu":
        return _peak_cpu(fn, device)
    if device.type == "mps":
        return _peak_mps(fn, device)
    raise ValueError(f"peak_memory measures 'cpu', 'cuda' and 'mps' devices, got {device}. Pass device='cpu' or 'cuda'.")


def training_step_memory(model: torch.nn.Module, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer,
                         features, labels=None, device: str | torch.device | None = None) -> MemoryMeasurement:
    """Peak memory of one training step on a batch; ``result`` is the step's loss value (a float).

    The step is the one `labkit.train.fit` takes (without autocast): `labkit.train.compute_loss` (each
    column embedded by `model`, or the features handed to a loss that runs the model itself, such as
    `CachedMultipleNegativesRankingLoss`), ``backward()``, ``optimizer.step()``, then
    ``zero_grad(set_to_none=True)``, which frees the gradients as fit() does.

    Requirements: take one step *before* measuring (any batch), so that the optimizer's state (AdamW: two
    buffers the size of the weights) exists, like the weights, before every step and is not counted. Then
    the figure is what a batch of this size adds: the weight gradients, the activations kept for backward,
    the optimizer's temporaries. Measure one step per call (see the module docstring).

    >>> import torch
    >>> from labkit.losses import MultipleNegativesRankingLoss
    >>> model = torch.nn.Linear(8, 4)
    >>> optimizer = torch.optim.AdamW(model.parameters())
    >>> pairs = [torch.randn(16, 8), torch.randn(16, 8)]  # two columns: anchors, positives
    >>> _ = training_step_memory(model, MultipleNegativesRankingLoss(), optimizer, pairs, device="cpu")  # warm-up
    >>> measured = training_step_memory(model, MultipleNegativesRankingLoss(), optimizer, pairs, device="cpu")
    >>> measured.peak_bytes > 0, isinstance(measured.result, float)
    (True, True)
    """
    from labkit.train import compute_loss

    def step() -> float:
        loss = compute_loss(model, loss_fn, features, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return peak_memory(step, device=device)


def _resolve_device(device) -> torch.device:
    if device is None:
        from labkit.env import current

        return current().device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{device!r} is not a device; use 'cpu', 'cuda' or 'cuda:0'.") from err


def _peak_cuda(fn: Callable[[], Any], device: torch.device) -> MemoryMeasurement:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - start
    return MemoryMeasurement(max(int(peak), 0), device, "torch.cuda.max_memory_allocated", result)


def _peak_cpu(fn: Callable[[], Any], device: torch.device) -> MemoryMeasurement:
    from torch.profiler import ProfilerActivity, profile

    profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # kineto prints a line to stderr when it starts and stops
        profiler.__enter__()
    try:
        result = fn()
    finally:
        with _quiet_stderr():
            profiler.__exit__(None, None, None)
    changes = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    )
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return MemoryMeasurement(int(peak), device, "torch.profiler memory events", result)


def _peak_mps(fn: Callable[[], Any], device: torch.device) -> MemoryMeasurement:  # pragma: no cover (no MPS here)
    torch.mps.synchronize()
    start = torch.mps.current_allocated_memory()
    highest = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            highest[0] = max(highest[0], torch.mps.current_allocated_memory())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
        torch.mps.synchronize()
    finally:
        done.set()
        sampler.join()
    highest[0] = max(highest[0], torch.mps.current_allocated_memory())
    return MemoryMeasurement(int(highest[0] - start), device, "torch.mps.current_allocated_memory, sampled", result)


@contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null for the block (C++ libraries write there, below Python)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor (some embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
