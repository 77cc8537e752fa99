"""labkit's `fit()` against sentence-transformers' `SentenceTransformerTrainer`: same model, loss, data, batches, steps.

Two questions, two modes:

* ``--mode quality``: do both loops reach the same test metrics? Banking77, all-MiniLM-L6-v2,
  `BatchHardTripletLoss(margin=0.5)` on P×K = 8×4 batches, lr 3e-5 with 10 % linear warm-up then linear decay,
  AdamW (weight decay 0.01), gradient clipping 1.0, max_seq_length 64, N steps; several seeds per framework (the
  seed draws the batch order and the dropout masks). Both trained models are evaluated by the same code
  (`labkit.evaluate.evaluate_retrieval` on the test split: MAP@R, P@1). "Same within noise" means the difference
  of the means is small next to the seed-to-seed spread.
* ``--mode throughput``: samples/s of both loops on the same settings, for `BatchHardTripletLoss` (P×K batches)
  and `MultipleNegativesRankingLoss` (pairs, no-duplicate batches), their peak memory and an *estimate* of the
  model FLOP utilisation. Warm-up steps are not timed; CUDA is synchronised before each clock reading (both loops
  get the same per-step synchronisation). ``--clock thread`` times CPU runs by the CPU time of the training thread,
  for a shared machine (it sets one torch thread, so that thread does all the work). ``--precisions fp32
  bf16`` runs both precisions for both frameworks into one report, with the ratio of labkit's default ("auto")
  to the ST trainer's default (fp32). Peak memory (`labkit.memory.peak_memory`) is measured in a separate
  1-step run around the framework's training call only: the weights are already there, so it is what a
  training step adds (gradients, AdamW state, activations). One step, because on a CPU the profiler's running sum of allocations and frees grew
  by about 90–170 MiB per further MiniLM step in both frameworks (apparently frees it does not pair with their
  allocations), so a longer run reports a "peak" that grows with the number of steps. On CUDA the figure is
  exact. Model FLOP/s = 6 × (non-embedding parameters) × (token positions, padding included) / s, the usual
  forward + backward estimate without attention's L² term; MFU divides it by the device's peak (a table of
  GPUs, or ``--peak-tflops``). Both are estimates.

How "the same" is made sure of, and checked on every run:

* Weights: the starting model is built once with labkit (pre-trained, or random weights from a config), saved in
  sentence-transformers format, and both frameworks load that folder.
* Batches: both get the very same sampler (`labkit.sampling.PKBatchSampler` / `NoDuplicatesBatchSampler`; the ST
  trainer takes it through its ``batch_sampler`` callable argument). A hook on the token-embedding table records
  the token ids each training forward pass sees, and the report says whether the two frameworks saw identical ones.
* Steps and learning rates: a global optimizer-step hook counts the optimizer steps and records the learning rate
  each one used; the report prints both schedules side by side.
* Known differences that remain (the ST trainer is used as its users use it): Hugging Face's warm-up starts at
  lr 0 at the first step (factor ``step / warmup``), labkit's at ``lr / warmup`` (factor ``(step + 1) / warmup``);
  Hugging Face's AdamW exempts biases and LayerNorm weights from weight decay, labkit decays all weights. Both are
  measured and printed, not hidden; with lr 3e-5 and weight decay 0.01 the decay difference moves a weight by
  about 3e-7 of itself per step.

The ST trainer needs the ``datasets`` and ``accelerate`` packages (``pip install "sentence-transformers[train]"``).

Usage::

    python benchmarks/trainer.py --mode quality --steps 100 --seeds 0 1 2 --json quality.json
    python benchmarks/trainer.py --mode throughput --steps 8 --warmup-steps 2 --clock thread --json throughput.json
    python benchmarks/trainer.py --mode throughput --clock thread --precisions fp32 bf16   # both precisions, one report
    python benchmarks/trainer.py --mode throughput --random-weights --steps 50       # on a GPU: bf16, MiniLM config
    python benchmarks/trainer.py --mode throughput --model tiny --steps 3            # seconds, on a CPU
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here comes from a local folder
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars (ST's model-card callback, encode) would flood the log

import numpy as np
import pandas as pd
import torch

import labkit
from labkit import losses as labkit_losses
from labkit.env import cpu_name
from labkit.evaluate import evaluate_retrieval
from labkit.memory import peak_memory
from labkit.model import EmbeddingModel, default_model_path, load_model, tiny_model
from labkit.sampling import NoDuplicatesBatchSampler, PKBatchSampler
from labkit.collate import PairDataset, TextDataset
from labkit.train import fit, pick_device, precision_for

LABKIT, ST = "labkit", "sentence-transformers"
FRAMEWORKS = (LABKIT, ST)
BATCH_HARD, MNRL = "BatchHardTripletLoss", "MultipleNegativesRankingLoss"

# Dense bf16/fp16 tensor-core peaks (no sparsity) from the vendors' data sheets, in FLOP/s. The first name found
# in torch.cuda.get_device_name() wins, so the longer names come first.
PEAK_FLOPS = {
    "H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L40": 181e12,
    "A10G": 125e12, "A10": 125e12, "L4": 121e12, "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12,
    "T4": 65e12,
}


@dataclass
class Settings:
    """Everything both frameworks are given; one instance describes one training run."""

    loss: str = BATCH_HARD
    steps: int = 150
    seed: int = 0
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_seq_length: int = 64
    p: int = 8  # P×K batches (BatchHardTripletLoss)
    k: int = 4
    batch_size: int = 32  # pairs per batch (MultipleNegativesRankingLoss)
    margin: float = 0.5
    precision: str = "auto"
    device: str | None = None
    clock: str = "wall"  # step timing: "wall" (perf_counter) or "thread" (CPU time of this thread, CPU runs only)

    @property
    def samples_per_step(self) -> int:
        """Texts per optimizer step (a pair counts as two texts)."""
        return self.p * self.k if self.loss == BATCH_HARD else 2 * self.batch_size


@dataclass
class RunRecord:
    """What one training run did, measured from outside the framework (hooks), plus its timings."""

    framework: str
    seed: int
    optimizer_steps: int = 0
    reported_steps: int = 0  # what the framework itself says it did
    learning_rates: list = field(default_factory=list)  # the lr each optimizer step used
    step_times: list = field(default_factory=list)  # clock after each optimizer step (CUDA synchronised)
    batches: list = field(default_factory=list)  # token ids (B, L) of every training forward pass
    optimizer: dict = field(default_factory=dict)  # class, betas, eps, fused, weight decay per parameter group
    weight_change: float = 0.0  # largest |w_after - w_before| over the transformer's weights
    seconds: float = 0.0
    peak_memory_mib: float | None = None  # with measure_memory: tensor memory the training call added at its peak
    memory_method: str | None = None
    metrics: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# The starting model, shared by both frameworks
# ---------------------------------------------------------------------------------------------------------------
def build_start_model(model: str, max_seq_length: int, model_config: str | None = None,
                      random_weights: bool = False, seed: int = 0) -> EmbeddingModel:
    """The model both frameworks start from: "minilm" (pre-trained, or random from its config) or "tiny"."""
    if model == "tiny":
        built = tiny_model(seed=seed)
    elif model_config or random_weights:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config = AutoConfig.from_pretrained(model_config or default_model_path())
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(default_model_path())
        built = EmbeddingModel(AutoModel.from_config(config), tokenizer, pooling="mean", normalize=True,
                               name_or_path=f"random weights from {model_config or 'the all-MiniLM-L6-v2 config'}")
    elif model == "minilm":
        built = load_model()
    else:
        built = load_model(model)
    built.max_seq_length = max_seq_length
    return built.cpu()


def save_start_model(model: EmbeddingModel, folder: Path) -> Path:
    """Save in sentence-transformers format: labkit and ST both load these exact weights."""
    return model.save(folder)


def load_labkit(folder: Path, settings: Settings) -> EmbeddingModel:
    quiet_libraries()
    return load_model(folder, device="cpu", max_seq_length=settings.max_seq_length)


def quiet_libraries() -> None:
    """Hide transformers' per-load weight reports and deprecation notes: the tables are the output here."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_st(folder: Path, settings: Settings):
    from sentence_transformers import SentenceTransformer

    quiet_libraries()

    model = SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = settings.max_seq_length
    return model


