"""The loss playground: its logic (`labkit.course.playground`) and its widgets (`labkit.course.loss_lab`). The
checkers of notebook 08 are tested in test_exercises_loss_playground.py.

References are written here independently: the pairs / triplets built from the cloud with plain Python
loops, the losses constructed directly from `labkit.losses`, gradients from autograd on those, and the
gradient steps as `torch.optim.SGD` on the points. The widgets are driven as a user would: set a widget's
value, click a button.
"""
from __future__ import annotations

import ast
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from labkit import losses as L
from labkit.distances import BatchHardTripletLossDistanceFunction as BatchDistances
from labkit.distances import TripletDistanceMetric, euclidean_distance
from labkit.losses.pairs import SiameseDistanceMetric
from labkit.mining import classify_triplets, hardest_negative, hardest_positive, TripletKind
from labkit.course.playground import (
    LOSSES,
    PRESETS,
    Playground,
    anchor_positive_indices,
    make_cloud,
    pair_indices,
    state_figure,
    triplet_indices,
)
from labkit.distances import cos_sim
from labkit.course.loss_lab import LossLab, _frame_indices

BATCH = ("BatchHardTripletLoss", "BatchHardSoftMarginTripletLoss", "BatchSemiHardTripletLoss", "BatchAllTripletLoss")
CONFIGURATIONS = [(name, distance) for name, spec in LOSSES.items() for distance in spec.distances]


# ----------------------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------------------
def naive_pairs(labels):
    n = len(labels)
    return [(i, j, int(labels[i] == labels[j])) for i in range(n) for j in range(i + 1, n)]


def naive_triplets(labels):
    """Per anchor: the next classmate and the next point of another class, wrapping around."""
    n, labels = len(labels), [int(x) for x in labels]
    triplets = []
    for a in range(n):
        after = [(a + k) % n for k in range(1, n)]
        positives = [j for j in after if labels[j] == labels[a]]
        negatives = [j for j in after if labels[j] != labels[a]]
        if positives and negatives:
            triplets.append((a, positives[0], negatives[0]))
    return triplets


def naive_anchor_positive(labels):
    """Classmates paired up in index order: 1st with 2nd, 3rd with 4th, ..."""
    pairs = []
    for label in sorted(set(int(x) for x in labels)):
        members = [i for i, x in enumerate(labels) if int(x) == label]
        pairs += list(zip(members[0::2], members[1::2]))
    return sorted(pairs)


def reference_loss(name, distance, margin, scale):
    """The labkit loss object, built here without the playground's own mapping."""
    euclidean = distance != "cosine"
    if name in BATCH:
        metric = BatchDistances.euclidean_distance if euclidean else BatchDistances.cosine_distance
        knobs = {} if name == "BatchHardSoftMarginTripletLoss" else {"margin": margin}
        return getattr(L, name)(distance_metric=metric, **knobs)
    if name == "TripletLoss":
        metric = TripletDistanceMetric.EUCLIDEAN if euclidean else TripletDistanceMetric.COSINE
        return L.TripletLoss(distance_metric=metric, triplet_margin=margin)
    if name in ("ContrastiveLoss", "OnlineContrastiveLoss"):
        metric = SiameseDistanceMetric.EUCLIDEAN if euclidean else SiameseDistanceMetric.COSINE_DISTANCE
        return getattr(L, name)(distance_metric=metric, margin=margin)
    if name == "CosineSimilarityLoss":
        return L.CosineSimilarityLoss()
    if name in ("CoSENTLoss", "AnglELoss"):
        return getattr(L, name)(scale=scale)
    similarity = (lambda a, b: -torch.cdist(a, b)) if euclidean else cos_sim
    return getattr(L, name)(scale=scale, similarity_fct=similarity)


def reference_value(points, labels, name, distance, margin=1.0, scale=20.0):
    """The loss at `points`, from labkit.losses on inputs built by the naive loops above."""
    embeddings = F.normalize(points, dim=1) if distance == "normalised" else points
    loss = reference_loss(name, distance, margin, scale)
    family = LOSSES[name].family
    if family == "batch":
        return loss(embeddings, labels)
    if family == "pairs":
        i, j, y = zip(*naive_pairs(labels))
        return loss(embeddings[list(i)], embeddings[list(j)], torch.tensor(y))
    if family == "triplets":
        a, p, n = zip(*naive_triplets(labels))
        return loss(embeddings[list(a)], embeddings[list(p)], embeddings[list(n)])
    a, p = zip(*naive_anchor_positive(labels))
    return loss(embeddings[list(a)], embeddings[list(p)])


