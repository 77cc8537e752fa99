"""The checkers of notebooks/02_dataset_and_sampler.ipynb accept right answers and explain wrong ones without
revealing them."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from exercise_checks import assert_right, assert_stub_and_reveal, assert_wrong, outcome
from labkit.collate import Collate, TextDataset
from labkit.course.exercises import dataset_and_sampler as ex
from labkit.sampling import PKBatchSampler

# One class dominates: (total groups) // p over-counts, which one of the hints must catch.
SIZES, P, K = [41, 8, 8, 5], 2, 3
BATCH = ["a", "a", "a", "b", "b", "c", "d", "d", "d", "d"]


def greedy_epoch_length(sizes, p, k):
    """Fill batches one by one from the p classes with the most groups left (optimal for this problem)."""
    groups = [n // k for n in sizes]
    batches = 0
    while True:
        richest = sorted(range(len(groups)), key=lambda c: -groups[c])[:p]
        if len(richest) < p or groups[richest[-1]] == 0:
            return batches
        for c in richest:
            groups[c] -= 1
        batches += 1


def naive_triplets(labels):
    return sum(
        1
        for a, q, n in itertools.product(range(len(labels)), repeat=3)
        if a != q and labels[a] == labels[q] and labels[n] != labels[a]
    )


def check_epoch(answer, **kw):
    return ex.check_epoch_length(answer, SIZES, P, K, **kw)


def test_epoch_length(capsys):
    right = greedy_epoch_length(SIZES, P, K)
    naive = sum(n // K for n in SIZES) // P
    assert len({naive, right, sum(SIZES) // (P * K)}) == 3  # the case must tell the three apart
    assert_right(capsys, check_epoch, right, "sit out")
    assert_stub_and_reveal(capsys, check_epoch, right)
    cases = [
        (naive, "*different* classes"),
        (sum(SIZES) // (P * K), "left over"),
        (right + 1, "more batches than the groups can fill"),
        (right - 1, "fewer batches"),
        ("six", "whole number"),
    ]
    for answer, words in cases:
        assert_wrong(capsys, check_epoch, answer, words, right)


@pytest.mark.parametrize("sizes, p, k", [([10, 7, 5, 12, 3], 2, 3), ([4] * 6, 3, 2), ([9, 9, 30], 2, 4)])
def test_epoch_length_agrees_with_a_greedy_count(capsys, sizes, p, k):
    assert ex.check_epoch_length(greedy_epoch_length(sizes, p, k), sizes, p, k)


def check_triplets(answer, **kw):
    return ex.check_valid_triplets(answer, BATCH, **kw)


def test_valid_triplets(capsys):
    right = naive_triplets(BATCH)
    assert_right(capsys, check_triplets, right, "Anchors without a positive (they take part in none): 1 of 10")
    assert_right(capsys, check_triplets, torch.tensor(float(right)))
    assert_stub_and_reveal(capsys, check_triplets, right)
    size = len(BATCH)
    counts = {label: BATCH.count(label) for label in set(BATCH)}
    pairs = sum(m * (m - 1) for m in counts.values())
    cases = [
        (pairs, "(anchor, positive) pairs"),
        (sum(m * m * (size - m) for m in counts.values()), "its own positive"),
        (right // 2, "unordered"),
        (size**3, "every triple"),
        (size * (size - 1) * (size - 2) // 6, "unordered triples"),
        (right + 3, "Not quite"),
        ([1, 2], "one whole number"),
    ]
    for answer, words in cases:
        assert_wrong(capsys, check_triplets, answer, words, right)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from labkit.model import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


@pytest.fixture()
def rows():
    texts = [f"text number {i} " + "word " * (i % 7) for i in range(24)]
    labels = [i % 4 for i in range(24)]
    return texts, labels


def test_pk_loader_accepts_the_recipe_and_leaves_the_epoch_alone(capsys, tokenizer, rows):
    texts, labels = rows
    sampler = PKBatchSampler(labels, p=2, k=3, seed=0)
    loader = DataLoader(TextDataset(texts, labels), batch_sampler=sampler, collate_fn=Collate(tokenizer, max_length=32))
    ok, out = outcome(capsys, ex.check_pk_loader(loader, 2, 3))
    assert ok and "2 classes × 3 examples" in out
    assert sampler.epoch == 0


def test_pk_loader_stubs_and_reveal(capsys):
    for stub in (None, ...):
        ok, out = outcome(capsys, ex.check_pk_loader(stub, 2, 3))
        assert not ok and "Not answered yet" in out and "reveal=True" in out and "PKBatchSampler(labels" not in out
        ok, out = outcome(capsys, ex.check_pk_loader(stub, 2, 3, reveal=True))
        assert not ok and "Solution" in out and "batch_sampler=PKBatchSampler(labels, p=2, k=3" in out


def test_pk_loader_explains_what_is_wrong(capsys, tokenizer, rows):
    texts, labels = rows
    dataset = TextDataset(texts, labels)
    collate = Collate(tokenizer, max_length=32)
    pk = PKBatchSampler(labels, p=2, k=3, seed=0)

    class PadToMax(Collate):
        def tokenize(self, texts):
            return dict(self.tokenizer(list(texts), padding="max_length", truncation=True,
                                       max_length=self.max_length, return_tensors="pt"))

    shuffled_labels = labels[1:] + labels[:1]
    cases = [
        ([1, 2, 3], "DataLoader"),
        (DataLoader(dataset, batch_size=6, shuffle=True, collate_fn=collate), "batch_size= or sampler="),
        (DataLoader(dataset, batch_sampler=PKBatchSampler(labels, p=3, k=2), collate_fn=collate), "p=3"),
        (DataLoader(TextDataset(texts[:12], labels[:12]), batch_sampler=pk, collate_fn=collate), "same rows"),
        (DataLoader(dataset, batch_sampler=pk), "collate_fn"),
        (DataLoader(TextDataset(texts), batch_sampler=pk, collate_fn=collate), "no label tensor"),
        (DataLoader(TextDataset(texts, shuffled_labels), batch_sampler=pk, collate_fn=collate), "same list"),
        (DataLoader(dataset, batch_sampler=pk, collate_fn=PadToMax(tokenizer, max_length=32)), "max_length"),
        (DataLoader(dataset, batch_sampler=pk, collate_fn=lambda rows: 1 / 0), "ZeroDivisionError"),
    ]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_pk_loader(answer, 2, 3))
        assert not ok and words in out and "reveal=True" in out and "Solution" not in out, (words, out)
    assert pk.epoch == 0
