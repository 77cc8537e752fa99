"""Tokenization measurements against plain loops over texts and batches."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from labkit.course import padding_cost as tk

TEXTS = [
    "How do I top up my card?",
    "My card payment was declined twice today, what is going on with my account?",
    "Where is my new card? I ordered it two weeks ago and it still has not arrived.",
    "exchange rate",
    "Can I change my PIN at an ATM?",
    "Why was I charged a fee for a transfer from my own account in another currency?",
    "card lost",
    "I think someone has used my card without my permission; please freeze it now.",
    "Is there a limit on top-ups?",
    "refund not showing up",
    "The app says my identity verification failed. What documents can I use instead of a passport?",
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from labkit.model import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


def naive_positions(lengths, batch_size, max_length, pad_to_max_length=False):
    total = 0
    for start in range(0, len(lengths), batch_size):
        batch = [min(int(n), max_length) for n in lengths[start : start + batch_size]]
        width = max_length if pad_to_max_length else max(batch)
        total += width * len(batch)
    return total


def test_token_lengths_equal_one_call_per_text(tokenizer):
    expected = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    assert tk.token_lengths(tokenizer, TEXTS).tolist() == expected


def test_token_lengths_are_not_truncated(tokenizer):
    long_text = "word " * 700
    assert tk.token_lengths(tokenizer, [long_text])[0] == 702  # 700 words + [CLS] + [SEP]


@pytest.mark.parametrize("batch_size, max_length", [(1, 512), (3, 512), (4, 10), (32, 6), (5, 1)])
@pytest.mark.parametrize("pad_to_max_length", [False, True])
def test_padded_positions_match_a_loop_over_batches(batch_size, max_length, pad_to_max_length):
    lengths = np.random.default_rng(batch_size).integers(1, 40, size=23)
    expected = naive_positions(lengths, batch_size, max_length, pad_to_max_length)
    assert tk.padded_positions(lengths, batch_size, max_length, pad_to_max_length) == expected


def test_padding_cost_follows_each_strategys_batch_order():
    lengths = np.random.default_rng(0).integers(3, 60, size=101)
    table = tk.padding_cost(lengths, batch_size=8, max_length=50, seed=3)
    real = sum(min(int(n), 50) for n in lengths)
    shuffled = lengths[np.random.default_rng(3).permutation(len(lengths))]
    longest_first = sorted(lengths.tolist(), reverse=True)
    assert table.loc[tk.PAD_TO_MAX_LENGTH, "positions"] == 101 * 50
    assert table.loc[tk.DYNAMIC, "positions"] == naive_positions(shuffled, 8, 50)
    assert table.loc[tk.DYNAMIC_SORTED, "positions"] == naive_positions(longest_first, 8, 50)
    assert (table["real_tokens"] == real).all()
    np.testing.assert_allclose(table["positions_per_real_token"], table["positions"] / real)
    np.testing.assert_allclose(table["padding_share"], 1 - real / table["positions"])
    # sorting never pads more than shuffling, which never pads more than max_length
    assert table["positions"].is_monotonic_decreasing


def test_measured_positions_equal_the_arithmetic_ones(tokenizer):
    """What the tokenizer really builds, each way, is what padding_cost predicts from lengths alone."""
    lengths = tk.token_lengths(tokenizer, TEXTS)
    predicted = tk.padding_cost(lengths, batch_size=4, max_length=24, seed=1)["positions"]
    measured = tk.time_tokenization(tokenizer, TEXTS, batch_size=4, max_length=24, seed=1)
    expected_by_way = {
        tk.PER_TEXT_MAX_LENGTH: predicted[tk.PAD_TO_MAX_LENGTH],
        tk.PER_BATCH_MAX_LENGTH: predicted[tk.PAD_TO_MAX_LENGTH],
        tk.PER_TEXT_THEN_PAD: predicted[tk.DYNAMIC],
        tk.PER_BATCH_DYNAMIC: predicted[tk.DYNAMIC],
        tk.PER_BATCH_SORTED: predicted[tk.DYNAMIC_SORTED],
    }
    assert list(measured.index) == list(tk.TOKENIZER_WAYS)
    for way, positions in expected_by_way.items():
        assert measured.loc[way, "positions"] == positions, way
    assert (measured["real_tokens"] == np.minimum(lengths, 24).sum()).all()
    assert measured.loc[tk.PER_TEXT_MAX_LENGTH, "time_vs_first"] == 1.0
    assert (measured["seconds"] > 0).all()


def real_token_ids(features):
    rows = []
    for f in features:
        for ids, mask in zip(f["input_ids"], f["attention_mask"]):
            rows.append(tuple(ids[mask.bool()].tolist()))
    return sorted(rows)


def test_every_way_keeps_the_same_tokens(tokenizer):
    reference = sorted(tuple(tokenizer(t, truncation=True, max_length=16)["input_ids"]) for t in TEXTS)
    for way in tk.TOKENIZER_WAYS:
        features = tk.tokenize_batches(tokenizer, TEXTS, way, batch_size=3, max_length=16)
        assert real_token_ids(features) == reference, way


def test_collator_way_builds_the_same_tensors_as_one_call_per_batch(tokenizer):
    collated = tk.tokenize_batches(tokenizer, TEXTS, tk.PER_TEXT_THEN_PAD, batch_size=4, max_length=20, seed=2)
    batched = tk.tokenize_batches(tokenizer, TEXTS, tk.PER_BATCH_DYNAMIC, batch_size=4, max_length=20, seed=2)
    assert len(collated) == len(batched) == 3
    for a, b in zip(collated, batched):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["attention_mask"], b["attention_mask"])


def test_max_length_defaults_to_the_tokenizer_limit_like_the_article(tokenizer):
    features = tk.tokenize_batches(tokenizer, TEXTS[:2], tk.PER_TEXT_MAX_LENGTH)
    assert features[0]["input_ids"].shape == (1, tokenizer.model_max_length)


def naive_max_length_for_coverage(lengths, coverage, multiple_of, limit=None):
    candidate = multiple_of
    while sum(1 for n in lengths if n <= candidate) / len(lengths) < coverage - 1e-12:
        candidate += multiple_of
    return candidate if limit is None else min(candidate, limit)


@pytest.mark.parametrize("coverage", [0.5, 0.9, 0.95, 0.99, 1.0])
@pytest.mark.parametrize("multiple_of", [1, 8])
def test_max_length_for_coverage_is_the_smallest_that_covers(coverage, multiple_of):
    lengths = np.random.default_rng(7).integers(2, 130, size=257)
    expected = naive_max_length_for_coverage(lengths.tolist(), coverage, multiple_of)
    assert tk.max_length_for_coverage(lengths, coverage, multiple_of) == expected
    assert tk.max_length_for_coverage(lengths, coverage, multiple_of, limit=40) == min(expected, 40)
    assert tk.truncated_share(lengths, expected) <= 1 - coverage + 1e-12


def test_truncated_share_and_summary_match_plain_python():
    lengths = np.random.default_rng(1).integers(1, 90, size=50)
    values = lengths.tolist()
    assert tk.truncated_share(lengths, 30) == sum(v > 30 for v in values) / len(values)
    summary = tk.length_summary(lengths)
    assert summary["texts"] == 50 and summary["max"] == max(values)
    assert math.isclose(summary["mean"], statistics.fmean(values))
    assert math.isclose(summary["p50"], statistics.median(values))
    quantiles = statistics.quantiles(values, n=100, method="inclusive")  # same interpolation as NumPy's default
    for q in (90, 95, 99):
        assert math.isclose(summary[f"p{q}"], quantiles[q - 1])


def test_model_output_does_not_depend_on_padding(tiny):
    tiny.train()  # a model in the middle of training: the measurement must not change its mode
    table = tk.time_model_forward(tiny, TEXTS[:4], max_length=64)
    longest = int(tk.token_lengths(tiny.tokenizer, TEXTS[:4]).max())
    assert table.loc[tk.PAD_TO_MAX_LENGTH, "positions"] == 4 * 64
    assert table.loc["dynamic", "positions"] == 4 * longest
    assert (table["max_abs_difference"] < 1e-5).all()
    assert tiny.training  # the model is given back in the mode it came in


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: tk.padded_positions([3, 0], 2, 8), ValueError, "at least 1"),
        (lambda: tk.padded_positions([3.5, 2.0], 2, 8), TypeError, "integers"),
        (lambda: tk.padded_positions([], 2, 8), ValueError, "non-empty"),
        (lambda: tk.padded_positions([3, 4], 0, 8), ValueError, "batch_size"),
        (lambda: tk.padding_cost([3, 4], max_length=-1), ValueError, "max_length"),
        (lambda: tk.batch_order([3, 4], "bucketed"), ValueError, "use one of"),
        (lambda: tk.max_length_for_coverage([3, 4], coverage=95), ValueError, r"\(0, 1\]"),
        (lambda: tk.truncated_share([3, 4], 0), ValueError, "max_length"),
    ],
)
def test_bad_input_is_refused_with_the_reason(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_way_and_texts_are_refused(tokenizer):
    with pytest.raises(ValueError, match="use one of"):
        tk.tokenize_batches(tokenizer, TEXTS, "one call per epoch")
    with pytest.raises(TypeError, match="single string"):
        tk.token_lengths(tokenizer, "a single string")


def test_tokenizer_without_a_limit_needs_an_explicit_max_length(tokenizer, monkeypatch):
    monkeypatch.setattr(tokenizer, "model_max_length", int(1e30))
    with pytest.raises(ValueError, match="pass max_length"):
        tk.time_tokenization(tokenizer, TEXTS)


def test_plot_marks_percentile_and_max_length():
    import matplotlib

    matplotlib.use("Agg")
    ax = tk.plot_token_lengths(np.arange(1, 101), max_length=64, label="toy")
    labels = [line.get_label() for line in ax.get_lines()]
    assert any("99th percentile" in text for text in labels) and "max_length = 64" in labels
