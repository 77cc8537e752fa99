"""The checkers of notebooks/01_tokenization.ipynb accept right answers and explain wrong ones."""
from __future__ import annotations

import numpy as np
import pytest

from labkit.course.exercises import tokenization as ex

TEXT = "Unbelievably, my contactless payment was declined!"
LENGTHS = [12, 7, 30, 9, 15, 22, 8]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from labkit.model import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


def test_token_count(capsys, tokenizer):
    pieces = tokenizer.tokenize(TEXT)
    assert len(pieces) != len(TEXT.split())  # the text must split words, or the hints could not be told apart
    right = len(pieces) + 2
    ok, out = outcome(capsys, ex.check_token_count(right, TEXT, tokenizer))
    assert ok and "[CLS] and [SEP]" in out
    assert ex.check_token_count(float(right), TEXT, tokenizer)
    cases = [(None, "not answered yet"), (len(pieces), "[CLS] at the start"), (len(TEXT.split()), "words"),
             (len(TEXT), "characters"), ("ten", "whole number"), (right + 5, "expected")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_token_count(answer, TEXT, tokenizer))
        assert not ok and words in out, (answer, out)


def naive_positions(lengths, batch_size):
    total = 0
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start : start + batch_size]
        total += max(batch) * len(batch)
    return total


def test_padded_positions(capsys):
    right = naive_positions(LENGTHS, 3)
    ok, out = outcome(capsys, ex.check_padded_positions(right, LENGTHS, 3))
    assert ok and "positions per real token" in out
    cases = [
        (None, "not answered yet"),
        (sum(LENGTHS), "real tokens"),
        (len(LENGTHS) * max(LENGTHS), "whole list"),
        (len(LENGTHS) * 512, "max_length"),
        (naive_positions(sorted(LENGTHS, reverse=True), 3), "sorting"),
        (right + 1, "last batch"),
        ([1, 2], "whole number"),
    ]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_padded_positions(answer, LENGTHS, 3))
        assert not ok and words in out, (answer, out)


def test_max_length(capsys):
    lengths = np.random.default_rng(0).integers(5, 120, size=400)
    # plain search: the smallest multiple of 8 that keeps at least 95% of texts whole
    right = next(m for m in range(8, 200, 8) if np.mean(lengths <= m) >= 0.95)
    ok, out = outcome(capsys, ex.check_max_length(right, lengths, coverage=0.95))
    assert ok and "truncates" in out
    cases = [(None, "not answered yet"), (right - 8, "Go up"), (right + 8, "Go down"), (right - 3, "multiple of 8"),
             (-5, "positive"), ("long", "positive")]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_max_length(answer, lengths, coverage=0.95))
        assert not ok and words in out, (answer, out)
