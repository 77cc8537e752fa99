"""Mixed precision: every loss stays finite and computes in fp32 under autocast; bf16/fp16 training matches fp32.

What mixed precision changes for a loss: the encoder runs under ``torch.autocast``, so the embeddings a
loss receives are float16 (a T4) or bfloat16 (Ampere and newer, and CPUs), and any matrix product the loss
does inside the autocast region is run in half precision too. The contract tested here (issue 7, item 4):

* every loss gives a finite value and finite gradients under autocast, on hard inputs too: identical
  embeddings (distances 0, cosines 1), pairs whose two sides are equal (scale-20 logits at their maximum),
  and long vectors (norms in the thousands, where fp16, which stops at 65504, overflows a squared
  distance or a dot product);
* the loss is computed in fp32 from the half-precision embeddings (`labkit.distances.in_fp32`): its value
  equals the fp32 loss of the same (rounded) embeddings, and the gradient it sends back is that fp32
  gradient rounded once to the embeddings' dtype. Losses with a learned classifier head (SoftmaxLoss) are
  the exception by design: the head is a layer like the encoder's, and autocast runs it in half precision;
  their values are checked against a bound derived from the half-precision unit roundoff;
* `CachedMultipleNegativesRankingLoss` replays the caller's autocast in its second (backward) pass;
* `labkit.train.fit` with precision="bf16" or "fp16" (CPU autocast supports both in torch >= 2.1)
  reaches the fp32 run's held-out loss within a stated tolerance.

Embeddings "produced inside autocast" come from a linear layer run under autocast (a stand-in for the
encoder's last layer), so they are half precision exactly as a model's would be.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import labkit
import labkit.losses as L
from labkit.losses.pairs import SiameseDistanceMetric
from labkit.distances import dot_score

HALF_DTYPES = [torch.bfloat16, torch.float16]
UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}  # half the distance between neighbours at 1
BATCH, DIM = 16, 48


def _cpu_autocast_supports(dtype: torch.dtype) -> bool:
    with torch.autocast("cpu", dtype=dtype):
        return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype


pytestmark = pytest.mark.filterwarnings("ignore:.*GradScaler.*:UserWarning")


# ------------------------------------------------------------------------------------------------------------
# Every loss, with the inputs its forward takes
# ------------------------------------------------------------------------------------------------------------
def _binary(batch):  # 1 similar / 0 dissimilar, both present
    return torch.tensor([1, 0] * (batch // 2))


def _scores(batch):  # graded similarity scores in [0, 1], a fixed pattern with ties
    return torch.arange(batch, dtype=torch.float32) % 5 / 4


def _classes(batch):  # 4 classes of 4: every anchor has positives and negatives
    return torch.arange(batch) // 4


# name -> (constructor, call(loss, columns)); columns are four (B, D) embedding tensors.
LOSS_CASES = {
    "ContrastiveLoss": (L.ContrastiveLoss, lambda loss, c: loss(c[0], c[1], _binary(len(c[0])))),
    "OnlineContrastiveLoss": (L.OnlineContrastiveLoss, lambda loss, c: loss(c[0], c[1], _binary(len(c[0])))),
    "CosineSimilarityLoss": (L.CosineSimilarityLoss, lambda loss, c: loss(c[0], c[1], _scores(len(c[0])))),
    "CoSENTLoss": (L.CoSENTLoss, lambda loss, c: loss(c[0], c[1], _scores(len(c[0])))),
    "AnglELoss": (L.AnglELoss, lambda loss, c: loss(c[0], c[1], _scores(len(c[0])))),
    "SoftmaxLoss": (lambda: L.SoftmaxLoss(embedding_dimension=DIM, num_labels=3),
                    lambda loss, c: loss(c[0], c[1], torch.arange(len(c[0])) % 3)),
    "TripletLoss": (L.TripletLoss, lambda loss, c: loss(c[0], c[1], c[2])),
    "BatchAllTripletLoss": (L.BatchAllTripletLoss, lambda loss, c: loss(c[0], _classes(len(c[0])))),
    "BatchHardTripletLoss": (L.BatchHardTripletLoss, lambda loss, c: loss(c[0], _classes(len(c[0])))),
    "BatchHardSoftMarginTripletLoss": (L.BatchHardSoftMarginTripletLoss, lambda loss, c: loss(c[0], _classes(len(c[0])))),
    "BatchSemiHardTripletLoss": (L.BatchSemiHardTripletLoss, lambda loss, c: loss(c[0], _classes(len(c[0])))),
    "MultipleNegativesRankingLoss": (L.MultipleNegativesRankingLoss, lambda loss, c: loss(c[0], c[1], c[2])),
    "MultipleNegativesSymmetricRankingLoss": (L.MultipleNegativesSymmetricRankingLoss, lambda loss, c: loss(c[0], c[1])),
    "ContrastiveTensionLossInBatchNegatives": (L.ContrastiveTensionLossInBatchNegatives, lambda loss, c: loss(c[0], c[1])),
    "ClassificationLoss": (lambda: L.ClassificationLoss(embedding_dimension=DIM, num_labels=4),
                           lambda loss, c: loss(c[0], _classes(len(c[0])))),
    # The settings where half precision overflows first: Euclidean/Manhattan distances (a squared distance
    # above 65504 is inf in fp16) and dot products of long vectors (MNRL with dot_score, scale 1).
    "ContrastiveLoss[euclidean]": (lambda: L.ContrastiveLoss(distance_metric=SiameseDistanceMetric.EUCLIDEAN, margin=5.0),
                                   lambda loss, c: loss(c[0], c[1], _binary(len(c[0])))),
    "OnlineContrastiveLoss[manhattan]": (
        lambda: L.OnlineContrastiveLoss(distance_metric=SiameseDistanceMetric.MANHATTAN, margin=5.0),
        lambda loss, c: loss(c[0], c[1], _binary(len(c[0])))),
    "MultipleNegativesRankingLoss[dot]": (lambda: L.MultipleNegativesRankingLoss(scale=1.0, similarity_fct=dot_score),
                                          lambda loss, c: loss(c[0], c[1])),
    "ContrastiveTensionLossInBatchNegatives[dot]": (
        lambda: L.ContrastiveTensionLossInBatchNegatives(scale=1.0, similarity_fct=dot_score),
        lambda loss, c: loss(c[0], c[1])),
}
LOSS_CASES = {name: case for name, case in LOSS_CASES.items() if hasattr(L, name.split("[")[0])}
WITH_A_HEAD = {"SoftmaxLoss", "ClassificationLoss"}  # a learned nn.Linear that autocast runs in half on purpose


def _listed_losses() -> set[str]:
    """Every loss named in labkit.losses' *_LOSSES tuples."""
    return {name for key, names in vars(L).items() if key.endswith("_LOSSES") for name in names}


