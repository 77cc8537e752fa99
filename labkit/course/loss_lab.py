"""The loss playground as ipywidgets: menus, sliders and buttons around `labkit.course.playground.Playground`.

    >>> from labkit.course.loss_lab import loss_lab
    >>> lab = loss_lab()   # doctest: +SKIP   (displays two losses side by side on one cloud)

The widgets only wire things up: every number comes from `Playground.compute` / `Playground.step`, every
figure from `labkit.course.playground.state_figure`. Anything a user does is a widget value change or a button
click, so tests drive the lab without a browser (``panel.loss.value = "TripletLoss"``,
``lab.take_steps.click()``) and read what it computed (``panel.state``, ``panel.arrows``).

Runs in JupyterLab (ipywidgets 8) and on Colab (ipywidgets 7): it uses only widgets, options and
observers both versions have (no ``Stack``, no ``tooltip`` or ``description_allow_html``, no
``style.font_*``; ``observe(..., names="value")``; ``Button.on_click``), shows figures as inline PNGs in
``Output`` widgets (no ipympl; rendered here, see `show_figure`), built without pyplot so callbacks leave no
stray figures, and recomputes
only when a slider is released (``continuous_update=False``).

Taught in notebooks/08_loss_playground.ipynb.
"""
from __future__ import annotations

import html
import io
from typing import Optional, Sequence

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import Image, display

from labkit.course.playground import LOSSES, PRESETS, Playground, make_cloud, state_figure

__all__ = ["LossPanel", "LossLab", "loss_lab", "show_figure"]

MAX_FRAMES = 12  # figures drawn while the points move: enough to see it, few enough to stay quick
MAX_TABLE_ROWS = 16
_WIDE = {"description_width": "initial"}  # a style option ipywidgets 7 and 8 both know


