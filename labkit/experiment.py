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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from labkit import data as datasets
from labkit import evaluate as ev
from labkit.losses import REGISTRY, build_loss, losses_for
from labkit.world import current_world

# The kinds of data an experiment loads (`data_kind`), trains on and evaluates, each with its main metric.
MAIN_METRIC = {"labelled": "mean_average_precision_at_r", "scored_pairs": "spearman_cosine", "binary_pairs": "accuracy"}
# The losses that fit each kind, in registry order.
LOSSES_FOR = {kind: losses_for(kind) for kind in MAIN_METRIC}
# On labelled data the in-batch-negatives losses train on same-class pairs; the others on P×K batches.
SAME_CLASS_PAIR_LOSSES = tuple(name for name in LOSSES_FOR["labelled"] if REGISTRY[name].inputs == "in-batch negatives")
# Standard column names of the built-in datasets, mapped to the names an experiment uses.
DATASET_COLUMNS = {"stsb": {"sentence1": "text", "sentence2": "text_pair"}}


# Losses that regress the cosine similarity onto the score (MSE), so the scores must lie in 0..1; CoSENT and AnglE
# only use the scores' order and train on any range.
LOSSES_NEEDING_SCORES_IN_0_1 = ("CosineSimilarityLoss",)


@dataclass
class ExperimentData:
    """An experiment's data: `train` to train on, `heldout` (the test data: evaluated before and after training,
    never used to choose anything) and, optionally, `dev` (carved from the training data: picks the checkpoint)."""

    kind: str
    train: pd.DataFrame
    heldout: pd.DataFrame
    label_names: list = field(default_factory=list)
    dev: pd.DataFrame | None = None


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
    dev_size: float | int = 0, encoding: str = "utf-8", rescale_scores: str | float | None = None,
) -> ExperimentData:
    """A built-in dataset name (its train and test splits) or a file (a held-out part is split off it).

    Args:
        eval_data: the held-out (test) data, a dataset name or a file; default: the dataset's test split, or
            ``heldout_size`` of the file (stratified by label where there are labels).
        dev_size: 0 (no dev split), or a fraction / row count of the *training* data to carve off as `dev`
            (stratified by label where there are labels), on which `run_experiment` selects the checkpoint.
        encoding: of CSV / TSV / JSON(L) files (`labkit.data.from_file`).
        rescale_scores: scored pairs only: None (scores as given), ``"minmax"`` (the training scores' min → 0 and
            max → 1, the same map applied to dev and held-out scores, clipped to 0..1) or a number M (every
            score divided by M, e.g. 5 for STS-B's 0..5).
    """

    def read(source: str, split: str) -> pd.DataFrame:
        if source in datasets.DATASETS:
            frame = datasets.load_dataset(source, split)
            if not isinstance(frame, pd.DataFrame):  # e.g. SciFact: a corpus, queries and qrels
                raise ValueError(f"{source} is retrieval data (a corpus, queries and relevance judgements), not "
                                 "labelled or pair data: load it with labkit.retrieval_experiment."
                                 "load_retrieval_experiment (python -m labkit train / evaluate / mine take it), or "
                                 "labkit.data.load_scifact / load_beir.")
            return frame.rename(columns=DATASET_COLUMNS.get(source, {}))
        return datasets.from_file(source, text_column=text_column, label_column=label_column,
                                  score_column=score_column, text_pair_column=text_pair_column, encoding=encoding)

    train = read(data, "train")
    if eval_data is not None:
        heldout = read(eval_data, "test")
    elif data in datasets.DATASETS:
        heldout = read(data, "test")
    else:
        train, heldout = split_off(train, heldout_size, seed,
                                   f"{data} has {len(train)} row(s): too few to split a held-out part off; "
                                   "add rows or pass the held-out data with --eval-data")
    dev = None
    if dev_size:
        train, dev = split_off(train, dev_size, seed, f"--dev-size {dev_size!r} of {len(train)} training rows leaves "
                               f"no dev or no training rows: pass a fraction in (0, 1) or a row count in "
                               f"[1, {len(train) - 1}]")
    exp = ExperimentData(data_kind(train), train, heldout, train.attrs.get("label_names", []), dev)
    return rescale(exp, rescale_scores) if rescale_scores is not None else exp


