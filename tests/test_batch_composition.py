"""labkit.course.batch_composition counts what naive loops and labkit.mining's masks count, and measures samplers honestly."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from labkit.course import batch_composition as lb
from labkit.course.article import ArticleDataset
from labkit.mining import anchor_negative_mask, anchor_positive_mask, valid_triplet_mask
from labkit.sampling import PKBatchSampler


def naive_batch_row(batch, labels):
    """Loop over every (a, p, n) of one batch, by position, the slow and obvious way."""
    batch_labels = [labels[i] for i in batch]
    size = len(batch)
    without_positive = without_negative = without_triplet = 0
    positive_pairs = triplets = 0
    for a in range(size):
        positives = [p for p in range(size) if p != a and batch_labels[p] == batch_labels[a]]
        negatives = [n for n in range(size) if batch_labels[n] != batch_labels[a]]
        without_positive += not positives
        without_negative += not negatives
        without_triplet += not (positives and negatives)
        positive_pairs += len(positives)
        triplets += len(positives) * len(negatives)
    copies = Counter(batch)
    return {
        "size": size,
        "n_classes": len(set(batch_labels)),
        "anchors_without_positive": without_positive,
        "anchors_without_negative": without_negative,
        "anchors_without_triplet": without_triplet,
        "positive_pairs": positive_pairs,
        "valid_triplets": triplets,
        "repeats": size - len(copies),
        "self_pairs": sum(r * (r - 1) for r in copies.values()),
    }


def random_batches(rng, num_examples, num_batches, max_size):
    return [rng.integers(0, num_examples, size=rng.integers(1, max_size + 1)).tolist() for _ in range(num_batches)]


@pytest.mark.parametrize("seed", range(4))
def test_batch_report_matches_a_naive_loop_on_random_batches_with_repeats(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["x", "y", "z", "w", "v"], size=40).tolist()
    batches = random_batches(rng, 40, 25, 12)
    report = lb.batch_report(batches, labels)
    expected = pd.DataFrame([naive_batch_row(b, labels) for b in batches])
    assert list(report.columns) == list(expected.columns)
    np.testing.assert_array_equal(report.to_numpy(), expected.to_numpy())


def test_triplet_counts_agree_with_the_mining_masks():
    rng = np.random.default_rng(1)
    for _ in range(10):
        labels = torch.as_tensor(rng.integers(0, 4, size=rng.integers(2, 15)))
        counts = lb.triplet_counts(labels)
        positive, negative = anchor_positive_mask(labels), anchor_negative_mask(labels)
        assert counts["valid_triplets"] == int(valid_triplet_mask(labels).sum())
        assert counts["positive_pairs"] == int(positive.sum())
        assert counts["anchors_without_positive"] == int((~positive.any(1)).sum())
        assert counts["anchors_without_negative"] == int((~negative.any(1)).sum())
        assert counts["anchors_without_triplet"] == int((~(positive.any(1) & negative.any(1))).sum())
        assert counts["anchors"] == len(labels) and counts["classes"] == len(set(labels.tolist()))


def test_a_pk_batch_has_the_closed_form_counts_and_a_single_class_batch_has_none():
    p, k = 5, 3
    labels = np.repeat(np.arange(p), k)
    counts = lb.triplet_counts(labels)
    assert counts["valid_triplets"] == p * k * (k - 1) * (p - 1) * k
    assert counts["anchors_without_triplet"] == 0
    single = lb.triplet_counts([7, 7, 7, 7])
    assert single["valid_triplets"] == 0 and single["anchors_without_negative"] == 4


def test_epoch_report_counts_like_counter():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=50)
    batches = random_batches(rng, 50, 30, 8)
    report = lb.epoch_report(batches, labels)
    uses = Counter(i for batch in batches for i in batch)
    rows = [naive_batch_row(b, labels) for b in batches]
    drawn = sum(len(b) for b in batches)
    assert report["batches"] == len(batches) and report["examples_drawn"] == drawn
    assert report["coverage"] == pytest.approx(len(uses) / 50)
    assert report["examples_repeated"] == sum(c > 1 for c in uses.values())
    assert report["max_uses"] == max(uses.values())
    assert report["repeats_within_batches"] == sum(r["repeats"] for r in rows)
    assert report["anchors_without_positive"] == pytest.approx(sum(r["anchors_without_positive"] for r in rows) / drawn)
    assert report["anchors_without_triplet"] == pytest.approx(sum(r["anchors_without_triplet"] for r in rows) / drawn)
    assert report["mean_valid_triplets"] == pytest.approx(np.mean([r["valid_triplets"] for r in rows]))
    assert report["batches_without_triplets"] == sum(r["valid_triplets"] == 0 for r in rows)
    assert report["mean_classes_per_batch"] == pytest.approx(np.mean([r["n_classes"] for r in rows]))


def test_compare_samplers_has_one_row_per_sampler_equal_to_epoch_report():
    labels = np.repeat(np.arange(6), 10)
    epochs = {"pk": PKBatchSampler(labels, 3, 4, seed=0).batches_for_epoch(0), "shuffled": lb.shuffled_batches(60, 12)}
    table = lb.compare_samplers(epochs, labels)
    assert list(table.index) == ["pk", "shuffled"]
    for name, batches in epochs.items():
        assert table.loc[name].to_dict() == pytest.approx(lb.epoch_report(batches, labels).astype(float).to_dict())
    assert table.loc["pk", "anchors_without_triplet"] == 0
    with pytest.raises(TypeError, match="non-empty dict"):
        lb.compare_samplers([], labels)


def test_shuffled_batches_deal_a_seeded_permutation_like_a_shuffling_dataloader():
    ours = lb.shuffled_batches(50, 8, seed=5)
    assert [len(batch) for batch in ours] == [8] * 6
    flat = [i for batch in ours for i in batch]
    assert len(set(flat)) == 48 and set(flat) <= set(range(50))  # each example at most once, 2 dropped
    assert ours == lb.shuffled_batches(50, 8, seed=5) and ours != lb.shuffled_batches(50, 8, seed=6)
    assert sorted(i for batch in lb.shuffled_batches(50, 8, drop_last=False) for i in batch) == list(range(50))
    # the same batches as the DataLoader's own shuffling for the same generator state
    loader = DataLoader(list(range(50)), batch_size=8, drop_last=True,
                        sampler=torch.utils.data.RandomSampler(range(50), generator=torch.Generator().manual_seed(5)))
    assert ours == [batch.tolist() for batch in loader]


def naive_label_grouped(labels, batch_size, class_order):
    stream = []
    for label in class_order:
        members = [i for i, y in enumerate(labels) if y == label]
        stream += members[: len(members) // 2 * 2]
    return [stream[i : i + batch_size] for i in range(0, len(stream) - batch_size + 1, batch_size)]


def test_label_grouped_batches_concatenate_classes_in_a_random_order():
    labels = [2, 0, 1, 0, 2, 2, 1, 0, 0, 1, 1, 2, 0]  # codes by first appearance: 2→0, 0→1, 1→2
    batches = lb.label_grouped_batches(labels, 4, seed=3)
    first_seen = list(dict.fromkeys(labels))
    order = [first_seen[c] for c in np.random.default_rng(3).permutation(3)]
    assert batches == naive_label_grouped(labels, 4, order)


def test_label_grouped_batches_mostly_hold_one_class_when_classes_are_large():
    labels = np.repeat(np.arange(10), 64)
    report = lb.batch_report(lb.label_grouped_batches(labels, 32), labels)
    assert (report["n_classes"] == 1).all() and (report["valid_triplets"] == 0).all()
    with pytest.raises(ValueError, match="batch_size"):
        lb.label_grouped_batches(labels, 1)


def test_count_device_moves_counts_requests_not_dtype_changes():
    x = torch.zeros(5)  # float32: 20 bytes
    with lb.count_device_moves() as moves:
        x.to("cpu")
        x.to(torch.device("cpu"), non_blocking=True)
        x.to(device="cpu")
        x.to(torch.zeros(1))
        x.cpu()
        x.to(torch.float64)  # not a move
        x + 1
    assert moves.requests == 5 and moves.transfers == 0
    assert moves.bytes_requested == 5 * 20 and moves.bytes_transferred == 0
    assert moves.targets == Counter({"cpu": 5})
    with lb.count_device_moves() as after:
        pass
    assert after.requests == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to see a real transfer")
def test_count_device_moves_sees_real_transfers():
    with lb.count_device_moves() as moves:
        torch.zeros(3).to("cuda").cpu()
    assert moves.requests == 2 and moves.transfers == 2


def test_the_article_dataset_moves_three_tensors_per_example():
    n, width = 12, 16
    tokens = [torch.ones(width, dtype=torch.long)] * n
    dataset = ArticleDataset(tokens, tokens, list(range(3)) * 4, device="cpu")
    with lb.count_device_moves() as moves:
        ids, mask, labels = next(iter(DataLoader(dataset, batch_size=4)))
    assert moves.requests == 3 * 4
    assert moves.bytes_requested == 4 * (2 * width * 8 + 4)  # two int64 rows and one float32 label per example


def test_class_count_matrix_matches_counting_by_hand():
    labels = ["b", "a", "c", "a", "b"]
    batches = [[0, 1, 3], [2, 2, 4], [4]]
    matrix = lb.class_count_matrix(batches, labels)
    classes = sorted(set(labels))
    expected = [[sum(labels[i] == c for i in batch) for c in classes] for batch in batches]
    np.testing.assert_array_equal(matrix, expected)
    assert lb.class_count_matrix(batches, labels, max_batches=2).shape == (2, 3)


def test_plots_draw_on_the_given_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.repeat(np.arange(4), 6)
    epoch = PKBatchSampler(labels, 2, 3, seed=0).batches_for_epoch(0)
    fig, axes = plt.subplots(1, 2)
    assert lb.plot_batch_composition(epoch, labels, ax=axes[0], title="P×K") is axes[0]
    assert axes[0].images[0].get_array().shape == (len(epoch), 4)
    assert lb.plot_example_usage({"pk": epoch, "shuffled": lb.shuffled_batches(24, 6)}, 24, ax=axes[1]) is axes[1]
    assert len(axes[1].patches) == 2 * 5
    plt.close(fig)


@pytest.mark.parametrize(
    "batches, labels, error, words",
    [
        ([[0, 5]], [0, 1, 2], ValueError, "outside 0..2"),
        ([], [0, 1], ValueError, "non-empty"),
        ([[0]], "abc", TypeError, "single str"),
        ([[0]], [[0, 1]], ValueError, "one-dimensional"),
        ([[0]], [], ValueError, "empty"),
        ([[0]], [1.0, None], ValueError, "missing"),
    ],
)
def test_bad_input_gets_a_clear_error(batches, labels, error, words):
    with pytest.raises(error, match=words):
        lb.batch_report(batches, labels)


def test_a_large_epoch_is_measured_quickly():
    import time

    labels = np.random.default_rng(0).integers(0, 100, size=200_000)
    epoch = PKBatchSampler(labels, 16, 4, seed=0).batches_for_epoch(0)
    start = time.perf_counter()
    report = lb.epoch_report(epoch, labels)
    assert time.perf_counter() - start < 5
    assert report["anchors_without_triplet"] == 0 and report["max_uses"] == 1