def st_transformer(model) -> torch.nn.Module:
    """The Hugging Face model inside a SentenceTransformer (the module labkit calls `.transformer`)."""
    return model[0].auto_model


def non_embedding_parameters(transformer: torch.nn.Module) -> int:
    """Parameters that take part in matrix multiplies (the token/position embedding tables do not)."""
    embedding = sum(p.numel() for m in transformer.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters())
    return sum(p.numel() for p in transformer.parameters()) - embedding


# ---------------------------------------------------------------------------------------------------------------
# Data and samplers
# ---------------------------------------------------------------------------------------------------------------
def pairs_from_classes(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """(anchor, positive) rows: each text paired with another text of its class, for MNRL."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(frame)), frame["label"].to_numpy()))
    shuffled = frame.iloc[order].reset_index(drop=True)
    first_of_pair = np.flatnonzero(
        (np.arange(len(shuffled)) % 2 == 0)[:-1] & (shuffled["label"].to_numpy()[:-1] == shuffled["label"].to_numpy()[1:])
    )
    return pd.DataFrame({"anchor": shuffled["text"].to_numpy()[first_of_pair],
                         "positive": shuffled["text"].to_numpy()[first_of_pair + 1]})


def make_sampler(data: pd.DataFrame, settings: Settings):
    """A fresh sampler for one run (each framework gets its own instance, built from the same arguments)."""
    if settings.loss == BATCH_HARD:
        return PKBatchSampler(data["label"].to_numpy(), settings.p, settings.k, seed=settings.seed)
    return NoDuplicatesBatchSampler(data[["anchor", "positive"]], settings.batch_size, seed=settings.seed)


# ---------------------------------------------------------------------------------------------------------------
# Measuring from outside: optimizer steps, learning rates, the token ids fed, step times
# ---------------------------------------------------------------------------------------------------------------
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_optimizer(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's hyperparameters as the step sees them (what a framework set, not what it was asked)."""
    groups = optimizer.param_groups
    return {
        "class": type(optimizer).__name__,
        "betas": list(groups[0].get("betas", ())), "eps": groups[0].get("eps"), "fused": groups[0].get("fused"),
        "weight_decay_by_group": [{"weight_decay": g["weight_decay"], "tensors": len(g["params"]),
                                   "values": sum(p.numel() for p in g["params"])} for g in groups if g["params"]],
    }


def call_measured(train_call, record: RunRecord, device: torch.device, measure_memory: bool):
    """Run the framework's training call; with `measure_memory`, under `labkit.memory.peak_memory`.

    Only the call is measured: the weights are already on the device, so the figure is what training adds at its
    peak (gradients, AdamW's two moment buffers, activations, the loss's B×B matrices), the same for both.
    """
    if not measure_memory:
        return train_call()
    # Free the previous runs' garbage now: the HF trainer leaves reference cycles (trainer, callbacks, model), and
    # if the cyclic collector frees a previous model's tensors *during* the measured call, the CPU profiler counts
    # those frees against this run (ST came out 87 or 174 MiB, one or two weight copies, too low without this).
    gc.collect()
    measured = peak_memory(train_call, device=device)
    record.peak_memory_mib, record.memory_method = measured.peak_mib, measured.method
    return measured.result


def clock(settings: Settings) -> float:
    """The time stamp of a step. On a shared CPU, "thread" counts only the CPU time of the training thread (with
    one torch thread, no DataLoader workers and no tokenizer threads that is all the work), so time other processes
    take while the step is descheduled is not charged to it."""
    return time.thread_time() if settings.clock == "thread" else time.perf_counter()


@contextmanager
def recording(record: RunRecord, transformer: torch.nn.Module, device: torch.device, keep_batches: bool = True):
    """Count optimizer steps with the lr each used, and keep the token ids of every training forward pass."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    def on_optimizer_step(optimizer, args, kwargs):
        if not record.optimizer_steps:
            record.optimizer = describe_optimizer(optimizer)
        record.optimizer_steps += 1
        record.learning_rates.append(float(optimizer.param_groups[0]["lr"]))

    def on_token_lookup(module, args):
        if module.training and keep_batches:
            record.batches.append(args[0].detach())  # no host sync here; moved to the CPU afterwards

    # The hook sits on the token-embedding table: sentence-transformers calls the transformer's `forward` method
    # directly (no module hooks run there), but every forward pass looks its token ids up in this table.
    step_hook = register_optimizer_step_pre_hook(on_optimizer_step)
    lookup_hook = transformer.get_input_embeddings().register_forward_pre_hook(on_token_lookup)
    try:
        yield record
    finally:
        step_hook.remove()
        lookup_hook.remove()
        record.batches = [ids.cpu() for ids in record.batches]


def max_weight_change(before: dict, transformer: torch.nn.Module) -> float:
    after = transformer.state_dict()
    return max(float((after[name].detach().cpu().float() - value.float()).abs().max()) for name, value in before.items())


def snapshot(transformer: torch.nn.Module) -> dict:
    """The weights that embeddings depend on. BERT's pooler is left out: mean pooling never uses it, and a checkpoint
    without it (the tiny model) gets a fresh random one at every load."""
    return {name: value.detach().cpu().clone() for name, value in transformer.state_dict().items()
            if not name.startswith("pooler.")}


# ---------------------------------------------------------------------------------------------------------------
# One training run per framework
# ---------------------------------------------------------------------------------------------------------------
def train_labkit(folder: Path, data: pd.DataFrame, settings: Settings, keep_batches: bool = True,
                 measure_memory: bool = False):
    """Train a fresh copy of the start model with `labkit.train.fit`; return (model, RunRecord)."""
    device = pick_device(settings.device)
    model = load_labkit(folder, settings).to(device)
    if settings.loss == BATCH_HARD:
        loss = labkit_losses.BatchHardTripletLoss(margin=settings.margin)
        dataset = TextDataset(data["text"].tolist(), data["label"].tolist())
    else:
        loss = labkit_losses.MultipleNegativesRankingLoss()
        dataset = PairDataset(data["anchor"].tolist(), data["positive"].tolist())
    record = RunRecord(LABKIT, settings.seed)
    before = snapshot(model.transformer)
    torch.manual_seed(settings.seed)  # dropout masks; the ST trainer seeds itself the same way (set_seed)

    def on_step(step, value):
        _synchronize(device)
        record.step_times.append(clock(settings))

    with recording(record, model.transformer, device, keep_batches):
        started = time.perf_counter()
        result = call_measured(lambda: fit(
            model, loss, dataset, batch_sampler=make_sampler(data, settings), steps=settings.steps, lr=settings.lr,
            warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay, max_grad_norm=settings.max_grad_norm,
            precision=settings.precision, max_length=settings.max_seq_length, seed=settings.seed, device=device,
            show_progress=False, live_plot=False, log_every=1, on_step=on_step,
        ), record, device, measure_memory)
        _synchronize(device)
        record.seconds = time.perf_counter() - started
    record.reported_steps = result.steps
    record.weight_change = max_weight_change(before, model.transformer)
    return model, record


class _StepClock:
    """A TrainerCallback (built lazily: transformers is imported only when the ST trainer runs)."""

    def __new__(cls, record: RunRecord, device: torch.device, settings: Settings):
        from transformers import TrainerCallback

        class StepClock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                _synchronize(device)
                record.step_times.append(clock(settings))

        return StepClock()


def train_st(folder: Path, data: pd.DataFrame, settings: Settings, keep_batches: bool = True,
             measure_memory: bool = False):
    """Train a fresh copy of the start model with `SentenceTransformerTrainer`; return (model, RunRecord)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses as st_losses
    from transformers import PrinterCallback

    device = pick_device(settings.device)
    precision = precision_for(device, settings.precision)
    model = load_st(folder, settings).to(device)
    if settings.loss == BATCH_HARD:
        loss = st_losses.BatchHardTripletLoss(model, margin=settings.margin)
        dataset = Dataset.from_dict({"text": data["text"].tolist(), "label": data["label"].tolist()})
    else:
        loss = st_losses.MultipleNegativesRankingLoss(model)
        dataset = Dataset.from_dict({"anchor": data["anchor"].tolist(), "positive": data["positive"].tolist()})

    def same_sampler_as_labkit(dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        return make_sampler(data, settings)  # the trainer's own batch_size / seed are not used

    record = RunRecord(ST, settings.seed)
    transformer = st_transformer(model)
    before = snapshot(transformer)
    with tempfile.TemporaryDirectory(prefix="st-trainer-") as output_dir:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir, max_steps=settings.steps, learning_rate=settings.lr,
            warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio of max_steps in transformers 5
            lr_scheduler_type="linear", weight_decay=settings.weight_decay,
            max_grad_norm=settings.max_grad_norm, per_device_train_batch_size=settings.samples_per_step,
            batch_sampler=same_sampler_as_labkit, seed=settings.seed, bf16=precision == "bf16",
            fp16=precision == "fp16", use_cpu=device.type == "cpu", report_to="none", save_strategy="no",
            logging_strategy="no", disable_tqdm=True, dataloader_num_workers=2 if device.type == "cuda" else 0,
            dataloader_pin_memory=device.type == "cuda",
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                             callbacks=[_StepClock(record, device, settings)])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict; labkit's fit prints nothing either
        with recording(record, transformer, device, keep_batches):
            started = time.perf_counter()
            call_measured(trainer.train, record, device, measure_memory)
            _synchronize(device)
            record.seconds = time.perf_counter() - started
    record.reported_steps = int(trainer.state.global_step)
    record.weight_change = max_weight_change(before, transformer)
    return model, record


TRAINERS = {LABKIT: train_labkit, ST: train_st}


def same_batches(a: RunRecord, b: RunRecord) -> bool:
    """Did both runs feed the model exactly the same token ids (hence the same texts, same order)?"""
    return len(a.batches) == len(b.batches) and all(
        x.shape == y.shape and torch.equal(x, y) for x, y in zip(a.batches, b.batches)
    )


def evaluate_as_labkit(model, framework: str, folder: Path, settings: Settings, test: pd.DataFrame) -> dict:
    """Test metrics through one code path: an ST-trained transformer is put into a labkit EmbeddingModel first."""
    if framework == ST:
        trained = st_transformer(model)
        model = load_labkit(folder, settings)
        model.transformer.load_state_dict({k: v.cpu() for k, v in trained.state_dict().items()})
    model = model.to(pick_device(settings.device)).eval()
    metrics = evaluate_retrieval(model, test["text"].tolist(), test["label"].to_numpy(), batch_size=64, ks=(1,))
    return {"map_at_r": metrics["mean_average_precision_at_r"], "p_at_1": metrics["precision_at_1"]}


# ---------------------------------------------------------------------------------------------------------------
# Quality mode
# ---------------------------------------------------------------------------------------------------------------
def run_quality(folder: Path, train: pd.DataFrame, test: pd.DataFrame, settings: Settings, seeds,
                evaluate_start: bool = True, progress=print, on_run=None) -> dict:
    """Train both frameworks once per seed (same seed → same batches) and evaluate all on `test`."""
    report = {"mode": "quality", "settings": asdict(settings), "seeds": list(seeds), "runs": [], "checks": []}
    if evaluate_start:
        report["start"] = evaluate_as_labkit(load_labkit(folder, settings), LABKIT, folder, settings, test)
        progress(f"start model: MAP@R {report['start']['map_at_r']:.4f}  P@1 {report['start']['p_at_1']:.4f}")
    for seed in seeds:
        run_settings = replace(settings, seed=seed)
        records = {}
        for framework in FRAMEWORKS:
            model, record = TRAINERS[framework](folder, train, run_settings)
            record.metrics = evaluate_as_labkit(model, framework, folder, run_settings, test)
            records[framework] = record
            report["runs"].append(_run_row(record))
            progress(f"seed {seed} {framework:>21}: {record.optimizer_steps} steps in {record.seconds:.0f} s, "
                     f"MAP@R {record.metrics['map_at_r']:.4f}  P@1 {record.metrics['p_at_1']:.4f}")
            del model
        report["checks"].append(_checks(records[LABKIT], records[ST], seed))
        if seed == seeds[0]:
            report["lr_schedule"] = {f: records[f].learning_rates for f in FRAMEWORKS}
        if on_run:
            on_run(report)
    report["summary"] = summarize_quality(report["runs"])
    return report


def _run_row(record: RunRecord) -> dict:
    return {"framework": record.framework, "seed": record.seed, "optimizer_steps": record.optimizer_steps,
            "reported_steps": record.reported_steps, "seconds": record.seconds,
            "weight_change": record.weight_change, **record.metrics}


def _checks(a: RunRecord, b: RunRecord, seed: int) -> dict:
    lr_a, lr_b = np.array(a.learning_rates), np.array(b.learning_rates)
    return {
        "seed": seed,
        "same_batches": same_batches(a, b),
        "forward_passes": [len(a.batches), len(b.batches)],
        "optimizer_steps": [a.optimizer_steps, b.optimizer_steps],
        "both_trained": a.weight_change > 0 and b.weight_change > 0,
        "peak_lr": [float(lr_a.max()), float(lr_b.max())] if len(lr_a) and len(lr_b) else None,
        "optimizer": [a.optimizer, b.optimizer],
        "max_lr_difference": float(np.abs(lr_a - lr_b).max()) if len(lr_a) == len(lr_b) and len(lr_a) else None,
    }


def summarize_quality(runs: list) -> dict:
    """Mean and sample standard deviation per framework and metric; the difference in units of the spread."""
    summary = {}
    for metric in ("map_at_r", "p_at_1"):
        values = {f: [r[metric] for r in runs if r["framework"] == f] for f in FRAMEWORKS}
        stats = {f: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                     "min": min(v), "max": max(v), "n": len(v)} for f, v in values.items() if v}
        if len(stats) == 2:
            difference = stats[LABKIT]["mean"] - stats[ST]["mean"]
            pooled = ((stats[LABKIT]["std"] ** 2 + stats[ST]["std"] ** 2) / 2) ** 0.5
            # standard error of a difference of two means of n runs each, from the pooled seed-to-seed spread
            n = min(stats[LABKIT]["n"], stats[ST]["n"])
            standard_error = pooled * (2 / n) ** 0.5
            stats["difference"] = difference
            stats["pooled_std"] = pooled
            stats["difference_in_std"] = difference / pooled if pooled > 0 else None
            stats["difference_in_standard_errors"] = difference / standard_error if standard_error > 0 else None
            # The same seed gives both frameworks the same batches, so the per-seed differences are paired.
            by_seed = {(r["framework"], r["seed"]): r[metric] for r in runs}
            paired = [by_seed[(LABKIT, s)] - by_seed[(ST, s)] for f, s in by_seed if f == LABKIT and (ST, s) in by_seed]
            stats["paired_differences"] = paired
            stats["paired_difference_std"] = statistics.stdev(paired) if len(paired) > 1 else None
        summary[metric] = stats
    return summary


