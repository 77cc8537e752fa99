"""Recipes: the training runs of the notebooks as one function each, so later notebooks reuse them.

`train_banking77_batch_hard` is the run of notebooks/09_training.ipynb: all-MiniLM-L6-v2 fine-tuned on
Banking77's train split (minus a 10 % dev split) with P×K batches and `BatchHardTripletLoss(margin=0.5)`,
AdamW at 1e-4 with 10 % linear warm-up, texts cut at 32 tokens, `budget.train_steps` steps, the checkpoint
with the best dev MAP@R kept (the test split is never looked at while training). Notebook 09 builds it cell by cell to teach it; notebooks 10 and
later call it here to get the trained model without copying that code.

**The model cache.** Training takes minutes on a CPU, so the trained model is saved (sentence-transformers
format, written to a temporary folder and renamed into place, so a crash never leaves half a model) under
``labkit.data.cache_dir() / "models"``, in a folder whose name holds a hash of *everything that changes the
weights*: the starting weights themselves (a hash of the model's parameters, so a model that was already
fine-tuned never matches the pristine one), pooling and normalisation, the training texts and labels, steps,
P, K, max length, margin, learning rate, warm-up, seed, the arithmetic precision (bf16 or fp32 on a CPU, bf16/fp16 on
a GPU) and a recipe version. Running notebook 10 twice, or notebook 11 after 10, loads the saved model in a
second instead of training again; change any setting and it trains afresh. ``cache=False`` always trains and
saves nothing. Fast mode (CI) has its own, different budget, so its 6-step model never stands in for the
300-step one, nor the other way round. Delete the folder (`cached_model_dir` tells you which) to retrain.

Taught in notebooks/09_training.ipynb (the recipe, step by step); used by notebooks/10_clusters.ipynb.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from labkit import data
from labkit.env import Budget, current, pick_device, seed_everything

__all__ = ["banking77_splits", "train_banking77_batch_hard", "cached_model_dir", "models_cache_dir", "recipe_max_length",
           "RECIPE_VERSION"]

# Bump when the recipe's code changes what it trains, so models saved by the old code are not reused.
RECIPE_VERSION = 2  # 2: dev split carved from train, best checkpoint by dev MAP@R, lr 1e-4, 32 tokens
RECIPE_FILE = "recipe.json"


def _budget_and_seed(budget: Budget | None, seed: int | None) -> tuple[Budget, int]:
    """The caller's budget and seed, or those of the last `labkit.setup()`."""
    if budget is None or seed is None:
        lab = current()
        budget = lab.budget if budget is None else budget
        seed = lab.seed if seed is None else seed
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a labkit Budget (lab.budget), got {type(budget).__name__}.")
    return budget, int(seed)


