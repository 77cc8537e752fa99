"""Compare losses fairly: the same base model, data, steps, texts per step, optimiser and evaluation for each.

`compare_losses` trains a fresh copy of one base model with every loss that fits the data, under one budget,
chooses each copy's checkpoint on a dev split carved from the training data, and measures each chosen copy
once on the same test data:

* the **same data**: one training frame, one dev frame and one test frame for all losses;
* the **same number of optimizer steps** (`steps`) and the **same texts per step**, P·K: a labelled batch
  loss gets P×K batches (P classes, K texts each); MultipleNegativesRankingLoss on labelled data gets
  batches of P·K/2 same-class pairs (`labkit.experiment.same_class_pairs`), and the STS losses batches of
  P·K/2 scored pairs — P·K texts either way. Each run counts the texts its loss really received;
* the **same optimiser**: AdamW, one learning rate, linear warm-up and decay, the same seed (batch order,
  dropout). Loss hyperparameters are stated in the table; the triplet losses get a margin that fits
  normalised embeddings (0.5, not sentence-transformers' default 5: distances on the unit sphere are at most 2);
* the **same model selection**: `labkit.train.fit` evaluates each run on the dev split every `eval_every`
  steps (the main metric: MAP@R, or Spearman for STS pairs) and keeps the best checkpoint, as notebook 09
  does; the test data is never looked at while training;
* the **same evaluation**, before and after, on test, once per model: retrieval (MAP@R, precision@1,
  R-precision) and cluster quality for labelled data, Spearman/Pearson of cosine similarity against gold
  scores for STS pairs (`labkit.experiment.evaluate_model`).

The base model is never modified: each loss trains a `copy.deepcopy` of it, which is cheaper than reloading.
The data, losses, batches and evaluation come from `labkit.experiment` (the same recipe as
`python -m labkit train`); the losses and their knobs from the loss registry, `labkit.losses.REGISTRY`.

Taught in notebooks/11_choosing_a_loss.ipynb.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from labkit import data
from labkit.env import seed_everything
from labkit.experiment import (
    DATASET_COLUMNS, LOSSES_FOR, MAIN_METRIC, SAME_CLASS_PAIR_LOSSES, ExperimentData, data_kind, evaluate_model,
    training_set,
)
from labkit.losses import REGISTRY, build_loss
from labkit.validation import as_embeddings
from labkit.viz import plot_clusters, project_2d, quality_caption

__all__ = ["DEFAULT_HYPERPARAMETERS", "LossComparison", "describe_hyperparameters", "compare_losses",
           "plot_cluster_grid", "random_subset", "split_dev", "BEFORE"]

BEFORE = "(before training)"  # the name of the base model's row in a comparison table

# Loss settings used for a fair comparison: the course's knob values of every loss an experiment can train
# (`labkit.losses.REGISTRY`). The margin losses share one margin that fits unit vectors (Euclidean distances in
# [0, 2]); the scaled losses keep sentence-transformers' scale 20.
DEFAULT_HYPERPARAMETERS: dict[str, dict] = {
    name: REGISTRY[name].knob_defaults for names in LOSSES_FOR.values() for name in names
}

# Metrics shown in a comparison table, per kind of data (the main one first).
TABLE_METRICS = {
    "labelled": ("mean_average_precision_at_r", "precision_at_1", "r_precision", "silhouette", "knn_accuracy"),
    "scored_pairs": ("spearman_cosine", "pearson_cosine"),
    "binary_pairs": ("accuracy", "f1", "average_precision"),
}


@dataclass
class LossComparison:
    """What `compare_losses` returns.

    * `table`: one row per loss plus the base model's row (`BEFORE`, first), losses sorted best first by
      the main metric on test; columns: loss, steps, best_step (the checkpoint kept: best on dev),
      texts_per_step, texts_seen, hyperparameters, lr, ``dev_<main metric>`` (the kept checkpoint's dev
      score, what selected it), the test metrics, the change of the main test metric against the base
      model, and training seconds;
    * `embeddings`: {row name: test embeddings (N, D)} in table order — for `plot_cluster_grid`
      (labelled data only; empty for pairs);
    * `labels`: the test labels (labelled data) or None;
    * `histories`: {loss: fit()'s history (losses per step and the dev evaluations)} for loss curves.
    """

    kind: str
    main_metric: str
    table: pd.DataFrame
    embeddings: dict = field(default_factory=dict)
    labels: np.ndarray | None = None
    histories: dict = field(default_factory=dict)


def describe_hyperparameters(hyperparameters: Mapping) -> str:
    """`{"margin": 0.5}` → "margin=0.5"; "defaults" when there are none."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hyperparameters.items()) or "—"


def random_subset(frame: pd.DataFrame, size: int, seed: int = 42) -> pd.DataFrame:
    """``size`` random rows of ``frame`` (the same ones for the same seed); all rows when ``size`` is 0 or not smaller.

    For data without classes (STS pairs); labelled data keeps its class shares with `labkit.data.stratified_subset`.
    """
    if not size or size >= len(frame):
        return frame
    return frame.sample(n=int(size), random_state=seed).reset_index(drop=True)


def split_dev(frame: pd.DataFrame, dev_size: float = 0.1, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, dev): a dev split carved from training data, to choose checkpoints on instead of the test data.

    Labelled data (a ``label`` column) is split by `labkit.data.train_dev_split` (stratified: each class keeps
    its share); other data, e.g. STS pairs, by a random permutation fixed by ``seed``. ``dev_size`` is a
    fraction in (0, 1).
    """
    if not 0 < dev_size < 1:
        raise ValueError(f"dev_size must be a fraction in (0, 1), got {dev_size!r}.")
    if "label" in frame.columns:
        return data.train_dev_split(frame, dev_size=dev_size, seed=seed)
    size = int(round(dev_size * len(frame)))
    if not 0 < size < len(frame):
        raise ValueError(f"{len(frame)} rows are too few to carve a dev split of {dev_size:g} from.")
    order = np.random.default_rng(seed).permutation(len(frame))
    return (frame.iloc[np.sort(order[size:])].reset_index(drop=True),
            frame.iloc[np.sort(order[:size])].reset_index(drop=True))


def _as_experiment_frame(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}.")
    if len(frame) == 0:
        raise ValueError(f"{name} is empty.")
    return frame.rename(columns=DATASET_COLUMNS["stsb"])  # load_stsb's sentence1/sentence2 → text/text_pair


def _texts_per_step(kind: str, names: Sequence[str], p: int, k: int) -> tuple[int, int]:
    """(texts per step, pairs per batch): P·K texts for every loss; pair-based losses get P·K/2 pairs."""
    if p < 1 or k < 1:
        raise ValueError(f"p and k must be positive, got p={p}, k={k}.")
    texts = p * k
    uses_pairs = kind != "labelled" or any(name in SAME_CLASS_PAIR_LOSSES for name in names)
    if uses_pairs and texts % 2:
        raise ValueError(f"P·K = {texts} texts per step is odd, so pair losses cannot get the same number of texts "
                         "(P·K/2 pairs): make P or K even.")
    return texts, max(1, texts // 2)


class _TextCount:
    """Counts the texts (embedding rows) and calls a loss receives: proof that every loss got the same budget."""

    def __init__(self, loss: torch.nn.Module):
        self.texts, self.calls = 0, 0
        self.handle = loss.register_forward_pre_hook(self)

    def __call__(self, module, args) -> None:
        self.texts += sum(a.shape[0] for a in args if isinstance(a, torch.Tensor) and a.dim() == 2)
        self.calls += 1


def compare_losses(
    model,
    train: pd.DataFrame,
    test: pd.DataFrame,
    losses: Sequence[str] | None = None,
    *,
    dev: pd.DataFrame,
    steps: int,
    eval_every: int | None = None,
    p: int = 8,
    k: int = 4,
    lr: float = 3e-5,
    warmup_ratio: float = 0.1,
    hyperparameters: Mapping[str, Mapping] | None = None,
    max_length: int | None = None,
    encode_batch_size: int = 64,
    include_before: bool = True,
    seed: int = 42,
    show_progress: bool = False,
) -> LossComparison:
    """Train a fresh copy of `model` with each loss under one budget, keep its best checkpoint on `dev`, test it.

    Args:
        model: the base model (an `EmbeddingModel`); it is copied for each loss and never changed.
        train, test: DataFrames of one kind (see `labkit.experiment`): labelled (``text``, ``label``) or
            scored pairs (``text``, ``text_pair``, ``score`` in [0, 1]; `load_stsb`'s ``sentence1``/``sentence2``
            are renamed). Classes with fewer than `k` texts cannot fill a P×K batch: drop them first
            (`labkit.data.drop_small_classes`). `test` is evaluated once per model, after training.
        losses: loss names; default every loss that fits the data (`labkit.experiment.LOSSES_FOR`).
        dev: data of the same kind carved from the training data (`split_dev`, `labkit.data.train_dev_split`),
            never the test data: `fit` evaluates each run on it every `eval_every` steps and keeps the
            checkpoint with the best main metric (MAP@R, Spearman), as notebook 09 does.
        steps: optimizer steps per loss (`lab.budget.compare_steps`).
        eval_every: steps between dev evaluations (default: a quarter of `steps`); the last step is always one.
        p, k: P×K batches for the batch losses; the pair losses get P·K/2 pairs, i.e. the same P·K texts per step.
        lr, warmup_ratio: AdamW learning rate and linear warm-up share, the same for every loss.
        hyperparameters: {loss name: kwargs}, overriding `DEFAULT_HYPERPARAMETERS` for that loss.
        include_before: evaluate the base model too (its row is named `BEFORE`).
        seed: one seed for every run (batch order, same-class pairing, dropout): change it to see the noise.

    Returns:
        a `LossComparison` (table, test embeddings per row, labels, training histories).

    Taught in notebooks/11_choosing_a_loss.ipynb.
    """
    from labkit.train import fit

    train, test, dev = (_as_experiment_frame(frame, name) for frame, name in ((train, "train"), (test, "test"),
                                                                              (dev, "dev")))
    kind = _common_kind(train, test, dev)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer (optimizer steps per loss), got {steps!r}.")
    eval_every = max(1, steps // 4) if eval_every is None else eval_every
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer (steps between dev evaluations), got {eval_every!r}.")
    names = list(LOSSES_FOR[kind] if losses is None else ([losses] if isinstance(losses, str) else losses))
    if not names:
        raise ValueError("losses is empty: name at least one loss, or pass None for every loss that fits the data.")
    settings = {name: {**DEFAULT_HYPERPARAMETERS.get(name, {}), **(hyperparameters or {}).get(name, {})}
                for name in names}
    for name in names:  # fail before any slow work: wrong loss for the data, unknown hyperparameter
        build_loss(name, kind, **settings[name])
    texts_per_step, pairs_per_batch = _texts_per_step(kind, names, p, k)
    exp = ExperimentData(kind, train.reset_index(drop=True), test.reset_index(drop=True))
    dev = dev.reset_index(drop=True)
    main = MAIN_METRIC[kind]
    metric_names = TABLE_METRICS[kind]

    def on_test(scored) -> tuple[dict, np.ndarray | None]:  # test metrics (and embeddings), no progress bars
        return evaluate_model(scored, exp, batch_size=encode_batch_size, show_progress_bar=False, cluster_quality=True,
                              pairs_in_one_call=True, return_embeddings=True)

    def on_dev(scored) -> dict:  # what fit() selects the checkpoint on
        return {main: evaluate_model(scored, exp, dev, batch_size=encode_batch_size, show_progress_bar=False,
                                     pairs_in_one_call=True)[main]}

    rows, embeddings, histories = [], {}, {}
    if include_before:
        metrics, embedded = on_test(model)
        rows.append({"loss": BEFORE, "steps": 0, "best_step": 0, "texts_per_step": 0, "texts_seen": 0,
                     "hyperparameters": "", "lr": float("nan"), f"dev_{main}": float("nan"),
                     **{m: metrics[m] for m in metric_names}, "seconds": 0.0})
        embeddings[BEFORE] = embedded
    for name in names:
        seed_everything(seed)
        trained = copy.deepcopy(model)
        loss = build_loss(name, kind, **settings[name])
        dataset, sampler = training_set(name, exp, p, k, pairs_per_batch, seed)
        count = _TextCount(loss)
        started = time.perf_counter()
        result = fit(trained, loss, dataset, batch_sampler=sampler, batch_size=pairs_per_batch, steps=steps, lr=lr,
                     warmup_ratio=warmup_ratio, max_length=max_length, evaluator=on_dev, metric=main,
                     eval_every=eval_every, restore_best=True, seed=seed, show_progress=show_progress,
                     live_plot=False)
        seconds = time.perf_counter() - started
        count.handle.remove()
        metrics, embedded = on_test(trained)  # the kept (best-on-dev) checkpoint, tested once
        rows.append({"loss": name, "steps": result.steps, "best_step": result.best_step,
                     "texts_per_step": count.texts / max(1, count.calls), "texts_seen": count.texts,
                     "hyperparameters": describe_hyperparameters(settings[name]), "lr": lr,
                     f"dev_{main}": result.best_metric, **{m: metrics[m] for m in metric_names},
                     "seconds": round(seconds, 1)})
        embeddings[name] = embedded
        histories[name] = result.history
        del trained, loss

    table = pd.DataFrame(rows)
    table["texts_per_step"] = table["texts_per_step"].round().astype(int)
    if include_before:
        table.insert(table.columns.get_loc("seconds"), f"{main}_change", table[main] - table[main].iloc[0])
    is_before = table["loss"] == BEFORE
    table = pd.concat([table[is_before], table[~is_before].sort_values(main, ascending=False, kind="stable")])
    table = table.reset_index(drop=True)
    labels = exp.heldout["label"].to_numpy() if kind == "labelled" else None
    ordered = {name: embeddings[name] for name in table["loss"] if embeddings.get(name) is not None}
    return LossComparison(kind, main, table, ordered, labels, histories)


def _common_kind(train: pd.DataFrame, test: pd.DataFrame, dev: pd.DataFrame) -> str:
    """The kind of data of all three frames; refuses a mix, and a dev split that is the test data."""
    kind = data_kind(train)
    for frame, name in ((test, "test"), (dev, "dev")):
        if data_kind(frame) != kind:
            raise ValueError(f"train holds {kind.replace('_', ' ')} data but {name} holds "
                             f"{data_kind(frame).replace('_', ' ')} data: use data of the same kind.")
    if dev.equals(test):
        raise ValueError("dev is the test data: choose checkpoints on a dev split carved from the training data "
                         "(split_dev or labkit.data.train_dev_split), and keep the test data for the final score.")
    return kind


def plot_cluster_grid(
    embeddings: Mapping[str, object],
    labels,
    label_names: Mapping | Sequence | None = None,
    max_points: int = 2000,
    projection: str = "umap",
    ncols: int = 3,
    seed: int = 0,
    panel_size: tuple[float, float] = (3.4, 3.2),
):
    """A grid of 2-D maps, one per model (e.g. `LossComparison.embeddings`), same points and colours in each.

    At most `max_points` held-out points (the same random ones in every map) are projected with `projection`
    ("umap" or "pca", one fit per map). Each title names the model and gives its cluster quality — cosine
    silhouette and kNN accuracy (`labkit.evaluate.cluster_quality`) — measured on those points in the
    original embedding space, because the map itself distorts distances.

    Taught in notebooks/11_choosing_a_loss.ipynb.
    """
    if not isinstance(embeddings, Mapping) or not embeddings:
        raise ValueError("embeddings must be a non-empty dict {name: (N, D) embeddings}, e.g. comparison.embeddings.")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}.")
    labels = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)
    arrays = {name: as_embeddings(value, f"embeddings[{name!r}]").numpy() for name, value in embeddings.items()}
    for name, value in arrays.items():
        if len(value) != len(labels):
            raise ValueError(f"embeddings[{name!r}] has {len(value)} rows but there are {len(labels)} labels.")
    keep = np.arange(len(labels))
    if len(labels) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), size=max_points, replace=False))

    nrows = -(-len(arrays) // ncols)
    ncols = min(ncols, len(arrays))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             layout="constrained", squeeze=False)
    plt.close(fig)
    for ax, (name, values) in zip(axes.flat, arrays.items()):
        points = values[keep]
        title = f"{name}\n{quality_caption(points, labels[keep])}"
        plot_clusters(project_2d(points, projection, seed), labels[keep], label_names, ax=ax, point_size=4)
        ax.set_title(title, fontsize="small")
    for ax in axes.flat[len(arrays):]:
        ax.set_visible(False)
    return fig
