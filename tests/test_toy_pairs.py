"""labkit.course.toy_pairs: tables and pictures of one gradient step on 2-D pairs."""
from __future__ import annotations

import math
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import pytest
import torch

from labkit.losses.pairs import ContrastiveLoss, OnlineContrastiveLoss, SiameseDistanceMetric
from labkit.losses.regression import CoSENTLoss
from labkit.course.toy import gradient_step
from labkit.course.toy_pairs import (
    pair_movement_table,
    pair_point_names,
    plot_hard_pair_selection,
    plot_pairs,
    point_movement_table,
)

EMB_A = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
EMB_B = torch.tensor([[0.6, 0.8], [0.8, 0.6], [0.0, -1.0]], dtype=torch.float64)
LABELS = torch.tensor([1, 0, 0])  # a positive at cos 0.6, a negative at cos 0.6 (inside the margin), a far negative


def naive_cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))


def test_pair_movement_table_reports_what_the_step_did():
    step = gradient_step(ContrastiveLoss(), EMB_A, EMB_B, labels=LABELS, lr=0.2)
    table = pair_movement_table(step, LABELS)
    assert table["moved"].tolist() == ["closer", "apart", "not moved"]  # pull, push, beyond the margin
    for i in range(3):
        before = naive_cosine(EMB_A[i].tolist(), EMB_B[i].tolist())
        after = naive_cosine(step.after[0][i].tolist(), step.after[1][i].tolist())
        assert table.loc[i, "cosine before"] == pytest.approx(before, abs=1e-6)
        assert table.loc[i, "cosine after"] == pytest.approx(after, abs=1e-6)
        assert table.loc[i, "change"] == pytest.approx(after - before, abs=2e-6)
    assert table["label"].tolist() == [1, 0, 0]


def test_pair_movement_table_with_a_distance():
    step = gradient_step(ContrastiveLoss(), EMB_A, EMB_B, labels=LABELS, lr=0.2)
    table = pair_movement_table(step, measure=SiameseDistanceMetric.COSINE_DISTANCE, name="distance",
                                higher_is_closer=False)
    assert table["moved"].tolist() == ["closer", "apart", "not moved"]
    assert "distance before" in table and "label" not in table


def test_point_movement_table_rows_and_clean_zeros():
    step = gradient_step(ContrastiveLoss(), EMB_A, EMB_B, labels=LABELS, lr=0.2)
    table = point_movement_table(step)
    assert list(table.index) == pair_point_names(3) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    points = torch.cat([EMB_A, EMB_B])
    gradients = torch.cat(step.gradients[:2])
    for k, name in enumerate(table.index):
        expected = (points[k] - 0.2 * gradients[k]).tolist()
        assert table.loc[name, "moves to"] == pytest.approx(expected, abs=1e-4)
        assert table.loc[name, "|gradient|"] == pytest.approx(gradients[k].norm().item(), abs=1e-4)
    # the far negative gets exactly zero gradient; no "-0.0" may be shown for it
    assert all(str(x) != "-0.0" for row in table["gradient"] for x in row)
    with pytest.raises(ValueError, match="names"):
        point_movement_table(step, names=["x"])


def test_step_on_one_column_is_rejected():
    step = gradient_step(lambda x: (x**2).sum(), EMB_A)
    with pytest.raises(ValueError, match="two embedding columns"):
        pair_movement_table(step)


def test_gradient_step_warning_is_silenced_after_import():
    # pytest resets warning filters for every test, so check in a fresh interpreter, as a notebook runs it.
    code = ("import torch, labkit.course.toy_pairs\n"
            "from labkit.course.toy import gradient_step\n"
            "gradient_step(lambda x: (x ** 2).sum(), torch.ones(2, 2))\n"
            "print('ran')")
    result = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ran" in result.stdout, result.stderr
    assert "requires_grad" not in result.stderr


def test_plots():
    step = gradient_step(CoSENTLoss(), EMB_A, EMB_B, labels=torch.tensor([1.0, 0.5, 0.0]))
    ax = plot_pairs(EMB_A, EMB_B, [1.0, 0.5, 0.0], arrows=[-g for g in step.gradients[:2]], annotate_labels=True,
                    title="scores")
    assert len(ax.lines) >= 4 and ax.get_title() == "scores"
    plot_pairs(EMB_A, EMB_B, LABELS)
    plot_pairs(EMB_A, EMB_B)
    with pytest.raises(ValueError, match="2-D points"):
        plot_pairs(torch.zeros(3, 3), torch.zeros(3, 3))
    explanation = OnlineContrastiveLoss().explain(EMB_A, EMB_B, LABELS)
    ax = plot_hard_pair_selection(explanation)
    assert len(ax.collections) >= 3
    with pytest.raises(ValueError, match="OnlineContrastiveLoss"):
        plot_hard_pair_selection(ContrastiveLoss().explain(EMB_A, EMB_B, LABELS))
