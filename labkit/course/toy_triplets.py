"""Worked examples for triplet losses: draw which triplets a loss picks, who moves, and how fast it is.

A triplet loss compares an anchor with a positive (same label) and a negative (another label). On a
handful of labelled 2-D points you can see everything a batch loss does: the distance matrix and the two
masks it chooses from, the positive and negative each anchor picks, and -- after one step of
`labkit.course.toy.gradient_step` -- which points were pushed and which were left alone. The helpers here draw
and tabulate that; the losses themselves (and their ``.explain(...)``) live in `labkit.losses.triplets`,
the masks and picks in `labkit.mining`.

* `plot_triplets`: given (anchor, positive, negative) triplets, one panel each with the three zones
  around the anchor -- hard, semi-hard, easy -- where the negative can lie;
* `plot_label_masks`: the anchor-positive and anchor-negative masks as 0/1 matrices;
* `plot_mining_matrix`: the distance matrix with the candidates of each anchor framed and its picks boxed;
* `plot_picks`: the points, with an arrow from each anchor to the positive and the negative it uses;
* `triplet_roles`: per point, the triplets it takes part in and whether the gradient step moved it;
* `time_batch_hard_against_article`: the original article's per-anchor loop against labkit's vectorised
  batch-hard loss -- same value, measured time.

Like `labkit.course.toy.plot_points`, the plots draw into a new pyplot figure (or the ``ax``/``axes`` given) and
leave it open, so a notebook shows it once at the end of the cell (end the line with ``;``).

Taught in notebooks/05_triplet_losses.ipynb.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from labkit.mining import TripletKind, classify_triplets, label_masks
from labkit.validation import check_class_labels

__all__ = [
    "plot_triplets",
    "plot_label_masks",
    "plot_mining_matrix",
    "plot_picks",
    "triplet_roles",
    "time_batch_hard_against_article",
]

# Class colours avoid green and red, which the pictures keep for positives and negatives.
CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
                 "tab:gray")
POSITIVE_COLOUR, NEGATIVE_COLOUR = "tab:green", "tab:red"
KIND_COLOURS = {"hard": "#f4cccc", "semi-hard": "#fff2cc", "easy": "#d9ead3"}

# A gradient smaller than this is float noise, not a push.
UNMOVED_TOLERANCE = 1e-12


def _numpy(x, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}.") from None


def _points_2d(points, name: str = "points") -> np.ndarray:
    values = _numpy(points, name)
    if values.ndim != 2 or values.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) to be drawn in the plane, got {values.shape}.")
    return values


def _class_colour(label: int) -> str:
    return CLASS_COLOURS[int(label) % len(CLASS_COLOURS)]


# ----------------------------------------------------------------------------------------------
# Given triplets: the three zones around an anchor
# ----------------------------------------------------------------------------------------------
def plot_triplets(anchor, positive, negative, margin: float, arrows=None, arrow_scale: float = 1.0, axes=None):
    """One panel per triplet (anchor[i], positive[i], negative[i]) with the zones where the negative can lie.

    Around the anchor, a disk of radius d(a, p) (a negative inside is **hard**: at least as close as the
    positive), a ring out to d(a, p) + margin (**semi-hard**: farther than the positive, but not by the
    margin) and everything beyond (**easy**: loss 0). Euclidean distances, as `TripletLoss`'s default.
    ``arrows`` is an optional triple (for_anchor, for_positive, for_negative) of (T, 2) arrays drawn at the
    points, times ``arrow_scale`` -- typically minus the gradients of a `labkit.course.toy.gradient_step`. Each
    panel's title gives the kind, both distances and the loss term. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    a, p, n = (_points_2d(x, name) for x, name in ((anchor, "anchor"), (positive, "positive"), (negative, "negative")))
    if not a.shape == p.shape == n.shape:
        raise ValueError(f"anchor, positive and negative must have the same shape, got {a.shape}, {p.shape}, "
                         f"{n.shape}.")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}.")
    count = len(a)
    if axes is None:
        fig, axes = plt.subplots(1, count, figsize=(3.0 * count, 3.4), layout="constrained", squeeze=False)
        axes = axes[0]
    axes = list(np.atleast_1d(axes))
    if len(axes) != count:
        raise ValueError(f"got {len(axes)} axes for {count} triplets.")
    d_ap, d_an = np.linalg.norm(a - p, axis=1), np.linalg.norm(a - n, axis=1)
    kinds = classify_triplets(torch.as_tensor(d_ap), torch.as_tensor(d_an), margin)
    moves = None
    if arrows is not None:
        moves = [_points_2d(x, "arrows") * arrow_scale for x in arrows]
        if len(moves) != 3 or any(move.shape != a.shape for move in moves):
            raise ValueError(f"arrows must be three arrays (for anchor, positive, negative) of shape {a.shape}.")
    for i, ax in enumerate(axes):
        outer = d_ap[i] + margin
        ax.add_patch(Circle(a[i], outer, color=KIND_COLOURS["semi-hard"], zorder=0))
        ax.add_patch(Circle(a[i], d_ap[i], color=KIND_COLOURS["hard"], zorder=0))
        ax.add_patch(Circle(a[i], outer, fill=False, ls=":", color="0.4", zorder=1))
        ax.add_patch(Circle(a[i], d_ap[i], fill=False, ls="--", color="0.4", zorder=1))
        ax.plot(*zip(a[i], p[i]), color=POSITIVE_COLOUR, lw=2, zorder=2)
        ax.plot(*zip(a[i], n[i]), color=NEGATIVE_COLOUR, lw=2, ls="--", zorder=2)
        for point, marker, colour, name in ((a[i], "o", "0.25", "a"), (p[i], "o", POSITIVE_COLOUR, "p"),
                                            (n[i], "s", NEGATIVE_COLOUR, "n")):
            ax.scatter(*point, marker=marker, s=60, c=colour, edgecolors="k", zorder=4)
            ax.annotate(name, point, textcoords="offset points", xytext=(6, 6), fontsize=10)
        if moves is not None:
            for start, move in zip((a[i], p[i], n[i]), (m[i] for m in moves)):
                ax.annotate("", start + move, start, arrowprops=dict(arrowstyle="->", color="0.1", lw=1.6), zorder=5)
        reach = max(outer, d_an[i], d_ap[i]) * 1.12 or 1.0
        ax.set_facecolor(KIND_COLOURS["easy"])
        ax.set_xlim(a[i, 0] - reach, a[i, 0] + reach)
        ax.set_ylim(a[i, 1] - reach, a[i, 1] + reach)
        ax.set_aspect("equal")
        term = max(d_ap[i] - d_an[i] + margin, 0.0)
        label = TripletKind(int(kinds[i])).label
        ax.set_title(f"{label}: d_ap={d_ap[i]:.2f}, d_an={d_an[i]:.2f}\n"
                     f"loss max({d_ap[i]:.2f} − {d_an[i]:.2f} + {margin:g}, 0) = {term:.2f}", fontsize=9)
    axes[0].figure.text(0.5, -0.02, "negative in the red disk: hard · in the yellow ring (width = margin): "
                        "semi-hard · in the green outside: easy",
                        ha="center", va="top", fontsize=8)
    return axes[0].figure