def split_off(frame: pd.DataFrame, size: float | int, seed: int, too_small: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, part): `size` (a fraction or a row count) of `frame` split off, stratified by ``label`` when there is
    one (`labkit.data.train_dev_split`), at random otherwise; `too_small` is the message when either part would
    be empty."""
    n, stratified = len(frame), "label" in frame.columns
    if isinstance(size, float) and not 0 < size < 1:
        raise ValueError(too_small)
    if isinstance(size, float):  # the rows split off, as train_dev_split / the random split below count them
        part = int(round(size * n)) if stratified else n - int(n * (1 - size))
    else:
        part = int(size)
    if not 0 < part < n:
        raise ValueError(too_small)
    if stratified:
        return datasets.train_dev_split(frame, dev_size=size, seed=seed)
    order = np.random.default_rng(seed).permutation(n)
    cut = n - part
    return frame.iloc[order[:cut]].reset_index(drop=True), frame.iloc[order[cut:]].reset_index(drop=True)


def rescale(exp: ExperimentData, how: str | float) -> ExperimentData:
    """`exp` with its scores mapped to 0..1: ``"minmax"`` (fitted on the training scores) or divided by a number."""
    if exp.kind != "scored_pairs":
        raise ValueError("--rescale-scores only applies to pairs with scores (--score-column).")
    if how == "minmax":
        low, high = float(exp.train["score"].min()), float(exp.train["score"].max())
        if high <= low:
            raise ValueError(f"every training score is {low}: min-max rescaling needs at least two different scores.")
        scale = lambda scores: ((scores - low) / (high - low)).clip(0.0, 1.0)  # noqa: E731
    else:
        top = float(how)
        if not top > 0:
            raise ValueError(f"--rescale-scores takes 'minmax' or the largest possible score (> 0), got {how!r}.")
        scale = lambda scores: scores / top  # noqa: E731
    frames = {name: getattr(exp, name) for name in ("train", "heldout", "dev") if getattr(exp, name) is not None}
    rescaled = {name: frame.assign(score=scale(frame["score"])) for name, frame in frames.items()}
    return ExperimentData(exp.kind, rescaled["train"], rescaled["heldout"], exp.label_names, rescaled.get("dev"))


def check_experiment(exp: ExperimentData, loss_name: str, p: int = 0, k: int = 0) -> None:
    """Refuse, before any slow work, data the loss cannot train on or evaluate, with the fix: scores outside 0..1 for a
    loss that regresses onto them, test or dev data without two examples of any class (retrieval finds nothing), or
    classes smaller than K for P×K batches (named by their label text)."""
    if exp.kind == "scored_pairs" and loss_name in LOSSES_NEEDING_SCORES_IN_0_1:
        for name, frame in (("training", exp.train), ("held-out", exp.heldout), ("dev", exp.dev)):
            if frame is None:
                continue
            low, high = float(frame["score"].min()), float(frame["score"].max())
            if low < 0 or high > 1:
                raise ValueError(
                    f"{loss_name} fits the cosine similarity to the score, so scores must lie in 0..1, but the {name} "
                    f"scores range from {low:g} to {high:g}. Pass --rescale-scores {high:g} (divide by the largest "
                    "possible score) or --rescale-scores minmax, or use CoSENTLoss / AnglELoss (they only use the "
                    "scores' order).")
    if exp.kind == "labelled":
        for name, frame, fix in (("held-out test", exp.heldout, "more rows, or other --eval-data"),
                                 ("dev", exp.dev, "a larger --dev-size")):
            if frame is not None and not frame["label"].duplicated().any():
                raise ValueError(f"the {name} data ({len(frame)} rows) has no class with two examples, so retrieval on "
                                 f"it has nothing to find: give it {fix}.")
    if exp.kind == "labelled" and loss_name not in SAME_CLASS_PAIR_LOSSES and k:
        names = exp.train["label_name"] if "label_name" in exp.train.columns else exp.train["label"]
        sizes = names.value_counts()
        small = sizes[sizes < k].sort_values()
        if len(small):
            shown = ", ".join(f"{name!r} ({count})" for name, count in small.head(10).items())
            raise ValueError(
                f"{len(small)} class(es) of the training data have fewer than K={k} examples, which --batch {p}x{k} "
                f"needs: {shown}{' …' if len(small) > 10 else ''}. Add examples, drop those classes from the file, "
                f"or use a smaller K (e.g. --batch {p}x{max(2, int(small.min()))}; K >= 2).")


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
    loss_kwargs: dict | None = None, eval_every: int | None = None, checkpoint_every: int | None = None,
    resume: bool = False, group_by_length: bool = False, **fit_kwargs,
) -> dict:
    """Evaluate on the held-out (test) data, train, evaluate on it again; return the report (and write it to out/).

    With a dev split (`exp.dev`), `fit()` evaluates the model on it at the start, every `eval_every` steps and at the
    end, and keeps the weights of the best dev evaluation (`MAIN_METRIC`); the test data is only evaluated before and
    after, and chooses nothing.

    With `out`: `fit()` writes its checkpoint there (every `checkpoint_every` steps, and at the end), and the
    report goes to out/metrics.json (`metrics_record`); the test metrics before training are kept in
    out/before.json, so that ``resume=True`` (go on from out/'s checkpoint) does not evaluate them again. Every
    file is written to a temporary name and renamed into place. Several processes: rank 0 alone writes.

    Returns:
        {"loss", "loss_args", "kind", "main_metric", "steps", "heldout_rows", "before", "after" (test metrics),
        "dev" (None, or the dev split's rows, evaluations and best step), "seconds", "interrupted" (Ctrl-C),
        "history"}.

    ``group_by_length=True``: in-batch-negative losses on labelled data train on no-duplicate pair batches of
    similar token lengths (less padding; `labkit.sampling.NoDuplicatesBatchSampler`).
    """
    from labkit.train import fit

    heldout = exp.heldout
    if eval_subset and len(heldout) > eval_subset:
        heldout = heldout.sample(n=eval_subset, random_state=seed).reset_index(drop=True)
    check_experiment(exp, loss_name, p, k)
    loss = build_loss(loss_name, exp.kind, **(loss_kwargs or {}))
    dataset, sampler = training_set(loss_name, exp, p, k, batch_size, seed, group_by_length, model.tokenizer,
                                    max_length)
    before = _test_before_training(model, exp, heldout, out, resume)
    selection = {}
    if exp.dev is not None:  # the checkpoint is chosen on dev data, carved from the training data
        selection = dict(evaluator=lambda scored: evaluate_model(scored, exp, exp.dev, show_progress_bar=False),
                         metric=MAIN_METRIC[exp.kind], eval_every=eval_every)
    result = fit(model, loss, dataset, batch_sampler=sampler, batch_size=batch_size, steps=steps, epochs=epochs,
                 lr=lr, max_length=max_length, seed=seed, output_dir=out, show_progress=show_progress,
                 checkpoint_every=checkpoint_every, resume=resume, **selection, **fit_kwargs)
    after = evaluate_model(model, exp, heldout)
    dev = None if exp.dev is None else {
        "rows": len(exp.dev), "metric": MAIN_METRIC[exp.kind], "eval_every": eval_every,
        "best_step": result.best_step, "best": result.best_metric, "evaluations": result.evaluations}
    report = {"loss": loss_name, "loss_args": dict(loss_kwargs or {}), "kind": exp.kind,
              "main_metric": MAIN_METRIC[exp.kind], "steps": result.steps, "heldout_rows": len(heldout),
              "before": before, "after": after, "dev": dev, "seconds": round(result.seconds, 1),
              "interrupted": result.interrupted, "history": result.history}
    if out is not None and current_world().is_main:
        write_json(Path(out) / "metrics.json", metrics_record(report))
    return report


def metrics_record(report: dict) -> dict:
    """What out/metrics.json holds: `run_experiment`'s report without the history, the test metrics under "test"."""
    record = {k: report[k] for k in ("loss", "loss_args", "kind", "main_metric", "steps")}
    record["test"] = {"rows": report["heldout_rows"], "before": report["before"], "after": report["after"]}
    return {**record, "dev": report["dev"], "seconds": report["seconds"]}


def _test_before_training(model, exp: ExperimentData, heldout: pd.DataFrame, out, resume: bool) -> dict:
    """The test metrics of the untrained model: from out/before.json when resuming, else evaluated (and saved)."""
    path = Path(out) / "before.json" if out is not None else None
    if resume and path is not None and path.exists():
        return json.loads(path.read_text())
    before = evaluate_model(model, exp, heldout)
    if path is not None and current_world().is_main:
        write_json(path, before)
    return before


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """``with atomic_file(path) as tmp:`` write `tmp`; on success it replaces `path` in one rename, on an error it is
    deleted: `path` is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")  # same suffix: savefig picks the format from it
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, value) -> None:
    """Write `value` as indented JSON to `path`, atomically (`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2))
