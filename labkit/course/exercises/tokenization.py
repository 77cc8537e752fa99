"""Checkers for the exercises of notebooks/01_tokenization.ipynb.

Each takes your answer and the inputs of the exercise, computes the right answer with labkit or the
tokenizer, and prints whether it is right, or which step to recheck (never the answer itself). Add
``reveal=True`` to see the solution. Each returns True/False.
"""
from __future__ import annotations

import numpy as np

from labkit.course.exercises import Exercise, Slip, check_number
from labkit.course.padding_cost import max_length_for_coverage, padded_positions, token_lengths, truncated_share

# The notebook's inputs (what `solutions` uses when it is given none).
NOTEBOOK_TEXT = "Unbelievably, my contactless payment was declined!"
NOTEBOOK_LENGTHS, NOTEBOOK_BATCH_SIZE = (12, 7, 30, 9, 15, 22, 8), 3


def _tokenizer():
    from transformers import AutoTokenizer

    from labkit.model import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


def _token_count(text=NOTEBOOK_TEXT, tokenizer=None) -> Exercise:
    tokenizer = tokenizer or _tokenizer()
    expected = len(tokenizer(text)["input_ids"])
    return Exercise(
        checker="check_token_count", with_inputs=True, expected=expected,
        hint="tokenizer(text) returns a dict; count its input_ids, special tokens included",
        success=f"{expected} tokens — {expected - 2} WordPiece pieces plus [CLS] and [SEP]",
        why=f"len(tokenizer(text)['input_ids']): {expected - 2} WordPiece pieces plus [CLS] and [SEP]",
        slips=(
            Slip(expected - 2, "the number of WordPiece pieces from tokenizer.tokenize(text)",
                 "the special tokens: the model also gets [CLS] at the start and [SEP] at the end"),
            Slip(len(text.split()), "the number of words",
                 "how WordPiece splits: rare words become several pieces (those after the first start with ##), "
                 "punctuation its own tokens"),
            Slip(len(text), "the number of characters", "what you count: tokens, len(tokenizer(text)['input_ids'])"),
        ))


def check_token_count(answer, text: str, tokenizer, reveal: bool = False) -> bool:
    """How many tokens (special tokens included) does the model see for `text`? A whole number.

    A wrong answer gets the step to recheck; ``check_token_count(answer, text, tokenizer, reveal=True)``
    prints the solution.
    """
    return check_number(answer, _token_count(text, tokenizer), whole=True, reveal=reveal)


def _padded_positions(lengths=NOTEBOOK_LENGTHS, batch_size: int = NOTEBOOK_BATCH_SIZE,
                      max_length: int = 512) -> Exercise:
    lengths = np.asarray(lengths, dtype=np.int64)
    expected = padded_positions(lengths, batch_size, max_length)
    kept = np.minimum(lengths, max_length)
    real = int(kept.sum())
    return Exercise(
        checker="check_padded_positions", with_inputs=True, expected=expected,
        hint="cut the list into batches of batch_size in the given order (the last one may be shorter); each "
             "batch has (its longest text) × (texts in it) positions; add up",
        success=f"{expected} positions for {real} real tokens ({expected / real:.2f} positions per real token)",
        why=f"batches of {batch_size} in order, each padded to its longest text: the sum of longest × size",
        slips=(
            Slip(real, "the number of real tokens: no padding at all",
                 "the batch shape: each batch is a rectangle, padded to the longest text in that batch"),
            Slip(len(kept) * int(kept.max()), "every text padded to the longest text of the whole list",
                 "dynamic padding: it pads each batch only to the longest text in *that* batch"),
            Slip(len(kept) * max_length, "what padding='max_length' gives",
                 "the padding: here each batch is padded only to its own longest text"),
            Slip(padded_positions(np.sort(kept)[::-1], batch_size, max_length),
                 "what you get after sorting the texts by length",
                 "the order: keep it as given, texts 0..batch_size-1 form the first batch, and so on"),
        ))


def check_padded_positions(answer, lengths, batch_size: int, max_length: int = 512, reveal: bool = False) -> bool:
    """How many token positions do batches of `batch_size` consecutive texts with dynamic padding contain?

    A wrong answer gets the step to recheck; ``check_padded_positions(answer, lengths, batch_size,
    reveal=True)`` prints the solution.
    """
    return check_number(answer, _padded_positions(lengths, batch_size, max_length), whole=True, reveal=reveal)


def _books_lengths() -> np.ndarray:
    from labkit import data

    return token_lengths(_tokenizer(), data.load_books("train").text.tolist())


def _max_length(lengths=None, coverage: float = 0.95, multiple_of: int = 8) -> Exercise:
    lengths = _books_lengths() if lengths is None else np.asarray(lengths, dtype=np.int64)
    expected = max_length_for_coverage(lengths, coverage, multiple_of)
    allowed = 1 - coverage
    return Exercise(
        checker="check_max_length", with_inputs=True, expected=expected,
        hint=f"look at the {coverage:.0%} percentile of the lengths (np.percentile) and round it up to a "
             f"multiple of {multiple_of}",
        success=f"max_length={expected} truncates {truncated_share(lengths, expected):.1%} of the texts (at most "
                f"{allowed:.0%} allowed), and {expected - multiple_of} would cut "
                f"{truncated_share(lengths, expected - multiple_of):.1%}",
        why=f"the smallest multiple of {multiple_of} that truncates at most {allowed:.0%} of the texts (the "
            f"{coverage:.0%} percentile, rounded up)",
        slips=(
            Slip(lambda value: value < 1, "a length that is not positive", "what is asked: a number of tokens"),
            Slip(lambda value: value % multiple_of, f"a length that is not a multiple of {multiple_of}",
                 f"the rounding: round up to the next multiple of {multiple_of} (GPU kernels like multiples of 8)"),
            Slip(lambda value: truncated_share(lengths, int(value)) > allowed,
                 f"a max_length that truncates more than the {allowed:.0%} allowed",
                 "the percentile: go up"),
            Slip(lambda value: value > expected,
                 f"a max_length that keeps at least {coverage:.0%} of the texts whole, but so does a smaller one",
                 f"the rounding: every extra position costs compute when a batch is padded to max_length, so take "
                 f"the smallest multiple of {multiple_of} that is enough: go down"),
        ))


def check_max_length(answer, lengths, coverage: float = 0.95, multiple_of: int = 8, reveal: bool = False) -> bool:
    """The smallest multiple of `multiple_of` that truncates at most 1 − `coverage` of the texts.

    A wrong answer gets the step to recheck; ``check_max_length(answer, lengths, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _max_length(lengths, coverage, multiple_of), whole=True, reveal=reveal)


_EXERCISES = {"token_count": _token_count, "padded_positions": _padded_positions, "max_length": _max_length}