# ----------------------------------------------------------------------------------------------
# Labelled batches: masks and picks as matrices
# ----------------------------------------------------------------------------------------------
def _names(batch_size: int, names) -> list[str]:
    names = [str(i) for i in range(batch_size)] if names is None else [str(name) for name in names]
    if len(names) != batch_size:
        raise ValueError(f"got {len(names)} names for a batch of {batch_size}.")
    return names


def _matrix_axes(ax, names: list[str], labels: np.ndarray):
    ax.set_xticks(range(len(names)), [f"{n}\n(y={y})" for n, y in zip(names, labels)], fontsize=8)
    ax.set_yticks(range(len(names)), [f"{n} (y={y})" for n, y in zip(names, labels)], fontsize=8)
    ax.set_xlabel("other point (positive / negative candidate)", fontsize=9)
    ax.set_ylabel("anchor", fontsize=9)
    ax.grid(False)


def plot_label_masks(labels, names: Sequence[str] | None = None, axes=None):
    """Two 0/1 matrices side by side: ``anchor_positive_mask`` and ``anchor_negative_mask`` of `labels`.

    Row a lists a's candidates: positives (same label, not a itself) on the left, negatives (other label)
    on the right. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    labels = check_class_labels(labels)
    positive_mask, negative_mask = label_masks(labels)
    names = _names(len(labels), names)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(7.4, 3.7), layout="constrained")
    for ax, mask, colour, title in ((axes[0], positive_mask, POSITIVE_COLOUR, "anchor_positive_mask"),
                                    (axes[1], negative_mask, NEGATIVE_COLOUR, "anchor_negative_mask")):
        values = mask.int().numpy()
        ax.imshow(values, cmap=plt.matplotlib.colors.ListedColormap(["white", colour]), vmin=0, vmax=1, alpha=0.55)
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, str(value), ha="center", va="center", fontsize=9)
        _matrix_axes(ax, names, labels.numpy())
        ax.set_title(f"{title}: {int(values.sum())} ones", fontsize=10)
    return axes[0].figure


def _box(ax, row: int, col: int, colour: str, lw: float, ls: str = "-"):
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec=colour, lw=lw, ls=ls, zorder=3))


def plot_mining_matrix(dist, labels, explanation=None, names: Sequence[str] | None = None, ax=None,
                       title: str | None = None):
    """The (B, B) distance matrix as the batch losses see it, with each anchor's candidates and picks.

    Every cell shows d(anchor, other). Thin green frames: the anchor's positive candidates
    (`anchor_positive_mask`); thin red dashed frames: its negative candidates (`anchor_negative_mask`);
    grey: the diagonal, never a candidate. With ``explanation`` (a `TripletExplanation` from a loss's
    ``.explain``) the cells it used are boxed thickly: (anchor, positive) in green, (anchor, negative) in red.
    For batch-hard that is the largest green-framed value and the smallest red-framed value of each row.
    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    values = _numpy(dist, "dist")
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"dist must be a square (B, B) distance matrix, got shape {values.shape}.")
    labels = check_class_labels(labels, values.shape[0])
    names = _names(len(labels), names)
    positive_mask, negative_mask = (mask.numpy() for mask in label_masks(labels))
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.0, 4.6), layout="constrained")
    shown = np.where(np.eye(len(values), dtype=bool), np.nan, values)
    ax.imshow(shown, cmap="Blues", alpha=0.45)
    for (row, col), value in np.ndenumerate(values):
        if row == col:
            ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, color="0.85", zorder=1))
            continue
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8, zorder=4)
        if positive_mask[row, col]:
            _box(ax, row, col, POSITIVE_COLOUR, 1.0)
        elif negative_mask[row, col]:
            _box(ax, row, col, NEGATIVE_COLOUR, 0.8, ls="--")
    if explanation is not None:
        for a, p, n in zip(explanation.anchor.tolist(), explanation.positive.tolist(), explanation.negative.tolist()):
            if p >= 0:
                _box(ax, a, p, POSITIVE_COLOUR, 3.0)
            if n >= 0:
                _box(ax, a, n, NEGATIVE_COLOUR, 3.0)
    _matrix_axes(ax, names, labels.numpy())
    ax.set_title(title or "distances: green = positive candidates, red = negative candidates"
                 + ("\nthick boxes = the picks" if explanation is not None else ""), fontsize=9)
    return ax