def format_quality(report: dict) -> str:
    lines = ["| framework | seeds | MAP@R mean ± std (min–max) | P@1 mean ± std (min–max) | s / run |",
             "|---|---:|---|---|---:|"]
    if "start" in report:
        lines.append(f"| start model (no training) | – | {report['start']['map_at_r']:.4f} | {report['start']['p_at_1']:.4f} | – |")
    for framework in FRAMEWORKS:
        rows = [r for r in report["runs"] if r["framework"] == framework]
        if not rows:
            continue
        cells = []
        for metric in ("map_at_r", "p_at_1"):
            s = report["summary"][metric][framework]
            cells.append(f"{s['mean']:.4f} ± {s['std']:.4f} ({s['min']:.4f}–{s['max']:.4f})")
        seconds = statistics.fmean(r["seconds"] for r in rows)
        lines.append(f"| {framework} | {len(rows)} | {cells[0]} | {cells[1]} | {seconds:.0f} |")
    for metric, name in (("map_at_r", "MAP@R"), ("p_at_1", "P@1")):
        s = report["summary"][metric]
        if "difference" in s:
            in_std = "–" if s["difference_in_std"] is None else f"{s['difference_in_std']:+.2f}"
            in_se = "–" if s["difference_in_standard_errors"] is None else f"{s['difference_in_standard_errors']:+.2f}"
            paired = ", ".join(f"{d:+.4f}" for d in s["paired_differences"])
            lines.append(f"\n{name}: labkit − ST = {s['difference']:+.4f}; pooled seed std {s['pooled_std']:.4f}; "
                         f"difference = {in_std} seed std = {in_se} standard errors of the difference. "
                         f"Per seed (same batches), labkit − ST: {paired}.")
    lines.append("\nPer run:\n\n| seed | framework | optimizer steps | MAP@R | P@1 | s |\n|---:|---|---:|---:|---:|---:|")
    for r in report["runs"]:
        lines.append(f"| {r['seed']} | {r['framework']} | {r['optimizer_steps']} | {r['map_at_r']:.4f} | "
                     f"{r['p_at_1']:.4f} | {r['seconds']:.0f} |")
    lines.append("\nChecks per seed: " + "; ".join(
        f"seed {c['seed']}: same batches {c['same_batches']}, optimizer steps {c['optimizer_steps']}, "
        f"both trained {c['both_trained']}, max |lr difference| {c['max_lr_difference']:.2e}"
        for c in report["checks"]))
    if report["checks"]:
        lines.append("\n" + format_optimizers(report["checks"][0]["optimizer"]))
    if "lr_schedule" in report:
        lines.append("\n" + format_lr_schedule(report["lr_schedule"]))
    return "\n".join(lines)