def reference_gradient(points, labels, name, distance, margin=1.0, scale=20.0):
    moving = points.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(reference_value(moving, labels, name, distance, margin, scale), moving)
    return gradient


# ----------------------------------------------------------------------------------------------
# The clouds and what is built from them
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 1, 0, 2, 1, 0, 2, 2, 3], [4, 4, 4], [0, 1, 2]])
def test_pairs_triplets_and_anchor_positive_pairs_follow_the_documented_rules(labels):
    labels = torch.tensor(labels)
    first, second, pair_labels = pair_indices(labels)
    assert list(zip(first.tolist(), second.tolist(), pair_labels.tolist())) == naive_pairs(labels)
    assert list(zip(*[t.tolist() for t in triplet_indices(labels)])) == naive_triplets(labels)
    assert list(zip(*[t.tolist() for t in anchor_positive_indices(labels)])) == naive_anchor_positive(labels)


def test_presets_are_deterministic_and_shaped_as_documented():
    for preset in PRESETS:
        points, labels = make_cloud(preset, seed=3)
        again, same_labels = make_cloud(preset, seed=3)
        assert torch.equal(points, again) and torch.equal(labels, same_labels)
        assert points.dtype == torch.float64 and points.shape == (len(labels), 2)
    assert len(make_cloud("single class")[1].unique()) == 1
    points, labels = make_cloud("one outlier")
    outlier = points[3]  # the last point of class 0 sits inside class 1
    assert labels[3] == 0 and (points[labels == 1] - outlier).norm(dim=1).min() < (points[:3] - outlier).norm(dim=1).min()
    assert float(make_cloud("collapsed")[0].std(dim=0).max()) < 0.05
    assert not torch.equal(make_cloud("random", seed=1)[0], make_cloud("random", seed=2)[0])


# ----------------------------------------------------------------------------------------------
# The playground's numbers against labkit.losses and autograd
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,distance", CONFIGURATIONS)
def test_loss_and_gradients_equal_labkit_losses(name, distance):
    playground = Playground(preset="overlapping", loss=name, distance=distance, margin=0.7, scale=10.0)
    state = playground.compute()
    points, labels = playground.points, playground.labels
    expected = reference_value(points, labels, name, distance, margin=0.7, scale=10.0)
    assert state.loss == pytest.approx(float(expected), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(state.gradients, reference_gradient(points, labels, name, distance, 0.7, 10.0),
                               rtol=1e-9, atol=1e-12)
    if state.contributions is not None:  # each point's share adds up to the loss
        assert state.contributions.sum() == pytest.approx(state.loss, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_and_loss_runs_without_error_or_nan(preset):
    for name, distance in CONFIGURATIONS:
        playground = Playground(preset=preset, seed=1, loss=name, distance=distance)
        state = playground.compute()
        assert torch.isfinite(state.gradients).all() and state.loss == state.loss, (name, distance)
        if state.contributions is not None:
            assert state.contributions.sum() == pytest.approx(state.loss, rel=1e-9, abs=1e-12), (name, distance)
        trajectory = playground.step(2, lr=0.05)
        assert not trajectory.stopped and torch.isfinite(playground.points).all(), (name, distance)


def test_batch_hard_picks_and_kinds_are_the_mining_functions():
    playground = Playground(preset="one outlier", loss="BatchHardTripletLoss", margin=1.0)
    picks = playground.compute().picks
    dist = euclidean_distance(playground.points)
    positive, negative = hardest_positive(dist, playground.labels), hardest_negative(dist, playground.labels)
    assert picks.anchor.tolist() == list(range(len(dist)))
    assert picks.positive.tolist() == positive.indices.tolist()
    assert picks.negative.tolist() == negative.indices.tolist()
    kinds = classify_triplets(positive.values, negative.values, 1.0)
    assert picks.kind.tolist() == [TripletKind(int(k)).label for k in kinds]


def test_clouds_that_give_no_input_give_a_zero_loss_not_nan():
    single_class = Playground(preset="single class", loss="TripletLoss")  # no negative: no triplet
    no_classmates = Playground(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1]),
                               loss="MultipleNegativesRankingLoss")  # no (anchor, positive) pair
    for playground in (single_class, no_classmates):
        state = playground.compute()
        assert state.loss == 0.0 and torch.equal(state.gradients, torch.zeros_like(playground.points))
        assert "gives" in state.note and "the loss is 0" in state.note


