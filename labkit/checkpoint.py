"""Checkpoints: one file from which a training run goes on exactly as if it had never stopped.

A checkpoint holds the state dicts of the parts that learn or count (model, loss, optimizer, learning-rate
scheduler, gradient scaler), where the run is and what it has seen so far (step, epoch, batch within the
epoch, history, best model: whatever the caller passes), and the states of the random number generators
(Python, NumPy, torch, CUDA), so dropout and shuffling go on as they would have.

It is written to a temporary file that then replaces the previous checkpoint in one rename: a crash or a
Ctrl-C while writing leaves the previous checkpoint intact.

`labkit.train.fit` writes one into its ``output_dir`` and reads it back with ``resume=True``.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"


def rng_state() -> dict:
    """The states of Python's, NumPy's and torch's random number generators (every CUDA device's too)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put the random number generators back in a state from `rng_state()`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, parts: Mapping[str, Any], **progress) -> None:
    """Write the state dict of each of `parts` (under its name), `progress` and the RNG states to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    states = {name: part.state_dict() for name, part in parts.items()}
    torch.save({**states, **progress, "rng": rng_state()}, tmp)
    tmp.replace(path)  # atomic: a crash mid-write never corrupts the previous checkpoint


def load_checkpoint(path: Path, parts: Mapping[str, Any], device: torch.device) -> dict:
    """Load each of `parts` from the checkpoint at `path`; return the whole checkpoint (progress, "rng").

    The RNG states are not restored here: `fit` restores them (`set_rng_state`) only once its data loader
    has started, since starting one draws from them; the resumed run then draws what the saved run would have.
    """
    saved = torch.load(path, map_location=device, weights_only=False)
    for name, part in parts.items():
        part.load_state_dict(saved[name])
    return saved
