"""labkit.memory.peak_memory: the peak of live tensor memory during a call, against sizes we allocate ourselves."""
from __future__ import annotations

import pytest
import torch

from labkit.losses.cached import CachedMultipleNegativesRankingLoss
from labkit.losses.ranking import MultipleNegativesRankingLoss
from labkit.memory import MIB, peak_memory

FLOAT32 = 4
SLACK = 64 * 1024  # small tensors PyTorch allocates on the side (scalars, shapes)


def floats(n: int) -> torch.Tensor:
    return torch.empty(n, dtype=torch.float32).fill_(1.0)


@pytest.mark.parametrize("n", [250_000, 1_000_000, 3_000_000])
def test_one_kept_tensor_is_its_size(n):
    measured = peak_memory(lambda: floats(n), device="cpu")
    assert n * FLOAT32 <= measured.peak_bytes <= n * FLOAT32 + SLACK
    assert measured.result.numel() == n  # fn's return value comes back
    assert measured.device == torch.device("cpu") and "profiler" in measured.method


def test_a_freed_temporary_counts_once_and_live_ones_add_up():
    n = 1_000_000

    def one_after_the_other():
        for _ in range(3):
            floats(n)  # freed at once: never more than one alive

    def all_alive_together():
        return [floats(n) for _ in range(3)]

    sequential = peak_memory(one_after_the_other, device="cpu").peak_bytes
    together = peak_memory(all_alive_together, device="cpu").peak_bytes
    assert n * FLOAT32 <= sequential <= n * FLOAT32 + SLACK
    assert 3 * n * FLOAT32 <= together <= 3 * n * FLOAT32 + SLACK


def test_temporary_inside_an_expression_is_seen():
    n = 2_000_000
    x = floats(n)  # exists before: not counted
    measured = peak_memory(lambda: (x * 2).sum(), device="cpu")  # x * 2 is a temporary of n floats
    assert n * FLOAT32 <= measured.peak_bytes <= n * FLOAT32 + SLACK
    assert measured.result.item() == 2 * n


def test_tensors_alive_before_the_call_are_not_counted():
    kept = floats(4_000_000)
    measured = peak_memory(lambda: kept.sum(), device="cpu")
    assert measured.peak_bytes <= SLACK
    assert measured.peak_mib == measured.peak_bytes / MIB


def test_errors_propagate_and_measuring_again_works():
    def broken():
        floats(10)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        peak_memory(broken, device="cpu")
    assert peak_memory(lambda: floats(1000), device="cpu").peak_bytes >= 4000


def test_bad_input_says_what_to_do():
    with pytest.raises(TypeError, match="function to call"):
        peak_memory(floats(3), device="cpu")
    with pytest.raises(ValueError, match="not a device"):
        peak_memory(lambda: None, device="gpu-please")
    with pytest.raises(ValueError, match="'cpu', 'cuda' and 'mps'"):
        peak_memory(lambda: None, device="meta")


def test_default_device_is_labkits():
    import labkit.env

    lab = labkit.env.setup(quiet=True, device="cpu")
    assert peak_memory(lambda: floats(1000)).device == lab.device


def test_mnrl_step_grows_with_the_batch_and_gradcache_stays_flat(tiny):
    """The claim notebook 07 measures: a cached MNRL step's peak is one mini-batch's, MNRL's grows with B."""
    mnrl, cached = MultipleNegativesRankingLoss(), CachedMultipleNegativesRankingLoss(tiny, mini_batch_size=8)
    peaks = {}
    for batch_size in (8, 40):
        # ~125 tokens per text, so activations (not the fixed embedding-table gradient) dominate
        texts = [" ".join(f"word{j} of sentence {i}" for j in range(25)) for i in range(batch_size)]
        anchors, positives = tiny.tokenize(texts), tiny.tokenize([t.upper() for t in texts])

        def mnrl_step():
            mnrl(tiny(anchors), tiny(positives)).backward()

        def cached_step():
            cached([anchors, positives]).backward()

        mnrl_step()  # create the .grad tensors first, so no measurement counts them
        peaks[batch_size] = (peak_memory(mnrl_step, device="cpu").peak_bytes,
                             peak_memory(cached_step, device="cpu").peak_bytes)
    (plain_small, cached_small), (plain_large, cached_large) = peaks[8], peaks[40]
    assert plain_large > 3 * plain_small  # activations of 5x more rows
    assert cached_large < 1.1 * cached_small  # still one mini-batch of 8 at a time
    assert cached_large < plain_large / 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_counts_allocated_bytes():
    n = 1_000_000
    measured = peak_memory(lambda: torch.ones(n, device="cuda").mul(2), device="cuda")
    assert 2 * n * FLOAT32 <= measured.peak_bytes <= 2 * n * FLOAT32 + 2 * MIB
    assert "cuda" in measured.method


def test_garbage_of_an_earlier_measurement_is_collected_before_measuring():
    """A tensor allocated under an earlier measurement and freed by the cyclic collector during `fn` must not
    be subtracted from `fn`'s own peak (the profiler reports that free: it saw the allocation)."""
    import gc

    n = 1_000_000

    def leave_a_cycle():
        holder = {"tensor": floats(n)}
        holder["itself"] = holder  # only the cyclic collector frees it

    def collect_then_allocate():
        gc.collect()  # what an automatic collection during a real step would do
        return floats(n)

    gc.disable()  # so the cycle is freed inside the measured call or by peak_memory, not by chance in between
    try:
        peak_memory(leave_a_cycle, device="cpu")
        measured = peak_memory(collect_then_allocate, device="cpu")
    finally:
        gc.enable()
    assert n * FLOAT32 <= measured.peak_bytes <= n * FLOAT32 + SLACK


def test_training_step_memory_counts_the_gradients_and_frees_them():
    from labkit.memory import training_step_memory

    torch.manual_seed(0)
    model = torch.nn.Linear(1000, 1000)  # 4 MB of weights, so 4 MB of gradients during the step
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pairs = [torch.randn(8, 1000), torch.randn(8, 1000)]
    with torch.no_grad():
        expected = MultipleNegativesRankingLoss()(model(pairs[0]), model(pairs[1])).item()
    measured = training_step_memory(model, MultipleNegativesRankingLoss(), optimizer, pairs, device="cpu")
    weight_bytes = sum(p.numel() for p in model.parameters()) * FLOAT32
    assert weight_bytes <= measured.peak_bytes <= 4 * weight_bytes  # the gradients, plus backward's and SGD's temporaries
    assert measured.result == pytest.approx(expected, rel=1e-6)  # the loss of the batch, before the step
    assert all(p.grad is None for p in model.parameters())  # freed, as fit() does
