"""Pictures of embeddings and training: 2-D maps, before/after comparisons, curves, heatmaps, histograms.

Every function returns a matplotlib `Figure` (Jupyter shows it when it is the last value of a cell; elsewhere
call `fig.savefig(...)`). Figures are closed in pyplot right away, so they are shown once and many of them
do not pile up in memory; pass `ax=` to draw into a figure of your own instead. The one exception is
`LivePlot`, the loss curve `labkit.train.fit` redraws in place in a notebook while it trains.

A 2-D map is a picture, not a measurement: UMAP distorts distances and differs between machines even with a
seed. The numbers worth quoting (`labkit.evaluate.cluster_quality`) are computed in the original space and
printed under each map.

Taught in notebooks/09_training.ipynb (loss curves, similarity histograms) and notebooks/10_clusters.ipynb
(UMAP maps, before/after, heatmaps).
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from labkit.evaluate import cluster_quality, separation_summary
from labkit.validation import as_embeddings

__all__ = [
    "pca_2d", "umap_2d", "plot_clusters", "plot_before_after", "plot_loss_curves", "plot_distance_heatmap",
    "plot_similarity_histograms", "LivePlot", "in_notebook", "project_2d", "quality_caption",
]

# Columns of a training history that are not curves to draw.
NOT_CURVES = {"step", "epoch", "lr", "learning_rate", "time", "seconds", "elapsed"}


def _new_figure(ax, figsize):
    """(figure, axes): the caller's axes, or a fresh figure that pyplot forgets (shown once, no leak)."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig, ax


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------------------------------------------
# 2-D projections
# --------------------------------------------------------------------------------------------------------------
def pca_2d(embeddings) -> np.ndarray:
    """Project L2-normalised embeddings onto their 2 main directions (PCA): an (N, 2) array.

    Deterministic and instant, but linear: clusters that UMAP pulls apart may overlap here.
    Taught in notebooks/10_clusters.ipynb.
    """
    x = as_embeddings(embeddings).double()
    x = (x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()
    x = x - x.mean(axis=0)
    _, _, components = np.linalg.svd(x, full_matrices=False)
    points = x @ components[:2].T
    return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))  # fewer than 2 directions: pad with zeros


def umap_2d(
    embeddings, seed: int = 0, n_neighbors: int = 15, metric: str = "cosine", min_dist: float = 0.1
) -> np.ndarray:
    """Project embeddings to 2-D with UMAP (umap-learn): an (N, 2) array.

    UMAP keeps neighbourhoods (who is near whom) rather than distances, which suits "do the classes form
    clusters?". `metric="cosine"` matches how the embeddings are compared. With fewer than 5 points, or when
    umap-learn cannot be imported, it prints a note and falls back to `pca_2d`. The first call in a process
    compiles UMAP's code (tens of seconds); later calls are fast.

    Taught in notebooks/10_clusters.ipynb.
    """
    threads = torch.get_num_threads()  # numba (UMAP) resets the thread count it shares with torch: restored below
    x = as_embeddings(embeddings).numpy()
    if len(x) < 5:
        print(f"umap_2d: {len(x)} points are too few for UMAP; using PCA instead.")
        return pca_2d(x)
    try:
        import umap
    except ImportError as error:
        print(f"umap_2d: umap-learn is not available ({error}); using PCA instead. `pip install umap-learn`.")
        return pca_2d(x)
    reducer = umap.UMAP(
        n_components=2, n_neighbors=max(2, min(n_neighbors, len(x) - 1)), metric=metric, min_dist=min_dist,
        random_state=seed,
    )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # a seed forces one thread: expected
            warnings.filterwarnings("ignore", message=".*gradient function is not yet implemented.*")
            return np.asarray(reducer.fit_transform(x))
    finally:
        torch.set_num_threads(threads)  # else training after a map runs on every core (4× slower on a busy CPU)