def _curved_arrow(ax, start, end, colour: str, ls: str, alpha: float, lw: float):
    from matplotlib.patches import FancyArrowPatch

    # Curved, so that "a picks b" and "b picks a" are two visible arrows rather than one line.
    ax.add_patch(FancyArrowPatch(tuple(start), tuple(end), connectionstyle="arc3,rad=0.18", arrowstyle="-|>",
                                 mutation_scale=11, color=colour, ls=ls, lw=lw, alpha=alpha, shrinkA=7,
                                 shrinkB=7, zorder=2))


def plot_picks(points, labels, explanation=None, arrows=None, arrow_scale: float = 1.0,
               names: Sequence[str] | None = None, ax=None, title: str | None = None, legend: bool = True,
               show_inactive: bool = True):
    """Draw 2-D labelled points and, for each triplet of ``explanation``, arrows from its anchor to its picks.

    ``explanation`` is a `TripletExplanation` (``loss.explain(points, labels)``), or None for the points
    alone: row t draws a green arrow anchor -> positive and a red dashed arrow anchor -> negative. Triplets
    whose loss term is 0 give no gradient: they are drawn faintly, or not at all with
    ``show_inactive=False`` (useful for batch-all's many triplets); picks of index -1 (no candidate) are
    skipped. ``arrows`` (optional,
    (B, 2)) are drawn at the points in black, times ``arrow_scale`` -- typically minus the gradient of a
    `labkit.course.toy.gradient_step`. Points are coloured by label (never green or red). Returns the Axes.
    """
    import matplotlib.pyplot as plt

    xy = _points_2d(points)
    labels = check_class_labels(labels, len(xy)).numpy()
    names = _names(len(xy), names)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.8), layout="constrained")
    triplets = [] if explanation is None else zip(explanation.anchor.tolist(), explanation.positive.tolist(),
                                                  explanation.negative.tolist(), explanation.term.tolist())
    for a, p, n, term in triplets:
        active = term > 0
        if not (active or show_inactive):
            continue
        alpha, lw = (0.9, 1.6) if active else (0.25, 1.0)
        if p >= 0:
            _curved_arrow(ax, xy[a], xy[p], POSITIVE_COLOUR, "-", alpha, lw)
        if n >= 0:
            _curved_arrow(ax, xy[a], xy[n], NEGATIVE_COLOUR, "--", alpha, lw)
    ax.scatter(xy[:, 0], xy[:, 1], c=[_class_colour(y) for y in labels], s=90, edgecolors="k", zorder=3)
    for i, (x, y) in enumerate(xy):
        ax.annotate(names[i], (x, y), textcoords="offset points", xytext=(7, 7), fontsize=10, zorder=4)
    if arrows is not None:
        move = _points_2d(arrows, "arrows") * arrow_scale
        if move.shape != xy.shape:
            raise ValueError(f"arrows must have the shape of points {xy.shape}, got {move.shape}.")
        ax.quiver(xy[:, 0], xy[:, 1], move[:, 0], move[:, 1], angles="xy", scale_units="xy", scale=1, color="0.1",
                  width=0.008, zorder=5)
    span = np.ptp(xy, axis=0).max() or 1.0
    ax.set_xlim(xy[:, 0].min() - 0.12 * span, xy[:, 0].max() + 0.12 * span)
    ax.set_ylim(xy[:, 1].min() - 0.12 * span, xy[:, 1].max() + 0.12 * span)
    ax.set_aspect("equal")
    if legend:
        handles = []
        if explanation is not None:
            handles += [plt.Line2D([], [], color=POSITIVE_COLOUR, label="anchor → its positive"),
                        plt.Line2D([], [], color=NEGATIVE_COLOUR, ls="--", label="anchor → its negative")]
            if show_inactive:
                handles.append(plt.Line2D([], [], color="0.6", alpha=0.4, label="faint: loss term 0"))
        handles += [plt.Line2D([], [], marker="o", ls="", color=_class_colour(c), markeredgecolor="k",
                               label=f"label {c}") for c in np.unique(labels)]
        ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3,
                  frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# ----------------------------------------------------------------------------------------------