def _inputs(case: str) -> torch.Tensor:
    """(4, B, D) float32 inputs of the stand-in encoder layer for one hard case."""
    x = torch.randn(4, BATCH, DIM, generator=torch.Generator().manual_seed(1))
    if case == "identical":  # every embedding the same: distances 0, cosines 1, every softmax row flat
        x = x[0, 0].expand(4, BATCH, DIM).clone()
    elif case == "equal pairs":  # each anchor equals its positive: cos 1, scale-20 logits at their maximum
        x[1] = x[0]
    elif case == "long vectors":  # norms ~2,000: squared distances ~1e7, dot products ~1e6 (fp16 max 65504)
        x = x * 300.0
    return x


CASES = ["random", "identical", "equal pairs", "long vectors"]


def _run_under_autocast(name: str, case: str, dtype: torch.dtype):
    """The loss on half-precision embeddings made and consumed inside autocast; and its fp32 twin.

    Returns (value, grads of the half embeddings, grads of the layer's input, loss params' grads,
    fp32 value on the same rounded embeddings, fp32 grads of those embeddings, the half embeddings, loss).
    """
    make, call = LOSS_CASES[name]
    layer = nn.Linear(DIM, DIM)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(DIM))
        layer.bias.zero_()
    inputs = _inputs(case).requires_grad_()
    torch.manual_seed(0)
    loss_fn = make()
    with torch.autocast("cpu", dtype=dtype):
        columns = [layer(inputs[i]) for i in range(4)]
        for column in columns:
            column.retain_grad()
        value = call(loss_fn, columns)
    value.backward()
    head_grads = [p.grad for p in loss_fn.parameters() if p.requires_grad]

    torch.manual_seed(0)
    loss_fp32 = make()  # same initial parameters (same seed), no autocast
    columns_fp32 = [c.detach().float().requires_grad_() for c in columns]
    value_fp32 = call(loss_fp32, columns_fp32)
    value_fp32.backward()
    return {
        "value": value, "column_grads": [c.grad for c in columns], "input_grad": inputs.grad, "head_grads": head_grads,
        "value_fp32": value_fp32, "column_grads_fp32": [c.grad for c in columns_fp32], "columns": columns,
        "loss": loss_fn,
    }


