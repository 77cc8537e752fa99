"""`fit()`: the one training loop of the course, in plain PyTorch.

What happens in one optimizer step, in order:
1. take the next batch of indices (from a P×K sampler, or shuffled batches), tokenize it in the
   DataLoader (dynamic padding), move it to the device;
2. embed each text column with the model, call the loss (under autocast when the hardware has a fast
   low precision: bf16 on Ampere and newer GPUs and on CPUs with native bf16 (AMX, avx512_bf16), fp16 with a gradient scaler on a T4, fp32 elsewhere);
3. backward; after `grad_accum_steps` batches, clip the gradient norm and take an AdamW step
   (linear warm-up, then linear decay). The loss's own parameters — SoftmaxLoss's classifier, a learnable
   scale — are optimised too.

Gradient accumulation makes the *step* see more examples, but it adds no in-batch negatives: each
loss call still only compares the texts of its own batch. For more negatives, use a bigger batch with
`CachedMultipleNegativesRankingLoss` (GradCache).

After each step, every `log_every` steps the losses are read back from the device (a NaN or inf stops
training); every `eval_every` steps the evaluator runs and the best model is kept; in a notebook a live
plot (`labkit.viz.LivePlot`) is redrawn. With `output_dir`, a checkpoint (`labkit.checkpoint`: model,
optimizer, scheduler, scaler, RNG states, data position) is written there, `resume=True` goes on from it
and gives the same result as a run that never stopped, and Ctrl-C leaves a usable checkpoint.

Several GPUs: the same call runs under ``torchrun --nproc_per_node=N``, one process per GPU. Each process
embeds its share of every batch, the loss sees the embeddings of all processes as one batch of N × the
per-process size, and DistributedDataParallel keeps the copies of the model identical; rank 0 alone prints
and writes files. The few lines that do it are marked "several processes"; `labkit.distributed` explains them.

`fit()` reads top to bottom; below it come its pieces, in the order it uses them.

Taught in notebooks/09_training.ipynb (several GPUs: notebooks/13_scaling_up.ipynb).
"""
from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from labkit import distributed
from labkit.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint, set_rng_state
from labkit.collate import Collate
from labkit.env import bf16_supported, pick_device
from labkit.viz import LivePlot, in_notebook
from labkit.world import World


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stops instead of silently ruining the weights."""


@dataclass
class TrainResult:
    """What `fit()` returns: the history of logged losses and evaluations, and where the best model is."""

    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    steps: int = 0
    interrupted: bool = False
    output_dir: Path | None = None
    seconds: float = 0.0

    @property
    def evaluations(self) -> list[dict]:
        return [row for row in self.history if "loss" not in row]

    @property
    def losses(self) -> list[dict]:
        return [row for row in self.history if "loss" in row]


def precision_for(device: torch.device, precision: str = "auto") -> str:
    """"bf16", "fp16" or "fp32": the fastest precision that is safe on this device."""
    if precision != "auto":
        if precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16', 'fp16' or 'fp32', got {precision!r}.")
        return precision
    if device.type == "cuda":
        return "bf16" if bf16_supported(device) else "fp16"
    # A CPU: bf16 autocast only where it has native bf16 units (0.59x fp32's step time on one); elsewhere the
    # emulation is slower than fp32. MPS: fp32.
    return "bf16" if bf16_supported(device) else "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def linear_warmup_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: 0 → 1 over the warm-up, then 1 → 0 linearly until the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def adamw(param_groups, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel where this PyTorch has one for the device (about 3× faster steps on a CPU)."""
    try:
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, fused=device.type in ("cuda", "cpu"))
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)


def to_device(batch, device: torch.device, non_blocking: bool = False):
    """Move a tensor, a dict of tensors or a list of dicts to `device`."""
    if batch is None:
        return None
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return [to_device(b, device, non_blocking) for b in batch]


def compute_loss(model: nn.Module, loss_fn: nn.Module, features, labels) -> torch.Tensor:
    """Embed each text column and hand the embeddings (and labels, if any) to the loss.

    One features dict → `loss(embeddings, labels)` (labelled batches). A list of features dicts →
    `loss(emb_a, emb_b, ..., labels)` (pairs with a label or score) or `loss(anchor, positive, *negatives)`.
    A loss that runs the model itself (GradCache) gets the features directly.
    """
    if getattr(loss_fn, "runs_the_model", False):
        return loss_fn(features, labels) if labels is not None else loss_fn(features)
    if isinstance(features, dict):
        return loss_fn(model(features), labels)
    embeddings = [model(f) for f in features]
    return loss_fn(*embeddings, labels) if labels is not None else loss_fn(*embeddings)


