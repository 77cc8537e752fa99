"""labkit.course.toy_triplets: pictures and tables of the triplets a loss picks, and the article timing helper.

Expected picks, roles and kinds come from the plain-loop references in tests/naive_triplets.py, not from
labkit.mining.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot
import numpy as np
import pytest
import torch
from matplotlib.patches import FancyArrowPatch, Rectangle
from naive_triplets import (
    as_floats,
    naive_batch_hard_triplet_loss,
    naive_distance_matrix,
    naive_hardest_negative,
    naive_hardest_positive,
    naive_kind,
    naive_semi_hard_negative,
)

from labkit.distances import euclidean_distance
from labkit.losses.triplets import BatchHardTripletLoss, BatchSemiHardTripletLoss
from labkit.course.toy import gradient_step
from labkit.course.toy_triplets import (
    plot_label_masks,
    plot_mining_matrix,
    plot_picks,
    plot_triplets,
    time_batch_hard_against_article,
    triplet_roles,
)

POINTS = torch.tensor([[0.0, 0.0], [1.0, -2.0], [4.0, 0.0], [10.0, 2.0], [-1.0, 12.0], [11.0, 6.0], [6.0, 10.0]],
                      dtype=torch.float64)
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2])
MARGIN = 5.0


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")


def naive_dist():
    return as_floats(naive_distance_matrix(POINTS, "euclidean"))


def naive_batch_hard_roles():
    """For each point: is it an active anchor, which active anchors picked it as positive / negative."""
    dist, labels = naive_dist(), LABELS.tolist()
    d_ap, positive, _ = naive_hardest_positive(dist, labels)
    d_an, negative, _ = naive_hardest_negative(dist, labels)
    active = [d_ap[a] - d_an[a] + MARGIN > 0 for a in range(len(labels))]
    roles = []
    for i in range(len(labels)):
        roles.append((int(active[i]),
                      sorted(a for a in range(len(labels)) if active[a] and positive[a] == i),
                      sorted(a for a in range(len(labels)) if active[a] and negative[a] == i)))
    return roles


def as_list(cell: str) -> list[int]:
    return [] if cell == "-" else [int(v) for v in cell.split(", ")]


def test_triplet_roles_of_batch_hard_match_the_definition_and_the_gradient():
    loss = BatchHardTripletLoss()
    step = gradient_step(loss, POINTS, labels=LABELS, lr=1.0)
    table = triplet_roles(loss.explain(POINTS, LABELS), step.gradients[0])
    expected = naive_batch_hard_roles()
    for i, (is_anchor, positive_of, negative_of) in enumerate(expected):
        assert table.loc[i, "anchor of"] == is_anchor
        assert as_list(table.loc[i, "positive of"]) == positive_of
        assert as_list(table.loc[i, "negative of"]) == negative_of
        involved = bool(is_anchor or positive_of or negative_of)
        assert table.loc[i, "moves"] == involved  # batch-hard moves exactly the points in active triplets
        assert table.loc[i, "|gradient|"] == pytest.approx(step.gradients[0][i].norm().item(), abs=1e-4)
    assert not table["moves"].all()  # the fixture has a point that nobody picked: it must not move

    # the gradient itself, against autograd through the naive loop loss
    x = POINTS.clone().requires_grad_(True)
    naive_batch_hard_triplet_loss(x, LABELS.tolist(), margin=MARGIN).backward()
    assert torch.allclose(step.gradients[0], x.grad, atol=1e-10)


def test_triplet_roles_of_semi_hard_list_one_row_per_positive_pair():
    loss = BatchSemiHardTripletLoss()
    explanation = loss.explain(POINTS, LABELS)
    table = triplet_roles(explanation)
    assert "moves" not in table  # no gradient given
    dist, labels = naive_dist(), LABELS.tolist()
    counts = {i: 0 for i in range(len(labels))}
    negative_of = {i: set() for i in range(len(labels))}
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p != a and labels[p] == labels[a]:
                n, _ = naive_semi_hard_negative(dist, labels, a, p)
                if dist[a, p] - dist[a, n] + MARGIN > 0:
                    counts[a] += 1
                    negative_of[n].add(a)
    for i in range(len(labels)):
        assert table.loc[i, "anchor of"] == counts[i]
        assert as_list(table.loc[i, "negative of"]) == sorted(negative_of[i])


def test_triplet_roles_refuses_a_gradient_of_the_wrong_shape():
    explanation = BatchHardTripletLoss().explain(POINTS, LABELS)
    with pytest.raises(ValueError, match="one row per point"):
        triplet_roles(explanation, torch.zeros(3, 2))


def count_arrows(ax):
    return [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


def test_plot_picks_draws_one_arrow_per_pick():
    loss = BatchHardTripletLoss()
    explanation = loss.explain(POINTS, LABELS)
    ax = plot_picks(POINTS, LABELS, explanation, arrows=torch.ones(7, 2), title="t")
    arrows = count_arrows(ax)
    assert len(arrows) == 2 * len(LABELS)  # a positive and a negative per anchor
    faint = [p for p in arrows if p.get_alpha() < 0.5]
    num_inactive = int((explanation.term == 0).sum())
    assert num_inactive > 0 and len(faint) == 2 * num_inactive
    assert len(ax.collections) == 2  # the points, and the quiver of gradient arrows
    ax = plot_picks(POINTS, LABELS, explanation, show_inactive=False)
    assert len(count_arrows(ax)) == 2 * (len(LABELS) - num_inactive)
    ax = plot_picks(POINTS, LABELS)  # the points alone
    assert not count_arrows(ax)


def test_plot_picks_refuses_bad_shapes():
    explanation = BatchHardTripletLoss().explain(POINTS, LABELS)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plot_picks(torch.zeros(7, 3), LABELS, explanation)
    with pytest.raises(ValueError, match="arrows must have the shape"):
        plot_picks(POINTS, LABELS, explanation, arrows=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="names"):
        plot_picks(POINTS, LABELS, explanation, names=["a", "b"])
    with pytest.raises(ValueError, match="expected 7 labels"):
        plot_picks(POINTS, LABELS[:3], explanation)


def boxes(ax, linewidth):
    return {(int(round(p.get_y() + 0.5)), int(round(p.get_x() + 0.5))) for p in ax.patches
            if isinstance(p, Rectangle) and not p.get_fill() and p.get_linewidth() == linewidth}


def test_plot_mining_matrix_frames_candidates_and_boxes_the_picks():
    dist = euclidean_distance(POINTS)
    explanation = BatchHardTripletLoss().explain(POINTS, LABELS)
    ax = plot_mining_matrix(dist, LABELS, explanation)
    naive = naive_dist()
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 7 * 6  # every off-diagonal distance is written
    assert f"{naive[3, 4]:.2f}" in texts
    _, positive, _ = naive_hardest_positive(naive, LABELS.tolist())
    _, negative, _ = naive_hardest_negative(naive, LABELS.tolist())
    picked = {(a, int(positive[a])) for a in range(7)} | {(a, int(negative[a])) for a in range(7)}
    assert boxes(ax, 3.0) == picked
    labels = LABELS.tolist()
    assert boxes(ax, 1.0) == {(a, j) for a in range(7) for j in range(7) if a != j and labels[a] == labels[j]}
    assert boxes(ax, 0.8) == {(a, j) for a in range(7) for j in range(7) if labels[a] != labels[j]}
    assert not boxes(plot_mining_matrix(dist, LABELS), 3.0)  # no explanation, no picks
    with pytest.raises(ValueError, match="square"):
        plot_mining_matrix(dist[:3], LABELS)


def test_plot_label_masks_shows_both_masks_as_zeros_and_ones():
    fig = plot_label_masks(LABELS)
    positive_axes, negative_axes = fig.axes[:2]
    labels = LABELS.tolist()
    positives = sum(1 for a in range(7) for j in range(7) if a != j and labels[a] == labels[j])
    negatives = sum(1 for a in range(7) for j in range(7) if labels[a] != labels[j])
    assert f"{positives} ones" in positive_axes.get_title() and f"{negatives} ones" in negative_axes.get_title()
    assert sum(t.get_text() == "1" for t in positive_axes.texts) == positives
    assert sum(t.get_text() == "1" for t in negative_axes.texts) == negatives
    with pytest.raises(TypeError, match="integer class ids"):
        plot_label_masks(torch.tensor([0.5, 1.0]))


def test_plot_triplets_one_panel_per_triplet_titled_with_its_kind():
    anchor = torch.zeros(3, 2, dtype=torch.float64)
    positive = torch.tensor([[3.0, 0.0]] * 3, dtype=torch.float64)
    negative = torch.tensor([[0.0, 2.0], [-3.0, 4.0], [6.0, 8.0]], dtype=torch.float64)
    fig = plot_triplets(anchor, positive, negative, margin=MARGIN, arrows=[torch.ones(3, 2)] * 3)
    axes = fig.axes
    assert len(axes) == 3
    for i, ax in enumerate(axes):
        d_ap = math.dist(anchor[i].tolist(), positive[i].tolist())
        d_an = math.dist(anchor[i].tolist(), negative[i].tolist())
        title = ax.get_title()
        assert title.startswith(naive_kind(d_ap, d_an, MARGIN) + ":")
        assert f"= {max(d_ap - d_an + MARGIN, 0):.2f}" in title
        # the view holds the whole ring and the negative
        assert ax.get_xlim()[1] - anchor[i, 0].item() >= max(d_ap + MARGIN, d_an)
    with pytest.raises(ValueError, match="same shape"):
        plot_triplets(anchor, positive[:2], negative, margin=MARGIN)
    with pytest.raises(ValueError, match="margin"):
        plot_triplets(anchor, positive, negative, margin=-1)
    with pytest.raises(ValueError, match="axes"):
        plot_triplets(anchor, positive, negative, margin=MARGIN, axes=fig.axes[:2])
    with pytest.raises(ValueError, match="three arrays"):
        plot_triplets(anchor, positive, negative, margin=MARGIN, arrows=[torch.ones(3, 2)] * 2)


def test_time_batch_hard_against_article_agrees_and_restores_threads():
    threads = torch.get_num_threads()
    table = time_batch_hard_against_article([8, 16], dim=16, examples_per_class=4, repeats=2)
    assert torch.get_num_threads() == threads
    assert list(table.index) == [8, 16]
    assert list(table.columns) == ["article loop (ms)", "labkit (ms)", "speed-up", "|value difference|"]
    assert (table["|value difference|"] < 1e-5).all()
    assert np.allclose(table["speed-up"], table["article loop (ms)"] / table["labkit (ms)"])
    assert (table[["article loop (ms)", "labkit (ms)"]] > 0).all().all()


def test_time_batch_hard_against_article_refuses_bad_sizes():
    with pytest.raises(ValueError, match="multiple of examples_per_class"):
        time_batch_hard_against_article([10], examples_per_class=4)
    with pytest.raises(ValueError, match="at least 2 classes"):
        time_batch_hard_against_article([4], examples_per_class=4)
    with pytest.raises(ValueError, match="repeats"):
        time_batch_hard_against_article([8], repeats=0)
    with pytest.raises(ValueError, match="examples_per_class"):
        time_batch_hard_against_article([8], examples_per_class=1)