# ------------------------------------------------------------------------------------------------------------
# Losses under autocast
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_cpu_autocast_runs_matrix_products_in_this_dtype(dtype):
    # If this fails, torch no longer supports this dtype in CPU autocast and the tests below prove nothing.
    assert _cpu_autocast_supports(dtype)


def test_every_listed_loss_is_checked_here():
    missing = _listed_losses() - set(LOSS_CASES)
    assert not missing, f"add {sorted(missing)} to LOSS_CASES in tests/test_precision.py (inputs of its forward)"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_loss_under_autocast_is_finite_and_computed_in_fp32(name, dtype, case):
    """Finite value and gradients; value = fp32 loss of the same rounded embeddings; gradient = that fp32
    gradient, rounded once.

    Tolerances: the value is compared at float32 precision (rtol 1e-5: the same operations in the same
    dtype, up to summation order). The gradient reaching a half-precision embedding is the fp32 gradient
    cast to its dtype, so each entry may differ by one rounding: rtol = the unit roundoff u of the dtype
    (2^-8 bf16, 2^-11 fp16), plus an absolute slack of u times the largest gradient entry for entries that
    are (mathematically) zero, where fp32 leaves rounding noise, and of half the spacing of subnormal
    numbers (2^-25 in fp16), below which a gradient cannot be represented at all (what fp16's loss scaling
    is for). Losses with a classifier head: see `_check_head_loss`.
    """
    run = _run_under_autocast(name, case, dtype)
    assert run["columns"][0].dtype == dtype  # the loss really received half-precision embeddings
    assert torch.isfinite(run["value"]), f"{name} gave {run['value'].item()} under {dtype} autocast ({case})"
    assert torch.isfinite(run["input_grad"]).all(), f"{name}: non-finite gradient under {dtype} autocast ({case})"
    assert all(torch.isfinite(g).all() for g in run["head_grads"] if g is not None)
    if name in WITH_A_HEAD:
        _check_head_loss(name, run, dtype)
        return
    assert run["value"].dtype == torch.float32, f"{name} returned a {run['value'].dtype} loss under autocast"
    torch.testing.assert_close(run["value"], run["value_fp32"], rtol=1e-5, atol=1e-6)
    u = UNIT_ROUNDOFF[dtype]
    for grad, grad_fp32 in zip(run["column_grads"], run["column_grads_fp32"]):
        if grad_fp32 is None:
            assert grad is None or not grad.any()
            continue
        scale = grad_fp32.abs().max().item()
        underflow = torch.finfo(dtype).smallest_normal * u  # half the spacing of subnormals: fp16 flushes tiny values
        torch.testing.assert_close(grad.float(), grad_fp32, rtol=u, atol=u * scale + underflow)


