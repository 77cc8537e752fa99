"""labkit.viz: every function returns a Figure with the expected axes and points, on normal and tiny input."""
from __future__ import annotations

import os
import sys
import types

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from labkit import evaluate, viz


def clustered(n_classes=4, per_class=15, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    embeddings = rng.normal(size=(n_classes, dim))[labels] + 0.3 * rng.normal(size=(len(labels), dim))
    return embeddings.astype(np.float32), labels


def scatter_points(ax) -> int:
    return sum(len(collection.get_offsets()) for collection in ax.collections)


# ---------------------------------------------------------------------------------------------------------------
# Projections
# ---------------------------------------------------------------------------------------------------------------
def test_pca_2d_shapes_and_centring():
    embeddings, _ = clustered()
    points = viz.pca_2d(torch.from_numpy(embeddings))
    assert points.shape == (len(embeddings), 2)
    np.testing.assert_allclose(points.mean(axis=0), 0, atol=1e-9)
    assert points[:, 0].var() >= points[:, 1].var()  # first axis = most variance
    assert viz.pca_2d(embeddings[:2]).shape == (2, 2)  # one direction only: padded
    assert viz.pca_2d(embeddings[:1]).shape == (1, 2)


class FakeUMAP:
    """Records how umap_2d configures UMAP; real UMAP compiles for ~30 s on first use, too slow for unit tests."""

    calls: list = []

    def __init__(self, **kwargs):
        FakeUMAP.calls.append(kwargs)

    def fit_transform(self, x):
        return x[:, :2] * 2


def test_umap_2d_configures_umap_and_falls_back_to_pca(monkeypatch, capsys):
    embeddings, _ = clustered(n_classes=2, per_class=5)
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    points = viz.umap_2d(embeddings, seed=3, n_neighbors=50)
    np.testing.assert_allclose(points, embeddings[:, :2] * 2)
    assert FakeUMAP.calls[-1] == {"n_components": 2, "n_neighbors": 9, "metric": "cosine", "min_dist": 0.1,
                                  "random_state": 3}
    np.testing.assert_allclose(viz.umap_2d(embeddings[:3]), viz.pca_2d(embeddings[:3]))  # too few for UMAP
    assert "PCA" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` now raises ImportError
    np.testing.assert_allclose(viz.umap_2d(embeddings), viz.pca_2d(embeddings))
    assert "umap-learn is not available" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LABKIT_FAST", "1") != "0", reason="real UMAP compiles for ~30 s: LABKIT_FAST=0")
def test_umap_2d_real_umap_maps_every_point():
    embeddings, _ = clustered(n_classes=3, per_class=10)
    points = viz.umap_2d(embeddings, seed=0, n_neighbors=5)
    assert points.shape == (30, 2) and np.isfinite(points).all()


# ---------------------------------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------------------------------
def test_plot_clusters_draws_every_point_with_one_legend_entry_per_class():
    embeddings, labels = clustered()
    fig = viz.plot_clusters(viz.pca_2d(embeddings), labels, label_names=["w", "x", "y", "z"], title="map")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert scatter_points(ax) == len(labels)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["w", "x", "y", "z"]
    assert ax.get_title() == "map"


def test_plot_clusters_handles_one_class_two_points_many_classes_and_an_existing_axis():
    fig = viz.plot_clusters(np.zeros((5, 2)), ["only"] * 5)
    assert scatter_points(fig.axes[0]) == 5
    fig = viz.plot_clusters(np.array([[0.0, 1.0], [1.0, 0.0]]), [0, 1], label_names={0: "neg", 1: "pos"})
    assert scatter_points(fig.axes[0]) == 2
    fig = viz.plot_clusters(np.random.default_rng(0).normal(size=(100, 2)), np.arange(100) % 30)
    assert fig.axes[0].get_legend() is None  # 30 classes: a legend would hide the map
    own = Figure()
    ax = own.add_subplot()
    assert viz.plot_clusters(np.zeros((3, 2)), [0, 1, 1], ax=ax) is own
    with pytest.raises(ValueError, match="N, 2"):
        viz.plot_clusters(np.zeros((3, 5)), [0, 1, 1])


def test_plot_before_after_two_maps_with_quality_numbers():
    before, labels = clustered(seed=1)
    after = before.copy()
    before = np.random.default_rng(2).normal(size=before.shape)  # no structure before training
    fig = viz.plot_before_after(before, after, labels, projection="pca", max_points=40, seed=0)
    assert len(fig.axes) == 2
    assert [scatter_points(ax) for ax in fig.axes] == [40, 40]
    captions = [ax.get_xlabel() for ax in fig.axes]
    assert all("silhouette" in c and "5-NN accuracy" in c for c in captions)
    # The caption shows cluster_quality of the plotted points in the original space.
    keep = np.sort(np.random.default_rng(0).choice(len(labels), size=40, replace=False))
    quality = evaluate.cluster_quality(after[keep], labels[keep])
    assert f"{quality['silhouette']:.3f}" in captions[1]
    assert f"{quality['knn_accuracy']:.3f}" in captions[1]


def test_plot_before_after_single_class_and_two_points():
    embeddings, _ = clustered()
    fig = viz.plot_before_after(embeddings, embeddings, np.zeros(len(embeddings)), projection="pca")
    assert all("n/a" in ax.get_xlabel() for ax in fig.axes)
    fig = viz.plot_before_after(embeddings[:2], embeddings[:2], [0, 1], projection="pca")
    assert [scatter_points(ax) for ax in fig.axes] == [2, 2]
    with pytest.raises(ValueError, match="projection"):
        viz.plot_before_after(embeddings, embeddings, np.zeros(len(embeddings)), projection="tsne")


# ---------------------------------------------------------------------------------------------------------------
# Curves, heatmaps, histograms
# ---------------------------------------------------------------------------------------------------------------
def history(steps=20, every=5):
    rows = [{"step": s, "loss": 1.0 / (s + 1), "lr": 1e-4} for s in range(steps)]
    for row in rows[::every]:
        row["precision_at_1"] = row["step"] / steps
    return rows


def test_plot_loss_curves_losses_left_metrics_right_gaps_skipped():
    fig = viz.plot_loss_curves(history())
    loss_ax, metric_ax = fig.axes
    assert [len(line.get_xdata()) for line in loss_ax.get_lines()] == [20]
    assert [len(line.get_xdata()) for line in metric_ax.get_lines()] == [4]  # logged every 5 steps
    assert [t.get_text() for t in metric_ax.get_legend().get_texts()] == ["precision_at_1"]
    smoothed = viz.plot_loss_curves(pd.DataFrame(history()), smoothing=0.9)
    raw, ema = smoothed.axes[0].get_lines()
    assert np.ptp(ema.get_ydata()) < np.ptp(raw.get_ydata())  # smoothing flattens


def test_plot_loss_curves_loss_only_and_bad_input():
    fig = viz.plot_loss_curves([{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5, "eval_loss": 1.7}])
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="empty"):
        viz.plot_loss_curves([])
    with pytest.raises(ValueError, match="smoothing"):
        viz.plot_loss_curves(history(), smoothing=1.0)


def test_plot_distance_heatmap_shows_the_matrix():
    embeddings, labels = clustered(n_classes=2, per_class=3)
    matrix = torch.cdist(torch.from_numpy(embeddings), torch.from_numpy(embeddings))
    fig = viz.plot_distance_heatmap(matrix, labels=labels, title="distances")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), matrix.numpy(), rtol=1e-6)
    assert len(ax.texts) == 36  # 6 x 6 annotated
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(label) for label in labels]
    big = viz.plot_distance_heatmap(np.random.default_rng(0).random((30, 30)))
    assert len(big.axes[0].texts) == 0
    assert len(viz.plot_distance_heatmap([[0.0]]).axes[0].images) == 1


def test_plot_similarity_histograms_with_both_one_or_no_kind():
    embeddings, labels = clustered()
    pos, neg = evaluate.similarity_distributions(embeddings, labels)
    fig = viz.plot_similarity_histograms(pos, neg, bins=20, threshold=0.5)
    ax = fig.axes[0]
    assert len(ax.patches) == 40  # two histograms of 20 bars
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert f"AUC {evaluate.separation_summary(pos, neg)['auc']:.3f}" in legend and "threshold" in legend
    only_pos = viz.plot_similarity_histograms(pos, [], bins=10)
    assert len(only_pos.axes[0].patches) == 10
    with pytest.raises(ValueError, match="empty"):
        viz.plot_similarity_histograms([], [])


def test_live_plot_has_one_legend_above_the_axes_naming_both_curves(monkeypatch):
    import IPython.display

    class Handle:
        updates = 0

        def update(self, fig):
            Handle.updates += 1

    monkeypatch.setattr(IPython.display, "display", lambda *args, **kwargs: Handle())
    plot = viz.LivePlot(metric="map")
    history = [{"step": 0, "map": 0.4}, {"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.7}, {"step": 2, "map": 0.5}]
    plot.update(history)
    plot.update(history)  # redrawn in place: still one legend, on the first axis
    legend = plot.ax.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["train loss", "dev map"]
    assert plot.ax2.get_legend() is None and Handle.updates == 2
    assert plot.ax2.yaxis.get_label_position() == "right" and plot.ax2.get_ylabel() == "dev map"
    # above the plotting area: the legend's box starts at or above the axes' top edge
    plot.fig.canvas.draw()
    assert legend.get_window_extent().y0 >= plot.ax.get_window_extent().y1 - 1