def format_optimizers(optimizers: list) -> str:
    rows = ["| | optimizer | betas | eps | fused | weight decay: tensors (values) per group |", "|---|---|---|---|---|---|"]
    for framework, o in zip(FRAMEWORKS, optimizers):
        groups = ", ".join(f"{g['weight_decay']}: {g['tensors']} ({g['values']:,})" for g in o["weight_decay_by_group"])
        rows.append(f"| {framework} | {o['class']} | {tuple(o['betas'])} | {o['eps']} | {o['fused']} | {groups} |")
    return "Optimizer as each framework built it:\n\n" + "\n".join(rows)


def format_lr_schedule(schedules: dict, show: int = 4) -> str:
    """The learning rate each optimizer step used, both frameworks side by side (start, end of warm-up, end)."""
    a, b = schedules[LABKIT], schedules[ST]
    n = max(len(a), len(b))
    peak = max(a + b) if a + b else 0.0
    warmup_end = next((i for i, v in enumerate(a) if v >= peak * (1 - 1e-9)), 0)
    shown = sorted({i for i in [*range(min(show, n)), *range(max(0, warmup_end - 1), min(n, warmup_end + 2)),
                                *range(max(0, n - 2), n)]})
    rows = ["| optimizer step | lr labkit | lr sentence-transformers |", "|---:|---:|---:|"]
    for i in shown:
        cell = lambda s: f"{s[i]:.3e}" if i < len(s) else "–"  # noqa: E731
        rows.append(f"| {i + 1} | {cell(a)} | {cell(b)} |")
    return "Learning rate used by each optimizer step (seed 0 runs):\n\n" + "\n".join(rows)


