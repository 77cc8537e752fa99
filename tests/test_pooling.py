"""Pooling against plain loops over tokens."""
from __future__ import annotations

import pytest
import torch

from labkit.pooling import cls_pooling, l2_normalize, max_pooling, mean_pooling, pool


def random_batch(seed=0, batch=4, tokens=6, dim=3):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, tokens, dim, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, tokens + 1, (batch,), generator=g)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).long()
    return h, mask


def naive(h, mask, how):
    out = []
    for b in range(h.shape[0]):
        real = [h[b, t] for t in range(h.shape[1]) if mask[b, t] == 1]
        if how == "mean":
            total = real[0].clone()
            for v in real[1:]:
                total += v
            out.append(total / len(real))
        elif how == "max":
            out.append(torch.stack(real).max(0).values)
        else:
            out.append(h[b, 0])
    return torch.stack(out)


@pytest.mark.parametrize("how", ["mean", "max", "cls"])
def test_pooling_matches_token_loops(how):
    h, mask = random_batch()
    expected = naive(h, mask, how)
    torch.testing.assert_close(pool(h, mask, how), expected)


def test_padding_never_changes_the_result():
    h, mask = random_batch(seed=1)
    garbage = h.clone()
    garbage[mask == 0] = 1e6  # whatever sits at padding positions
    for fn in (mean_pooling, max_pooling, cls_pooling):
        torch.testing.assert_close(fn(garbage, mask), fn(h, mask))


def test_unknown_mode_is_refused():
    h, mask = random_batch()
    with pytest.raises(ValueError, match="mean"):
        pool(h, mask, "median")


def test_l2_normalize_gives_unit_rows_and_is_safe_at_zero():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    y = l2_normalize(x)
    torch.testing.assert_close(y[0], torch.tensor([0.6, 0.8]))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
