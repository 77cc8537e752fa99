"""The checkers of notebooks/02_dataset_and_sampler.ipynb accept right answers and explain wrong ones."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from labkit.course.exercises import dataset_and_sampler as ex
from labkit.sampling import PKBatchSampler
from labkit.collate import Collate, TextDataset

# One class dominates: (total groups) // p over-counts, which one of the hints must catch.
SIZES, P, K = [41, 8, 8, 5], 2, 3
BATCH = ["a", "a", "a", "b", "b", "c", "d", "d", "d", "d"]


def outcome(capsys, ok):
    return ok, capsys.readouterr().out


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


def test_epoch_length(capsys):
    right = greedy_epoch_length(SIZES, P, K)
    naive = sum(n // K for n in SIZES) // P
    assert len({naive, right, sum(SIZES) // (P * K)}) == 3  # the case must tell the three apart
    ok, out = outcome(capsys, ex.check_epoch_length(right, SIZES, P, K))
    assert ok and "sit out" in out
    cases = [
        (None, "not answered yet"),
        (naive, "different"),
        (sum(SIZES) // (P * K), "left over"),
        (right + 1, "Too many"),
        (right - 1, "Too few"),
        ("six", "whole number"),
    ]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_epoch_length(answer, SIZES, P, K))
        assert not ok and words in out, (answer, out)


@pytest.mark.parametrize("sizes, p, k", [([10, 7, 5, 12, 3], 2, 3), ([4] * 6, 3, 2), ([9, 9, 30], 2, 4)])
def test_epoch_length_agrees_with_a_greedy_count(sizes, p, k):
    assert ex.check_epoch_length(greedy_epoch_length(sizes, p, k), sizes, p, k)


def test_valid_triplets(capsys):
    right = naive_triplets(BATCH)
    ok, out = outcome(capsys, ex.check_valid_triplets(right, BATCH))
    assert ok and "Anchors without a positive (they take part in none): 1 of 10" in out
    assert ex.check_valid_triplets(torch.tensor(float(right)), BATCH)
    size = len(BATCH)
    counts = {label: BATCH.count(label) for label in set(BATCH)}
    pairs = sum(m * (m - 1) for m in counts.values())
    cases = [
        (None, "not answered yet"),
        (pairs, "(anchor, positive) pairs"),
        (sum(m * m * (size - m) for m in counts.values()), "its own positive"),
        (right // 2, "unordered"),
        (size**3, "every triple"),
        (size * (size - 1) * (size - 2) // 6, "unordered triples"),
        (right + 3, "group the batch by class"),
        ([1, 2], "whole number"),
    ]
    for answer, words in cases:
        ok, out = outcome(capsys, ex.check_valid_triplets(answer, BATCH))
        assert not ok and words in out, (answer, out)


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
        (None, "not answered yet"),
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
        assert not ok and words in out, (words, out)
    assert pk.epoch == 0