# Who takes part, who moves
# ----------------------------------------------------------------------------------------------
def _roles_list(indices: list[int]) -> str:
    return ", ".join(str(i) for i in sorted(set(indices))) or "-"


def triplet_roles(explanation, gradient=None, decimals: int = 4):
    """One row per point: the triplets with a positive loss term it takes part in, and its gradient.

    Columns: ``anchor of`` (how many of its own triplets as anchor have a term > 0), ``positive of`` and
    ``negative of`` (the anchors whose active triplets picked it), and, with ``gradient`` (the (B, D)
    gradient of the loss w.r.t. the points, e.g. ``gradient_step(...).gradients[0]``), ``|gradient|`` and
    ``moves``. A point that takes part in no active triplet gets no gradient: with batch-hard that is
    every point that is neither an active anchor nor anyone's pick. Meant for the batch losses, whose
    indices all point into one batch (for `TripletLoss` they index three separate tensors).
    """
    import pandas as pd

    batch_size = len(explanation.per_anchor)
    active = explanation.term > 0
    anchors, positives, negatives = (x[active].tolist() for x in
                                     (explanation.anchor, explanation.positive, explanation.negative))
    rows = {"anchor of": [anchors.count(i) for i in range(batch_size)],
            "positive of": [_roles_list([a for a, p in zip(anchors, positives) if p == i]) for i in range(batch_size)],
            "negative of": [_roles_list([a for a, n in zip(anchors, negatives) if n == i]) for i in range(batch_size)]}
    if gradient is not None:
        gradient = torch.as_tensor(gradient).detach().double()
        if gradient.dim() != 2 or gradient.shape[0] != batch_size:
            raise ValueError(f"gradient must have shape ({batch_size}, dim), one row per point; "
                             f"got {tuple(gradient.shape)}.")
        size = gradient.norm(dim=1)
        rows["|gradient|"] = (np.round(size.numpy(), decimals) + 0.0).tolist()
        rows["moves"] = (size > UNMOVED_TOLERANCE).tolist()
    return pd.DataFrame(rows, index=pd.RangeIndex(batch_size, name="point"))


