"""The training loop: it learns, resumes exactly, stops clearly, and trains the loss's own parameters."""
from __future__ import annotations


import pytest
import torch
from torch import nn

import labkit
from labkit import env
from labkit.collate import PairDataset, TextDataset
from labkit.train import TrainingDiverged, fit, linear_warmup_decay, precision_for

TEXTS = [f"sentence number {i} about {'cats' if i % 2 else 'dogs'} and {'rain' if i % 3 else 'sun'}" for i in range(48)]
LABELS = [i % 4 for i in range(48)]


class SpreadLoss(nn.Module):
    """A small labelled-batch loss: pull same-label points together, push others apart (up to 5)."""

    def forward(self, embeddings, labels):
        same = (labels[:, None] == labels[None]).float()
        dist = torch.cdist(embeddings, embeddings)
        return (same * dist).mean() - ((1 - same) * dist).clamp(max=5).mean()


class ExplodingLoss(nn.Module):
    def __init__(self, at_call: int):
        super().__init__()
        self.calls, self.at_call = 0, at_call

    def forward(self, embeddings, labels):
        self.calls += 1
        value = embeddings.pow(2).mean()
        return value * float("nan") if self.calls == self.at_call else value


def train(steps, **kwargs):
    torch.manual_seed(0)
    model = labkit.tiny_model(seed=0)
    kwargs.setdefault("loss", SpreadLoss())
    result = fit(model, kwargs.pop("loss"), TextDataset(TEXTS, LABELS), batch_size=8, steps=steps,
                 show_progress=False, device="cpu", **kwargs)
    return model, result