def project_2d(embeddings, projection: str = "umap", seed: int = 0) -> np.ndarray:
    """An (N, 2) map of the embeddings: `umap_2d` (with `seed`) for projection="umap", `pca_2d` for "pca"."""
    if projection == "umap":
        return umap_2d(embeddings, seed=seed)
    if projection == "pca":
        return pca_2d(embeddings)
    raise ValueError(f"Unknown projection {projection!r}: use 'umap' or 'pca'.")


# --------------------------------------------------------------------------------------------------------------
# Maps
# --------------------------------------------------------------------------------------------------------------
def _class_colours(num_classes: int) -> np.ndarray:
    """Distinct colours: tab10 / tab20 for few classes, evenly spaced on a rainbow map for many."""
    if num_classes <= 10:
        return plt.get_cmap("tab10")(np.arange(num_classes))
    if num_classes <= 20:
        return plt.get_cmap("tab20")(np.arange(num_classes))
    return plt.get_cmap("turbo")(np.linspace(0, 1, num_classes))


def _name_of(label, label_names) -> str:
    if label_names is None:
        return str(label)
    if isinstance(label_names, Mapping):
        return str(label_names.get(label, label))
    return str(label_names[int(label)])  # a sequence indexed by integer label


def plot_clusters(
    points_2d, labels, label_names: Mapping | Sequence | None = None, ax=None, title: str | None = None,
    max_legend: int = 12, point_size: float = 8.0,
):
    """Scatter a 2-D map with one colour per class; a legend when there are at most `max_legend` classes.

    `label_names` turns labels into readable names: a dict {label: name} or a list indexed by integer label.
    Axis ticks are hidden because map coordinates mean nothing on their own.

    Taught in notebooks/10_clusters.ipynb.
    """
    points = _to_numpy(points_2d)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points_2d must have shape (N, 2), got {points.shape}: project with umap_2d first.")
    labels = _to_numpy(labels).reshape(-1)
    if len(labels) != len(points):
        raise ValueError(f"Got {len(points)} points but {len(labels)} labels.")
    classes, codes = np.unique(labels, return_inverse=True)
    colours = _class_colours(len(classes))
    fig, ax = _new_figure(ax, (5, 4.5))
    ax.scatter(points[:, 0], points[:, 1], c=colours[codes.reshape(-1)], s=point_size, alpha=0.8, linewidths=0)
    if len(classes) <= max_legend:
        handles = [
            plt.Line2D([], [], marker="o", linestyle="", color=colours[i], label=_name_of(c, label_names))
            for i, c in enumerate(classes)
        ]
        ax.legend(handles=handles, fontsize="small", loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def quality_caption(embeddings, labels) -> str:
    """The numbers printed under a map (cosine silhouette, kNN accuracy from `labkit.evaluate.cluster_quality`,
    computed in the original space); "n/a" when they are undefined (one class, too few points)."""
    try:
        quality = cluster_quality(embeddings, labels)
    except ValueError:
        return "silhouette n/a · kNN accuracy n/a"
    return f"silhouette {quality['silhouette']:.3f} · {quality['k']}-NN accuracy {quality['knn_accuracy']:.3f}"


def plot_before_after(
    emb_before, emb_after, labels, label_names: Mapping | Sequence | None = None, max_points: int = 2000,
    seed: int = 0, projection: str = "umap", titles: Sequence[str] = ("before training", "after training"),
):
    """Two maps side by side, same points and colours: did training pull the classes into clusters?

    At most `max_points` random points (the same ones in both maps, chosen with `seed`) are projected with
    `projection` ("umap" or "pca"). Under each map: cosine silhouette and kNN accuracy from
    `labkit.evaluate.cluster_quality`, computed on those points in the original embedding space.

    Taught in notebooks/10_clusters.ipynb.
    """
    before, after = as_embeddings(emb_before, "emb_before"), as_embeddings(emb_after, "emb_after")
    labels = _to_numpy(labels).reshape(-1)
    if not len(before) == len(after) == len(labels):
        raise ValueError(f"Got {len(before)} embeddings before, {len(after)} after and {len(labels)} labels.")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(labels), size=max_points, replace=False)) if len(labels) > max_points else None
    if keep is not None:
        before, after, labels = before[keep], after[keep], labels[keep]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
    plt.close(fig)
    for ax, embeddings, title in zip(axes, (before, after), titles):
        plot_clusters(project_2d(embeddings, projection, seed), labels, label_names, ax=ax, title=title)
        ax.set_xlabel(quality_caption(embeddings, labels))
    return fig