def show_figure(figure) -> None:
    """Display a matplotlib Figure as a PNG image.

    Rendered here rather than left to IPython: a Figure made without pyplot only displays as a picture once
    the inline backend has been switched on, which has not happened yet in a fresh kernel.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    display(Image(data=buffer.getvalue(), format="png"))


def _frame_indices(num_positions: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """Which of the positions to draw: evenly spaced, always ending on the last one."""
    if num_positions <= 1:
        return []
    return sorted({int(round(k)) for k in np.linspace(1, num_positions - 1, min(max_frames, num_positions - 1))})


def _limits(positions: Sequence[torch.Tensor], unit_circle: bool):
    """Fixed axis limits that hold every position (and the unit circle), so frames do not jump."""
    every = torch.cat([p.reshape(-1, 2) for p in positions])
    low, high = every.min(dim=0).values, every.max(dim=0).values
    if unit_circle:
        low, high = low.clamp(max=-1.0), high.clamp(min=1.0)
    pad = 0.1 * float((high - low).max()) + 1e-3
    return (float(low[0]) - pad, float(high[0]) + pad), (float(low[1]) - pad, float(high[1]) + pad)


class LossPanel:
    """One loss on the cloud: its controls (loss, distance, margin, scale, soft margin, whose picks to show),
    a status line, the figure and the table of picks. ``state`` is the last `PlaygroundState` computed,
    ``arrows`` the arrows last drawn (minus the gradient times the figure's scale), ``error`` the last error.
    """

    def __init__(self, playground: Playground, title: str = "", draw: bool = True) -> None:
        self.playground, self.draw_enabled = playground, draw
        self.history: list = []  # losses during the steps taken since the cloud was loaded or reset
        self.state = self.arrows = self.error = None
        self._syncing = False
        self.loss = widgets.Dropdown(options=list(LOSSES), value=playground.loss, description="loss")
        self.distance = widgets.Dropdown(options=list(playground.spec.distances), value=playground.distance,
                                         description="distance")
        self.margin = widgets.FloatSlider(value=playground.margin, min=0.0, max=4.0, step=0.05, description="margin",
                                          continuous_update=False)
        self.scale = widgets.FloatSlider(value=playground.scale, min=1.0, max=64.0, step=1.0,
                                         description="scale (1/T)", continuous_update=False, style=_WIDE)
        self.soft_margin = widgets.Checkbox(value=playground.soft_margin, description="soft margin")
        self.focus = widgets.Dropdown(options=self._focus_options(), value=-1, description="picks of")
        self.status, self.figure_output, self.table_output = widgets.HTML(), widgets.Output(), widgets.Output()
        for control in (self.loss, self.distance, self.margin, self.scale, self.soft_margin):
            control.observe(self._on_setting, names="value")
        self.focus.observe(self._on_focus, names="value")
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>{html.escape(title)}</b>"), self.loss, self.distance,
            widgets.HBox([self.margin, self.soft_margin]), self.scale, self.focus,
            self.status, self.figure_output, self.table_output,
        ])
        self._sync_controls()
        self.refresh()

    # -- settings ------------------------------------------------------------------------------------
    def _focus_options(self) -> list:
        return [("every point", -1)] + [(f"point {i}", i) for i in range(len(self.playground.points))]

    def _on_focus(self, change) -> None:
        if not self._syncing:
            self.draw()

    def _chosen_settings(self, changed) -> dict:
        """The playground settings the controls now ask for; a loss that lacks the chosen distance gets its first."""
        distances = LOSSES[self.loss.value].distances
        distance = self.distance.value if self.distance.value in distances else distances[0]
        settings = {"loss": self.loss.value, "distance": distance, "margin": self.margin.value, "scale": self.scale.value}
        if changed is self.soft_margin:
            settings["soft_margin"] = self.soft_margin.value
        return settings

    def _on_setting(self, change) -> None:
        if self._syncing:
            return
        self.playground.configure(**self._chosen_settings(change["owner"]))
        self._sync_controls()
        self.refresh()

    def _sync_controls(self) -> None:
        """Show the playground's settings in the controls; grey out the knobs this loss does not read."""
        playground, spec = self.playground, self.playground.spec
        self._syncing = True
        try:
            self.loss.value = playground.loss
            if tuple(self.distance.options) != spec.distances:
                self.distance.options = list(spec.distances)
            self.distance.value = playground.distance
            self.soft_margin.value = playground.soft_margin
            self.soft_margin.disabled = not playground.soft_margin_applies
            self.margin.disabled = "margin" not in spec.knobs
            self.scale.disabled = "scale" not in spec.knobs
        finally:
            self._syncing = False

    def cloud_changed(self, points, labels) -> None:
        """A new cloud: load it, forget the loss history, offer its points in "picks of", recompute."""
        self.playground.set_cloud(points, labels)
        self.history = []
        self._syncing = True
        try:
            self.focus.options = self._focus_options()
            self.focus.value = -1
        finally:
            self._syncing = False
        self.refresh()

    # -- computing and drawing ----------------------------------------------------------------------------
    def refresh(self, limits=None) -> None:
        """Recompute the state at the current points, then redraw."""
        try:
            self.state, self.error = self.playground.compute(), None
        except (ValueError, RuntimeError) as error:  # show it: ipywidgets 7 hides errors raised in callbacks
            self.state, self.error = None, error
            self.status.value = f"<span style='color:#b00020'>{html.escape(str(error))}</span>"
            return
        self.status.value = html.escape(f"loss = {self.state.loss:.6f}. {self.state.note}")
        self.draw(limits=limits)

    def draw(self, points: Optional[torch.Tensor] = None, state=None, limits=None, history=None) -> None:
        """Draw ``state`` at ``points`` (default: the current state and points) and the table of picks."""
        if not self.draw_enabled or (state or self.state) is None:
            return
        focus = None if self.focus.value == -1 else self.focus.value
        figure, self.arrows = state_figure(self.playground, state or self.state, points, focus,
                                           self.history if history is None else history, limits=limits)
        with self.figure_output:
            self.figure_output.clear_output(wait=True)
            show_figure(figure)
        if state is None:
            self._show_table(focus)

    def _show_table(self, focus: Optional[int]) -> None:
        picks = self.state.picks
        if focus is not None and len(picks):
            picks = picks[picks.anchor == focus] if "anchor" in picks else picks[(picks.i == focus) | (picks.j == focus)]
        with self.table_output:
            self.table_output.clear_output(wait=True)
            display(picks.head(MAX_TABLE_ROWS).round(4))
            if len(picks) > MAX_TABLE_ROWS:
                print(f"... {len(picks) - MAX_TABLE_ROWS} more rows: choose a point in 'picks of' to see its own.")

    def show_frame(self, points: torch.Tensor, history: list, limits) -> None:
        """Draw the cloud at an intermediate position of a run of steps (the state is not kept)."""
        if self.draw_enabled:
            self.draw(points, self.playground.compute(points), limits, history)


class LossLab:
    """Two (or one) `LossPanel` side by side on one cloud, with the cloud and gradient-step controls.

    Args:
        preset, seed: the starting cloud (`labkit.course.playground.make_cloud`).
        losses: one or two loss names, one panel each.
        distance, margin, scale: the starting settings of every panel.
        draw: False computes without drawing (for tests and scripts).

    Display it as the last line of a cell (or with ``display(lab)``).
    """

    def __init__(self, preset: str = "well separated", seed: int = 0,
                 losses: Sequence[str] = ("BatchHardTripletLoss", "BatchAllTripletLoss"),
                 distance: str = "euclidean", margin: float = 1.0, scale: float = 20.0, draw: bool = True) -> None:
        if isinstance(losses, str) or not 1 <= len(losses) <= 2:
            raise ValueError(f"losses must be a list of one or two loss names, got {losses!r}.")
        points, labels = make_cloud(preset, seed)
        self.panels = [LossPanel(Playground(points, labels, loss, distance, margin, scale), f"loss {k + 1}", draw)
                       for k, loss in enumerate(losses)]
        self._syncing = False
        self._make_controls(preset, seed)
        self.widget = widgets.VBox([
            widgets.HBox([self.preset, self.seed, self.new_cloud, self.reset]),
            widgets.HBox([self.steps, self.lr, self.take_steps]),
            widgets.HBox([panel.widget for panel in self.panels], layout=widgets.Layout(flex_flow="row wrap")),
        ])

    def _make_controls(self, preset: str, seed: int) -> None:
        """The cloud controls (preset, seed, new random cloud, reset) and the step controls, wired up."""
        self.preset = widgets.Dropdown(options=list(PRESETS), value=preset, description="cloud")
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=10**6, description="seed")
        self.new_cloud, self.reset = widgets.Button(description="new random cloud"), widgets.Button(description="reset points")
        self.steps = widgets.IntSlider(value=20, min=1, max=200, description="N steps", continuous_update=False)
        self.lr = widgets.FloatSlider(value=0.1, min=0.005, max=1.0, step=0.005, readout_format=".3f",
                                      description="learning rate", continuous_update=False, style=_WIDE)
        self.take_steps = widgets.Button(description="take N gradient steps", button_style="primary")
        self.preset.observe(self._on_cloud, names="value")
        self.seed.observe(self._on_cloud, names="value")
        self.new_cloud.on_click(self._on_new_random_cloud)
        self.reset.on_click(self._on_reset)
        self.take_steps.on_click(self._on_take_steps)

    def _ipython_display_(self) -> None:  # what Jupyter calls to show the object (ipywidgets 7 and 8 alike)
        display(self.widget)

    # -- the cloud ---------------------------------------------------------------------------------
    def _on_cloud(self, change=None) -> None:
        if self._syncing:
            return
        points, labels = make_cloud(self.preset.value, self.seed.value)
        for panel in self.panels:
            panel.cloud_changed(points, labels)

    def _on_new_random_cloud(self, _button=None) -> None:
        """Preset "random", next seed, one reload."""
        self._syncing = True
        try:
            self.preset.value, self.seed.value = "random", self.seed.value + 1
        finally:
            self._syncing = False
        self._on_cloud()

    def _on_reset(self, _button=None) -> None:
        for panel in self.panels:
            panel.playground.reset()
            panel.history = []
            panel.refresh()

    # -- gradient steps ------------------------------------------------------------------------------
    def _on_take_steps(self, _button=None) -> None:
        """Every panel takes N steps on its own loss, then the run is animated, panels side by side."""
        runs = []
        for panel in self.panels:
            start = len(panel.history)
            trajectory = panel.playground.step(self.steps.value, self.lr.value)
            panel.history.extend(trajectory.losses)
            runs.append((panel, trajectory, start))
        self._animate(runs)

    def _animate(self, runs) -> None:
        """A few frames of every run on fixed axes, then each panel's final state (and why a run stopped early)."""
        unit_circle = any(panel.playground.distance != "euclidean" for panel, _, _ in runs)
        limits = _limits([p for _, trajectory, _ in runs for p in trajectory.positions], unit_circle)
        longest = max(len(trajectory.positions) for _, trajectory, _ in runs)
        for k in _frame_indices(longest)[:-1]:
            for panel, trajectory, start in runs:
                k_here = min(k, len(trajectory.positions) - 1)
                panel.show_frame(trajectory.positions[k_here], panel.history[: start + k_here], limits)
        for panel, trajectory, _ in runs:
            panel.refresh(limits)
            if trajectory.stopped:
                panel.status.value += html.escape(f" Stopped early: {trajectory.stopped}")


def loss_lab(**settings) -> LossLab:
    """Build a `LossLab` (same arguments), display it, and return it (to read or drive it from code)."""
    lab = LossLab(**settings)
    display(lab)
    return lab
