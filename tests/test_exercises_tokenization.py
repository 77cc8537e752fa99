"""The checkers of notebooks/01_tokenization.ipynb accept right answers and explain wrong ones without revealing them."""
from __future__ import annotations

import numpy as np
import pytest

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong
from labkit.course.exercises import tokenization as ex

TEXT = "Unbelievably, my contactless payment was declined!"
LENGTHS = [12, 7, 30, 9, 15, 22, 8]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from labkit.model import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


def test_token_count(capsys, tokenizer):
    pieces = tokenizer.tokenize(TEXT)
    assert len(pieces) != len(TEXT.split())  # the text must split words, or the hints could not be told apart
    right = len(pieces) + 2

    def check(answer, **kw):
        return ex.check_token_count(answer, TEXT, tokenizer, **kw)

    assert_right(capsys, check, right, "[CLS] and [SEP]")
    assert_right(capsys, check, float(right))
    assert_stub_and_reveal(capsys, check, right)
    cases = [(len(pieces), "WordPiece pieces"), (len(TEXT.split()), "words"), (len(TEXT), "characters"),
             ("ten", "whole number"), (right + 0.5, "whole number"), (right + 5, "Not quite")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def naive_positions(lengths, batch_size):
    total = 0
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start : start + batch_size]
        total += max(batch) * len(batch)
    return total


def test_padded_positions(capsys):
    right = naive_positions(LENGTHS, 3)

    def check(answer, **kw):
        return ex.check_padded_positions(answer, LENGTHS, 3, **kw)

    assert_right(capsys, check, right, "positions per real token")
    assert_stub_and_reveal(capsys, check, right)
    cases = [
        (sum(LENGTHS), "real tokens"),
        (len(LENGTHS) * max(LENGTHS), "whole list"),
        (len(LENGTHS) * 512, "max_length"),
        (naive_positions(sorted(LENGTHS, reverse=True), 3), "sorting"),
        (right + 1, "Not quite"),
        ([1, 2], "one whole number"),
    ]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)


def test_max_length(capsys):
    lengths = np.random.default_rng(0).integers(5, 120, size=400)
    # plain search: the smallest multiple of 8 that keeps at least 95% of texts whole
    right = next(m for m in range(8, 200, 8) if np.mean(lengths <= m) >= 0.95)

    def check(answer, **kw):
        return ex.check_max_length(answer, lengths, coverage=0.95, **kw)

    assert_right(capsys, check, right, "truncates")
    assert_stub_and_reveal(capsys, check, right)
    cases = [(right - 8, "go up"), (right + 8, "go down"), (right - 3, "not a multiple of 8"), (-5, "not positive"),
             (0, "not positive"), ("long", "whole number")]
    for answer, words in cases:
        assert_wrong(capsys, check, answer, words, right)