@pytest.mark.parametrize("name,distance", [("BatchHardTripletLoss", "euclidean"), ("BatchSemiHardTripletLoss", "normalised"),
                                           ("TripletLoss", "cosine"), ("ContrastiveLoss", "euclidean"),
                                           ("MultipleNegativesRankingLoss", "cosine")])
def test_steps_equal_plain_sgd_on_the_points(name, distance):
    playground = Playground(preset="overlapping", loss=name, distance=distance, margin=0.5)
    points = torch.nn.Parameter(playground.points.clone())
    optimizer = torch.optim.SGD([points], lr=0.05)
    for _ in range(7):
        optimizer.zero_grad()
        reference_value(points, playground.labels, name, distance, margin=0.5).backward()
        optimizer.step()
    trajectory = playground.step(7, lr=0.05)
    torch.testing.assert_close(playground.points, points.detach(), rtol=1e-9, atol=1e-12)
    assert len(trajectory.positions) == 8 and len(trajectory.losses) == 7


def test_a_non_finite_gradient_stops_the_steps_and_leaves_the_points():
    playground = Playground(torch.tensor([[0.0, 0.0], [float("nan"), 1.0], [2.0, 0.0]]), torch.tensor([0, 0, 1]))
    before = playground.points.clone()
    trajectory = playground.step(3, lr=0.1)
    assert trajectory.stopped and torch.equal(playground.points.isnan(), before.isnan())
    assert torch.equal(playground.points.nan_to_num(), before.nan_to_num())


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        Playground(loss="SoftmaxLoss")
    with pytest.raises(ValueError, match=r"CoSENTLoss works with distance \['cosine'\]"):
        Playground(loss="CoSENTLoss", distance="euclidean")
    with pytest.raises(ValueError, match="unknown preset"):
        make_cloud("spiral")
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        Playground(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="soft margin applies to"):
        Playground().configure(loss="TripletLoss", soft_margin=True)
    with pytest.raises(ValueError, match="need n >= 0"):
        Playground().step(-1)


def test_figures_are_not_left_in_pyplot():
    before = plt.get_fignums()
    figure, arrows = state_figure(Playground(loss="CoSENTLoss", distance="cosine"))
    assert plt.get_fignums() == before and arrows.shape == (12, 2) and len(figure.axes) == 3


# ----------------------------------------------------------------------------------------------
# The widgets, driven as a user would
# ----------------------------------------------------------------------------------------------
def test_arrows_drawn_are_minus_the_autograd_gradients():
    lab = LossLab(preset="one outlier", losses=("BatchAllTripletLoss",), draw=True)
    panel = lab.panels[0]
    panel.distance.value = "normalised"
    panel.margin.value = 0.4
    expected = reference_gradient(panel.playground.points, panel.playground.labels, "BatchAllTripletLoss",
                                  "normalised", margin=0.4)
    torch.testing.assert_close(panel.state.gradients, expected, rtol=1e-9, atol=1e-12)
    factor = panel.arrows[:, 0] @ -expected[:, 0].numpy() / float(expected[:, 0] @ expected[:, 0])
    assert factor > 0
    torch.testing.assert_close(torch.as_tensor(panel.arrows), -expected * factor, rtol=1e-6, atol=1e-9)
    assert panel.state.loss == pytest.approx(float(reference_value(
        panel.playground.points, panel.playground.labels, "BatchAllTripletLoss", "normalised", margin=0.4)), rel=1e-12)


def test_controls_reach_the_playground_and_grey_out_unused_knobs():
    lab = LossLab(losses=("BatchHardTripletLoss", "ContrastiveLoss"), draw=False)
    panel = lab.panels[0]
    panel.margin.value = 0.35
    assert panel.playground.loss_module().triplet_margin == 0.35
    panel.soft_margin.value = True
    assert panel.playground.loss == "BatchHardSoftMarginTripletLoss" and panel.loss.value == panel.playground.loss
    assert panel.margin.disabled and not panel.soft_margin.disabled
    panel.loss.value = "CoSENTLoss"  # cosine only: the distance menu follows
    assert panel.playground.distance == "cosine" and tuple(panel.distance.options) == ("cosine",)
    assert panel.soft_margin.disabled and panel.margin.disabled and not panel.scale.disabled
    panel.scale.value = 7.0
    assert panel.playground.loss_module().scale == 7.0
    assert panel.error is None and panel.state.loss == pytest.approx(float(reference_value(
        panel.playground.points, panel.playground.labels, "CoSENTLoss", "cosine", scale=7.0)), rel=1e-12)
    assert lab.panels[1].playground.loss == "ContrastiveLoss"  # the other panel is untouched


