"""Tiny point clouds for worked examples: gradients on every point, one descent step, and a picture.

A loss is easiest to understand on a handful of 2-D points: you can compute it by hand, draw it, and
watch which way each point is pushed. These helpers are shared by the loss notebooks (04–07) and the
loss playground (08).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass
class GradientStep:
    """One step of gradient descent on the inputs of a loss."""

    loss: float  # the loss before the step
    gradients: list[Tensor]  # d loss / d input, one per input tensor
    before: list[Tensor]
    after: list[Tensor]  # input - lr * gradient
    loss_after: float


def gradient_step(loss_fn: Callable[..., Tensor], *inputs: Tensor, lr: float = 0.1, **kwargs) -> GradientStep:
    """Evaluate `loss_fn(*inputs, **kwargs)`, take its gradient w.r.t. every input tensor, step each by `-lr·grad`.

    Non-tensor arguments (labels, scores) go in `kwargs` or after the tensors that move; only floating-point
    tensors move. The gradients come from autograd: the same numbers a training step would use.
    """
    before = [x.detach().clone() for x in inputs]
    moving = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    value = loss_fn(*moving, **kwargs)
    wanted = [x for x in moving if x.requires_grad]
    grads = torch.autograd.grad(value, wanted, allow_unused=True)
    grads = iter([torch.zeros_like(w) if g is None else g for g, w in zip(grads, wanted)])
    gradients = [next(grads) if x.requires_grad else torch.zeros_like(x, dtype=torch.float) for x in moving]
    after = [b - lr * g if b.is_floating_point() else b for b, g in zip(before, gradients)]
    with torch.no_grad():
        loss_after = float(loss_fn(*after, **kwargs))
    return GradientStep(float(value.detach()), gradients, before, after, loss_after)


def movement_table(points: Tensor, gradient: Tensor, lr: float, names: Sequence[str] | None = None):
    """A small DataFrame: each point, its gradient, and where one step of size `lr` moves it."""
    import pandas as pd

    names = list(names) if names is not None else [f"x{i}" for i in range(len(points))]
    rows = []
    for name, p, g in zip(names, points.tolist(), gradient.tolist()):
        new = [a - lr * b for a, b in zip(p, g)]
        # + 0.0 turns -0.0 into 0.0, so a point that does not move prints as 0.0
        rows.append({"point": name, "position": (np.round(p, 4) + 0.0).tolist(),
                     "gradient": (np.round(g, 4) + 0.0).tolist(), "moves to": (np.round(new, 4) + 0.0).tolist()})
    return pd.DataFrame(rows).set_index("point")


def plot_points(points, labels=None, names: Sequence[str] | None = None, arrows=None, lines=(), ax=None,
                title: str | None = None, arrow_scale: float = 1.0, unit_circle: bool = False):
    """Draw 2-D points coloured by label, with optional arrows (e.g. minus the gradient) and lines between pairs.

    `lines` is a sequence of (i, j, style) with style a matplotlib format like "g-" (positive pair) or "r--".
    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    points = np.asarray(points.detach() if isinstance(points, Tensor) else points, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    colours = None if labels is None else [f"C{int(c) % 10}" for c in np.asarray(labels)]
    for i, j, style in lines:
        ax.plot(*zip(points[i], points[j]), style, lw=1.2, alpha=0.8)
    ax.scatter(points[:, 0], points[:, 1], c=colours, s=60, zorder=3, edgecolors="k")
    names = [str(i) for i in range(len(points))] if names is None else list(names)
    # Points closer than 4 % of the cloud's width share one label ("6,7") instead of printing over each other.
    close = 0.04 * (float(np.ptp(points, axis=0).max()) if len(points) else 1.0)
    labelled: list[int] = []
    for i in range(len(points)):
        near = [j for j in labelled if np.linalg.norm(points[i] - points[j]) <= close]
        if near:
            names[near[0]] = f"{names[near[0]]},{names[i]}"
        else:
            labelled.append(i)
    for i in labelled:
        ax.annotate(names[i], tuple(points[i]), textcoords="offset points", xytext=(6, 6))
    if arrows is not None:
        arrows = np.asarray(arrows.detach() if isinstance(arrows, Tensor) else arrows, dtype=float) * arrow_scale
        ax.quiver(points[:, 0], points[:, 1], arrows[:, 0], arrows[:, 1], angles="xy", scale_units="xy", scale=1,
                  color="0.3", width=0.006, zorder=2)
        # quiver does not grow the axes' data limits: add the arrow tips so that no arrow is cut off
        ax.update_datalim(points + arrows)
        ax.autoscale_view()
    if unit_circle:
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), ":", color="0.6", lw=1)
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    return ax
