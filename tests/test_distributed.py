"""Several processes (torchrun / DDP, gloo on the CPU) train on one big batch, exactly like one process would.

Two processes are started once (``torch.multiprocessing``, gloo backend) and run every scenario below on their
share of the data; each writes what it saw to a file. The tests then compare it with the same computation done
here, in a single process, on the concatenated batch: loss values, gradients after DDP's averaging, weights
after `fit()`. A last test runs ``torchrun --nproc_per_node=2 -m labkit train`` itself.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import labkit
from labkit import distributed
from labkit import losses as L
from labkit.sampling import FixedBatchSampler, NoDuplicatesBatchSampler, PKBatchSampler
from labkit.collate import PairDataset, TextDataset
from labkit.train import EpochBatches, compute_loss, fit

WORLD_SIZE = 2
ROWS_PER_RANK = 4
TEXTS = [f"sentence {i} about {['cats', 'dogs', 'rain', 'sun', 'trains', 'tea'][i % 6]} and more {i % 5}"
         for i in range(48)]
LABELS = [i % 6 for i in range(48)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# The data every scenario uses: the global batch, and each rank's rows of it
# ---------------------------------------------------------------------------------------------------------
def global_columns(num_columns: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(WORLD_SIZE * ROWS_PER_RANK, 6, generator=generator, dtype=torch.float64)
            for _ in range(num_columns)]


# Each rank holds two classes, so a loss computed on one rank's rows alone misses the other rank's negatives.
GLOBAL_LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def rows_of(tensor: torch.Tensor, rank: int) -> torch.Tensor:
    return tensor[rank * ROWS_PER_RANK : (rank + 1) * ROWS_PER_RANK]


class Projection(nn.Module):
    """A linear 'encoder' over feature vectors, called like an EmbeddingModel: model({"x": rows})."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(6, 5, dtype=torch.float64)

    def forward(self, features):
        return self.linear(features["x"])


LOSSES = {
    # name: (make the loss, number of text columns, labelled batch?)
    "MultipleNegativesRankingLoss": (L.MultipleNegativesRankingLoss, 3, False),  # anchor, positive, hard negative
    "MultipleNegativesSymmetricRankingLoss": (L.MultipleNegativesSymmetricRankingLoss, 2, False),
    "ContrastiveTensionLossInBatchNegatives": (L.ContrastiveTensionLossInBatchNegatives, 2, False),  # learnable scale
    "BatchHardTripletLoss": (L.BatchHardTripletLoss, 1, True),
    "BatchAllTripletLoss": (L.BatchAllTripletLoss, 1, True),
    "BatchSemiHardTripletLoss": (L.BatchSemiHardTripletLoss, 1, True),
}


def loss_inputs(name: str, rank: int | None):
    """(features, labels) of the whole batch (rank None) or of one rank's share."""
    _, num_columns, labelled = LOSSES[name]
    columns = global_columns(num_columns, seed=len(name))
    take = (lambda t: t) if rank is None else (lambda t: rows_of(t, rank))
    if labelled:
        return {"x": take(columns[0])}, take(GLOBAL_LABELS)
    return [{"x": take(column)} for column in columns], None


def gradients(*modules: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{i}.{name}": p.grad.detach().clone() for i, m in enumerate(modules) for name, p in m.named_parameters()}


def gather_function(y: torch.Tensor, rank: int) -> torch.Tensor:
    """A different function of the gathered tensor on every rank, to see how the gather's backward combines them."""
    coefficient = torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape) / 10 + rank
    return (coefficient * y.sin()).sum() + (y @ y.T).pow(2).sum() / 100


@functools.lru_cache(maxsize=1)
def _tiny_model_without_dropout() -> nn.Module:
    model = labkit.tiny_model(seed=0).double()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def no_dropout_tiny_model() -> nn.Module:
    """tiny_model in float64, without dropout: two processes and one draw different dropout masks."""
    return copy.deepcopy(_tiny_model_without_dropout())


def fit_triplets(sampler, out=None):
    model = no_dropout_tiny_model()
    result = fit(model, L.BatchHardTripletLoss(), TextDataset(TEXTS, LABELS), batch_sampler=sampler, steps=2, lr=1e-3,
                 warmup_ratio=0.0, device="cpu", show_progress=False, output_dir=out)
    return model, result


