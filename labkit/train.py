"""`fit()`: the one training loop of the course, in plain PyTorch.

What happens in one optimizer step, in order:
1. take the next batch of indices (from a P×K sampler, or shuffled batches), tokenize it in the
   DataLoader (dynamic padding), move it to the device;
2. embed each text column with the model, call the loss (under autocast when the hardware has a fast
   low precision: bf16 on Ampere and newer GPUs, fp16 with a gradient scaler on a T4, fp32 on a CPU);
3. backward; after `grad_accum_steps` batches, clip the gradient norm and take an AdamW step
   (linear warm-up, then linear decay). The loss's own parameters — SoftmaxLoss's classifier, a learnable
   scale — are optimised too.

Gradient accumulation makes the *step* see more examples, but it adds no in-batch negatives: each
loss call still only compares the texts of its own batch. For more negatives, use a bigger batch with
`CachedMultipleNegativesRankingLoss` (GradCache).

Every `eval_every` steps the evaluator runs; the best model is kept. With `output_dir`, a checkpoint
(model, optimizer, scheduler, scaler, RNG states, data position) is written there, `resume=True` goes on
from it and gives the same result as a run that never stopped, and Ctrl-C leaves a usable checkpoint.

Several GPUs: the same call runs under ``torchrun --nproc_per_node=N``, one process per GPU. Each process
embeds its share of every batch, the loss sees the embeddings of all processes as one batch of N × the
per-process size, and DistributedDataParallel keeps the copies of the model identical; rank 0 alone prints
and writes files. The few lines that do it are marked "several processes"; `labkit.distributed` explains them.

Taught in notebooks/09_training.ipynb (several GPUs: notebooks/13_scaling_up.ipynb).
"""
from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from labkit import distributed
from labkit.world import World
from labkit.env import pick_device
from labkit.collate import Collate