# ----------------------------------------------------------------------------------------------
# The article's per-anchor loop against the vectorised loss
# ----------------------------------------------------------------------------------------------
def _forward_backward_seconds(loss_fn, embeddings: Tensor, labels: Tensor, clock) -> tuple[float, float]:
    """(seconds on ``clock``, loss value) of one forward + backward."""
    inputs = embeddings.detach().clone().requires_grad_(True)
    start = clock()
    value = loss_fn(inputs, labels)
    value.backward()
    if inputs.device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - start, float(value.detach())


def time_batch_hard_against_article(batch_sizes: Sequence[int], dim: int = 384, examples_per_class: int = 4,
                                    repeats: int = 1, margin: float = 1.0, seed: int = 0, device="cpu"):
    """Time forward + backward of the article's batch-hard loop and labkit's `BatchHardTripletLoss`.

    For each batch size B: L2-normalised random embeddings (B, dim) in P x K batches (K =
    ``examples_per_class``), as the article trains; both losses with the same margin (the article's 1.0).
    Each is run once to warm up, then ``repeats`` times, alternating, and the fastest run is kept (the
    least disturbed). Returns a DataFrame indexed by batch size: both times in milliseconds, the speed-up
    (article / labkit) and the difference of the two loss values (the article's ``nn.TripletMarginLoss``
    adds eps = 1e-6 inside its norms, so it is about 1e-7 to 1e-5, not 0).

    What is measured: on a GPU, wall-clock time (after synchronising). On the CPU, the CPU time of the
    calling thread (which runs the forward and the whole backward) with torch limited to one thread
    meanwhile: on a shared or busy machine, wall-clock time of small operations mostly measures waiting
    for other processes. Timings vary between machines and runs; compare the ratios within one run.
    """
    import pandas as pd

    from labkit.course.article import article_batch_hard_loss
    from labkit.losses.triplets import BatchHardTripletLoss

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    if examples_per_class < 2:
        raise ValueError(f"examples_per_class must be at least 2 (an anchor needs a positive), "
                         f"got {examples_per_class}.")
    for batch_size in batch_sizes:
        if batch_size % examples_per_class or batch_size // examples_per_class < 2:
            raise ValueError(f"batch size {batch_size} must be a multiple of examples_per_class="
                             f"{examples_per_class} with at least 2 classes.")
    device = torch.device(device)
    clock = time.perf_counter if device.type == "cuda" else time.thread_time
    implementations = {
        "article loop": lambda x, y: article_batch_hard_loss(x, y, margin=margin),
        "labkit": BatchHardTripletLoss(margin=margin),
    }
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    rows = []
    try:
        for batch_size in batch_sizes:
            embeddings = torch.nn.functional.normalize(torch.randn(batch_size, dim, generator=generator), dim=1)
            embeddings = embeddings.to(device)
            labels = torch.arange(batch_size // examples_per_class).repeat_interleave(examples_per_class).to(device)
            best, values = {}, {}
            for name, loss_fn in implementations.items():  # warm-up: first calls allocate and dispatch
                _, values[name] = _forward_backward_seconds(loss_fn, embeddings, labels, clock)
                best[name] = float("inf")
            for _ in range(repeats):
                for name, loss_fn in implementations.items():
                    seconds, _ = _forward_backward_seconds(loss_fn, embeddings, labels, clock)
                    best[name] = min(best[name], seconds)
            rows.append({"batch size": batch_size, "article loop (ms)": 1e3 * best["article loop"],
                         "labkit (ms)": 1e3 * best["labkit"], "speed-up": best["article loop"] / best["labkit"],
                         "|value difference|": abs(values["article loop"] - values["labkit"])})
    finally:
        torch.set_num_threads(threads)
    return pd.DataFrame(rows).set_index("batch size")
