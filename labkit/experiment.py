"""One experiment, end to end: data → loss → `fit()` → metrics before and after.

The command line (`python -m labkit train`) and the loss-comparison notebook both run experiments
through `run_experiment`, so a result from one can be reproduced with the other.

Three kinds of data, each with the losses and the evaluation that fit it:

| kind            | columns                          | losses                                          | evaluation            |
|-----------------|----------------------------------|-------------------------------------------------|-----------------------|
| `labelled`      | text, label                      | batch triplet losses (P×K batches); MNRL on same-class pairs | retrieval: P@1, MAP@R |
| `scored_pairs`  | text, text_pair, score (0–1)     | CosineSimilarity, CoSENT, AnglE                 | STS Spearman/Pearson  |
| `binary_pairs`  | text, text_pair, label (0/1)     | Contrastive, OnlineContrastive                  | pair accuracy / F1    |

Taught in notebooks/11_choosing_a_loss.ipynb.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import data as datasets
from labkit import losses as L
from labkit import evaluate as ev

LOSSES_FOR = {
    "labelled": L.BATCH_LOSSES + ("MultipleNegativesRankingLoss",),
    "scored_pairs": ("CosineSimilarityLoss", "CoSENTLoss", "AnglELoss"),
    "binary_pairs": ("ContrastiveLoss", "OnlineContrastiveLoss"),
}
MAIN_METRIC = {"labelled": "mean_average_precision_at_r", "scored_pairs": "spearman_cosine", "binary_pairs": "accuracy"}
# Standard column names of the built-in datasets, mapped to the names an experiment uses.
DATASET_COLUMNS = {"stsb": {"sentence1": "text", "sentence2": "text_pair"}}


@dataclass
class ExperimentData:
    kind: str
    train: pd.DataFrame
    heldout: pd.DataFrame
    label_names: list = field(default_factory=list)


def data_kind(frame: pd.DataFrame) -> str:
    if "text_pair" in frame.columns:
        if "score" in frame.columns:
            return "scored_pairs"
        if "label" in frame.columns:
            return "binary_pairs"
        raise ValueError("Pair data needs a score column (--score-column) or a 0/1 label column (--label-column).")
    if "label" not in frame.columns:
        raise ValueError("Single texts need a label column (--label-column) so that batches have positives.")
    return "labelled"


def load_experiment_data(
    data: str, text_column: str = "text", label_column: str | None = None, score_column: str | None = None,
    text_pair_column: str | None = None, eval_data: str | None = None, heldout_size: float = 0.2, seed: int = 42,
) -> ExperimentData:
    """A built-in dataset name (its train and test splits) or a file (a held-out part is split off it)."""

    def read(source: str, split: str) -> pd.DataFrame:
        if source in datasets.DATASETS:
            frame = datasets.load_dataset(source, split)
            return frame.rename(columns=DATASET_COLUMNS.get(source, {}))
        return datasets.from_file(source, text_column=text_column, label_column=label_column,
                                  score_column=score_column, text_pair_column=text_pair_column)

    train = read(data, "train")
    if eval_data is not None:
        heldout = read(eval_data, "test")
    elif data in datasets.DATASETS:
        heldout = read(data, "test")
    elif "label" in train.columns:
        train, heldout = datasets.train_dev_split(train, dev_size=heldout_size, seed=seed)
    else:
        order = np.random.default_rng(seed).permutation(len(train))
        cut = int(len(train) * (1 - heldout_size))
        train, heldout = train.iloc[order[:cut]].reset_index(drop=True), train.iloc[order[cut:]].reset_index(drop=True)
    return ExperimentData(data_kind(train), train, heldout, train.attrs.get("label_names", []))


def same_class_pairs(labels, seed: int = 0) -> np.ndarray:
    """For every example, the index of another example of its class (MNRL on labelled data); -1 if it has none."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # grouped by class, random inside each class
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    group_start = np.repeat(starts, sizes)
    group_size = np.repeat(sizes, sizes)
    position = np.arange(len(labels)) - group_start
    partner_position = group_start + (position + 1) % group_size  # the next one in the class, cyclically
    partner = np.full(len(labels), -1)
    partner[order] = np.where(group_size > 1, order[partner_position], -1)
    return partner


class LossArgumentError(TypeError, ValueError):
    """A loss argument the loss does not take: a TypeError (a wrong keyword), and a ValueError for the command line."""