# ---------------------------------------------------------------------------------------------------------------
# Throughput mode
# ---------------------------------------------------------------------------------------------------------------
def padded_tokens(batches: list) -> int:
    """Token positions the model computed on (dynamic padding: batch × longest text, per forward pass)."""
    return int(sum(ids.numel() for ids in batches))


def run_throughput(folder: Path, data: dict, settings: Settings, warmup_steps: int, peak_flops: float | None,
                   losses=(BATCH_HARD, MNRL), measure_memory: bool = True, progress=print) -> dict:
    """Per loss and framework: samples/s and tokens/s after `warmup_steps` untimed steps, peak memory, est. MFU."""
    device = pick_device(settings.device)
    parameters = non_embedding_parameters(load_labkit(folder, settings).transformer)
    report = {"mode": "throughput", "settings": asdict(settings), "warmup_steps": warmup_steps,
              "device": str(device), "precision": precision_for(device, settings.precision),
              "auto_precision": precision_for(device, "auto"),
              "non_embedding_parameters": parameters, "peak_flops": peak_flops, "rows": [], "checks": []}
    for loss in losses:
        run_settings = replace(settings, loss=loss, steps=settings.steps + warmup_steps)
        records, memory = {}, {}
        # Memory first, in 1-step runs (module docstring: why one step; the profiler would also slow timed steps).
        for framework in FRAMEWORKS if measure_memory else ():
            _, memory[framework] = TRAINERS[framework](folder, data[loss], replace(run_settings, steps=1),
                                                       keep_batches=False, measure_memory=True)
        for framework in FRAMEWORKS:
            model, record = TRAINERS[framework](folder, data[loss], run_settings)
            del model
            records[framework] = record
            timed = record.step_times[warmup_steps:]
            if len(record.step_times) <= warmup_steps or len(timed) < 1:
                raise RuntimeError(f"{framework} reported {len(record.step_times)} steps, fewer than warm-up + 1.")
            seconds = record.step_times[-1] - record.step_times[warmup_steps - 1] if warmup_steps else None
            if seconds is None:  # no warm-up: time from the first step's end, one step fewer
                seconds, timed = record.step_times[-1] - record.step_times[0], timed[1:]
            steps_timed = len(timed)
            forwards_per_step = 1 if loss == BATCH_HARD else 2
            tokens = padded_tokens(record.batches[-steps_timed * forwards_per_step:])
            row = {"loss": loss, "framework": framework, "precision": report["precision"],
                   "steps_timed": steps_timed, "seconds": seconds,
                   "samples_per_s": steps_timed * run_settings.samples_per_step / seconds,
                   "tokens_per_s": tokens / seconds, "optimizer_steps": record.optimizer_steps}
            row["model_flops_per_s"] = 6 * parameters * row["tokens_per_s"]  # forward 2·N, backward 4·N per token
            row["mfu_estimate"] = row["model_flops_per_s"] / peak_flops if peak_flops else None
            if measure_memory:
                row["peak_memory_mib"] = memory[framework].peak_memory_mib
                row["memory_method"] = memory[framework].memory_method
            report["rows"].append(row)
            progress(f"{loss} {framework:>21}: {row['samples_per_s']:.1f} samples/s, {row['tokens_per_s']:.0f} tokens/s"
                     + (f", peak {row['peak_memory_mib']:.0f} MiB" if measure_memory else ""))
        check = _checks(records[LABKIT], records[ST], settings.seed)
        check["loss"], check["precision"] = loss, report["precision"]
        report["checks"].append(check)
    return report


