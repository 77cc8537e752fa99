"""labkit.course.scaling (notebook 13): memory against batch size, measured, and fp16 overflow, against float64.

The fp16 case is checked against references computed here, by subtraction first and by a plain loop over
the batch in float64 (math.exp / math.log), not by the functions under test.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from labkit.course import scaling

FP16_MAX = 65504.0


def reference_squared_distance(anchors, positives) -> float:
    return float(((anchors - positives) ** 2).sum(1).mean())


def reference_mnrl(anchors, positives) -> float:
    """MNRL with dot-product similarity, one anchor at a time, in float64 Python arithmetic."""
    total = 0.0
    for i in range(len(anchors)):
        logits = [float(anchors[i] @ positives[j]) for j in range(len(positives))]
        top = max(logits)
        total += top + math.log(sum(math.exp(x - top) for x in logits)) - logits[i]
    return total / len(anchors)


def test_long_embeddings_are_exact_in_fp16_and_their_squares_overflow_it():
    anchors, positives = scaling.long_embeddings()
    for x in (anchors, positives):
        assert torch.equal(x.half().double(), x)  # rounding the inputs to fp16 changes nothing
        assert (x * x).sum(1).min() > FP16_MAX  # every squared norm is above fp16's largest number
    assert 0 < reference_squared_distance(anchors, positives) < 1  # yet anchors and positives are close
    assert 0.1 < reference_mnrl(anchors, positives) < math.log(len(anchors))  # a loss worth computing


def test_fp16_overflows_fp32_and_labkit_get_the_float64_value():
    anchors, positives = scaling.long_embeddings()
    table = scaling.overflow_table(anchors, positives).set_index(["quantity", "computed as"])
    references = {"mean squared distance a-p": reference_squared_distance(anchors, positives),
                  "MNRL loss, dot product": reference_mnrl(anchors, positives)}
    for quantity, reference in references.items():
        fp16, fp32, fp64 = (table.loc[(quantity, name)] for name in ("float16", "float32", "float64"))
        labkit = table.loc[(quantity, "labkit, fp16 autocast")]
        assert math.isinf(fp16["largest intermediate"]) and not math.isfinite(fp16["value"])  # inf, then NaN
        assert fp32["largest intermediate"] > FP16_MAX and math.isfinite(fp32["value"])
        assert fp64["value"] == pytest.approx(reference, rel=1e-9)  # float64 spacing at 86,400: 1.5e-11
        assert fp32["value"] == pytest.approx(reference, abs=0.01)  # right to two decimals at least
        assert labkit["value"] == pytest.approx(reference, abs=0.01) and labkit["gradient finite"]
        assert labkit["error"] == pytest.approx(abs(labkit["value"] - reference), abs=1e-9)
    # labkit's distance subtracts the shared component first: exact, where fp32's expansion loses digits.
    distance = references["mean squared distance a-p"]
    assert table.loc[("mean squared distance a-p", "labkit, fp16 autocast"), "value"] == pytest.approx(distance, rel=1e-6)
    assert table.loc[("mean squared distance a-p", "float32"), "error"] > 1e-3
    assert not table.loc[("MNRL loss, dot product", "float16"), "gradient finite"]  # NaN gradients too


def test_long_embeddings_refuses_shapes_it_cannot_build():
    with pytest.raises(ValueError, match="even dim"):
        scaling.long_embeddings(batch_size=8, dim=15)
    with pytest.raises(ValueError, match="batch_size"):
        scaling.long_embeddings(batch_size=8, dim=10)


@pytest.fixture(scope="module")
def memory_table():
    import labkit

    model = labkit.tiny_model(seed=0)
    # ~100 tokens per text, so activations (not the embedding table's gradient) dominate the tiny model's step
    texts = [" ".join(f"word{j} of sentence {i}" for j in range(25)) for i in range(16)]
    pairs = pd.DataFrame({"anchor": texts, "positive": [text.upper() for text in texts]})
    return scaling.memory_by_batch_size(model, pairs, [4, 8, 16], mini_batch_size=4, max_length=100)


def test_gradcache_memory_grows_slower_than_plain_mnrl(memory_table):
    plain = memory_table[memory_table["loss"] == scaling.PLAIN].set_index("batch (pairs)")["peak memory (MiB)"]
    cached = memory_table[memory_table["loss"] == scaling.CACHED].set_index("batch (pairs)")["peak memory (MiB)"]
    assert list(plain.index) == list(cached.index) == [4, 8, 16]
    assert plain[16] > 2.5 * plain[4]  # activations of 4x the rows, kept for backward
    assert cached[16] < 1.15 * cached[4]  # one mini-batch of 4 at a time, whatever the batch
    slopes = scaling.memory_slopes(memory_table)
    assert slopes[scaling.PLAIN][0] > 5 * abs(slopes[scaling.CACHED][0])  # MiB per extra pair
    # The fitted line goes through the measured points (they are close to a line).
    slope, intercept = slopes[scaling.PLAIN]
    assert all(abs(slope * size + intercept - peak) < 0.1 * peak for size, peak in plain.items())
    assert (memory_table["MiB per pair"] == memory_table["peak memory (MiB)"] / memory_table["batch (pairs)"]).all()


def test_memory_summary_and_figure(memory_table):
    import matplotlib

    matplotlib.use("Agg")
    summary = scaling.memory_summary(memory_table)
    assert "MNRL:" in summary and "GradCache:" in summary and "needs no more than plain MNRL" in summary
    ax = scaling.plot_memory_by_batch_size(memory_table)
    assert ax.get_xscale() == ax.get_yscale() == "linear"
    assert "pairs" in ax.get_xlabel() and "MiB" in ax.get_ylabel()
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [scaling.PLAIN, scaling.CACHED]
    assert ax.get_ylim()[0] == 0


def test_memory_by_batch_size_says_what_is_wrong(tiny):
    pairs = pd.DataFrame({"anchor": ["a", "b", "c"], "positive": ["x", "y", "z"]})
    with pytest.raises(ValueError, match="at least 2"):
        scaling.memory_by_batch_size(tiny, pairs, [1, 2], mini_batch_size=2)
    with pytest.raises(ValueError, match="more pairs"):
        scaling.memory_by_batch_size(tiny, pairs, [2, 8], mini_batch_size=2)
    with pytest.raises(ValueError, match="positive integer"):
        scaling.memory_by_batch_size(tiny, pairs, [2, 3], mini_batch_size=0)