def banking77_splits(budget: Budget | None = None, seed: int | None = None, data_dir=None
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, dev, heldout) exactly as notebook 09 builds them.

    train: Banking77's train split minus a stratified 10 % dev split, cut to ``budget.train_subset`` rows
    (stratified, fixed by `seed`; 0 = all), without the classes that have fewer than ``budget.batch_k`` rows
    (a P×K batch needs K of a class). dev: that 10 %, cut to ``budget.eval_subset`` rows: what training
    selects on. heldout: the test split cut to ``budget.eval_subset`` rows; never trained or selected on.
    All keep the columns ``text``, ``label``, ``label_name`` and ``attrs["label_names"]`` of
    `labkit.data.load_banking77`.
    """
    budget, seed = _budget_and_seed(budget, seed)
    full_train, full_test = data.load_banking77("train", data_dir), data.load_banking77("test", data_dir)
    train, dev = data.train_dev_split(full_train, dev_size=0.1, seed=seed)
    train = data.drop_small_classes(data.stratified_subset(train, budget.train_subset, seed=seed), budget.batch_k)
    dev = data.stratified_subset(dev, budget.eval_subset, seed=seed)
    heldout = data.stratified_subset(full_test, budget.eval_subset, seed=seed)
    for frame in (train, dev, heldout):  # subsets may lose the attrs; keep the intent names with the rows
        frame.attrs.update(dataset="banking77", label_names=full_train.attrs["label_names"])
    return train, dev, heldout


# --------------------------------------------------------------------------------------------------------------
# The cache key: a hash of everything that changes the trained weights
# --------------------------------------------------------------------------------------------------------------
def models_cache_dir() -> Path:
    """Where recipes keep trained models: ``labkit.data.cache_dir() / "models"`` (set LABKIT_CACHE_DIR to move it)."""
    return data.cache_dir() / "models"


def _weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every parameter and buffer (names, dtypes, shapes, values): the starting point of training."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _data_fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    digest.update("\x1f".join(frame["text"].astype(str)).encode())
    digest.update(np.ascontiguousarray(frame["label"].to_numpy(np.int64)).tobytes())
    return digest.hexdigest()


def _recipe_settings(model, train: pd.DataFrame, dev: pd.DataFrame, budget: Budget, seed: int, margin: float,
                     lr: float, warmup_ratio: float, precision: str) -> dict:
    return {
        "recipe": "banking77-batch-hard", "version": RECIPE_VERSION,
        "base_weights": _weights_fingerprint(model), "base_name": str(getattr(model, "name_or_path", None)),
        "pooling": getattr(model, "pooling", None), "normalize": getattr(model, "normalize", None),
        "train_data": _data_fingerprint(train), "train_rows": len(train),
        # the checkpoint kept is the best on dev, so the dev data and how often it is read change the weights too
        "dev_data": _data_fingerprint(dev), "eval_every": budget.eval_every,
        "steps": budget.train_steps, "batch_p": budget.batch_p, "batch_k": budget.batch_k,
        "max_length": recipe_max_length(budget), "margin": float(margin), "lr": float(lr),
        "warmup_ratio": float(warmup_ratio), "seed": seed, "precision": precision,
    }


def recipe_max_length(budget: Budget) -> int:
    """Tokens per text: Banking77's questions are short (notebook 09 prints how few exceed 32)."""
    return min(budget.max_length, 32)


def _folder_name(settings: dict) -> str:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"banking77-batch-hard-{settings['steps']}steps-{key}"


def cached_model_dir(model, budget: Budget | None = None, seed: int | None = None, margin: float = 0.5,
                     lr: float = 1e-4, warmup_ratio: float = 0.1, device=None, data_dir=None) -> Path:
    """The folder where `train_banking77_batch_hard` keeps (or would keep) the model trained with these settings."""
    budget, seed = _budget_and_seed(budget, seed)
    from labkit.train import precision_for

    train, dev, _ = banking77_splits(budget, seed, data_dir)
    settings = _recipe_settings(model, train, dev, budget, seed, margin, lr, warmup_ratio,
                                precision_for(pick_device(device)))
    return models_cache_dir() / _folder_name(settings)


def _load_cached(model, folder: Path) -> bool:
    """Copy the saved weights into `model`; False (with a warning) when the folder cannot be read.

    The transformer's weights are read straight from the saved file and must match `model`'s own parameter
    names and shapes exactly (strict), so a folder written for another architecture is never half-loaded.
    """
    from safetensors.torch import load_file

    try:
        state = load_file(folder / "model.safetensors", device=str(model.device))
        model.transformer.load_state_dict(state, strict=True)
    except Exception as error:  # unreadable, truncated or foreign: train again rather than fail
        warnings.warn(f"Could not load the cached model in {folder} ({type(error).__name__}: {error}); "
                      "training again. Delete that folder if this keeps happening.", stacklevel=3)
        return False
    return True