def fit_pairs(batch_size):
    model = no_dropout_tiny_model()
    pairs = PairDataset(TEXTS[:24], TEXTS[24:])
    result = fit(model, L.MultipleNegativesRankingLoss(), pairs, batch_size=batch_size, steps=2, grad_accum_steps=2,
                 lr=1e-3, warmup_ratio=0.0, device="cpu", show_progress=False)
    return model, result


# ---------------------------------------------------------------------------------------------------------
# What each of the two processes runs
# ---------------------------------------------------------------------------------------------------------
def worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    world = distributed.init_from_env(timeout_s=120)
    seen = {"world": (world.rank, world.size, world.is_main), "out_dir": out_dir}

    # 1. the gather and its gradient
    x = rows_of(global_columns(1, seed=0)[0], rank).clone().requires_grad_()
    y = distributed.all_gather_with_grad(x)
    gather_function(y, rank).backward()
    seen["gathered"], seen["gather_grad"] = y.detach(), x.grad

    # 2. every in-batch loss through the DDP module fit() uses: value and gradients after DDP's averaging
    for name, (make_loss, _, _) in LOSSES.items():
        model, loss = Projection(), make_loss()
        batch_loss = distributed.data_parallel(model, loss, compute_loss, torch.device("cpu"))
        features, labels = loss_inputs(name, rank)
        value = batch_loss(features, labels)
        value.backward()
        seen[name] = {"value": value.detach(), "grads": gradients(model, loss)}

    # 3. fit(): P×K batches shared between the processes, and shuffled pair batches with accumulation
    model, result = fit_triplets(PKBatchSampler(LABELS, p=2, k=2, seed=0), out=Path(out_dir) / f"run_of_rank{rank}")
    seen["fit_triplets"] = {"state": model.state_dict(), "losses": [r["loss"] for r in result.losses]}
    model, result = fit_pairs(batch_size=3)
    seen["fit_pairs"] = {"state": model.state_dict(), "losses": [r["loss"] for r in result.losses]}

    # 4. what is refused, with a message that says why
    errors = {}
    try:
        fit_triplets(FixedBatchSampler(LABELS, p=2, k=2))
    except ValueError as err:
        errors["unshared_sampler"] = str(err)
    try:
        distributed.GatheredLoss(L.CachedMultipleNegativesRankingLoss(Projection()))
    except ValueError as err:
        errors["cached"] = str(err)
    seen["errors"] = errors

    torch.save(seen, Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run `worker` in two processes once; return what each saw."""
    out_dir = tmp_path_factory.mktemp("ranks")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    context = torch.multiprocessing.start_processes(worker, args=(free_port(), str(out_dir)), nprocs=WORLD_SIZE,
                                                    join=False, start_method="spawn")
    deadline = time.monotonic() + 240
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two processes did not finish within 240 s (a collective waiting forever?)")
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


# ---------------------------------------------------------------------------------------------------------
# Tests against the single-process computation
# ---------------------------------------------------------------------------------------------------------
def test_each_process_knows_its_place(ranks):
    assert [r["world"] for r in ranks] == [(0, 2, True), (1, 2, False)]


def test_gather_concatenates_in_rank_order_and_sums_the_gradients_of_all_processes(ranks):
    whole = global_columns(1, seed=0)[0].requires_grad_()
    # what each rank's function asks of every slot, computed here on the whole batch
    asked = [torch.autograd.grad(gather_function(whole, rank), whole)[0] for rank in range(WORLD_SIZE)]
    for rank, seen in enumerate(ranks):
        torch.testing.assert_close(seen["gathered"], whole.detach(), rtol=0, atol=0)
        expected = sum(rows_of(grad, rank) for grad in asked)  # the backward sums over the processes
        torch.testing.assert_close(seen["gather_grad"], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_and_gradients_equal_one_process_on_the_concatenated_batch(ranks, name):
    make_loss, _, _ = LOSSES[name]
    model, loss = Projection(), make_loss()
    features, labels = loss_inputs(name, rank=None)
    value = compute_loss(model, loss, features, labels)
    value.backward()
    for seen in ranks:
        torch.testing.assert_close(seen[name]["value"], value.detach(), rtol=0, atol=1e-10)
        expected = gradients(model, loss)
        assert seen[name]["grads"].keys() == expected.keys()
        for param, grad in expected.items():
            torch.testing.assert_close(seen[name]["grads"][param], grad, rtol=0, atol=1e-10, msg=param)

    # The comparison can fail: each rank's loss on its own rows alone is a different number.
    local_values = [compute_loss(model, loss, *loss_inputs(name, rank)).item() for rank in range(WORLD_SIZE)]
    assert min(abs(v - value.item()) for v in local_values) > 1e-6


def test_fit_on_two_processes_equals_fit_on_their_global_batches(ranks):
    one_process, result = fit_triplets(PKBatchSampler(LABELS, p=4, k=2, seed=0, num_replicas=1, rank=0))
    for seen in ranks:
        assert seen["fit_triplets"]["losses"] == pytest.approx([r["loss"] for r in result.losses], abs=1e-10)
        for name, weight in one_process.state_dict().items():
            torch.testing.assert_close(seen["fit_triplets"]["state"][name], weight, rtol=0, atol=1e-9, msg=name)
    initial = no_dropout_tiny_model().state_dict()
    assert any(not torch.equal(initial[name], weight) for name, weight in one_process.state_dict().items())


def test_fit_with_shuffled_pairs_and_accumulation_equals_one_process(ranks):
    one_process, result = fit_pairs(batch_size=WORLD_SIZE * 3)
    for seen in ranks:
        assert seen["fit_pairs"]["losses"] == pytest.approx([r["loss"] for r in result.losses], abs=1e-10)
        for name, weight in one_process.state_dict().items():
            torch.testing.assert_close(seen["fit_pairs"]["state"][name], weight, rtol=0, atol=1e-9, msg=name)


def test_only_rank_0_writes_files(ranks):
    out_dir = Path(ranks[0]["out_dir"])
    assert sorted(p.name for p in (out_dir / "run_of_rank0").iterdir()) == ["checkpoint.pt", "model"]
    assert (out_dir / "run_of_rank0" / "model" / "config.json").exists()
    assert not (out_dir / "run_of_rank1").exists()


def test_what_cannot_be_shared_between_processes_is_refused_clearly(ranks):
    for seen in ranks:
        assert "2 process(es) are training, but FixedBatchSampler shares each batch between 1" in (
            seen["errors"]["unshared_sampler"])
        assert "GradCache" in seen["errors"]["cached"]


# ---------------------------------------------------------------------------------------------------------
# Sharded samplers (no processes needed: each rank's sampler is built here)
# ---------------------------------------------------------------------------------------------------------
UNEVEN_LABELS = np.repeat(np.arange(7), [5, 6, 7, 8, 9, 10, 11])


@pytest.mark.parametrize("num_replicas", [2, 3])
def test_pk_sampler_gives_each_rank_disjoint_whole_classes_of_the_global_batch(num_replicas):
    p, k = 2, 3
    samplers = [PKBatchSampler(UNEVEN_LABELS, p, k, seed=3, num_replicas=num_replicas, rank=r)
                for r in range(num_replicas)]
    one_process = PKBatchSampler(UNEVEN_LABELS, num_replicas * p, k, seed=3, num_replicas=1, rank=0)
    assert {len(s) for s in samplers} == {len(one_process)} and len(one_process) > 0
    for epoch in (0, 1):
        per_rank = [s.batches_for_epoch(epoch) for s in samplers]
        for step, global_batch in enumerate(one_process.batches_for_epoch(epoch)):
            shares = [batches[step] for batches in per_rank]
            assert sum(shares, []) == global_batch  # gathered in rank order: the single-process batch
            for share in shares:
                classes, counts = np.unique(UNEVEN_LABELS[share], return_counts=True)
                assert len(classes) == p and set(counts) == {k}
            assert len(set(sum(shares, []))) == num_replicas * p * k  # no index on two ranks
        used = np.concatenate([np.concatenate(batches) for batches in per_rank])
        assert len(np.unique(used)) == len(used)  # each example at most once per epoch, over all ranks
    assert list(samplers[1]) == samplers[1].batches_for_epoch(0)  # iterating gives the same share


def test_no_duplicates_sampler_shares_duplicate_free_global_batches():
    rows = [(f"question {i}", f"answer {i % 17}") for i in range(60)]
    samplers = [NoDuplicatesBatchSampler(rows, batch_size=4, seed=1, num_replicas=2, rank=r) for r in range(2)]
    one_process = NoDuplicatesBatchSampler(rows, batch_size=8, seed=1, num_replicas=1, rank=0)
    assert len(samplers[0]) == len(samplers[1]) == len(one_process)
    for step, global_batch in enumerate(one_process.batches_for_epoch(0)):
        gathered = samplers[0].batches_for_epoch(0)[step] + samplers[1].batches_for_epoch(0)[step]
        assert gathered == global_batch
        texts = [text for i in gathered for text in rows[i]]
        assert len(set(texts)) == len(texts)  # no text twice in the gathered batch


def test_shuffled_batches_without_a_sampler_are_shared_too():
    shares = [EpochBatches(50, None, 4, seed=5, world=distributed.World(rank=r, size=2))(0) for r in range(2)]
    one_process = EpochBatches(50, None, 8, seed=5)(0)
    assert len(shares[0]) == len(shares[1]) == len(one_process) == 6
    assert [a + b for a, b in zip(*shares)] == one_process


def test_samplers_read_their_share_from_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    sampler = PKBatchSampler(UNEVEN_LABELS, 2, 3, seed=3)
    assert (sampler.num_replicas, sampler.rank) == (2, 1)
    assert FixedBatchSampler(UNEVEN_LABELS, 2, 3).batches == PKBatchSampler(
        UNEVEN_LABELS, 2, 3, num_replicas=1, rank=0).batches_for_epoch(0)  # evaluation batches are never shared
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert PKBatchSampler(UNEVEN_LABELS, 2, 3).num_replicas == 1


def test_fit_refuses_a_sampler_shared_by_more_processes_than_are_training():
    expected = r"1 process\(es\) are training, but PKBatchSampler shares each batch between 2"
    with pytest.raises(ValueError, match=expected):
        fit_triplets(PKBatchSampler(LABELS, p=2, k=2, num_replicas=2, rank=0))


def test_bad_sharding_arguments_are_refused():
    with pytest.raises(ValueError, match="rank must be in 0..num_replicas-1"):
        PKBatchSampler(UNEVEN_LABELS, 2, 3, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match=r"4 processes × p=2 = 8 distinct classes"):
        PKBatchSampler(UNEVEN_LABELS, 2, 3, num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="drop_last=True with several processes"):
        NoDuplicatesBatchSampler(["a", "b", "c", "d"], batch_size=2, drop_last=False, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match=r"2 processes × 4"):
        NoDuplicatesBatchSampler(["a", "b", "c", "d", "e"], batch_size=4, num_replicas=2, rank=0)


def test_one_process_needs_no_group_and_gathers_nothing():
    assert distributed.init_from_env() == distributed.World(rank=0, size=1, local_rank=0)
    tensor = torch.randn(3, 4)
    assert distributed.all_gather_with_grad(tensor) is tensor
    anchor, positive = torch.randn(2, 4, 8).unbind(0)
    gathered = distributed.GatheredLoss(L.MultipleNegativesRankingLoss())
    assert torch.equal(gathered(anchor, positive), L.MultipleNegativesRankingLoss()(anchor, positive))


# ---------------------------------------------------------------------------------------------------------
# The command line under torchrun
# ---------------------------------------------------------------------------------------------------------
def test_torchrun_trains_from_the_command_line_and_writes_once(tmp_path):
    tiny_folder = labkit.tiny_model(seed=0).save(tmp_path / "tiny")
    words = ["card payment declined", "transfer money abroad", "lost my phone", "change my address"]
    rows = [{"a": f"{words[i % 4]} {i}", "b": f"{words[(i + j) % 4]} {i}", "sim": float(j == 0)}
            for i in range(20) for j in range(2)]
    data = tmp_path / "pairs.csv"
    pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(data, index=False)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               "-m", "labkit", "train", "--data", str(data), "--text-column", "a", "--text-pair-column", "b",
               "--score-column", "sim", "--loss", "CoSENTLoss", "--model", str(tiny_folder), "--batch", "4",
               "--steps", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun did not finish within 240 s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("written to") == 1, done.stdout  # rank 0 alone prints
    printed = json.loads(done.stdout[done.stdout.index("{") : done.stdout.rindex("}") + 1])
    assert printed["steps"] == 2 and printed["loss"] == "CoSENTLoss"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and "spearman_cosine" in metrics["test"]["after"]
    assert (out / "model" / "modules.json").exists() and (out / "curves.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["args.json", "before.json", "checkpoint.pt", "curves.png",
                                                      "metrics.json", "model"]
