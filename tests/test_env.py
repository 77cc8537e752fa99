from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from labkit import env


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"LABKIT_FAST": "1"}, True),
        ({"CI": "true", "LABKIT_FAST": "0"}, False),
        ({"LABKIT_FAST": "off"}, False),
    ],
)
def test_fast_mode_follows_environment(monkeypatch, environ, expected):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("LABKIT_FAST", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert env.fast_mode_requested() is expected
    lab = env.setup(quiet=True)
    assert lab.fast is expected
    assert lab.budget == (env.FAST if expected else env.FULL)


def test_fast_budgets_are_smaller_everywhere():
    for field in ("train_steps", "max_length", "umap_points"):
        assert getattr(env.FAST, field) < getattr(env.FULL, field)
    # a fast subset of 0 would mean "everything": it must be a real limit
    assert env.FAST.train_subset > 0 and env.FAST.eval_subset > 0


def test_setup_seeds_every_generator():
    env.setup(seed=123, quiet=True)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    env.setup(seed=123, quiet=True)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_setup_prints_device_and_mode(capsys):
    lab = env.setup(fast=True)
    out = capsys.readouterr().out
    assert str(lab.device) in out and "fast mode" in out and "bf16" in out


def test_device_choice_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert env.pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert env.pick_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert env.pick_device() == torch.device("cuda")
    assert env.pick_device("cpu") == torch.device("cpu")


def test_colab_without_gpu_says_how_to_switch_one_on(monkeypatch, capsys):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    env.setup(device="cpu")
    assert "Change runtime type" in capsys.readouterr().out


def test_budget_overrides_keep_the_rest():
    env.setup(fast=True, quiet=True)
    changed = env.budget(train_steps=999)
    assert changed.train_steps == 999 and changed.max_length == env.FAST.max_length