def merge_throughput(reports: list[dict]) -> dict:
    """One report of several precisions' runs (``--precisions``): all rows and checks, the precisions listed."""
    merged = dict(reports[0])
    if len(reports) > 1:
        merged.update(precision=[r["precision"] for r in reports], rows=[row for r in reports for row in r["rows"]],
                      checks=[check for r in reports for check in r["checks"]])
    return merged


def _auto_vs_st_default(report: dict) -> list[str]:
    """labkit's default precision ("auto") against the ST trainer's default (fp32), where both were run."""
    auto = report.get("auto_precision")
    rows = {(r["loss"], r["framework"], r.get("precision")): r for r in report["rows"]}
    lines = []
    for loss in dict.fromkeys(r["loss"] for r in report["rows"]):
        ours, theirs = rows.get((loss, LABKIT, auto)), rows.get((loss, ST, "fp32"))
        if auto != "fp32" and ours and theirs:
            lines.append(f"| {loss} | {ours['samples_per_s'] / theirs['samples_per_s']:.2f} | "
                         f"{_memory_ratio(ours, theirs)} |")
    if not lines:
        return []
    return ["", f"| loss | samples/s labkit auto ({auto}) / ST default (fp32) | peak memory |", "|---|---:|---:|"] + lines


def _memory_ratio(ours: dict, theirs: dict) -> str:
    if ours.get("peak_memory_mib") is None or not theirs.get("peak_memory_mib"):
        return "–"
    return f"{ours['peak_memory_mib'] / theirs['peak_memory_mib']:.2f}"