def _save_cached(model, folder: Path, settings: dict, seconds: float) -> None:
    """Save the model and its settings into a temporary folder, then rename it into place (atomic)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            model.save(staging / "model")
            (staging / "model" / RECIPE_FILE).write_text(
                json.dumps({**settings, "train_seconds": round(seconds, 1)}, indent=2))
            if folder.exists():
                shutil.rmtree(folder)
            (staging / "model").rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:  # a read-only or full disk must not throw away a finished training run
        warnings.warn(f"Could not save the trained model to {folder} ({error}); it is only in memory.", stacklevel=3)


# --------------------------------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------------------------------
def train_banking77_batch_hard(
    model,
    budget: Budget | None = None,
    seed: int | None = None,
    *,
    margin: float = 0.5,
    lr: float = 1e-4,
    warmup_ratio: float = 0.1,
    cache: bool = True,
    device=None,
    data_dir=None,
    show_progress: bool = True,
    live_plot: bool = False,
):
    """Fine-tune `model` in place on Banking77 with batch-hard triplets, as notebook 09 does; return (model, result).

    The run: ``PKBatchSampler(train.label, budget.batch_p, budget.batch_k, seed)``, `BatchHardTripletLoss`
    (Euclidean, `margin` 0.5: room for it on the unit sphere, see notebook 09), `labkit.train.fit` with AdamW
    at `lr` 1e-4, `warmup_ratio` 0.1 then linear decay, ``budget.train_steps`` steps, `recipe_max_length`
    tokens, evaluated on the dev split every ``budget.eval_every`` steps with the best dev MAP@R kept, as
    notebook 09 does (the test split is not used). The global random state is seeded with `seed` just before
    training, so the same settings give the same weights whatever ran before.

    Args:
        model: an `EmbeddingModel`, usually ``labkit.load_model()``. Trained in place, like `fit` does:
            encode your "before" embeddings first, or pass a second copy.
        budget, seed: default to ``lab.budget`` and ``lab.seed`` of the last `labkit.setup()`.
        cache: load the model trained with identical settings from the cache when it is there, and save it
            there after training (see the module docstring); False always trains and saves nothing.

    Returns:
        (model, result): `result` is `fit`'s `TrainResult` (history, seconds), or None when the weights came
        from the cache.
    """
    from labkit.losses.triplets import BatchHardTripletLoss
    from labkit.sampling import PKBatchSampler
    from labkit.collate import TextDataset
    from labkit.evaluate import evaluate_retrieval
    from labkit.train import fit, precision_for

    budget, seed = _budget_and_seed(budget, seed)
    if not hasattr(model, "tokenizer") or not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a labkit EmbeddingModel (labkit.load_model()), got {type(model).__name__}.")
    if not margin > 0 or not lr > 0 or not 0 <= warmup_ratio < 1:
        raise ValueError(f"Need margin > 0, lr > 0 and 0 <= warmup_ratio < 1; got margin={margin}, lr={lr}, "
                         f"warmup_ratio={warmup_ratio}.")
    if budget.train_steps < 1:
        raise ValueError(f"budget.train_steps must be at least 1, got {budget.train_steps}.")

    train, dev, _ = banking77_splits(budget, seed, data_dir)
    device = pick_device(device)
    folder = None
    if cache:
        settings = _recipe_settings(model, train, dev, budget, seed, margin, lr, warmup_ratio, precision_for(device))
        folder = models_cache_dir() / _folder_name(settings)
        if (folder / RECIPE_FILE).exists() and _load_cached(model.to(device), folder):
            print(f"Loaded the trained model from the cache: {folder}")
            return model.eval(), None

    seed_everything(seed)
    result = fit(
        model, BatchHardTripletLoss(margin=margin), TextDataset(train["text"].tolist(), train["label"].tolist()),
        batch_sampler=PKBatchSampler(train["label"], budget.batch_p, budget.batch_k, seed=seed),
        steps=budget.train_steps, lr=lr, warmup_ratio=warmup_ratio, max_length=recipe_max_length(budget),
        evaluator=lambda m: evaluate_retrieval(m, dev["text"], dev["label"].to_numpy(),
                                               batch_size=budget.encode_batch_size),
        metric="mean_average_precision_at_r", eval_every=budget.eval_every,
        seed=seed, device=device, show_progress=show_progress, live_plot=live_plot,
    )
    model.eval()
    if folder is not None and not result.interrupted:
        _save_cached(model, folder, settings, result.seconds)
        print(f"Trained in {result.seconds:.0f} s and saved to the cache: {folder}")
    return model, result