def test_training_lowers_the_loss():
    _, result = train(steps=12, lr=1e-3, warmup_ratio=0.0)
    losses = [row["loss"] for row in result.losses]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_resume_after_interrupt_equals_an_uninterrupted_run(tmp_path):
    def interrupt_at_4(step, value):
        if step == 4:
            raise KeyboardInterrupt

    _, stopped = train(steps=10, output_dir=tmp_path / "run", on_step=interrupt_at_4, restore_best=False)
    assert stopped.interrupted and stopped.steps == 4
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "model" / "config.json").exists()

    torch.manual_seed(999)  # a different global state must not matter: the checkpoint restores it
    resumed_model = labkit.tiny_model(seed=7)
    resumed = fit(resumed_model, SpreadLoss(), TextDataset(TEXTS, LABELS), batch_size=8, steps=10,
                  output_dir=tmp_path / "run", resume=True, show_progress=False, device="cpu", restore_best=False)
    straight_model, straight = train(steps=10, restore_best=False)

    assert [r["loss"] for r in resumed.losses] == pytest.approx([r["loss"] for r in straight.losses], abs=1e-6)
    for a, b in zip(resumed_model.parameters(), straight_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_gradient_accumulation_counts_optimizer_steps():
    _, result = train(steps=3, grad_accum_steps=2)
    assert result.steps == 3 and len(result.losses) == 3


def test_nan_loss_stops_with_the_step_and_advice():
    with pytest.raises(TrainingDiverged, match=r"ExplodingLoss returned nan at step 3.*learning rate"):
        train(steps=6, loss=ExplodingLoss(at_call=3))


def test_nan_is_caught_between_host_syncs_with_the_exact_step():
    with pytest.raises(TrainingDiverged, match="at step 2"):
        train(steps=8, loss=ExplodingLoss(at_call=2), log_every=4)


def test_best_checkpoint_is_kept_and_restored():
    scores = iter([0.1, 0.9, 0.2, 0.3])  # step 0, 2, 4, 6: the best is at step 2
    snapshots = {}

    def evaluator(model):
        value = next(scores)
        snapshots[value] = [p.detach().clone() for p in model.parameters()]
        return {"score": value}

    model, result = train(steps=6, evaluator=evaluator, eval_every=2, lr=1e-3)
    assert result.best_step == 2 and result.best_metric == 0.9
    for restored, kept in zip(model.parameters(), snapshots[0.9]):
        torch.testing.assert_close(restored, kept)


def test_softmax_loss_classifier_is_trained():
    from labkit.losses.regression import SoftmaxLoss

    loss = SoftmaxLoss(embedding_dimension=32, num_labels=3)
    before = loss.classifier.weight.detach().clone()
    torch.manual_seed(0)
    pairs = PairDataset(TEXTS[:24], TEXTS[24:], labels=[i % 3 for i in range(24)])
    fit(labkit.tiny_model(seed=0), loss, pairs, batch_size=8, steps=2, show_progress=False, device="cpu")
    assert not torch.equal(before, loss.classifier.weight.detach())


def test_wrong_arguments_are_refused():
    with pytest.raises(ValueError, match="exactly one of steps= or epochs="):
        train(steps=None)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(steps=2, resume=True)


def test_learning_rate_warms_up_then_decays_to_zero():
    factor = linear_warmup_decay(warmup_steps=4, total_steps=10)
    values = [factor(s) for s in range(11)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(values[3:], values[4:])) and values[10] == 0.0


@pytest.mark.parametrize("units, expected", [("AMX + avx512_bf16", "bf16"), ("avx512_bf16", "bf16"), (None, "fp32")])
def test_cpu_precision_follows_native_bf16(monkeypatch, units, expected):
    monkeypatch.setattr(env, "native_cpu_bf16", lambda: units)
    assert precision_for(torch.device("cpu")) == expected
    assert ("bf16 autocast" in env.precision_reason(torch.device("cpu"))) == (expected == "bf16")


@pytest.mark.parametrize("flags, expected", [
    ({"_is_amx_tile_supported": True, "_is_avx512_bf16_supported": True}, "AMX + avx512_bf16"),
    ({"_is_amx_tile_supported": False, "_is_avx512_bf16_supported": True}, "avx512_bf16"),
    ({"_is_amx_tile_supported": False, "_is_avx512_bf16_supported": False}, None),
])
def test_native_bf16_probe_reads_torch_cpu_flags(monkeypatch, flags, expected):
    for name, value in flags.items():
        monkeypatch.setattr(torch.cpu, name, lambda value=value: value)
    env.native_cpu_bf16.cache_clear()
    try:
        assert env.native_cpu_bf16() == expected
    finally:
        env.native_cpu_bf16.cache_clear()


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_cuda_precision_bf16_on_ampere_fp16_on_a_t4(monkeypatch, bf16, expected):
    calls = []
    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return bf16 or including_emulation  # a T4 "supports" bf16 only by emulation
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert precision_for(torch.device("cuda")) == expected
    assert calls and calls[-1] is False


def test_precision_follows_hardware():
    assert precision_for(torch.device("cpu"), "bf16") == "bf16"
    with pytest.raises(ValueError):
        precision_for(torch.device("cpu"), "fp8")


def _fit_pairs_without_dropout(make_loss, steps=3):
    torch.manual_seed(0)
    model = labkit.tiny_model(seed=0)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0  # GradCache replays dropout exactly, but plain MNRL draws its masks in another order
    pairs = PairDataset(TEXTS[:24], TEXTS[24:])
    fit(model, make_loss(model), pairs, batch_size=8, steps=steps, show_progress=False, device="cpu",
        live_plot=False, precision="fp32")  # exact equality of the two losses: no bf16 rounding
    return model


def test_gradcache_loss_trains_exactly_like_plain_mnrl():
    from labkit.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss

    plain = _fit_pairs_without_dropout(lambda model: MultipleNegativesRankingLoss())
    cached = _fit_pairs_without_dropout(lambda model: CachedMultipleNegativesRankingLoss(model, mini_batch_size=3))
    untrained = labkit.tiny_model(seed=0)
    for (name, p), q, start in zip(plain.named_parameters(), cached.parameters(), untrained.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)
    assert any(not torch.equal(p, s) for p, s in zip(plain.parameters(), untrained.parameters()))


def _heldout_map_after_short_fit(precision, seed, data_dir):
    from labkit import data
    from labkit.evaluate import evaluate_retrieval
    from labkit.losses import BatchHardTripletLoss
    from labkit.sampling import PKBatchSampler

    frame = data.load_banking77("train", data_dir)
    frame = frame[frame["label"] < 20]
    train, heldout = data.train_dev_split(frame, dev_size=0.2, seed=0)
    train = data.stratified_subset(train, 400, seed=0)
    heldout = data.stratified_subset(heldout, 200, seed=0)
    model = labkit.tiny_model(seed=0)
    sampler = PKBatchSampler(train["label"].to_numpy(), p=8, k=4, seed=seed)
    fit(model, BatchHardTripletLoss(margin=0.5), TextDataset(list(train["text"]), list(train["label"])),
        batch_sampler=sampler, steps=40, lr=1e-3, max_length=32, precision=precision, seed=seed,
        show_progress=False, live_plot=False, device="cpu")
    return evaluate_retrieval(model, list(heldout["text"]), heldout["label"].to_numpy())["mean_average_precision_at_r"]


def test_bf16_fit_on_cpu_reaches_the_fp32_heldout_metric_within_seed_noise(data_dir):
    """bf16 autocast changes rounding, not what is learnt: its held-out MAP@R differs from fp32's by no more
    than a change of seed moves fp32 itself (with a floor for two seeds that happen to agree)."""
    fp32 = _heldout_map_after_short_fit("fp32", 0, data_dir)
    fp32_other_seed = _heldout_map_after_short_fit("fp32", 1, data_dir)
    bf16 = _heldout_map_after_short_fit("bf16", 0, data_dir)
    noise = max(abs(fp32 - fp32_other_seed), 0.01)
    assert abs(bf16 - fp32) <= 2 * noise, (bf16, fp32, fp32_other_seed)
