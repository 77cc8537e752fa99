"""Checkers for the exercises of notebooks/01_tokenization.ipynb.

Each takes your answer and the inputs of the exercise, computes the right answer with labkit or the
tokenizer, and prints what is right or a hint at what is off. Each returns True/False.
"""
from __future__ import annotations

import numpy as np

from labkit.course.exercises import describe_difference, report
from labkit.course.padding_cost import max_length_for_coverage, padded_positions, truncated_share


def _as_int(answer):
    """The answer as an int if it is a whole number (int, NumPy or tensor scalar, 14.0), else None."""
    try:
        value = float(answer.item() if hasattr(answer, "item") else answer)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None


def check_token_count(answer, text: str, tokenizer) -> bool:
    """How many tokens (special tokens included) does the model see for `text`?"""
    expected = len(tokenizer(text)["input_ids"])
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: tokenizer(text) returns a dict; count its input_ids.")
    value = _as_int(answer)
    if value is None:
        return report(False, "", f"Give a whole number of tokens, e.g. len(...); you gave {answer!r}.")
    if value == expected:
        return report(True, f"Right: {expected} tokens — {expected - 2} WordPiece pieces plus [CLS] and [SEP].", "")
    if value == expected - 2:
        return report(False, "", f"{value} is the number of WordPiece pieces from tokenizer.tokenize(text). The model "
                                 "also gets [CLS] at the start and [SEP] at the end: count the input_ids instead.")
    if value == len(text.split()):
        return report(False, "", f"{value} is the number of words. WordPiece splits rare words into several pieces "
                                 "(pieces after the first start with ##) and punctuation into its own tokens.")
    if value == len(text):
        return report(False, "", f"{value} is the number of characters. Count tokens: len(tokenizer(text)['input_ids']).")
    return report(False, "", f"Not quite: {describe_difference(value, expected)}. "
                             "Hint: len(tokenizer(text)['input_ids']) counts every token the model sees.")


def check_padded_positions(answer, lengths, batch_size: int, max_length: int = 512) -> bool:
    """How many token positions do batches of `batch_size` consecutive texts with dynamic padding contain?"""
    lengths = np.asarray(lengths, dtype=np.int64)
    expected = padded_positions(lengths, batch_size, max_length)
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: cut the list into batches of batch_size in the "
                                 "given order; each batch has (its longest text) × (texts in it) positions.")
    value = _as_int(answer)
    if value is None:
        return report(False, "", f"Give a whole number of positions; you gave {answer!r}.")
    kept = np.minimum(lengths, max_length)
    real = int(kept.sum())
    if value == expected:
        return report(True, f"Right: {expected} positions for {real} real tokens "
                            f"({expected / real:.2f} positions per real token).", "")
    if value == real:
        return report(False, "", f"{value} is the number of real tokens: that is no padding at all. Each batch is "
                                 "a rectangle, padded to the longest text in that batch.")
    if value == len(kept) * int(kept.max()):
        return report(False, "", f"{value} pads every text to the longest text of the whole list. Dynamic padding "
                                 "pads each batch only to the longest text in that batch.")
    if value == len(kept) * max_length:
        return report(False, "", f"{value} is what padding='max_length' gives. Here each batch is padded only to "
                                 "its own longest text.")
    if value == padded_positions(np.sort(kept)[::-1], batch_size, max_length):
        return report(False, "", f"{value} is what you get after sorting the texts by length. Keep the order given: "
                                 "texts 0..batch_size-1 form the first batch, and so on.")
    return report(False, "", f"Not quite: {describe_difference(value, expected)}. Hint: the last batch may have "
                             "fewer texts; count (longest in batch) × (texts in batch) for each batch and add up.")


def check_max_length(answer, lengths, coverage: float = 0.95, multiple_of: int = 8) -> bool:
    """The smallest multiple of `multiple_of` that truncates at most 1 − `coverage` of the texts."""
    lengths = np.asarray(lengths, dtype=np.int64)
    expected = max_length_for_coverage(lengths, coverage, multiple_of)
    allowed = 1 - coverage
    if answer is None:
        return report(False, "", f"You have not answered yet. Hint: look at the {coverage:.0%} percentile of the "
                                 f"lengths (np.percentile) and round it up to a multiple of {multiple_of}.")
    value = _as_int(answer)
    if value is None or value < 1:
        return report(False, "", f"Give a positive whole number of tokens; you gave {answer!r}.")
    cut = truncated_share(lengths, value)
    if value == expected:
        return report(True, f"Right: max_length={expected} truncates {cut:.1%} of the texts "
                            f"(at most {allowed:.0%} allowed), and {expected - multiple_of} would cut "
                            f"{truncated_share(lengths, expected - multiple_of):.1%}.", "")
    if value % multiple_of:
        return report(False, "", f"{value} is not a multiple of {multiple_of}; round up to the next multiple "
                                 f"(GPU kernels like lengths that are multiples of 8).")
    if value < expected:
        return report(False, "", f"max_length={value} truncates {cut:.1%} of the texts, more than the "
                                 f"{allowed:.0%} allowed. Go up.")
    return report(False, "", f"max_length={value} truncates only {cut:.1%}, but a smaller multiple of {multiple_of} "
                             f"also keeps at least {coverage:.0%} whole — and every extra position costs compute "
                             "when a batch is padded to max_length. Go down.")
