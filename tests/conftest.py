"""Shared fixtures. Tests run offline, on the CPU, in fast mode (the Makefile sets the environment)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# tests/ holds reference helpers (st_stub, naive loops) imported by several test files.
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LABKIT_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The read-only dataset mirror: LABKIT_DATA_DIR, or ../shared/datasets beside the checkout."""
    path = Path(os.environ.get("LABKIT_DATA_DIR") or MIRROR)
    if not (path / "banking77").is_dir():
        pytest.skip(f"dataset mirror not found at {path}: set LABKIT_DATA_DIR to a folder laid out like it")
    return path


@pytest.fixture(scope="session")
def minilm():
    """The offline default model, loaded once for the whole session (about 3 s)."""
    import labkit

    return labkit.load_model(device="cpu")


@pytest.fixture()
def tiny():
    import labkit

    return labkit.tiny_model(seed=0)


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory) -> Path:
    """A 3-layer, 32-wide random BERT saved in sentence-transformers format, for tests that load it into both
    labkit and sentence-transformers (the same weights on both sides)."""
    import labkit

    folder = tmp_path_factory.mktemp("tiny") / "model"
    labkit.tiny_model(seed=0, hidden_size=32, num_layers=3).save(folder)
    return folder


def pytest_collectstart(collector):
    # nbval compares notebook outputs; stderr (warnings, progress bars) is not part of what we promise.
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "application/vnd.jupyter.widget-view+json", "image/png", "text/html")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-tensor tests: a second OpenMP thread only adds spin-waiting (50x
    slower on a busy machine). Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