def _check_head_loss(name: str, run: dict, dtype: torch.dtype) -> None:
    """A classifier head runs in half under autocast (by design); its loss moves by at most its logits' error.

    Each logit is a dot product of a feature row and a weight row: rounding both to half changes every
    product by at most ~2u of its magnitude, so a logit moves by at most 2u * sum_k |w_k x_k| (+ u |b|), and
    a cross-entropy moves by at most twice the largest logit change. That bound is the tolerance.
    """
    head = next(m for m in run["loss"].modules() if isinstance(m, nn.Linear))
    columns = [c.detach().float() for c in run["columns"]]
    features = run["loss"].pair_features(columns[0], columns[1]) if name == "SoftmaxLoss" else columns[0]
    u = UNIT_ROUNDOFF[dtype]
    logit_error = 2 * u * (features.abs() @ head.weight.detach().abs().T) + u * head.bias.detach().abs()
    bound = 2 * logit_error.max().item() * 1.01
    assert abs(run["value"].item() - run["value_fp32"].item()) <= bound


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_long_vectors_overflow_in_half_precision_but_not_in_the_losses(dtype):
    """The failure the fp32 computation prevents: in fp16 a dot product or squared distance of these vectors
    is inf (and inf - inf = NaN in a softmax); the losses above were finite on the same inputs."""
    x = _inputs("long vectors")
    a, b = x[0].to(dtype), x[1].to(dtype)
    overflowed = not torch.isfinite((a * b).sum(dim=1)).all() or not torch.isfinite((a - b).pow(2).sum(dim=1)).all()
    assert overflowed == (dtype == torch.float16)  # bf16 has fp32's range: it only rounds
    value = L.MultipleNegativesRankingLoss(scale=1.0, similarity_fct=dot_score)(a, b)
    assert torch.isfinite(value)
    torch.testing.assert_close(value, L.MultipleNegativesRankingLoss(scale=1.0, similarity_fct=dot_score)(
        a.float(), b.float()), rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------------------------------------------------
# GradCache under autocast
# ------------------------------------------------------------------------------------------------------------
ANCHORS = [f"the {c} {t} number {i}" for i, (c, t) in enumerate(zip(["red", "blue", "green", "pink"] * 3,
                                                                    ["car", "lamp", "book"] * 4))]
POSITIVES = [f"a {t} that is {c}" for c, t in zip(["red", "blue", "green", "pink"] * 3, ["car", "lamp", "book"] * 4)]


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_cached_loss_replays_autocast_in_its_backward_pass(dtype):
    """Step 3 (inside loss.backward(), outside the caller's autocast) must embed exactly as step 1 did."""
    model = labkit.tiny_model(seed=0).train()  # dropout on: RandContext must replay it too
    features = [model.tokenize(ANCHORS), model.tokenize(POSITIVES)]
    embedded = []  # (grad enabled?, autocast on?, embeddings) of every model call
    forward = model.forward

    def spy(batch):
        out = forward(batch)
        embedded.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), out.detach().clone()))
        return out

    model.forward = spy
    loss_fn = L.CachedMultipleNegativesRankingLoss(model, mini_batch_size=4)
    with torch.autocast("cpu", dtype=dtype):
        loss = loss_fn(features)
    assert not torch.is_autocast_enabled("cpu")
    loss.backward()
    first = [e for grad, _, e in embedded if not grad]
    second = [(on, e) for grad, on, e in embedded if grad]
    assert len(first) == len(second) == 6
    assert all(on for on, _ in second), "the backward pass ran without the caller's autocast"
    for before, (_, again) in zip(first, second):
        assert torch.equal(before, again)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------------------------------