CHECKPOINT_FILE = "checkpoint.pt"


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
    if device.type != "cuda":
        return "fp32"  # CPU autocast is slower than fp32 for these models
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


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


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _EpochBatches:
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
    model: nn.Module,
    loss: nn.Module,
    train_dataset: Dataset,
    *,
    batch_sampler=None,
    batch_size: int = 32,
    steps: int | None = None,
    epochs: int | None = None,
    lr: float = 2e-5,
    loss_lr: float | None = None,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    grad_accum_steps: int = 1,
    precision: str = "auto",
    max_length: int | None = None,
    evaluator: Callable[[nn.Module], dict] | None = None,
    metric: str | None = None,
    greater_is_better: bool = True,
    eval_every: int | None = None,
    restore_best: bool = True,
    output_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    num_workers: int | None = None,
    log_every: int | None = None,
    seed: int = 42,
    device: str | torch.device | None = None,
    show_progress: bool = True,
    live_plot: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train `model` with `loss` on `train_dataset`; return the history and the best evaluation.

    Args:
        model: an `EmbeddingModel` (anything with `.tokenizer` and `forward(features) -> embeddings`).
        loss: a loss from `labkit.losses`; its parameters, if any, are trained too (with `loss_lr`, default `lr`).
        train_dataset: a `labkit.collate.TextDataset` (texts + labels) or `PairDataset` (text columns + optional labels).
        batch_sampler: e.g. `PKBatchSampler(labels, p, k)`; without one, shuffled batches of `batch_size`.
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
    if (steps is None) == (epochs is None):
        raise ValueError("Give exactly one of steps= or epochs= (how long to train).")
    if grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps must be at least 1, got {grad_accum_steps}.")
    world = distributed.init_from_env()  # several processes: join them (a single process: nothing happens)
    device = distributed.process_device(pick_device(device), world)
    model.to(device)
    loss.to(device)
    precision = precision_for(device, precision)
    on_gpu = device.type == "cuda"

    batches_of = _EpochBatches(len(train_dataset), batch_sampler, batch_size, seed, world)
    batches_per_epoch = len(batches_of(0))
    if batches_per_epoch < grad_accum_steps:
        raise ValueError(
            f"One epoch has {batches_per_epoch} batches, fewer than grad_accum_steps={grad_accum_steps}: "
            "use more data, smaller batches or less accumulation."
        )
    total_steps = steps if steps is not None else epochs * (batches_per_epoch // grad_accum_steps)
    collate = Collate(model.tokenizer, max_length=max_length or getattr(model, "max_seq_length", 128))
    if num_workers is None:
        num_workers = 2 if on_gpu else 0  # on a 2-core CPU the main process is busy with the model

    model_params = [p for p in model.parameters() if p.requires_grad]
    # A loss that runs the model (GradCache) holds it as a submodule: its weights are trained once, as the model's.
    in_model = {id(p) for p in model_params}
    loss_params = [p for p in loss.parameters() if p.requires_grad and id(p) not in in_model]
    groups = [{"params": model_params}]
    if loss_params:
        groups.append({"params": loss_params, "lr": loss_lr or lr})
    optimizer = adamw(groups, lr=lr, weight_decay=weight_decay, device=device)
    warmup = int(warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(warmup, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # fp16 only (T4); CPU fp16 autocast too

    result = TrainResult(output_dir=Path(output_dir) if output_dir else None)
    best_state = None
    step, epoch, batch_in_epoch = 0, 0, 0
    checkpoint_path = result.output_dir / CHECKPOINT_FILE if result.output_dir else None
    rng_to_restore = None
    if resume:
        if checkpoint_path is None or not checkpoint_path.exists():
            raise FileNotFoundError(f"resume=True but there is no checkpoint at {checkpoint_path}: train without resume.")
        saved = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        loss.load_state_dict(saved["loss"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        step, epoch, batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        result.history, result.best_metric, result.best_step = saved["history"], saved["best_metric"], saved["best_step"]
        best_state = saved.get("best_state")
        rng_to_restore = saved["rng"]
    elif evaluator is not None:
        result.history.append(_evaluate(evaluator, model, step=0))

    def save_checkpoint() -> None:
        if checkpoint_path is None or not world.is_main:  # several processes: rank 0 writes for all
            return
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(), "loss": loss.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "step": step, "epoch": epoch,
                "batch_in_epoch": batch_in_epoch, "history": result.history, "best_metric": result.best_metric,
                "best_step": result.best_step, "best_state": best_state, "rng": _rng_state(),
            },
            tmp,
        )
        tmp.replace(checkpoint_path)  # atomic: a crash mid-write never corrupts the previous checkpoint

    from tqdm.auto import tqdm

    # Several processes: model + loss in one DDP module whose loss sees the batches of all processes.
    batch_loss = (distributed.data_parallel(model, loss, compute_loss, device) if world.is_distributed
                  else partial(compute_loss, model, loss))
    plot = _LivePlot(metric) if world.is_main and (live_plot if live_plot is not None else _in_notebook()) else None
    progress = tqdm(total=total_steps, initial=step, desc="train", disable=not show_progress or not world.is_main)
    log_every = log_every or (10 if on_gpu else 1)
    recent = torch.zeros(max(1, log_every), device=device)  # losses kept on the device between host syncs
    model.train()
    loss.train()
    started = time.perf_counter()
    try:
        while step < total_steps:
            loader = DataLoader(
                train_dataset,
                batch_sampler=batches_of(epoch)[batch_in_epoch:],
                collate_fn=collate,
                num_workers=num_workers,
                pin_memory=on_gpu,
            )
            batches = iter(loader)
            if rng_to_restore is not None:  # only now: starting the loader's iterator draws from the RNG
                _set_rng_state(rng_to_restore)
                rng_to_restore = None
            for features, labels in batches:
                features = to_device(features, device, non_blocking=on_gpu)
                labels = to_device(labels, device, non_blocking=on_gpu)
                ends_a_step = (batch_in_epoch + 1) % grad_accum_steps == 0
                with nullcontext() if ends_a_step else distributed.no_gradient_sync(batch_loss):
                    with autocast(device, precision):
                        value = batch_loss(features, labels)
                    scaler.scale(value / grad_accum_steps).backward()
                batch_in_epoch += 1
                recent[step % len(recent)] += value.detach().float() / grad_accum_steps
                if batch_in_epoch % grad_accum_steps:
                    continue

                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                progress.update(1)

                if step % log_every == 0 or step == total_steps:
                    values = recent.tolist()[: (step - 1) % log_every + 1]  # the one host sync
                    recent.zero_()
                    _check_finite(values, step, loss)
                    for offset, v in enumerate(values):
                        result.history.append({"step": step - len(values) + 1 + offset, "loss": v})
                        if on_step:
                            on_step(step - len(values) + 1 + offset, v)
                    progress.set_postfix(loss=f"{values[-1]:.4f}")
                if evaluator is not None and (step == total_steps or (eval_every and step % eval_every == 0)):
                    row = _evaluate(evaluator, model, step)
                    result.history.append(row)
                    best_state = _keep_if_best(row, result, metric, greater_is_better, model, best_state)
                    model.train()
                if plot is not None and (step % max(1, log_every) == 0 or step == total_steps):
                    plot.update(result.history)
                if checkpoint_every and step % checkpoint_every == 0:
                    save_checkpoint()
                if step >= total_steps:
                    break
            else:
                epoch, batch_in_epoch = epoch + 1, 0
    except KeyboardInterrupt:
        result.interrupted = True
        print(f"Interrupted at step {step}: saving what was trained so far.")
    finally:
        progress.close()
    result.steps = step
    save_checkpoint()
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if result.output_dir is not None and world.is_main:
        model.save(result.output_dir / "model")
    distributed.barrier()  # several processes: none returns before rank 0 has written the model
    result.seconds = time.perf_counter() - started
    return result


def _evaluate(evaluator, model, step: int) -> dict:
    model.eval()
    with torch.no_grad():
        metrics = evaluator(model)
    return {"step": step, **{k: float(v) for k, v in metrics.items()}}


def _keep_if_best(row: dict, result: TrainResult, metric: str | None, greater_is_better: bool, model, best_state):
    name = metric or next(k for k in row if k != "step")
    if name not in row:
        raise KeyError(f"metric={name!r} is not among the evaluator's results {sorted(k for k in row if k != 'step')}.")
    value = row[name]
    better = result.best_metric is None or (value > result.best_metric if greater_is_better else value < result.best_metric)
    if better:
        result.best_metric, result.best_step = value, row["step"]
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return best_state


def _check_finite(values: Sequence[float], step: int, loss: nn.Module) -> None:
    for offset, v in enumerate(values):
        if not math.isfinite(v):
            bad_step = step - len(values) + 1 + offset
            raise TrainingDiverged(
                f"{type(loss).__name__} returned {v} at step {bad_step}. Things to try: a lower learning rate, "
                "precision='fp32' (fp16 overflows easily), a smaller scale or margin, normalised embeddings, "
                "or check the batch for empty texts."
            )


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except ImportError:
        return False


class _LivePlot:
    """A loss (and metric) curve redrawn in place in a notebook while training runs."""

    def __init__(self, metric: str | None):
        from IPython.display import display
        import matplotlib.pyplot as plt

        self.metric = metric
        self.fig, self.ax = plt.subplots(figsize=(6, 3))
        plt.close(self.fig)  # shown through the display handle only, not again at the end of the cell
        self.handle = display(self.fig, display_id=True)

    def update(self, history: list[dict]) -> None:
        losses = [(r["step"], r["loss"]) for r in history if "loss" in r]
        evals = [r for r in history if "loss" not in r]
        self.ax.clear()
        if losses:
            self.ax.plot(*zip(*losses), label="train loss", lw=1)
        self.ax.set_xlabel("step")
        self.ax.legend(loc="upper left")
        if evals:
            name = self.metric or next(k for k in evals[0] if k != "step")
            if not hasattr(self, "ax2"):
                self.ax2 = self.ax.twinx()
            self.ax2.clear()
            self.ax2.plot([r["step"] for r in evals], [r[name] for r in evals], "o-", color="C1", label=f"dev {name}")
            self.ax2.legend(loc="upper right")
        self.handle.update(self.fig)
