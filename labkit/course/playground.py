"""The loss playground's logic: a labelled 2-D point cloud, a labkit loss on it, and what the loss does to it.

`Playground` is a plain state object (no widgets): the points and their class labels, the loss's name,
the distance and the knobs (margin, scale). ``compute()`` returns a `PlaygroundState`: the loss value,
each point's share of it, the triplets / pairs the loss used (with their kinds: easy, semi-hard, hard),
and the gradient on every point, from autograd. ``step(n, lr)`` moves the points by n steps of plain
gradient descent on the loss, as ``torch.optim.SGD`` on the points would. `labkit.course.loss_lab` wires this to
sliders; tests and notebooks call it directly.

How the loss's inputs are built from the cloud (deterministic: from the labels and the point order only,
never from the positions, so that what changes between two steps is what the loss *mines*):

* batch losses (BatchAll / BatchHard / BatchHardSoftMargin / BatchSemiHard): the whole cloud is one batch,
  ``loss(points, labels)``; the loss mines its own triplets.
* TripletLoss: one triplet per point a: its positive is the next point of the same class and its negative
  the next point of another class, "next" in index order, wrapping around (`triplet_indices`). Points alone
  in their class, or a cloud with a single class, give no triplet.
* pair losses (Contrastive, OnlineContrastive, CosineSimilarity, CoSENT, AnglE): every pair i < j of the
  cloud, label 1 if same class, else 0 (`pair_indices`).
* in-batch negatives (MultipleNegativesRanking and its symmetric form): classmates are paired up in index
  order, 1st with 2nd, 3rd with 4th, ... as (anchor, positive) (`anchor_positive_indices`), so no point is
  in the batch twice. The other pairs' positives are an anchor's negatives, *classmates included*: the
  false negatives notebook 07 warns about.

Distances: ``"euclidean"`` on the raw points; ``"normalised"``: the points are L2-normalised first (as a
model with a Normalize layer does), then Euclidean, so the gradient reaches the raw points through the
normalisation; ``"cosine"``: 1 - cos (a similarity, cos, for the losses that take one). For the in-batch
losses the similarity is cos for "cosine" and minus the Euclidean distance otherwise.

The menu, `LOSSES`, is derived from the loss registry (`labkit.losses.REGISTRY`): every registered loss of
those four families, with its knobs. Losses that do not apply to labelled points: SoftmaxLoss (it trains a
classifier head of its own), ContrastiveTensionLossInBatchNegatives (two encoders, no labels),
CachedMultipleNegativesRankingLoss (it runs a model).

Taught in notebooks/08_loss_playground.ipynb.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.losses import REGISTRY, build_loss
from labkit.distances import BatchHardTripletLossDistanceFunction, TripletDistanceMetric, euclidean_distance
from labkit.losses.pairs import SiameseDistanceMetric
from labkit.mining import TripletKind
from labkit.distances import cos_sim

__all__ = [
    "PRESETS", "DISTANCES", "LOSSES", "LossSpec", "make_cloud", "pair_indices", "triplet_indices",
    "anchor_positive_indices", "playground_loss", "negative_euclidean_similarity", "PlaygroundState", "Trajectory",
    "Playground", "plot_state", "state_figure",
]

PRESETS = ("well separated", "overlapping", "one outlier", "collapsed", "single class", "random")
DISTANCES = ("euclidean", "normalised", "cosine")
_ALL, _COSINE_ONLY = DISTANCES, ("cosine",)


# ----------------------------------------------------------------------------------------------
# Point clouds
# ----------------------------------------------------------------------------------------------
def _on_circle(num_classes: int, radius: float) -> Tensor:
    angles = torch.arange(num_classes, dtype=torch.float64) * (2 * math.pi / num_classes) + math.pi / 2
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def _blobs(centres: Tensor, spread: float, per_class: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    labels = torch.arange(len(centres)).repeat_interleave(per_class)
    noise = torch.randn(len(labels), 2, dtype=torch.float64, generator=generator)
    return centres[labels] + spread * noise, labels


def _random_cloud(per_class: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    num_classes = int(torch.randint(2, 5, (), generator=generator))
    centres = 4 * torch.rand(num_classes, 2, dtype=torch.float64, generator=generator) - 2
    spread = 0.2 + 0.4 * float(torch.rand((), dtype=torch.float64, generator=generator))
    return _blobs(centres, spread, per_class, generator)


def make_cloud(preset: str = "well separated", seed: int = 0, per_class: int = 4) -> tuple[Tensor, Tensor]:
    """``(points, labels)``: a small labelled 2-D cloud, float64 points (N, 2) and int64 labels (N,).

    Presets: "well separated" (3 tight classes on a circle of radius 1.5), "overlapping" (3 wide classes
    near the origin), "one outlier" (well separated, but the last point of class 0 sits inside class 1),
    "collapsed" (3 classes all within ~0.02 of one spot: an embedding that has collapsed), "single class"
    (2 * per_class points, one label: no negatives at all), "random" (2-4 classes, random centres and spread).
    The seed draws the noise (and the random cloud), so a preset and a seed always give the same cloud.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}.")
    if per_class < 2:
        raise ValueError(f"per_class must be at least 2 (a class needs a positive pair), got {per_class}.")
    generator = torch.Generator().manual_seed(int(seed))
    if preset == "random":
        return _random_cloud(per_class, generator)
    if preset == "single class":
        return _blobs(torch.tensor([[0.8, 0.6]], dtype=torch.float64), 0.5, 2 * per_class, generator)
    radius, spread = {"well separated": (1.5, 0.25), "overlapping": (0.6, 0.5), "one outlier": (1.5, 0.25),
                      "collapsed": (0.0, 0.02)}[preset]
    centres = _on_circle(3, radius)
    if preset == "collapsed":  # away from the origin, where normalising would blow tiny differences up
        centres = centres + torch.tensor([1.0, 0.6], dtype=torch.float64)
    points, labels = _blobs(centres, spread, per_class, generator)
    if preset == "one outlier":
        points[per_class - 1] = centres[1] + 0.1 * torch.randn(2, dtype=torch.float64, generator=generator)
    return points, labels