def test_take_n_steps_moves_every_panel_as_sgd_would():
    lab = LossLab(preset="overlapping", losses=("BatchHardTripletLoss", "MultipleNegativesRankingLoss"), draw=False)
    lab.panels[1].distance.value = "cosine"
    lab.steps.value, lab.lr.value = 6, 0.05
    lab.take_steps.click()
    for panel, name, distance in zip(lab.panels, ("BatchHardTripletLoss", "MultipleNegativesRankingLoss"),
                                     ("euclidean", "cosine")):
        points = torch.nn.Parameter(panel.playground.initial_points.clone())
        optimizer = torch.optim.SGD([points], lr=0.05)
        for _ in range(6):
            optimizer.zero_grad()
            reference_value(points, panel.playground.labels, name, distance).backward()
            optimizer.step()
        torch.testing.assert_close(panel.playground.points, points.detach(), rtol=1e-9, atol=1e-12)
        assert len(panel.history) == 6 and panel.state.loss == pytest.approx(
            float(reference_value(points.detach(), panel.playground.labels, name, distance)), rel=1e-9)
    lab.reset.click()
    assert all(torch.equal(p.playground.points, p.playground.initial_points) and not p.history for p in lab.panels)


def test_cloud_controls_load_the_same_cloud_into_both_panels():
    lab = LossLab(draw=False)
    lab.preset.value = "single class"
    points, labels = make_cloud("single class", 0)
    for panel in lab.panels:
        assert torch.equal(panel.playground.points, points) and torch.equal(panel.playground.labels, labels)
        assert len(panel.focus.options) == len(points) + 1
    lab.new_cloud.click()
    assert lab.preset.value == "random" and lab.seed.value == 1
    assert torch.equal(lab.panels[1].playground.points, make_cloud("random", 1)[0])


def test_a_cloud_of_another_size_redraws_cleanly():
    lab = LossLab(preset="random", seed=1, losses=("BatchSemiHardTripletLoss",), draw=True)
    panel = lab.panels[0]
    panel.focus.value = 11  # one anchor's picks, on a cloud of 12 points
    lab.seed.value = 2  # the random cloud of seed 2 has 8 points
    assert len(panel.playground.points) == 8 and panel.focus.value == -1 and panel.error is None
    assert panel.arrows.shape == (8, 2) and len(panel.focus.options) == 9


def test_the_animation_draws_few_frames_and_ends_on_the_last_position():
    assert _frame_indices(1) == [] and _frame_indices(2) == [1]
    frames = _frame_indices(201)
    assert frames[-1] == 200 and len(frames) <= 12 and frames == sorted(set(frames))
    lab = LossLab(losses=("TripletLoss",), draw=True)
    lab.steps.value = 3
    lab.take_steps.click()
    assert lab.panels[0].error is None and len(lab.panels[0].history) == 3


# Widgets that ipywidgets 7.0 already had (Colab ships 7.x); anything else must be checked there first.
IPYWIDGETS_7_WIDGETS = {"BoundedIntText", "Button", "Checkbox", "Dropdown", "FloatSlider", "HBox", "HTML",
                        "IntSlider", "Layout", "Output", "VBox"}
IPYWIDGETS_8_ONLY_ARGUMENTS = {"tooltip", "description_allow_html"}  # 7.x: description_tooltip / plain text


def test_widgets_use_nothing_ipywidgets_7_lacks():
    tree = ast.parse((Path(__file__).parents[1] / "labkit" / "course" / "loss_lab.py").read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "widgets"}
    assert used <= IPYWIDGETS_7_WIDGETS, used - IPYWIDGETS_7_WIDGETS
    keywords = {node.arg for node in ast.walk(tree) if isinstance(node, ast.keyword)}
    assert not keywords & IPYWIDGETS_8_ONLY_ARGUMENTS
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not any(s.startswith(("font_", "text_color")) for s in strings)  # style keys added in 8.0