# --------------------------------------------------------------------------------------------------------------
# Curves, heatmaps, histograms
# --------------------------------------------------------------------------------------------------------------
def _smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average (TensorBoard's smoothing), bias-corrected so the start is not pulled to 0."""
    return pd.Series(values).ewm(alpha=1 - weight, adjust=True).mean().to_numpy()


def plot_loss_curves(history, smoothing: float = 0.0, title: str | None = None):
    """Training curves from a history: a list of dicts (or a DataFrame) with "step", "loss" and optional metrics.

    Columns whose name contains "loss" share the left panel; other numeric columns (e.g. "precision_at_1",
    "spearman_cosine") go to a right panel. Missing values are skipped, so metrics logged every few hundred
    steps draw as lines through their own points. `smoothing` in [0, 1) adds an exponential moving average
    of each loss over the faint raw curve.

    Taught in notebooks/09_training.ipynb.
    """
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history))
    if frame.empty:
        raise ValueError("history is empty: log at least one step, e.g. [{'step': 0, 'loss': 1.3}].")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}.")
    steps = frame["step"] if "step" in frame else pd.Series(np.arange(len(frame)), name="step")
    numeric = [c for c in frame.columns if c not in NOT_CURVES and pd.api.types.is_numeric_dtype(frame[c])]
    loss_columns = [c for c in numeric if "loss" in str(c).lower()]
    metric_columns = [c for c in numeric if c not in loss_columns]
    if not loss_columns and not metric_columns:
        raise ValueError(f"history has no numeric column to plot (columns: {list(frame.columns)}).")

    panels = [cols for cols in (loss_columns, metric_columns) if cols]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), layout="constrained", squeeze=False)
    plt.close(fig)
    for ax, columns in zip(axes[0], panels):
        for column in columns:
            present = frame[column].notna().to_numpy()
            x, y = steps.to_numpy()[present], frame[column].to_numpy(dtype=float)[present]
            marker = "o" if len(y) < 30 else None
            if smoothing and column in loss_columns:
                line, = ax.plot(x, y, alpha=0.3)
                ax.plot(x, _smooth(y, smoothing), color=line.get_color(), label=f"{column} (smoothed)")
            else:
                ax.plot(x, y, marker=marker, markersize=3, label=column)
        ax.set_xlabel("step")
        ax.set_ylabel("loss" if columns is loss_columns else "metric")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def plot_distance_heatmap(
    matrix, labels: Sequence | None = None, ax=None, title: str | None = None, cmap: str = "viridis",
    annotate: bool | None = None, colorbar_label: str | None = None,
):
    """Show a square (or rectangular) matrix of distances or similarities as coloured cells.

    `labels` name the rows/columns (shown when there are at most 40). `annotate` writes each value in its cell;
    by default only when the matrix is at most 10 x 10. Used to look at a batch's distance matrix and the
    masks that pick positives and negatives.

    Taught in notebooks/10_clusters.ipynb.
    """
    values = _to_numpy(matrix).astype(float)
    if values.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {values.shape}.")
    fig, ax = _new_figure(ax, (4.5, 4))
    image = ax.imshow(values, cmap=cmap)
    fig.colorbar(image, ax=ax, shrink=0.8, label=colorbar_label)
    if labels is not None and len(labels) <= 40:
        labels = [str(label) for label in labels]
        if len(labels) == values.shape[0]:
            ax.set_yticks(range(len(labels)), labels, fontsize="small")
        if len(labels) == values.shape[1]:
            ax.set_xticks(range(len(labels)), labels, fontsize="small", rotation=90)
    if annotate is None:
        annotate = max(values.shape) <= 10
    if annotate:
        middle = np.nanmean(values) if np.isfinite(values).any() else 0.0
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value < middle else "black")
    if title:
        ax.set_title(title)
    return fig