# ----------------------------------------------------------------------------------------------
# Pairs and triplets built from the cloud (from the labels and the order of the points only)
# ----------------------------------------------------------------------------------------------
def _next_where(allowed: Tensor) -> Tensor:
    """For each row i, the first column j after i (in index order, wrapping around) with ``allowed[i, j]``; -1 if none."""
    size = allowed.shape[0]
    index = torch.arange(size)
    steps_ahead = (index.unsqueeze(0) - index.unsqueeze(1)) % size  # how far j lies after i
    steps_ahead = steps_ahead.masked_fill(~allowed, size)  # `size` = never reached
    nearest_steps, nearest = steps_ahead.min(dim=1)
    return torch.where(nearest_steps < size, nearest, -1)


def _same_class(labels: Tensor) -> Tensor:
    return labels.unsqueeze(0) == labels.unsqueeze(1)


def pair_indices(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(first, second, pair_labels)``: every pair i < j of the cloud, label 1 if same class, else 0."""
    first, second = torch.triu_indices(len(labels), len(labels), offset=1)
    return first, second, (labels[first] == labels[second]).long()


def anchor_positive_indices(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(anchors, positives)``: classmates paired up in index order, 1st with 2nd, 3rd with 4th, and so on.

    Every point is in at most one pair (an odd one out is left out), so no text appears twice in the
    batch; the positives of *other* pairs of the same class are still in-batch negatives (false ones).
    """
    same = _same_class(labels)
    earlier = torch.ones_like(same).tril(diagonal=-1)  # earlier[i, j]: j comes before i
    rank_in_class = (same & earlier).sum(dim=1)
    next_classmate = _next_where(same & earlier.T)  # the next classmate after i, without wrapping around
    is_anchor = (rank_in_class % 2 == 0) & (next_classmate >= 0)
    anchors = is_anchor.nonzero(as_tuple=True)[0]
    return anchors, next_classmate[anchors]


def triplet_indices(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchors, positives, negatives)``: per point, the next classmate and the next point of another class.

    Points without a classmate, or without any point of another class, get no triplet.
    """
    same = _same_class(labels)
    positive, negative = _next_where(same.clone().fill_diagonal_(False)), _next_where(~same)
    anchors = ((positive >= 0) & (negative >= 0)).nonzero(as_tuple=True)[0]
    return anchors, positive[anchors], negative[anchors]


# ----------------------------------------------------------------------------------------------
# Which losses, and how each is built for a distance and the knobs
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossSpec:
    """A loss the playground offers: how its inputs are built (family), its distances and its knobs."""

    name: str
    family: str  # "batch", "triplets", "pairs" or "in-batch negatives"
    distances: tuple = _ALL
    knobs: tuple = ()  # which of "margin" and "scale" it reads


# The families whose inputs `Playground.loss_inputs` builds from a labelled cloud (`labkit.losses.INPUTS`).
FAMILIES = ("batch", "triplets", "pairs", "in-batch negatives")
# The menu starts with batch-hard (the default), its soft-margin switch and semi-hard; then registry order.
_MENU_FIRST = ("BatchHardTripletLoss", "BatchHardSoftMarginTripletLoss", "BatchSemiHardTripletLoss")


def _spec(entry) -> LossSpec:
    """The playground's view of a registry entry: the scored-pair losses fit a cosine similarity to a score,
    so they are offered with the cosine distance only."""
    distances = _COSINE_ONLY if "scored_pairs" in entry.data_kinds else _ALL
    return LossSpec(entry.name, entry.inputs, distances, tuple(knob.name for knob in entry.knobs))


# Every registered loss whose inputs the playground can build; ContrastiveTensionLossInBatchNegatives needs two
# encoders of the same texts, which a point cloud does not have.
_OFFERED = [entry for entry in REGISTRY.values() if entry.inputs in FAMILIES]
LOSSES = {spec.name: spec for spec in map(_spec, sorted(
    _OFFERED, key=lambda entry: _MENU_FIRST.index(entry.name) if entry.name in _MENU_FIRST else len(_MENU_FIRST)))}

# The soft-margin knob turns batch-hard's hinge into a softplus: a different class in labkit.losses.
SOFT_MARGIN_OF = {"BatchHardTripletLoss": "BatchHardSoftMarginTripletLoss"}
HARD_MARGIN_OF = {soft: hard for hard, soft in SOFT_MARGIN_OF.items()}


def negative_euclidean_similarity(a: Tensor, b: Tensor) -> Tensor:
    """``-||a[i] - b[j]||`` for every pair: a similarity (higher = closer) for the in-batch losses."""
    return -euclidean_distance(a, b)


def _metric_arguments(spec: LossSpec, metric: str) -> dict:
    """The distance (or similarity) argument of the loss's constructor, for "euclidean" or "cosine"."""
    euclidean = metric == "euclidean"
    if spec.family == "batch":
        functions = BatchHardTripletLossDistanceFunction
        return {"distance_metric": functions.euclidean_distance if euclidean else functions.cosine_distance}
    if spec.family == "triplets":
        return {"distance_metric": TripletDistanceMetric.EUCLIDEAN if euclidean else TripletDistanceMetric.COSINE}
    if spec.family == "in-batch negatives":
        return {"similarity_fct": negative_euclidean_similarity if euclidean else cos_sim}
    if "binary_pairs" in REGISTRY[spec.name].data_kinds:  # ContrastiveLoss, OnlineContrastiveLoss
        return {"distance_metric": SiameseDistanceMetric.EUCLIDEAN if euclidean else SiameseDistanceMetric.COSINE_DISTANCE}
    return {}  # CosineSimilarityLoss, CoSENT, AnglE: cosine is built in


def _knob_arguments(spec: LossSpec, margin: float, scale: float) -> dict:
    """The constructor arguments of the knobs the loss reads (TripletLoss calls its margin ``triplet_margin``)."""
    values = {"margin": margin, "scale": scale}
    return {knob.keyword: values[knob.name] for knob in REGISTRY[spec.name].knobs}


def check_configuration(loss: str, distance: str) -> LossSpec:
    """The `LossSpec` of ``loss``, or a clear error if the loss or the distance is not one the playground offers."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; the playground offers {list(LOSSES)}.")
    spec = LOSSES[loss]
    if distance not in spec.distances:
        raise ValueError(f"{loss} works with distance {list(spec.distances)}, not {distance!r}.")
    return spec


def playground_loss(loss: str, distance: str = "euclidean", margin: float = 1.0, scale: float = 20.0) -> nn.Module:
    """The `labkit.losses` object for a loss name, a playground distance and the knobs it reads, built by
    `labkit.losses.build_loss`.

    "normalised" builds the Euclidean loss: the normalisation is applied to the points, not by the loss.
    """
    spec = check_configuration(loss, distance)
    metric = "cosine" if distance == "cosine" else "euclidean"
    return build_loss(loss, REGISTRY[loss].data_kinds[0], **_metric_arguments(spec, metric),
                      **_knob_arguments(spec, margin, scale))


# ----------------------------------------------------------------------------------------------
# What a loss did on the cloud
# ----------------------------------------------------------------------------------------------
@dataclass
class PlaygroundState:
    """What `Playground.compute` found at one position of the points.

    * ``loss``: the loss value (the labkit loss's forward on the inputs built from the cloud);
    * ``gradients``: (N, 2), d loss / d point, from autograd (a gradient step moves point i by -lr * gradients[i]);
    * ``contributions``: (N,) each point's share, summing to ``loss``: the terms of the triplets it anchors
      (triplet losses), of the anchor rows it heads (in-batch losses), or half of each pair it is in (pair
      losses), divided by what the loss averages over; None for CoSENT / AnglE, a log of a sum of pairs of
      pairs that does not split into per-point terms;
    * ``picks``: a DataFrame, one row per triplet / pair / anchor row the loss used (point indices, distances,
      term, and for triplets their kind: easy / semi-hard / hard, as `labkit.mining.classify_triplets` says);
    * ``lines``: ``(i, j, role)`` to draw: role "positive" or the kind of the triplet a negative was in
      ("hard", "semi-hard", "easy"); "negative" for the pair and in-batch losses;
    * ``note``: one sentence on what was built, or why nothing could be.
    """

    loss: float
    gradients: Tensor
    contributions: Optional[np.ndarray]
    picks: object  # pandas.DataFrame
    lines: list
    note: str = ""


@dataclass
class Trajectory:
    """Positions before each step and after the last (n + 1 of them), and the loss before each step (n)."""

    positions: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    stopped: str = ""  # why the steps stopped early (a non-finite gradient), "" if they did not


def _kind_label(code: int) -> str:
    return TripletKind(int(code)).label


def _triplet_picks(explanation, point_of_row: Optional[Sequence[Tensor]], num_points: int):
    """Picks, contributions and lines from a `TripletExplanation` (rows mapped to point indices)."""
    import pandas as pd

    anchor, positive, negative = explanation.anchor, explanation.positive, explanation.negative
    if point_of_row is not None:  # TripletLoss: row t is triplet t of the built (anchor, positive, negative)
        anchor, positive, negative = point_of_row
    picks = pd.DataFrame({"anchor": anchor.tolist(), "positive": positive.tolist(), "negative": negative.tolist(),
                          "d_ap": explanation.d_ap.tolist(), "d_an": explanation.d_an.tolist(),
                          "term": explanation.term.tolist(), "kind": [_kind_label(k) for k in explanation.kind]})
    shares = torch.zeros(num_points, dtype=torch.float64).index_add_(0, anchor, explanation.term.double())
    lines = [(a, p, "positive") for a, p in zip(picks.anchor, picks.positive) if p >= 0]
    lines += [(a, n, kind) for a, n, kind in zip(picks.anchor, picks.negative, picks.kind) if n >= 0]
    return picks, (shares / explanation.denominator).numpy(), lines


def _pair_picks(explanation, first: Tensor, second: Tensor, num_points: int):
    """Picks, contributions and lines from a pair loss's `LossExplanation`."""
    picks = explanation.per_pair.reset_index(drop=True)
    picks.insert(0, "j", second.tolist())
    picks.insert(0, "i", first.tolist())
    if "loss_i" not in picks:  # CoSENT / AnglE: not a sum over pairs
        return picks, None, []
    terms = torch.tensor(picks["loss_i"].to_numpy(), dtype=torch.float64)
    shares = torch.zeros(num_points, dtype=torch.float64).index_add_(0, first, terms / 2).index_add_(0, second, terms / 2)
    denominator = len(picks) if explanation.reduction.startswith("mean") else 1
    used = picks["hard"].to_numpy() if "hard" in picks else terms.numpy() > 0
    lines = [(int(row.i), int(row.j), "positive" if row.label == 1 else "negative")
             for row, keep in zip(picks.itertuples(), used) if keep]
    lines += [(j, i, role) for i, j, role in lines]  # both ends, so either can be the focus
    return picks, (shares / denominator).numpy(), lines


def _ranking_picks(explanation, anchors: Tensor, positives: Tensor, labels: Tensor, num_points: int):
    """Picks, contributions and lines from a `RankingExplanation`: each anchor's strongest wrong candidate."""
    import pandas as pd

    probabilities = explanation.probabilities["query_to_doc"]
    own = torch.arange(len(anchors))
    wrong = probabilities.clone()
    wrong[own, own] = -1.0
    rival_column = wrong.argmax(dim=1)
    rival = positives[rival_column]  # candidate c is positive c
    picks = pd.DataFrame({"anchor": anchors.tolist(), "positive": positives.tolist(), "rival": rival.tolist(),
                          "rival is a classmate": (labels[rival] == labels[anchors]).tolist(),
                          "p(positive)": probabilities[own, own].tolist(),
                          "p(rival)": probabilities[own, rival_column].tolist(),
                          "term": explanation.per_anchor.tolist()})
    shares = torch.zeros(num_points, dtype=torch.float64).index_add_(0, anchors, explanation.per_anchor.double())
    lines = [(a, p, "positive") for a, p in zip(picks.anchor, picks.positive)]
    lines += [(a, r, "negative") for a, r in zip(picks.anchor, picks.rival)]
    return picks, (shares / len(anchors)).numpy(), lines


# ----------------------------------------------------------------------------------------------
# The playground
# ----------------------------------------------------------------------------------------------
def _on_one_thread(method):
    """Run on one CPU thread: on a dozen points, waking torch's thread pool costs more than the maths
    (measured: 30 ms instead of 2 ms per gradient on a busy 2-core machine)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return method(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


class Playground:
    """A labelled 2-D point cloud and one loss on it: compute what the loss does, take gradient steps.

    Args:
        points, labels: the cloud ((N, 2) floats, N integer labels); default: ``make_cloud(preset, seed)``.
        loss: a name from `LOSSES` (default "BatchHardTripletLoss").
        distance: "euclidean", "normalised" or "cosine" (see the module docstring).
        margin: for the margin losses. Default 1, suited to these clouds (the sentence-transformers default, 5,
            is for unnormalised transformer outputs); on normalised points no distance exceeds 2.
        scale: for CoSENT, AnglE and the in-batch losses (1 / temperature), default 20 as in sentence-transformers.
        preset, seed: which cloud `make_cloud` draws when no points are given.

    ``soft_margin`` (True/False) switches BatchHardTripletLoss to BatchHardSoftMarginTripletLoss and back.

    Example::

        >>> playground = Playground(preset="one outlier", loss="BatchHardTripletLoss", margin=1.0)
        >>> state = playground.compute()            # loss, contributions, picks (with kinds), gradients
        >>> trajectory = playground.step(20, lr=0.1)  # 20 steps of gradient descent on the points
    """

    def __init__(self, points=None, labels=None, loss: str = "BatchHardTripletLoss", distance: str = "euclidean",
                 margin: float = 1.0, scale: float = 20.0, preset: str = "well separated", seed: int = 0) -> None:
        if points is None:
            points, labels = make_cloud(preset, seed)
        elif labels is None:
            raise ValueError("pass the labels with the points: one integer class id per point.")
        self.set_cloud(points, labels)
        self.loss, self.distance, self.margin, self.scale = loss, distance, float(margin), float(scale)
        check_configuration(loss, distance)

    # -- state -----------------------------------------------------------------------------------
    def set_cloud(self, points, labels) -> None:
        """Replace the cloud (and the position `reset` returns to)."""
        points = torch.as_tensor(points, dtype=torch.float64)
        if points.dim() != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(f"points must have shape (N, 2) with N >= 2, got {tuple(points.shape)}.")
        labels = torch.as_tensor(labels)
        if labels.shape != (len(points),) or labels.is_floating_point():
            raise ValueError(f"labels must be {len(points)} integer class ids, got shape {tuple(labels.shape)}.")
        self.points, self.labels = points.clone(), labels.long().clone()
        self.initial_points = points.clone()

    def load_preset(self, preset: str, seed: int = 0) -> None:
        """Replace the cloud by ``make_cloud(preset, seed)``."""
        self.set_cloud(*make_cloud(preset, seed))

    def reset(self) -> None:
        """Put the points back where the cloud started."""
        self.points = self.initial_points.clone()

    def configure(self, **settings) -> None:
        """Change several settings at once (loss, distance, margin, scale, soft_margin), checked together."""
        unknown = set(settings) - {"loss", "distance", "margin", "scale", "soft_margin"}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; use loss, distance, margin, scale, soft_margin.")
        loss = settings.get("loss", self.loss)
        if "soft_margin" in settings:
            loss = _with_soft_margin(loss, settings["soft_margin"])
        check_configuration(loss, settings.get("distance", self.distance))
        self.loss, self.distance = loss, settings.get("distance", self.distance)
        self.margin, self.scale = float(settings.get("margin", self.margin)), float(settings.get("scale", self.scale))

    @property
    def soft_margin(self) -> bool:
        return self.loss in HARD_MARGIN_OF

    @property
    def soft_margin_applies(self) -> bool:
        """Whether the loss has a soft-margin variant to switch to (batch-hard only)."""
        return self.loss in HARD_MARGIN_OF or self.loss in SOFT_MARGIN_OF

    @soft_margin.setter
    def soft_margin(self, value: bool) -> None:
        self.configure(soft_margin=value)

    @property
    def spec(self) -> LossSpec:
        return check_configuration(self.loss, self.distance)

    def loss_module(self) -> nn.Module:
        """The configured `labkit.losses` object."""
        return playground_loss(self.loss, self.distance, self.margin, self.scale)

    def describe(self) -> str:
        knobs = {"margin": self.margin, "scale": self.scale}
        shown = ", ".join(f"{name}={knobs[name]:g}" for name in self.spec.knobs)
        return f"{self.loss}({shown}), {self.distance} distance"

    # -- the loss on the cloud ---------------------------------------------------------------------
    def embeddings(self, points: Tensor) -> Tensor:
        """What the loss sees: the points, L2-normalised for the "normalised" distance."""
        return F.normalize(points, dim=1) if self.distance == "normalised" else points

    def loss_inputs(self, embeddings: Tensor) -> Optional[tuple]:
        """The positional arguments of the loss's forward, built from the cloud; None if none can be built."""
        family, labels = self.spec.family, self.labels
        if family == "batch":
            return embeddings, labels
        if family == "pairs":
            first, second, pair_labels = pair_indices(labels)
            return embeddings[first], embeddings[second], pair_labels
        if family == "triplets":
            anchors, positives, negatives = triplet_indices(labels)
            return (embeddings[anchors], embeddings[positives], embeddings[negatives]) if len(anchors) else None
        anchors, positives = anchor_positive_indices(labels)
        return (embeddings[anchors], embeddings[positives]) if len(anchors) else None

    def loss_value(self, points: Optional[Tensor] = None, loss_module: Optional[nn.Module] = None) -> Tensor:
        """The loss at ``points`` (default: the current points), differentiable with respect to them.

        0 (still differentiable) when the cloud gives the loss no input at all (e.g. TripletLoss on one class).
        """
        points = self.points if points is None else points
        inputs = self.loss_inputs(self.embeddings(points))
        if inputs is None:
            return points.sum() * 0.0
        return (loss_module or self.loss_module())(*inputs)

    @_on_one_thread
    def gradients(self, points: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``(loss, d loss / d points)`` at ``points``, by autograd."""
        points = (self.points if points is None else points).detach().clone().requires_grad_(True)
        value = self.loss_value(points)
        (gradient,) = torch.autograd.grad(value, points, allow_unused=True)
        return value.detach(), torch.zeros_like(points) if gradient is None else gradient

    @_on_one_thread
    def compute(self, points: Optional[Tensor] = None) -> PlaygroundState:
        """Loss, gradients, contributions, picks, kinds and lines at ``points`` (default: the current points)."""
        points = self.points if points is None else torch.as_tensor(points, dtype=torch.float64)
        value, gradient = self.gradients(points)
        picks, contributions, lines, note = self._explain(self.embeddings(points.detach()))
        return PlaygroundState(float(value), gradient, contributions, picks, lines, note)

    def _explain(self, embeddings: Tensor):
        import pandas as pd

        loss_module, inputs, family = self.loss_module(), self.loss_inputs(embeddings), self.spec.family
        size = len(embeddings)
        if inputs is None:
            what = "triplet" if family == "triplets" else "pair of classmates"
            return pd.DataFrame(), np.zeros(size), [], f"The cloud gives {self.loss} no {what}: the loss is 0."
        explanation = loss_module.explain(*inputs)
        if family == "batch":
            return (*_triplet_picks(explanation, None, size), _BATCH_NOTE)
        if family == "triplets":
            return (*_triplet_picks(explanation, triplet_indices(self.labels), size), _TRIPLET_NOTE)
        if family == "pairs":
            first, second, _ = pair_indices(self.labels)
            return (*_pair_picks(explanation, first, second, size), _PAIR_NOTE)
        anchors, positives = anchor_positive_indices(self.labels)
        return (*_ranking_picks(explanation, anchors, positives, self.labels, size), _RANKING_NOTE)

    # -- moving the points --------------------------------------------------------------------------
    @_on_one_thread
    def step(self, n: int = 1, lr: float = 0.1) -> Trajectory:
        """Move the points by ``n`` steps of gradient descent, ``points -= lr * d loss / d points``.

        The loss is evaluated afresh at every step, so the batch losses mine again each time: the same
        updates as ``torch.optim.SGD([points], lr)`` with ``loss.backward(); optimizer.step()`` n times.
        Stops early, leaving the points where they were, if a gradient is not finite.
        """
        if n < 0 or not lr >= 0:
            raise ValueError(f"need n >= 0 steps and a learning rate lr >= 0, got n={n}, lr={lr}.")
        trajectory = Trajectory(positions=[self.points.clone()])
        for _ in range(int(n)):
            value, gradient = self.gradients()
            if not bool(torch.isfinite(gradient).all()):
                trajectory.stopped = "the gradient was not finite; try a smaller learning rate."
                break
            self.points = self.points - lr * gradient
            trajectory.positions.append(self.points.clone())
            trajectory.losses.append(float(value))
        return trajectory


def _with_soft_margin(loss: str, soft: bool) -> str:
    if soft:
        if loss not in SOFT_MARGIN_OF and loss not in HARD_MARGIN_OF:
            raise ValueError(f"the soft margin applies to {list(SOFT_MARGIN_OF)} only, not to {loss}.")
        return SOFT_MARGIN_OF.get(loss, loss)
    return HARD_MARGIN_OF.get(loss, loss)


_BATCH_NOTE = "The whole cloud is one batch; the loss mines its own triplets."
_TRIPLET_NOTE = "One triplet per point: the next point of its class and the next of another class (index order)."
_PAIR_NOTE = "Every pair i < j of the cloud; label 1 if same class, 0 if not."
_RANKING_NOTE = ("Classmates paired up in index order (1st with 2nd, 3rd with 4th, ...) as anchor and positive; "
                 "the other pairs' positives are the negatives, classmates included.")


# ----------------------------------------------------------------------------------------------
# Drawing (matplotlib only; the widgets and the notebook both call these)
# ----------------------------------------------------------------------------------------------
# (colour, line style) per role. Not green: class 2's colour; red / magenta / grey read as "hard" to "easy".
LINE_STYLES = {"positive": ("k", "-"), "hard": ("r", "-"), "semi-hard": ("m", "--"), "easy": ("C7", ":"),
               "negative": ("r", "--")}
_HARDNESS = {"easy": 0, "negative": 1, "semi-hard": 1, "hard": 2, "positive": 3}


def _unique_lines(lines, focus: Optional[int], num_points: int) -> list:
    """``(i, j, role)`` once per ordered pair (the hardest role wins), positives first so negatives draw on
    top; only the lines of anchor ``focus`` if given. With every anchor's lines and more than two per point
    (batch-all, semi-hard), the easy ones are left out: they add nothing to the loss and hide the rest."""
    chosen = {}
    for i, j, role in lines:
        if focus is None or focus == i:
            if (i, j) not in chosen or _HARDNESS[role] > _HARDNESS[chosen[(i, j)]]:
                chosen[(i, j)] = role
    if focus is None and len(chosen) > 2 * num_points:
        chosen = {pair: role for pair, role in chosen.items() if role != "easy"}
    return sorted(((i, j, role) for (i, j), role in chosen.items()), key=lambda line: -_HARDNESS[line[2]])


def auto_arrow_scale(points: Tensor, gradients: Tensor, fraction: float = 0.25) -> float:
    """A factor that draws the longest arrow at ``fraction`` of the cloud's width (1 if nothing moves)."""
    longest = float(gradients.norm(dim=1).max())
    width = float((points.max(dim=0).values - points.min(dim=0).values).max()) or 1.0
    return fraction * width / longest if longest > 1e-12 else 1.0


def plot_state(playground: Playground, state: PlaygroundState, ax, points: Optional[Tensor] = None,
               focus: Optional[int] = None, arrow_scale: Optional[float] = None, limits=None) -> np.ndarray:
    """Draw the cloud coloured by class, the lines the loss used and minus the gradient as arrows.

    For the "normalised" and "cosine" distances the unit circle is drawn too, and a hollow circle on it
    marks where the loss sees each point (its direction). Returns the arrows drawn (minus the gradient
    times the scale, (N, 2)), so a test can check them.
    """
    from matplotlib.lines import Line2D

    from labkit.course.toy import plot_points

    points = playground.points if points is None else points
    scale = auto_arrow_scale(points, state.gradients) if arrow_scale is None else arrow_scale
    arrows = (-state.gradients * scale).numpy()
    lines = _unique_lines(state.lines, focus, len(points))
    on_circle = playground.distance != "euclidean"
    plot_points(points, playground.labels, arrows=arrows, ax=ax, unit_circle=on_circle,
                lines=[(i, j, "".join(LINE_STYLES[role])) for i, j, role in lines])
    if on_circle:
        directions = F.normalize(points, dim=1).numpy()
        ax.scatter(directions[:, 0], directions[:, 1], s=22, facecolors="none", zorder=2,
                   edgecolors=[f"C{int(c) % 10}" for c in playground.labels])
    roles = [role for role in LINE_STYLES if role in {role for _, _, role in lines}]
    handles = [Line2D([], [], color=LINE_STYLES[role][0], ls=LINE_STYLES[role][1], label=role) for role in roles]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.6)
    if limits is not None:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_aspect("equal", adjustable="box")
    ax.set_title(f"loss {state.loss:.4f}   arrows: −gradient × {scale:.2g}", fontsize=9)
    return arrows


def plot_contributions(playground: Playground, state: PlaygroundState, ax) -> None:
    """Each point's share of the loss as bars coloured by class (a note where the loss has no such split)."""
    ax.set_title("each point's share of the loss", fontsize=9)
    if state.contributions is None:
        ax.text(0.5, 0.5, f"{playground.loss}\nis not a sum over points", ha="center", va="center",
                fontsize=8, transform=ax.transAxes)
        ax.set_xticks([])
        return
    colours = [f"C{int(c) % 10}" for c in playground.labels]
    ax.bar(range(len(state.contributions)), state.contributions, color=colours)
    ax.set_xticks(range(len(state.contributions)))
    ax.tick_params(labelsize=8)


def plot_loss_history(losses: Sequence[float], ax) -> None:
    """The loss before each gradient step taken so far."""
    from matplotlib.ticker import MaxNLocator

    ax.set_title("loss during the steps", fontsize=9)
    ax.yaxis.set_major_locator(MaxNLocator(4))
    if len(losses):
        ax.plot(range(len(losses)), losses, color="0.2")
    else:
        ax.text(0.5, 0.5, "no steps taken yet", ha="center", va="center", fontsize=8, transform=ax.transAxes)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=8)


def state_figure(playground: Playground, state: Optional[PlaygroundState] = None, points: Optional[Tensor] = None,
                 focus: Optional[int] = None, history: Sequence[float] = (), arrow_scale: Optional[float] = None,
                 limits=None, figsize=(6.4, 3.4)):
    """A matplotlib Figure (not registered with pyplot): the cloud, the contributions and the loss history.

    Returns ``(figure, arrows)``. Built without pyplot so widget callbacks never leave stray figures behind.
    """
    from matplotlib.figure import Figure

    state = playground.compute(points) if state is None else state
    figure = Figure(figsize=figsize, dpi=80)
    # Fixed margins: a layout engine would double the drawing time of every animation frame.
    grid = figure.add_gridspec(2, 2, width_ratios=(1.25, 1), left=0.09, right=0.98, bottom=0.13, top=0.86,
                               wspace=0.2, hspace=0.55)
    points_ax = figure.add_subplot(grid[:, 0])
    arrows = plot_state(playground, state, points_ax, points, focus, arrow_scale, limits)
    plot_contributions(playground, state, figure.add_subplot(grid[0, 1]))
    plot_loss_history(history, figure.add_subplot(grid[1, 1]))
    figure.suptitle(playground.describe(), fontsize=9)
    return figure, arrows