def format_throughput(report: dict) -> str:
    lines = ["| loss | framework | precision | samples/s | tokens/s | model GFLOP/s (6·N·tokens/s) | MFU (estimate) | "
             "peak memory MiB |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        memory = f"{r['peak_memory_mib']:.0f}" if r.get("peak_memory_mib") is not None else "–"
        mfu = f"{100 * r['mfu_estimate']:.1f} %" if r.get("mfu_estimate") is not None else "–"
        lines.append(f"| {r['loss']} | {r['framework']} | {r.get('precision', '–')} | {r['samples_per_s']:.1f} | "
                     f"{r['tokens_per_s']:.0f} | {r['model_flops_per_s'] / 1e9:.1f} | {mfu} | {memory} |")
    lines += ["", "| loss | precision | samples/s labkit / ST | peak memory labkit / ST |", "|---|---|---:|---:|"]
    for loss, precision in dict.fromkeys((r["loss"], r.get("precision")) for r in report["rows"]):
        rows = {r["framework"]: r for r in report["rows"] if r["loss"] == loss and r.get("precision") == precision}
        if len(rows) < 2:
            continue
        speed = rows[LABKIT]["samples_per_s"] / rows[ST]["samples_per_s"]
        lines.append(f"| {loss} | {precision} | {speed:.2f} | {_memory_ratio(rows[LABKIT], rows[ST])} |")
    lines += _auto_vs_st_default(report)
    lines.append("\nChecks: " + "; ".join(
        f"{c['loss']} {c.get('precision', '')}: same batches {c['same_batches']}, optimizer steps "
        f"{c['optimizer_steps']}, both trained {c['both_trained']}" for c in report["checks"]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = cpu_name()
    import sentence_transformers
    import transformers

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__, "labkit": getattr(labkit, "__version__", "dev")}


def device_peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)
    return None  # a CPU's peak depends on its vector units and clocks: pass --peak-tflops


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("quality", "throughput"), required=True)
    parser.add_argument("--model", default="minilm", help='"minilm" (default), "tiny", or a model folder')
    parser.add_argument("--random-weights", action="store_true", help="MiniLM's architecture with random weights")
    parser.add_argument("--model-config", help="a config.json (or folder) to build a randomly initialised model from")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (quality: 150; throughput: 8 timed)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="throughput: untimed steps before timing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=[BATCH_HARD, MNRL], choices=[BATCH_HARD, MNRL])
    parser.add_argument("--p", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per batch for MNRL")
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--train-size", type=int, default=None, help="use a stratified subset of the training split")
    parser.add_argument("--test-size", type=int, default=None, help="quality: a stratified subset of the test split")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    parser.add_argument("--precisions", nargs="+", default=None, choices=("auto", "bf16", "fp16", "fp32"),
                        help="throughput: run each of these precisions (both frameworks) into one report")
    parser.add_argument("--device", default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak FLOP/s for the MFU estimate")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help='throughput step timing; "thread" = CPU time of the training thread (a shared CPU)')
    parser.add_argument("--no-memory", action="store_true", help="throughput: skip the peak-memory runs")
    parser.add_argument("--json", type=Path, default=None, help="write the report here (quality: after every seed)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from labkit.data import drop_small_classes, load_banking77, stratified_subset

    settings = Settings(steps=args.steps or (150 if args.mode == "quality" else 8), seed=args.seeds[0], lr=args.lr,
                        max_seq_length=args.max_seq_length, p=args.p, k=args.k, batch_size=args.batch_size,
                        precision=args.precision, device=args.device, clock=args.clock)
    if args.clock == "thread" and pick_device(args.device).type != "cpu":
        raise ValueError("--clock thread measures CPU time: it means nothing for GPU work. Use --clock wall on a GPU.")
    if args.clock == "thread":
        torch.set_num_threads(1)  # the training thread's CPU time is then all the work (no intra-op helpers)
    train = load_banking77("train")
    if args.train_size:
        train = drop_small_classes(stratified_subset(train, args.train_size, seed=0), args.k)  # P×K needs K per class
    start = build_start_model(args.model, args.max_seq_length, args.model_config, args.random_weights)
    info = machine()
    print("Machine:", ", ".join(f"{k}: {v}" for k, v in info.items() if v is not None))
    print("Command: python benchmarks/trainer.py " + " ".join(sys.argv[1:] if argv is None else argv))
    with tempfile.TemporaryDirectory(prefix="trainer-benchmark-") as tmp:
        folder = save_start_model(start, Path(tmp) / "start")

        def write(report):
            if args.json:
                args.json.write_text(json.dumps({**report, "machine": info, "model": start.name_or_path}, indent=2))

        started = time.perf_counter()
        if args.mode == "quality":
            test = load_banking77("test")
            if args.test_size:
                test = stratified_subset(test, args.test_size, seed=0)
            report = run_quality(folder, train, test, replace(settings, loss=BATCH_HARD), args.seeds, on_run=write)
            text = format_quality(report)
        else:
            device = pick_device(settings.device)
            data = {BATCH_HARD: train, MNRL: pairs_from_classes(train, seed=0)}
            report = merge_throughput([
                run_throughput(folder, data, replace(settings, precision=precision), args.warmup_steps,
                               device_peak_flops(device, args.peak_tflops), losses=args.losses,
                               measure_memory=not args.no_memory)
                for precision in args.precisions or [args.precision]])
            text = format_throughput(report)
        report["total_seconds"] = time.perf_counter() - started
    write(report)
    print()
    print(text)
    print(f"\nTotal: {report['total_seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
