"""One experiment, end to end: data → loss → `fit()` → metrics before and after.

The command line (`python -m labkit train`) and the loss-comparison notebook both run experiments
through `run_experiment`, so a result from one can be reproduced with the other.

Three kinds of data, each with the losses and the evaluation that fit it:

| kind            | columns                          | losses                                          | evaluation            |
|-----------------|----------------------------------|-------------------------------------------------|-----------------------|
| `labelled`      | text, label                      | batch triplet losses (P×K batches); MNRL on same-class pairs | retrieval: P@1, MAP@R |
| `scored_pairs`  | text, text_pair, score (0–1)     | CosineSimilarity, CoSENT, AnglE                 | STS Spearman/Pearson  |
| `binary_pairs`  | text, text_pair, label (0/1)     | Contrastive, OnlineContrastive                  | pair accuracy / F1    |

Which losses fit which kind (`LOSSES_FOR`) comes from the loss registry, `labkit.losses.REGISTRY`; losses are
built with `labkit.losses.build_loss`.

Taught in notebooks/11_choosing_a_loss.ipynb.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import data as datasets
from labkit import evaluate as ev
from labkit.losses import REGISTRY, build_loss, losses_for

# The kinds of data an experiment loads (`data_kind`), trains on and evaluates, each with its main metric.
MAIN_METRIC = {"labelled": "mean_average_precision_at_r", "scored_pairs": "spearman_cosine", "binary_pairs": "accuracy"}
# The losses that fit each kind, in registry order.
LOSSES_FOR = {kind: losses_for(kind) for kind in MAIN_METRIC}
# On labelled data the in-batch-negatives losses train on same-class pairs; the others on P×K batches.
SAME_CLASS_PAIR_LOSSES = tuple(name for name in LOSSES_FOR["labelled"] if REGISTRY[name].inputs == "in-batch negatives")
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


def training_set(loss_name: str, exp: ExperimentData, p: int, k: int, batch_size: int, seed: int,
                 group_by_length: bool = False, tokenizer=None, max_length: int | None = None):
    """The dataset and batch sampler that suit the loss: P×K batches, no-duplicate pairs, or shuffled pairs.

    ``group_by_length``: no-duplicate pair batches of similar lengths (`NoDuplicatesBatchSampler`), by the
    token counts of ``tokenizer`` (cut at ``max_length``) or, without one, character counts.
    """
    from labkit.sampling import NoDuplicatesBatchSampler, PKBatchSampler, token_lengths
    from labkit.collate import PairDataset, TextDataset

    frame = exp.train
    if exp.kind == "labelled" and loss_name in SAME_CLASS_PAIR_LOSSES:
        partner = same_class_pairs(frame["label"], seed=seed)
        keep = partner >= 0
        anchors, positives = frame["text"].to_numpy()[keep], frame["text"].to_numpy()[partner[keep]]
        rows = list(zip(anchors, positives))
        lengths = token_lengths(tokenizer, rows, max_length) if group_by_length and tokenizer is not None else None
        return PairDataset(list(anchors), list(positives)), NoDuplicatesBatchSampler(
            rows, batch_size=batch_size, seed=seed, group_by_length=group_by_length, lengths=lengths)
    if group_by_length:
        raise ValueError(f"group_by_length groups the no-duplicate pair batches of {', '.join(SAME_CLASS_PAIR_LOSSES)} "
                         f"on labelled data; {loss_name} on {exp.kind} data has none. Leave it off.")
    if exp.kind == "labelled":
        return TextDataset(list(frame["text"]), list(frame["label"])), PKBatchSampler(frame["label"], p, k, seed=seed)
    labels = frame["score"] if exp.kind == "scored_pairs" else frame["label"]
    return PairDataset(list(frame["text"]), list(frame["text_pair"]), labels=list(labels)), None


def evaluate_model(
    model, exp: ExperimentData, frame: pd.DataFrame | None = None, batch_size: int = 64, *,
    show_progress_bar: bool | None = None, cluster_quality: bool = False, pairs_in_one_call: bool = False,
    return_embeddings: bool = False,
):
    """Held-out metrics of `model` on `frame` (default `exp.heldout`), for `exp`'s kind of data.

    * labelled: retrieval (`labkit.evaluate.retrieval_metrics` on L2-normalised embeddings, without its
      ``num_*`` counts); with ``cluster_quality=True`` also ``silhouette`` and ``knn_accuracy``
      (`labkit.evaluate.cluster_quality`);
    * scored pairs: Spearman/Pearson of cosine similarity against the scores (`labkit.evaluate.sts_correlation`);
    * binary pairs: accuracy, F1, the accuracy threshold (chosen on up to 2000 training pairs) and average precision.

    Args:
        show_progress_bar: passed to every `encode` call (None: a bar for long lists).
        pairs_in_one_call: scored pairs: encode both sides in one `encode` call, as `labkit.evaluate.evaluate_sts`
            does, instead of one call per side. The batches differ, so the embeddings (and the metrics) can
            differ in the last float bits: `labkit.course.compare` uses one call, `run_experiment` and the
            command line one per side, each as it always has.
        return_embeddings: return ``(metrics, embeddings)``: the held-out texts' normalised embeddings for
            labelled data (for maps), None for pairs.
    """
    frame = exp.heldout if frame is None else frame
    embeddings = None

    def encode(texts: list, **options):
        return model.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar, **options)

    if exp.kind == "labelled":
        labels = frame["label"].to_numpy()
        embeddings = encode(list(frame["text"]), normalize=True)
        metrics = {k: v for k, v in ev.retrieval_metrics(embeddings, labels).items() if not k.startswith("num_")}
        if cluster_quality:
            quality = ev.cluster_quality(embeddings, labels)
            metrics.update(silhouette=quality["silhouette"], knn_accuracy=quality["knn_accuracy"])
    elif exp.kind == "scored_pairs" and pairs_in_one_call:
        both = encode(list(frame["text"]) + list(frame["text_pair"]))
        metrics = ev.sts_correlation(both[: len(frame)], both[len(frame):], frame["score"].to_numpy())
    else:
        a, b = encode(list(frame["text"])), encode(list(frame["text_pair"]))
        if exp.kind == "scored_pairs":
            metrics = ev.sts_correlation(a, b, frame["score"].to_numpy())
        else:
            # the threshold is chosen on (a sample of) the training pairs, then reported on the held-out pairs
            dev = exp.train.sample(n=min(len(exp.train), 2000), random_state=0)
            da, db = encode(list(dev["text"])), encode(list(dev["text_pair"]))
            metrics = ev.pair_classification(da, db, dev["label"].to_numpy(), a, b, frame["label"].to_numpy())
            metrics = {k: metrics[k] for k in ("accuracy", "f1", "accuracy_threshold", "average_precision")}
    return (metrics, embeddings) if return_embeddings else metrics


def run_experiment(
    model, exp: ExperimentData, loss_name: str, steps: int | None = None, epochs: int | None = None,
    p: int = 8, k: int = 4, batch_size: int = 32, lr: float = 2e-5, max_length: int | None = None,
    eval_subset: int = 0, out: str | Path | None = None, seed: int = 42, show_progress: bool = True,
    loss_kwargs: dict | None = None, group_by_length: bool = False, **fit_kwargs,
) -> dict:
    """Evaluate, train, evaluate again; return {"loss", "kind", "before", "after", "history"} (and write it to out/).

    ``group_by_length=True``: in-batch-negative losses on labelled data train on no-duplicate pair batches of
    similar token lengths (less padding; `labkit.sampling.NoDuplicatesBatchSampler`).
    """
    from labkit.train import fit

    heldout = exp.heldout
    if eval_subset and len(heldout) > eval_subset:
        heldout = heldout.sample(n=eval_subset, random_state=seed).reset_index(drop=True)
    loss = build_loss(loss_name, exp.kind, **(loss_kwargs or {}))
    dataset, sampler = training_set(loss_name, exp, p, k, batch_size, seed, group_by_length, model.tokenizer, max_length)
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
