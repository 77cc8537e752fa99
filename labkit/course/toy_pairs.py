"""Worked examples for pair losses: draw (a_i, b_i) pairs in 2-D and say how one gradient step moved them.

A pair loss sees two embedding columns, `emb_a` and `emb_b`, and one label per row: 0/1 (same meaning or
not), a similarity score, or an NLI class. On a handful of 2-D points you can draw each pair as a line,
the negative gradient on every point as an arrow, and check that a step of gradient descent moved each
pair the way the loss wants. `labkit.course.toy.gradient_step` takes the step; the helpers here show it:

* `plot_pairs`: the points, a line per pair (styled by its label), arrows, the unit circle;
* `point_movement_table`: each point's position, gradient and where the step moved it;
* `pair_movement_table`: each pair's similarity before and after the step: closer, apart, or unmoved;
* `plot_hard_pair_selection`: which pairs `OnlineContrastiveLoss` keeps, on a line of distances.

Used by notebooks/04_pair_losses.ipynb and notebooks/06_similarity_losses.ipynb.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from labkit.distances import pairwise_cos_sim
from labkit.course.toy import GradientStep

__all__ = ["plot_pairs", "point_movement_table", "pair_movement_table", "plot_hard_pair_selection",
           "pair_point_names"]

# A change smaller than this is float noise, not a movement.
UNMOVED_TOLERANCE = 1e-9


def pair_point_names(num_pairs: int) -> list[str]:
    """The names the worked examples use: a0, a1, ... for `emb_a`, then b0, b1, ... for `emb_b`."""
    return [f"a{i}" for i in range(num_pairs)] + [f"b{i}" for i in range(num_pairs)]


def _rounded(values, decimals: int) -> list[float]:
    # Adding 0.0 turns the -0.0 that rounding leaves on tiny negative numbers into 0.0.
    return (np.round(np.asarray(values, dtype=float), decimals) + 0.0).tolist()


def _pair_columns(step: GradientStep) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    if len(step.before) < 2:
        raise ValueError("Expected a gradient step on two embedding columns: gradient_step(loss, emb_a, emb_b, ...).")
    (a, b), (a_after, b_after), (grad_a, grad_b) = step.before[:2], step.after[:2], step.gradients[:2]
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"emb_a and emb_b must both have shape (pairs, dim); got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    return a, b, a_after, b_after, grad_a, grad_b


def point_movement_table(step: GradientStep, names: Sequence[str] | None = None, decimals: int = 4):
    """One row per point of the first two inputs of `step`: position, gradient, |gradient|, position after the step.

    Rows are a0, a1, ... then b0, b1, ... (or `names`). Values are rounded to `decimals`.
    """
    import pandas as pd

    a, b, a_after, b_after, grad_a, grad_b = _pair_columns(step)
    points, gradients, after = torch.cat([a, b]), torch.cat([grad_a, grad_b]), torch.cat([a_after, b_after])
    names = list(names) if names is not None else pair_point_names(len(a))
    if len(names) != len(points):
        raise ValueError(f"Got {len(names)} names for {len(points)} points (a0.., then b0..).")
    table = pd.DataFrame({
        "position": [_rounded(p, decimals) for p in points.tolist()],
        "gradient": [_rounded(g, decimals) for g in gradients.tolist()],
        "|gradient|": _rounded(gradients.double().norm(dim=1), decimals),
        "moves to": [_rounded(p, decimals) for p in after.tolist()],
    }, index=pd.Index(names, name="point"))
    return table


def pair_movement_table(
    step: GradientStep,
    labels=None,
    measure: Callable[[Tensor, Tensor], Tensor] = pairwise_cos_sim,
    name: str = "cosine",
    higher_is_closer: bool = True,
    decimals: int = 6,
):
    """One row per pair: `measure` (cosine similarity by default) before and after the step, and the verdict.

    ``moved`` is "closer", "apart" or "not moved" (a change under 1e-9). For a distance, pass
    ``measure=SiameseDistanceMetric.COSINE_DISTANCE, name="distance", higher_is_closer=False``.
    """
    import pandas as pd

    a, b, a_after, b_after, _, _ = _pair_columns(step)
    with torch.no_grad():
        before, after = measure(a, b).double(), measure(a_after, b_after).double()
    change = after - before
    closer = change > 0 if higher_is_closer else change < 0
    moved = np.where(change.abs().numpy() < UNMOVED_TOLERANCE, "not moved", np.where(closer.numpy(), "closer", "apart"))
    columns = {}
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1)
        columns["label"] = labels.tolist()
    columns.update({f"{name} before": _rounded(before, decimals), f"{name} after": _rounded(after, decimals),
                    "change": _rounded(change, decimals), "moved": moved.tolist()})
    return pd.DataFrame(columns, index=pd.RangeIndex(len(a), name="pair"))


def plot_pairs(
    emb_a,
    emb_b,
    labels=None,
    arrows: Sequence | None = None,
    arrow_scale: float = 1.0,
    ax=None,
    title: str | None = None,
    unit_circle: bool = True,
    annotate_labels: bool = False,
):
    """Draw 2-D pairs: points a_i (circles) and b_i (squares) joined by a line per pair.

    Lines: solid green for label 1, dashed red for label 0 (0/1 labels); coloured by score from red (low) to
    green (high) for float scores; grey without labels. `arrows` is a pair (for_a, for_b) of (B, 2) arrays,
    typically minus the gradients (where a step moves each point), drawn times `arrow_scale`.
    `annotate_labels` writes each pair's label at the middle of its line. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    a = np.asarray(emb_a.detach().cpu() if isinstance(emb_a, Tensor) else emb_a, dtype=float)
    b = np.asarray(emb_b.detach().cpu() if isinstance(emb_b, Tensor) else emb_b, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"plot_pairs draws 2-D points: emb_a and emb_b must have shape (pairs, 2); "
                         f"got {a.shape} and {b.shape}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.6))
    if unit_circle:
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), ":", color="0.65", lw=1)
    values = None if labels is None else np.asarray(torch.as_tensor(labels).reshape(-1).double(), dtype=float)
    binary = values is not None and set(np.unique(values)) <= {0.0, 1.0}
    colour_map = plt.get_cmap("RdYlGn")
    for i in range(len(a)):
        if values is None:
            style = dict(color="0.4", ls="-")
        elif binary:
            style = dict(color="tab:green", ls="-") if values[i] == 1 else dict(color="tab:red", ls="--")
        else:
            low, high = values.min(), values.max()
            style = dict(color=colour_map(0.1 + 0.8 * (values[i] - low) / (high - low or 1.0)), ls="-")
        ax.plot([a[i, 0], b[i, 0]], [a[i, 1], b[i, 1]], lw=2, alpha=0.85, zorder=1, **style)
        if annotate_labels and values is not None:
            middle = (a[i] + b[i]) / 2
            ax.annotate(f"{values[i]:g}", middle, fontsize=8, color=style["color"], ha="center", va="center",
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    ax.scatter(a[:, 0], a[:, 1], marker="o", s=55, c="tab:blue", edgecolors="k", zorder=3, label="a (first text)")
    ax.scatter(b[:, 0], b[:, 1], marker="s", s=50, c="tab:orange", edgecolors="k", zorder=3, label="b (second text)")
    for i in range(len(a)):
        for point, role in ((a[i], "a"), (b[i], "b")):
            offset = 9 * point / (np.linalg.norm(point) or 1.0)  # outwards from the origin, away from the lines
            ax.annotate(f"{role}{i}", point, textcoords="offset points", xytext=tuple(offset), ha="center",
                        va="center", fontsize=9)
    if arrows is not None:
        for points, arrow in zip((a, b), arrows):
            arrow = np.asarray(arrow.detach().cpu() if isinstance(arrow, Tensor) else arrow, dtype=float) * arrow_scale
            ax.quiver(points[:, 0], points[:, 1], arrow[:, 0], arrow[:, 1], angles="xy", scale_units="xy", scale=1,
                      color="0.15", width=0.007, zorder=4)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_hard_pair_selection(explanation, ax=None, title: str | None = None):
    """Draw `OnlineContrastiveLoss.explain(...)` on a line of distances: which pairs are hard, and why.

    Positives (top row) are hard right of the closest negative's distance; negatives (bottom row) are hard left
    of the farthest positive's. Filled markers are the selected (hard) pairs; the dotted line is the margin,
    beyond which a selected negative still adds nothing. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    table, details = explanation.per_pair, explanation.details
    if "hard" not in table or "positive_threshold" not in details:
        raise ValueError("plot_hard_pair_selection draws OnlineContrastiveLoss.explain(...) results.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 2.4))
    positive_threshold, negative_threshold = details["positive_threshold"], details["negative_threshold"]
    right_end = max(table["distance"].max(), positive_threshold, negative_threshold, details["margin"]) * 1.08 + 0.02
    ax.axvspan(positive_threshold, right_end, ymin=0.5, ymax=1.0, color="tab:green", alpha=0.08)
    ax.axvspan(0.0, negative_threshold, ymin=0.0, ymax=0.5, color="tab:red", alpha=0.08)
    ax.axvline(positive_threshold, ymin=0.5, color="tab:green", ls="--", lw=1.2,
               label=f"positives hard beyond {positive_threshold:.3g}")
    ax.axvline(negative_threshold, ymax=0.5, color="tab:red", ls="--", lw=1.2,
               label=f"negatives hard below {negative_threshold:.3g}")
    ax.axvline(details["margin"], color="0.4", ls=":", lw=1.2, label=f"margin {details['margin']:.3g}")
    for pair, row in table.iterrows():
        y, colour = (1.0, "tab:green") if row["label"] == 1 else (0.0, "tab:red")
        ax.scatter(row["distance"], y, s=70, zorder=3, edgecolors=colour, linewidths=1.8,
                   facecolors=colour if row["hard"] else "white")
        ax.annotate(str(pair), (row["distance"], y), textcoords="offset points", xytext=(0, 9), ha="center",
                    fontsize=9)
    ax.set_yticks([0.0, 1.0], ["negatives\n(label 0)", "positives\n(label 1)"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlim(0.0, right_end)
    metric = str(details.get("distance_metric", "")).split(".")[-1]  # e.g. COSINE_DISTANCE
    ax.set_xlabel({"COSINE_DISTANCE": "cosine distance 1 − cos", "EUCLIDEAN": "Euclidean distance",
                   "MANHATTAN": "Manhattan distance"}.get(metric, "distance"))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
    ax.set_title(title or "filled = hard pair (selected), hollow = easy pair (ignored)", fontsize=10)
    return ax
