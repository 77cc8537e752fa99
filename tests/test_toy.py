from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import torch

from labkit.course.toy import gradient_step, movement_table, plot_points


def squared_distance_to_origin(points):
    return (points**2).sum()


def test_gradient_step_matches_the_calculus():
    points = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    step = gradient_step(squared_distance_to_origin, points, lr=0.25)
    torch.testing.assert_close(step.gradients[0], 2 * points)  # d/dx of x² is 2x
    torch.testing.assert_close(step.after[0], points - 0.25 * 2 * points)
    assert step.loss == float((points**2).sum()) and step.loss_after < step.loss


def test_integer_labels_do_not_move():
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    step = gradient_step(lambda p, y: (p * y[:, None]).sum(), points, labels, lr=1.0)
    assert torch.equal(step.after[1], labels)
    torch.testing.assert_close(step.after[0], points - torch.tensor([[0.0, 0.0], [1.0, 1.0]]))


def test_movement_table_and_plot():
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    table = movement_table(points, torch.tensor([[1.0, 0.0], [0.0, -2.0]]), lr=0.5, names=["a", "b"])
    assert table.loc["b", "moves to"] == [1.0, 2.0]
    ax = plot_points(points, labels=[0, 1], arrows=-points, lines=[(0, 1, "g-")], unit_circle=True)
    assert len(ax.collections) >= 2