class EpochBatches:
    """The batches of one epoch as lists of indices, so a resumed run can skip the ones already done.

    With N processes, this process's share of each global batch: the sampler gives it (it was built with
    ``num_replicas``); without a sampler, each global batch of N·batch_size shuffled rows is cut in N.
    """

    def __init__(self, dataset_size: int, batch_sampler, batch_size: int, seed: int,
                 world: World = World()):
        shared_by = getattr(batch_sampler, "num_replicas", 1) if batch_sampler is not None else world.size
        if shared_by != world.size:
            raise ValueError(
                f"{world.size} process(es) are training, but {type(batch_sampler).__name__} shares each batch "
                f"between {shared_by} (a sampler without num_replicas gives every process the same batches). Build "
                "PKBatchSampler / NoDuplicatesBatchSampler in each training process without num_replicas and rank "
                "(they read them from torchrun's environment), or pass no sampler (shuffled batches)."
            )
        self.dataset_size = dataset_size
        self.batch_sampler = batch_sampler
        self.batch_size = batch_size
        self.seed = seed
        self.world = world

    def __call__(self, epoch: int) -> list[list[int]]:
        if self.batch_sampler is not None:
            if hasattr(self.batch_sampler, "set_epoch"):
                self.batch_sampler.set_epoch(epoch)
            return [list(map(int, b)) for b in self.batch_sampler]
        order = torch.randperm(self.dataset_size, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        size = self.batch_size * self.world.size  # the global batch of all processes
        full = len(order) // size * size  # drop the last, smaller batch
        mine = slice(self.world.rank * self.batch_size, (self.world.rank + 1) * self.batch_size)
        return [order[i : i + size][mine] for i in range(0, full, size)]


def fit(
    model: nn.Module, loss: nn.Module, train_dataset: Dataset, *,
    batch_sampler=None, batch_size: int = 32, steps: int | None = None, epochs: int | None = None,
    lr: float = 2e-5, loss_lr: float | None = None, warmup_ratio: float = 0.1, weight_decay: float = 0.01,
    max_grad_norm: float = 1.0, grad_accum_steps: int = 1, precision: str = "auto", max_length: int | None = None,
    evaluator: Callable[[nn.Module], dict] | None = None, metric: str | None = None, greater_is_better: bool = True,
    eval_every: int | None = None, restore_best: bool = True,
    output_dir: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = False,
    num_workers: int | None = None, log_every: int | None = None, seed: int = 42,
    device: str | torch.device | None = None, show_progress: bool = True, live_plot: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train `model` with `loss` on `train_dataset`; return the history and the best evaluation.

    Args:
        model: an `EmbeddingModel` (anything with `.tokenizer` and `forward(features) -> embeddings`).
        loss: a loss from `labkit.losses`; its parameters, if any, are trained too (with `loss_lr`, default `lr`).
        train_dataset: a `labkit.collate.TextDataset` (texts + labels) or `PairDataset` (text columns + optional labels).
        batch_sampler: e.g. `PKBatchSampler(labels, p, k)`; without one, shuffled batches of `batch_size`.
            For pairs with in-batch negatives, `NoDuplicatesBatchSampler(rows, batch_size, group_by_length=True)`
            batches rows of similar length together (less padding, faster steps).
        steps / epochs: how long to train (optimizer steps, or passes over the batches); one of them.
        evaluator: `evaluator(model) -> {"metric name": value, ...}`, run every `eval_every` steps and at the end;
            `metric` names the value that decides the best model (default: the first key).
        output_dir: where checkpoints and the best model go; `resume=True` continues from its checkpoint.
        precision: "auto" (bf16 / fp16 / fp32 by hardware), or force one.
        log_every: how often the loss is read back from the device (a host sync) and checked for NaN/inf;
            default every step on a CPU, every 10 on a GPU (a sync per step would stall the GPU's queue of work).

    Under ``torchrun`` (several processes), ``batch_size`` and the sampler's P are per process; the loss sees
    the batches of all processes together, and only rank 0 shows progress and writes to ``output_dir``
    (the evaluator runs in every process: same weights, same result).
    """
    _check_how_long(steps, epochs, grad_accum_steps)
    world = distributed.init_from_env()  # several processes: join them (a single process: nothing happens)
    device = distributed.process_device(pick_device(device), world)
    model.to(device)
    loss.to(device)
    precision = precision_for(device, precision)
    on_gpu = device.type == "cuda"

    batches_of = EpochBatches(len(train_dataset), batch_sampler, batch_size, seed, world)
    total_steps = _total_steps(batches_of, steps, epochs, grad_accum_steps)
    loader = _loader(train_dataset, model, max_length, num_workers, on_gpu)

    optimizer = _make_optimizer(model, loss, lr, loss_lr, weight_decay, device)
    scheduler = LambdaLR(optimizer, linear_warmup_decay(int(warmup_ratio * total_steps), total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # fp16 only (T4); CPU fp16 autocast too
    result = TrainResult(output_dir=Path(output_dir) if output_dir else None)
    run = _Run(model, loss, optimizer, scheduler, scaler, result)
    rng_to_restore = _resume(run, device) if resume else None
    if not resume and evaluator is not None:
        result.history.append(_evaluate(evaluator, model, step=0))

    batch_loss = _batch_loss(model, loss, world, device)
    plot = LivePlot(metric) if world.is_main and (live_plot if live_plot is not None else in_notebook()) else None
    progress = tqdm(total=total_steps, initial=run.step, desc="train", disable=not show_progress or not world.is_main)
    log_every = log_every or (10 if on_gpu else 1)
    recent = torch.zeros(max(1, log_every), device=device)  # losses kept on the device between host syncs
    batches = _batches(run, batches_of, loader, rng_to_restore)
    model.train()
    loss.train()
    started = time.perf_counter()
    try:
        while run.step < total_steps:
            _train_step(run, batches, batch_loss, recent, device=device, precision=precision,
                        grad_accum_steps=grad_accum_steps, max_grad_norm=max_grad_norm)
            run.step += 1
            progress.update(1)
            if run.step % log_every == 0 or run.step == total_steps:
                _log_losses(run, recent, log_every, on_step, progress)
            if evaluator is not None and (run.step == total_steps or (eval_every and run.step % eval_every == 0)):
                _evaluate_and_keep_best(run, evaluator, metric, greater_is_better)
            if plot is not None and (run.step % max(1, log_every) == 0 or run.step == total_steps):
                plot.update(result.history)
            if checkpoint_every and run.step % checkpoint_every == 0:
                _save_checkpoint(run, world)
    except KeyboardInterrupt:
        result.interrupted = True
        print(f"Interrupted at step {run.step}: saving what was trained so far.")
    finally:
        progress.close()
    result.steps = run.step
    _save_checkpoint(run, world)
    _save_model(run, restore_best, world)
    distributed.barrier()  # several processes: none returns before rank 0 has written the model
    result.seconds = time.perf_counter() - started
    return result


def _check_how_long(steps: int | None, epochs: int | None, grad_accum_steps: int) -> None:
    if (steps is None) == (epochs is None):
        raise ValueError("Give exactly one of steps= or epochs= (how long to train).")
    if grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps must be at least 1, got {grad_accum_steps}.")


def _total_steps(batches_of: EpochBatches, steps: int | None, epochs: int | None, grad_accum_steps: int) -> int:
    """`steps`, or the optimizer steps in `epochs` passes over the batches; refuses an epoch too short for one step."""
    batches_per_epoch = len(batches_of(0))
    if batches_per_epoch < grad_accum_steps:
        raise ValueError(
            f"One epoch has {batches_per_epoch} batches, fewer than grad_accum_steps={grad_accum_steps}: "
            "use more data, smaller batches or less accumulation."
        )
    return steps if steps is not None else epochs * (batches_per_epoch // grad_accum_steps)


def _loader(dataset: Dataset, model: nn.Module, max_length: int | None, num_workers: int | None,
            on_gpu: bool) -> Callable[..., DataLoader]:
    """`loader(batch_sampler=...)`: a DataLoader that tokenizes each batch with dynamic padding (`Collate`)."""
    collate = Collate(model.tokenizer, max_length=max_length or getattr(model, "max_seq_length", 128))
    if num_workers is None:
        num_workers = 2 if on_gpu else 0  # on a 2-core CPU the main process is busy with the model
    return partial(DataLoader, dataset, collate_fn=collate, num_workers=num_workers, pin_memory=on_gpu)


def _make_optimizer(model: nn.Module, loss: nn.Module, lr: float, loss_lr: float | None, weight_decay: float,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW over the model's trainable weights and the loss's own (at `loss_lr`, default `lr`)."""
    model_params = [p for p in model.parameters() if p.requires_grad]
    # A loss that runs the model (GradCache) holds it as a submodule: its weights are trained once, as the model's.
    in_model = {id(p) for p in model_params}
    loss_params = [p for p in loss.parameters() if p.requires_grad and id(p) not in in_model]
    groups = [{"params": model_params}]
    if loss_params:
        groups.append({"params": loss_params, "lr": loss_lr or lr})
    return adamw(groups, lr=lr, weight_decay=weight_decay, device=device)


@dataclass
class _Run:
    """Where a training run is: what a checkpoint saves, and what the step and its hooks move on."""

    model: nn.Module
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    result: TrainResult
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_state: dict | None = None
    warned_one_class: bool = False  # `_warn_if_one_class` warns once per run

    @property
    def checkpoint_path(self) -> Path | None:
        return self.result.output_dir / CHECKPOINT_FILE if self.result.output_dir else None

    def parts(self) -> dict:
        return {"model": self.model, "loss": self.loss, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "scaler": self.scaler}


def _save_checkpoint(run: _Run, world: World) -> None:
    if run.checkpoint_path is None or not world.is_main:  # several processes: rank 0 writes for all
        return
    save_checkpoint(run.checkpoint_path, run.parts(), step=run.step, epoch=run.epoch, batch_in_epoch=run.batch_in_epoch,
                    history=run.result.history, best_metric=run.result.best_metric, best_step=run.result.best_step,
                    best_state=run.best_state)


def _resume(run: _Run, device: torch.device) -> dict:
    """Load `run`'s checkpoint into it; return the RNG states, to restore once the data loader has started."""
    path = run.checkpoint_path
    if path is None or not path.exists():
        raise FileNotFoundError(f"resume=True but there is no checkpoint at {path}: train without resume.")
    saved = load_checkpoint(path, run.parts(), device)
    run.step, run.epoch, run.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
    result = run.result
    result.history, result.best_metric, result.best_step = saved["history"], saved["best_metric"], saved["best_step"]
    run.best_state = saved.get("best_state")
    return saved["rng"]


def _batch_loss(model: nn.Module, loss: nn.Module, world: World, device: torch.device) -> Callable:
    """`batch_loss(features, labels)`: `compute_loss` with this model and loss."""
    if world.is_distributed:  # several processes: model + loss in one DDP module whose loss sees all their batches
        return distributed.data_parallel(model, loss, compute_loss, device)
    return partial(compute_loss, model, loss)


def _batches(run: _Run, batches_of: EpochBatches, loader: Callable[..., DataLoader], rng_to_restore: dict | None):
    """The training batches, epoch after epoch, from `run`'s position on (a resumed run skips the ones done).

    `_train_step` counts `run.batch_in_epoch`; this moves `run.epoch` on when an epoch's batches run out.
    """
    while True:
        batches = iter(loader(batch_sampler=batches_of(run.epoch)[run.batch_in_epoch:]))
        if rng_to_restore is not None:  # only now: starting the loader's iterator draws from the RNG
            set_rng_state(rng_to_restore)
            rng_to_restore = None
        yield from batches
        run.epoch, run.batch_in_epoch = run.epoch + 1, 0


def _train_step(run: _Run, batches: Iterator, batch_loss: Callable, recent: torch.Tensor, *, device: torch.device,
                precision: str, grad_accum_steps: int, max_grad_norm: float) -> None:
    """One optimizer step: forward (under autocast) and backward on batches until `grad_accum_steps` of them
    have been summed (an epoch's leftover batches count in the next step), then clip the gradient norm and
    step the optimizer, the gradient scaler and the learning-rate schedule.

    The loss of each batch is added, on the device, to `recent[run.step % len(recent)]`.
    """
    on_gpu = device.type == "cuda"
    for features, labels in batches:
        if not run.warned_one_class and isinstance(features, dict) and labels is not None:
            _warn_if_one_class(run, labels)
        features = to_device(features, device, non_blocking=on_gpu)
        labels = to_device(labels, device, non_blocking=on_gpu)
        ends_a_step = (run.batch_in_epoch + 1) % grad_accum_steps == 0
        # Several processes: gradients are averaged across them once per step, on the batch that ends it.
        with nullcontext() if ends_a_step else distributed.no_gradient_sync(batch_loss):
            with autocast(device, precision):
                value = batch_loss(features, labels)
            run.scaler.scale(value / grad_accum_steps).backward()
        run.batch_in_epoch += 1
        recent[run.step % len(recent)] += value.detach().float() / grad_accum_steps
        if ends_a_step:
            break
    run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the fp16-scaled ones
    torch.nn.utils.clip_grad_norm_([p for g in run.optimizer.param_groups for p in g["params"]], max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()


def _warn_if_one_class(run: _Run, labels: torch.Tensor) -> None:
    """Warn (once per run) about a labelled batch of a single class: a loss that compares classes finds no
    negatives in it. One comparison on the batch's labels while they are still on the CPU: no device sync."""
    if labels.numel() < 2 or labels.is_floating_point() or not bool((labels == labels[0]).all()):
        return
    run.warned_one_class = True
    warnings.warn(
        f"training batch {run.batch_in_epoch} of epoch {run.epoch} holds a single class ({labels[0].item()}): "
        f"{type(run.loss).__name__} finds no negatives in it and learns nothing from it. Sample batches of several "
        "classes with labkit.sampling.PKBatchSampler(labels, p, k) (command line: --batch PxK, e.g. 8x4).",
        stacklevel=2)


def _log_losses(run: _Run, recent: torch.Tensor, log_every: int, on_step, progress) -> None:
    """Read the losses since the last log back from the device (the one host sync), check them, record them."""
    values = recent.tolist()[: (run.step - 1) % log_every + 1]
    recent.zero_()
    _check_finite(values, run.step, run.loss)
    first = run.step - len(values) + 1
    for offset, v in enumerate(values):
        run.result.history.append({"step": first + offset, "loss": v})
        if on_step:
            on_step(first + offset, v)
    progress.set_postfix(loss=f"{values[-1]:.4f}")


def _check_finite(values: Sequence[float], step: int, loss: nn.Module) -> None:
    for offset, v in enumerate(values):
        if not math.isfinite(v):
            bad_step = step - len(values) + 1 + offset
            raise TrainingDiverged(
                f"{type(loss).__name__} returned {v} at step {bad_step}. Things to try: a lower learning rate, "
                "precision='fp32' (fp16 overflows easily), a smaller scale or margin, normalised embeddings, "
                "or check the batch for empty texts."
            )


def _evaluate(evaluator, model, step: int) -> dict:
    model.eval()
    with torch.no_grad():
        metrics = evaluator(model)
    return {"step": step, **{k: float(v) for k, v in metrics.items()}}


def _evaluate_and_keep_best(run: _Run, evaluator, metric: str | None, greater_is_better: bool) -> None:
    """Evaluate, record the row, and keep a CPU copy of the weights if they are the best so far."""
    row = _evaluate(evaluator, run.model, run.step)
    run.result.history.append(row)
    name = metric or next(k for k in row if k != "step")
    if name not in row:
        raise KeyError(f"metric={name!r} is not among the evaluator's results {sorted(k for k in row if k != 'step')}.")
    value, best = row[name], run.result.best_metric
    if best is None or (value > best if greater_is_better else value < best):
        run.result.best_metric, run.result.best_step = value, row["step"]
        run.best_state = {k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()}
    run.model.train()


def _save_model(run: _Run, restore_best: bool, world: World) -> None:
    """Put the best evaluation's weights back (with `restore_best`); save the model to `output_dir`/model."""
    if restore_best and run.best_state is not None:
        run.model.load_state_dict(run.best_state)
    if run.result.output_dir is not None and world.is_main:  # several processes: rank 0 writes for all
        run.model.save(run.result.output_dir / "model")