# A short training run: bf16 / fp16 against fp32
# ------------------------------------------------------------------------------------------------------------
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "pink", "brown"]
THINGS = ["apple", "car", "house", "river", "cloud", "shoe", "lamp", "book"]


def _pairs(count: int, offset: int) -> tuple[list[str], list[str]]:
    """(anchor, positive) pairs that share a colour and a thing: learnable from the tokens by a tiny model."""
    rows = [(COLOURS[i % 8], THINGS[(i // 8) % 8], i) for i in range(offset, offset + count)]
    return [f"the {c} {t} number {i}" for c, t, i in rows], [f"a {t} that is {c}" for c, t, _ in rows]


def _train(precision: str):
    from labkit.collate import PairDataset
    from labkit.train import fit

    train_anchors, train_positives = _pairs(64, 0)
    heldout_anchors, heldout_positives = _pairs(32, 64)

    def heldout_loss(model):  # evaluated in fp32 (no autocast here): the metric itself carries no rounding
        with torch.no_grad():
            return {"heldout_mnrl": L.MultipleNegativesRankingLoss()(
                model(model.tokenize(heldout_anchors)), model(model.tokenize(heldout_positives))).item()}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 on a CPU: "GradScaler is enabled, but CUDA is not available"
        return fit(labkit.tiny_model(seed=0), L.MultipleNegativesRankingLoss(), PairDataset(train_anchors, train_positives),
                   batch_size=16, steps=12, lr=2e-3, warmup_ratio=0.0, precision=precision, evaluator=heldout_loss,
                   restore_best=False, show_progress=False, live_plot=False, seed=0, device="cpu")


@pytest.fixture(scope="module")
def fp32_run():
    return _train("fp32")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_short_training_run_in_half_precision_matches_fp32(precision, fp32_run):
    """Same seed, same batches, same start: only the rounding differs.

    Tolerance: the held-out loss after 12 steps within 2% (relative) of the fp32 run's. bf16 keeps 8
    significant bits (a relative rounding error of 2^-8 = 0.4% per operation), fp16 11 bits; 12 AdamW
    steps on gradients with that error move the weights slightly differently, and 2% is five bf16
    roundings: far inside the effect of training itself, which the test requires to be much larger
    (the held-out loss must fall by more than half).
    """
    half_run = _train(precision)
    start, fp32_end = fp32_run.evaluations[0]["heldout_mnrl"], fp32_run.evaluations[-1]["heldout_mnrl"]
    half_end = half_run.evaluations[-1]["heldout_mnrl"]
    assert fp32_end < start / 2 and half_end < start / 2  # both runs learned something
    assert math.isclose(half_end, fp32_end, rel_tol=0.02), f"{precision} {half_end:.4f} vs fp32 {fp32_end:.4f}"
    fp32_losses = [row["loss"] for row in fp32_run.losses]
    half_losses = [row["loss"] for row in half_run.losses]
    assert all(math.isfinite(v) for v in half_losses)
    assert half_losses != fp32_losses  # autocast did change the arithmetic: this was not an fp32 run twice
    for fp32_value, half_value in zip(fp32_losses, half_losses):
        assert math.isclose(half_value, fp32_value, rel_tol=0.02, abs_tol=1e-3)


def test_fp16_training_scales_the_loss_on_this_device(tmp_path):
    """With precision='fp16' fit() must use a working gradient scaler (its state is saved in the checkpoint)."""
    from labkit.collate import PairDataset
    from labkit.train import CHECKPOINT_FILE, fit

    anchors, positives = _pairs(32, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(labkit.tiny_model(seed=0), L.MultipleNegativesRankingLoss(), PairDataset(anchors, positives), batch_size=16,
            steps=2, precision="fp16", output_dir=tmp_path, show_progress=False, live_plot=False, device="cpu")
    scaler_state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=False)["scaler"]
    assert scaler_state.get("scale", 0) > 0  # an enabled scaler saves its current scale