def build_loss(name: str, kind: str, **loss_kwargs):
    """The loss class `name` with `loss_kwargs` (sentence-transformers' defaults for the rest), after checking
    that it fits `kind` of data."""
    if name not in LOSSES_FOR[kind]:
        raise ValueError(f"{name} does not fit {kind.replace('_', ' ')} data; use one of: {', '.join(LOSSES_FOR[kind])}.")
    loss_class = getattr(L, name)
    try:
        return loss_class(**loss_kwargs)
    except TypeError as error:
        accepted = [p for p in inspect.signature(loss_class).parameters if p != "self"]
        raise LossArgumentError(f"{name} does not accept {', '.join(map(repr, loss_kwargs))} ({error}); "
                                f"its arguments are: {', '.join(accepted)}.") from None


def training_set(loss_name: str, exp: ExperimentData, p: int, k: int, batch_size: int, seed: int):
    """The dataset and batch sampler that suit the loss: P×K batches, no-duplicate pairs, or shuffled pairs."""
    from labkit.sampling import NoDuplicatesBatchSampler, PKBatchSampler
    from labkit.collate import PairDataset, TextDataset

    frame = exp.train
    if exp.kind == "labelled" and loss_name == "MultipleNegativesRankingLoss":
        partner = same_class_pairs(frame["label"], seed=seed)
        keep = partner >= 0
        anchors, positives = frame["text"].to_numpy()[keep], frame["text"].to_numpy()[partner[keep]]
        return PairDataset(list(anchors), list(positives)), NoDuplicatesBatchSampler(
            list(zip(anchors, positives)), batch_size=batch_size, seed=seed)
    if exp.kind == "labelled":
        return TextDataset(list(frame["text"]), list(frame["label"])), PKBatchSampler(frame["label"], p, k, seed=seed)
    labels = frame["score"] if exp.kind == "scored_pairs" else frame["label"]
    return PairDataset(list(frame["text"]), list(frame["text_pair"]), labels=list(labels)), None


def evaluate_model(model, exp: ExperimentData, frame: pd.DataFrame | None = None, batch_size: int = 64) -> dict:
    frame = exp.heldout if frame is None else frame
    if exp.kind == "labelled":
        metrics = ev.evaluate_retrieval(model, list(frame["text"]), frame["label"].to_numpy(), batch_size=batch_size)
        return {k: v for k, v in metrics.items() if not k.startswith("num_")}
    a = model.encode(list(frame["text"]), batch_size=batch_size)
    b = model.encode(list(frame["text_pair"]), batch_size=batch_size)
    if exp.kind == "scored_pairs":
        return ev.sts_correlation(a, b, frame["score"].to_numpy())
    # the threshold is chosen on (a sample of) the training pairs, then reported on the held-out pairs
    dev = exp.train.sample(n=min(len(exp.train), 2000), random_state=0)
    da, db = model.encode(list(dev["text"]), batch_size=batch_size), model.encode(list(dev["text_pair"]), batch_size=batch_size)
    metrics = ev.pair_classification(da, db, dev["label"].to_numpy(), a, b, frame["label"].to_numpy())
    return {k: metrics[k] for k in ("accuracy", "f1", "accuracy_threshold", "average_precision")}


def run_experiment(
    model, exp: ExperimentData, loss_name: str, steps: int | None = None, epochs: int | None = None,
    p: int = 8, k: int = 4, batch_size: int = 32, lr: float = 2e-5, max_length: int | None = None,
    eval_subset: int = 0, out: str | Path | None = None, seed: int = 42, show_progress: bool = True,
    loss_kwargs: dict | None = None, **fit_kwargs,
) -> dict:
    """Evaluate, train, evaluate again; return {"loss", "kind", "before", "after", "history"} (and write it to out/)."""
    from labkit.train import fit

    heldout = exp.heldout
    if eval_subset and len(heldout) > eval_subset:
        heldout = heldout.sample(n=eval_subset, random_state=seed).reset_index(drop=True)
    loss = build_loss(loss_name, exp.kind, **(loss_kwargs or {}))
    dataset, sampler = training_set(loss_name, exp, p, k, batch_size, seed)
    before = evaluate_model(model, exp, heldout)
    result = fit(model, loss, dataset, batch_sampler=sampler, batch_size=batch_size, steps=steps, epochs=epochs,
                 lr=lr, max_length=max_length, seed=seed, output_dir=out, show_progress=show_progress, **fit_kwargs)
    after = evaluate_model(model, exp, heldout)
    report = {"loss": loss_name, "loss_args": dict(loss_kwargs or {}), "kind": exp.kind, "main_metric": MAIN_METRIC[exp.kind], "steps": result.steps,
              "heldout_rows": len(heldout), "before": before, "after": after, "seconds": round(result.seconds, 1),
              "history": result.history}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "metrics.json").write_text(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))
    return report