def plot_similarity_histograms(
    positive_similarities, negative_similarities, ax=None, bins: int = 50, title: str | None = None,
    threshold: float | None = None,
):
    """Overlaid histograms of cosine similarity for positive (same class) and negative pairs.

    Get the two arrays from `labkit.evaluate.similarity_distributions`. Densities, not counts, because there
    are usually far more negative pairs. The legend gives the AUC and mean gap (`separation_summary`) when
    both kinds are present; `threshold` draws a vertical line (e.g. a pair-classification threshold).

    Taught in notebooks/09_training.ipynb and notebooks/10_clusters.ipynb.
    """
    pos = _to_numpy(positive_similarities).astype(float).reshape(-1)
    neg = _to_numpy(negative_similarities).astype(float).reshape(-1)
    if len(pos) == 0 and len(neg) == 0:
        raise ValueError("Both similarity arrays are empty: nothing to plot.")
    fig, ax = _new_figure(ax, (5, 3.5))
    edges = np.histogram_bin_edges(np.concatenate([pos, neg]), bins=bins)
    for values, name, colour in ((pos, "positive pairs", "tab:green"), (neg, "negative pairs", "tab:red")):
        if len(values):
            ax.hist(values, bins=edges, density=True, alpha=0.5, color=colour, label=f"{name} (n={len(values)})")
    if len(pos) and len(neg):
        summary = separation_summary(pos, neg)
        ax.plot([], [], " ", label=f"AUC {summary['auc']:.3f}, gap {summary['mean_gap']:.3f}")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.legend(fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return fig


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where `LivePlot` can redraw a cell's output), False in a script or a shell."""
    try:
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except ImportError:
        return False


class LivePlot:
    """A loss (and metric) curve redrawn in place in a notebook while training runs (`labkit.train.fit` makes one).

    `update(history)` redraws it from a training history: the rows with a "loss", and the evaluations' `metric`
    (default: their first value) on a second axis.
    """

    def __init__(self, metric: str | None):
        from IPython.display import display

        self.metric = metric
        self.fig, self.ax = plt.subplots(figsize=(6, 3))
        plt.close(self.fig)  # shown through the display handle only, not again at the end of the cell
        self.handle = display(self.fig, display_id=True)

    def update(self, history: list[dict]) -> None:
        losses = [(r["step"], r["loss"]) for r in history if "loss" in r]
        evals = [r for r in history if "loss" not in r]
        self.ax.clear()
        lines = []
        if losses:
            lines += self.ax.plot(*zip(*losses), label="train loss", lw=1)
        self.ax.set_xlabel("step")
        self.ax.set_ylabel("train loss")
        if evals:
            name = self.metric or next(k for k in evals[0] if k != "step")
            if not hasattr(self, "ax2"):
                self.ax2 = self.ax.twinx()
            self.ax2.clear()
            lines += self.ax2.plot([r["step"] for r in evals], [r[name] for r in evals], "o-", color="C1",
                                   label=f"dev {name}")
            self.ax2.set_ylabel(f"dev {name}")
            self.ax2.yaxis.set_label_position("right")  # clear() puts a twin axis's label back on the left
        if lines:  # one legend above the axes, where no curve runs
            self.ax.legend(lines, [line.get_label() for line in lines], loc="lower center", bbox_to_anchor=(0.5, 1.0),
                           ncol=len(lines), frameon=False, fontsize="small")
        self.fig.tight_layout()
        self.handle.update(self.fig)
