"""Property tests for labkit.sampling.

Every property is checked on a sweep of randomly generated label sets (seeded, bounded sizes: balanced,
imbalanced, one dominant class, string labels) against plain-Python checks written here, and the epoch
length against an independent greedy construction. (hypothesis is not a project dependency, so the sweep
is a seeded list of cases rather than hypothesis strategies.)
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from labkit.sampling import (
    FixedBatchSampler,
    NoDuplicatesBatchSampler,
    PKBatchSampler,
    batch_composition,
    example_usage,
)


# ------------------------------------------------------------------------------------------------ helpers
def random_pk_cases(count: int, seed: int = 1234):
    """Random (labels, p, k) with every class >= k examples; a mix of shapes of class-size distributions."""
    rng = np.random.default_rng(seed)
    cases = []
    for case in range(count):
        k = int(rng.integers(2, 7))
        p = int(rng.integers(2, 6))
        num_classes = int(rng.integers(p, p + 12))
        shape = case % 3
        if shape == 0:  # balanced
            sizes = np.full(num_classes, int(rng.integers(k, 5 * k)))
        elif shape == 1:  # uneven
            sizes = rng.integers(k, 6 * k, size=num_classes)
        else:  # one class dominates the data
            sizes = rng.integers(k, 3 * k, size=num_classes)
            sizes[0] = int(rng.integers(20 * k, 40 * k))
        labels = np.repeat(np.arange(num_classes), sizes)
        rng.shuffle(labels)
        cases.append((labels, p, k))
    return cases


PK_CASES = random_pk_cases(24)


def greedy_largest_first_batch_count(labels, p: int, k: int) -> int:
    """Independent count of full batches: repeatedly give a batch to the P classes with most groups left."""
    groups = sorted((n // k for n in Counter(labels.tolist()).values()), reverse=True)
    batches = 0
    while len(groups) >= p and groups[p - 1] > 0:
        for i in range(p):
            groups[i] -= 1
        groups = sorted((g for g in groups if g > 0), reverse=True)
        batches += 1
    return batches


def check_pk_batch(batch, labels, p: int, k: int):
    assert len(batch) == p * k
    assert len(set(batch)) == len(batch), "an index repeats inside a batch"
    per_class = Counter(labels[i] for i in batch)
    assert len(per_class) == p
    assert set(per_class.values()) == {k}


# ------------------------------------------------------------------------------------------------ PKBatchSampler
@pytest.mark.parametrize("case", range(len(PK_CASES)))
def test_pk_batches_have_p_classes_of_k_distinct_examples_each(case):
    labels, p, k = PK_CASES[case]
    sampler = PKBatchSampler(labels, p=p, k=k, seed=case)
    for epoch in range(2):
        batches = sampler.batches_for_epoch(epoch)
        for batch in batches:
            assert all(isinstance(i, int) for i in batch)
            check_pk_batch(batch, labels, p, k)


@pytest.mark.parametrize("case", range(len(PK_CASES)))
def test_pk_epoch_uses_each_example_at_most_once_and_has_the_largest_possible_length(case):
    labels, p, k = PK_CASES[case]
    sampler = PKBatchSampler(labels, p=p, k=k, seed=case)
    batches = sampler.batches_for_epoch(0)
    assert len(sampler) == len(batches) == greedy_largest_first_batch_count(labels, p, k)
    usage = Counter(i for batch in batches for i in batch)
    assert max(usage.values()) == 1


@pytest.mark.parametrize("case", [c for c in range(len(PK_CASES)) if c % 3 == 0])
def test_pk_epoch_covers_almost_every_example_of_balanced_data(case):
    labels, p, k = PK_CASES[case]
    num_classes = len(set(labels.tolist()))
    used = {i for batch in PKBatchSampler(labels, p=p, k=k).batches_for_epoch(0) for i in batch}
    # Left out at most: each class's remainder (< k) and the groups that do not fill a last batch (< p).
    assert len(used) >= len(labels) - num_classes * (k - 1) - (p - 1) * k


def test_pk_leftovers_rotate_so_over_epochs_every_example_is_used():
    labels = np.repeat(np.arange(5), 7)  # 7 % 3 = 1 example per class sits out each epoch
    sampler = PKBatchSampler(labels, p=2, k=3, seed=0)
    seen = {i for epoch in range(12) for batch in sampler.batches_for_epoch(epoch) for i in batch}
    assert seen == set(range(len(labels)))


def test_pk_is_deterministic_for_a_seed_and_differs_between_seeds_and_epochs():
    labels, p, k = PK_CASES[1]
    first, again = PKBatchSampler(labels, p, k, seed=7), PKBatchSampler(labels, p, k, seed=7)
    assert list(first) == list(again)
    assert list(first) == list(again)  # second pass: both moved on to epoch 1 together
    other_seed = PKBatchSampler(labels, p, k, seed=8)
    assert other_seed.batches_for_epoch(0) != first.batches_for_epoch(0)
    assert first.batches_for_epoch(0) != first.batches_for_epoch(1)


def test_pk_iteration_advances_the_epoch_and_set_epoch_replays_one():
    labels, p, k = PK_CASES[2]
    sampler = PKBatchSampler(labels, p, k, seed=3)
    epoch0, epoch1 = list(sampler), list(sampler)
    assert epoch0 != epoch1
    assert epoch0 == sampler.batches_for_epoch(0) and epoch1 == sampler.batches_for_epoch(1)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    sampler.batches_for_epoch(5)  # inspecting an epoch does not move the sampler
    assert list(sampler) == epoch1


def test_pk_gives_the_same_batches_for_every_label_container():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 8, size=200)
    names = np.array([f"class_{c:02d}" for c in range(8)])  # zero-padded: sorts like the codes
    containers = [
        codes.tolist(),
        codes,
        torch.as_tensor(codes),
        pd.Series(codes),
        names[codes].tolist(),
        pd.Series(names[codes]),
        codes.astype(float),  # integral floats are accepted as class labels
    ]
    expected = PKBatchSampler(codes, p=3, k=4, seed=5).batches_for_epoch(0)
    for labels in containers:
        assert PKBatchSampler(labels, p=3, k=4, seed=5).batches_for_epoch(0) == expected


def test_pk_works_as_a_dataloader_batch_sampler():
    labels, p, k = PK_CASES[4]
    dataset = TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    loader = DataLoader(dataset, batch_sampler=PKBatchSampler(labels, p=p, k=k, seed=0))
    seen = []
    for indices, batch_labels in loader:
        assert torch.equal(batch_labels, torch.as_tensor(labels)[indices])
        assert sorted(Counter(batch_labels.tolist()).values()) == [k] * p
        seen.extend(indices.tolist())
    assert len(seen) == len(loader) * p * k and len(set(seen)) == len(seen)


def test_pk_refuses_small_classes_naming_them_and_suggesting_fixes():
    labels = ["big"] * 10 + ["tiny"] * 2 + ["small"] * 3 + ["other"] * 10
    with pytest.raises(ValueError) as error:
        PKBatchSampler(labels, p=2, k=4)
    message = str(error.value)
    assert "'tiny'" in message and "'small'" in message and "'big'" not in message
    assert "allow_replacement=True" in message and "smaller k" in message


def test_pk_refuses_fewer_classes_than_p():
    with pytest.raises(ValueError, match="p=3"):
        PKBatchSampler([0] * 10 + [1] * 10, p=3, k=2)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(p=1, k=4), ValueError),
        (dict(p=2, k=1), ValueError),
        (dict(p=2.0, k=4), TypeError),
        (dict(p=2, k=4, seed=-1), ValueError),
    ],
)
def test_pk_checks_its_arguments(kwargs, error):
    with pytest.raises(error):
        PKBatchSampler(np.repeat(np.arange(4), 8), **kwargs)


@pytest.mark.parametrize(
    "labels, error, words",
    [
        ([0.1, 0.5, 0.9, 0.3], ValueError, "scores"),
        ([1.0, np.nan, 2.0, 1.0], ValueError, "NaN"),
        (["a", None, "b", "a"], ValueError, "missing"),
        (np.zeros((4, 2)), ValueError, "one-dimensional"),
        ([], ValueError, "empty"),
        ("aabb", TypeError, "sequence"),
    ],
)
def test_pk_rejects_labels_that_are_not_class_labels(labels, error, words):
    with pytest.raises(error, match=words):
        PKBatchSampler(labels, p=2, k=2)


def test_pk_replacement_tops_up_small_classes_and_those_are_the_only_repeats():
    labels = np.array([0] * 3 + [1] * 2 + [2] * 9 + [3] * 12)  # k=4: classes 0 and 1 are short
    sampler = PKBatchSampler(labels, p=2, k=4, seed=0, allow_replacement=True)
    sizes = Counter(labels.tolist())
    for epoch in range(10):
        batches = sampler.batches_for_epoch(epoch)
        assert len(batches) == len(sampler)
        usage = Counter()
        for batch in batches:
            assert len(batch) == 8 and sorted(Counter(labels[i] for i in batch).values()) == [4, 4]
            for label in set(labels[i] for i in batch):
                members = [i for i in batch if labels[i] == label]
                if sizes[label] < 4:  # all of the class, plus k - n draws among them
                    assert set(members) == set(np.flatnonzero(labels == label).tolist())
                    assert len(members) - len(set(members)) == 4 - sizes[label]
                else:
                    assert len(set(members)) == 4
            usage.update(i for i in batch if sizes[labels[i]] >= 4)
        assert not usage or max(usage.values()) == 1  # full-size classes: at most once per epoch


def test_pk_replacement_still_refuses_single_example_classes():
    with pytest.raises(ValueError, match="single example"):
        PKBatchSampler([0] * 5 + [1] * 5 + [2], p=2, k=4, allow_replacement=True)


# ------------------------------------------------------------------------------------------------ FixedBatchSampler
def test_fixed_sampler_gives_the_same_valid_batches_every_epoch():
    labels, p, k = PK_CASES[3]
    sampler = FixedBatchSampler(labels, p=p, k=k, seed=11)
    first = list(sampler)
    sampler.set_epoch(4)
    assert list(sampler) == first and len(sampler) == len(first) > 0
    for batch in first:
        check_pk_batch(batch, labels, p, k)
    assert FixedBatchSampler(labels, p=p, k=k, seed=11).batches == first
    assert len(FixedBatchSampler(labels, p=p, k=k, seed=11, max_batches=2)) == 2


def test_fixed_sampler_batches_cannot_be_changed_through_iteration():
    sampler = FixedBatchSampler(np.repeat(np.arange(3), 4), p=2, k=2)
    for batch in sampler:
        batch.append(-1)
    assert all(-1 not in batch for batch in sampler)


# ------------------------------------------------------------------------------------------------ NoDuplicates
def random_pair_cases(count: int, seed: int = 99):
    """(rows of (anchor, positive), batch_size) with duplicated texts, some shared across columns."""
    rng = np.random.default_rng(seed)
    cases = []
    for case in range(count):
        rows = int(rng.integers(40, 300))
        distinct_positives = int(rng.integers(8, rows))
        anchors = [f"q{int(i)}" for i in rng.integers(0, rows, size=rows)]
        positives = [f"a{int(i)}" for i in rng.integers(0, distinct_positives, size=rows)]
        for i in rng.choice(rows, size=rows // 10, replace=False):  # some anchors reappear as positives
            positives[i] = anchors[int(rng.integers(0, rows))]
        cases.append((list(zip(anchors, positives)), int(rng.integers(2, 9))))
    return cases


PAIR_CASES = random_pair_cases(12)


@pytest.mark.parametrize("case", range(len(PAIR_CASES)))
def test_no_duplicates_batches_share_no_text_and_use_rows_at_most_once(case):
    pairs, batch_size = PAIR_CASES[case]
    sampler = NoDuplicatesBatchSampler(pairs, batch_size=batch_size, seed=case)
    for epoch in range(2):
        batches = sampler.batches_for_epoch(epoch)
        assert len(batches) > 0
        for batch in batches:
            assert len(batch) == batch_size
            texts = [text for i in batch for text in set(pairs[i])]
            assert len(texts) == len(set(texts)), "two rows of a batch share a text"
        usage = Counter(i for batch in batches for i in batch)
        assert max(usage.values()) == 1
        assert len(batches) <= len(pairs) // batch_size


def test_no_duplicates_without_duplicates_is_a_plain_shuffle_of_full_length():
    pairs = [(f"q{i}", f"a{i}") for i in range(103)]
    sampler = NoDuplicatesBatchSampler(pairs, batch_size=10, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler.batches_for_epoch(0)) == 103 // 10
    assert len({i for batch in batches for i in batch}) == 100


def test_no_duplicates_len_matches_iteration_and_epochs_are_reproducible():
    pairs, batch_size = PAIR_CASES[0]
    sampler = NoDuplicatesBatchSampler(pairs, batch_size, seed=4)
    length = len(sampler)
    epoch0 = list(sampler)
    assert len(epoch0) == length
    assert list(sampler) != epoch0  # the next epoch reshuffles
    sampler.set_epoch(0)
    assert list(sampler) == epoch0 == NoDuplicatesBatchSampler(pairs, batch_size, seed=4).batches_for_epoch(0)


def test_no_duplicates_keep_last_places_every_row_exactly_once():
    pairs, _ = PAIR_CASES[1]
    batches = NoDuplicatesBatchSampler(pairs, batch_size=6, seed=0, drop_last=False).batches_for_epoch(0)
    assert sorted(i for batch in batches for i in batch) == list(range(len(pairs)))
    for batch in batches:
        texts = [text for i in batch for text in set(pairs[i])]
        assert len(texts) == len(set(texts))


def test_no_duplicates_accepts_single_texts_and_dataframes():
    texts = ["a", "b", "a", "c", "d", "b", "e", "f"]
    for batch in NoDuplicatesBatchSampler(texts, batch_size=3, seed=1).batches_for_epoch(0):
        assert len({texts[i] for i in batch}) == 3
    frame = pd.DataFrame({"anchor": ["x", "y", "z", "w"], "positive": ["y", "p", "q", "r"]})
    for batch in NoDuplicatesBatchSampler(frame, batch_size=2, seed=0, drop_last=False).batches_for_epoch(0):
        assert not {0, 1} <= set(batch)  # row 0's positive is row 1's anchor


def test_no_duplicates_works_as_a_dataloader_batch_sampler():
    pairs, batch_size = PAIR_CASES[2]
    sampler = NoDuplicatesBatchSampler(pairs, batch_size, seed=0)
    loader = DataLoader(list(range(len(pairs))), batch_sampler=sampler)
    assert sum(1 for _ in loader) == len(sampler.batches_for_epoch(0))


@pytest.mark.parametrize(
    "rows, batch_size, error, words",
    [
        ([("q", "same")] * 10, 2, ValueError, "too few distinct"),
        ([("a", "b"), ("c", "d")], 3, ValueError, "larger than"),
        ([("a", "b"), ("c",)], 2, ValueError, "same number"),
        ([("a", "b"), ("c", None), ("e", "f")], 2, ValueError, "missing"),
        ([("a", "b"), ("c", "d")], 1, ValueError, ">= 2"),
        ("abc", 2, TypeError, "single string"),
    ],
)
def test_no_duplicates_explains_bad_input(rows, batch_size, error, words):
    with pytest.raises(error, match=words):
        NoDuplicatesBatchSampler(rows, batch_size=batch_size)


# ------------------------------------------------------------------------------------------------ length grouping
def reference_no_duplicate_batches(rows, batch_size: int, seed: int, epoch: int, drop_last: bool = True):
    """The ungrouped epoch written as the plain loop it stands for.

    The rows in the epoch's shuffled order wait in a queue; each batch takes, front to back, every row none of
    whose texts a row already taken for this batch has, until it is full; the rows it passed over keep their
    places at the front of the queue for the next batch.
    """
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(len(rows))
    queue, batches = [int(i) for i in order], []
    while queue:
        taken, seen = [], set()
        for i in queue:
            if len(taken) == batch_size:
                break
            if not set(rows[i]) & seen:
                taken.append(i)
                seen.update(rows[i])
        if len(taken) < batch_size and drop_last:
            break
        batches.append(taken)
        queue = [i for i in queue if i not in set(taken)]
    return batches


@pytest.fixture(scope="module")
def snli_rows(data_dir):
    from labkit.data import snli_pairs

    frame = snli_pairs("dev", data_dir)  # premises repeat: real duplicates to keep apart
    return list(zip(frame["anchor"], frame["positive"]))


def within_batch_spread(batches, lengths) -> float:
    """Mean over batches of (longest - shortest) row length."""
    return float(np.mean([lengths[batch].max() - lengths[batch].min() for batch in map(np.asarray, batches)]))


@pytest.mark.parametrize("case", range(len(PAIR_CASES)))
def test_grouping_off_gives_the_batches_of_the_plain_loop(case):
    pairs, batch_size = PAIR_CASES[case]
    default = NoDuplicatesBatchSampler(pairs, batch_size, seed=case)
    explicit = NoDuplicatesBatchSampler(pairs, batch_size, seed=case, group_by_length=False)
    kept_last = NoDuplicatesBatchSampler(pairs, batch_size, seed=case, drop_last=False)
    for epoch in range(2):
        expected = reference_no_duplicate_batches(pairs, batch_size, case, epoch)
        assert default.batches_for_epoch(epoch) == explicit.batches_for_epoch(epoch) == expected
        assert kept_last.batches_for_epoch(epoch) == reference_no_duplicate_batches(pairs, batch_size, case, epoch, False)


@pytest.mark.parametrize("case", range(len(PAIR_CASES)))
def test_grouped_batches_share_no_text_and_use_every_row_once(case):
    pairs, batch_size = PAIR_CASES[case]
    lengths = np.random.default_rng(case).integers(1, 60, size=len(pairs))  # these texts are all alike long
    grouped = NoDuplicatesBatchSampler(pairs, batch_size, seed=case, group_by_length=True, lengths=lengths)
    kept_last = NoDuplicatesBatchSampler(pairs, batch_size, seed=case, drop_last=False, group_by_length=True,
                                         lengths=lengths)
    for epoch in range(2):
        batches = grouped.batches_for_epoch(epoch)
        assert batches and all(len(batch) == batch_size for batch in batches)
        for batch in batches:
            texts = [text for i in batch for text in set(pairs[i])]
            assert len(texts) == len(set(texts)), "two rows of a batch share a text"
        assert max(Counter(i for batch in batches for i in batch).values()) == 1
        every_row = kept_last.batches_for_epoch(epoch)
        assert sorted(i for batch in every_row for i in batch) == list(range(len(pairs)))


def test_grouped_batches_on_snli_share_no_text_are_as_many_and_hold_similar_lengths(snli_rows):
    longest_text = np.array([max(len(a), len(p)) for a, p in snli_rows])
    plain = NoDuplicatesBatchSampler(snli_rows, 32, seed=0).batches_for_epoch(0)
    grouped = NoDuplicatesBatchSampler(snli_rows, 32, seed=0, group_by_length=True).batches_for_epoch(0)
    assert len(grouped) == len(plain) == len(snli_rows) // 32
    for batch in grouped:
        texts = [text for i in batch for text in set(snli_rows[i])]
        assert len(texts) == len(set(texts))
    assert max(Counter(i for batch in grouped for i in batch).values()) == 1
    # Random batches span most of the length range; grouped ones only a slice of it.
    assert within_batch_spread(grouped, longest_text) < 0.25 * within_batch_spread(plain, longest_text)
    # The batch with the longest row comes first (out of memory at step 1, not later); the rest are shuffled.
    assert longest_text[grouped[0]].max() == longest_text.max()
    firsts = [longest_text[batch].max() for batch in grouped[1:]]
    assert firsts != sorted(firsts, reverse=True) and firsts != sorted(firsts)


def test_grouping_is_reproducible_for_a_seed_and_changes_with_seed_and_epoch(snli_rows):
    def sampler(seed):
        return NoDuplicatesBatchSampler(snli_rows, 32, seed=seed, group_by_length=True)

    first = sampler(3)
    epoch0 = list(first)
    assert list(first) != epoch0  # the next epoch draws new batches
    first.set_epoch(0)
    assert list(first) == epoch0 == sampler(3).batches_for_epoch(0)
    assert sampler(4).batches_for_epoch(0) != epoch0


def test_token_lengths_count_the_tokenizers_ids_and_group_by_the_longest_text(minilm, snli_rows):
    from labkit.sampling import token_lengths

    rows = snli_rows[:200]
    lengths = token_lengths(minilm.tokenizer, rows, max_length=16)
    assert lengths.shape == (200, 2)
    for (anchor, positive), (n_anchor, n_positive) in zip(rows[:20], lengths[:20]):
        assert n_anchor == len(minilm.tokenizer(anchor, truncation=True, max_length=16)["input_ids"])
        assert n_positive == len(minilm.tokenizer(positive, truncation=True, max_length=16)["input_ids"])
    per_text = NoDuplicatesBatchSampler(rows, 8, seed=1, group_by_length=True, lengths=lengths)
    per_row = NoDuplicatesBatchSampler(rows, 8, seed=1, group_by_length=True, lengths=lengths.max(axis=1))
    assert per_text.batches_for_epoch(0) == per_row.batches_for_epoch(0)


@pytest.mark.parametrize(
    "options, error, words",
    [
        ({"lengths": [3] * 6}, ValueError, "only used with group_by_length"),
        ({"group_by_length": True, "lengths": [3] * 5}, ValueError, "one number per row"),
        ({"group_by_length": True, "lengths": ["long"] * 6}, ValueError, "one number per row"),
    ],
)
def test_grouping_explains_bad_lengths(options, error, words):
    pairs = [(f"q{i}", f"a{i}") for i in range(6)]
    with pytest.raises(error, match=words):
        NoDuplicatesBatchSampler(pairs, batch_size=2, **options)


def test_grouping_without_lengths_needs_texts():
    with pytest.raises(TypeError, match="lengths="):
        NoDuplicatesBatchSampler(np.arange(12).reshape(6, 2), batch_size=2, group_by_length=True)
    sampler = NoDuplicatesBatchSampler(np.arange(12).reshape(6, 2), 2, group_by_length=True, lengths=np.arange(6))
    assert sorted(i for batch in sampler.batches_for_epoch(0) for i in batch) == list(range(6))


# ------------------------------------------------------------------------------------------------ inspection
def test_batch_composition_matches_counting_by_hand():
    rng = np.random.default_rng(3)
    labels = rng.choice(["x", "y", "z", "w"], size=40)
    batches = [rng.integers(0, 40, size=int(rng.integers(1, 12))).tolist() for _ in range(15)]
    table = batch_composition(batches, labels)
    assert len(table) == len(batches)
    for row, batch in zip(table.itertuples(), batches):
        counts = Counter(labels[i] for i in batch)
        assert row.size == len(batch)
        assert row.n_classes == len(counts)
        assert row.min_per_class == min(counts.values()) and row.max_per_class == max(counts.values())
        assert row.n_repeats == len(batch) - len(set(batch))
        assert row.class_counts == dict(counts)


def test_batch_composition_of_pk_batches_shows_p_classes_of_k_and_no_repeats():
    labels, p, k = PK_CASES[5]
    table = batch_composition(PKBatchSampler(labels, p, k).batches_for_epoch(0), labels)
    assert (table.n_classes == p).all() and (table.min_per_class == k).all() and (table.n_repeats == 0).all()


def test_example_usage_counts_like_counter():
    batches = [[0, 3, 3], [5, 0], []]
    counter = Counter(i for batch in batches for i in batch)
    assert example_usage(batches, 7).tolist() == [counter.get(i, 0) for i in range(7)]
    with pytest.raises(ValueError, match="outside"):
        example_usage([[0, 9]], 5)
    with pytest.raises(ValueError, match="outside"):
        batch_composition([[0, 9]], [0, 1, 2])


def test_pk_handles_a_large_dataset_quickly():
    labels = np.random.default_rng(0).integers(0, 500, size=200_000)
    sampler = PKBatchSampler(labels, p=16, k=8)
    batches = sampler.batches_for_epoch(0)  # vectorised: well under a second here
    assert len(batches) == len(sampler) and len(batches[0]) == 128


def _scan_keeps(keys):
    """The obviously-correct loop: keep a row when none of its keys is in a kept row."""
    seen, kept = set(), []
    for row in keys:
        keep = not (set(row.tolist()) & seen)
        kept.append(keep)
        if keep:
            seen.update(row.tolist())
    return np.array(kept)


@pytest.mark.parametrize("seed", range(20))
def test_rows_kept_by_scan_equals_a_python_scan(seed):
    from labkit.sampling import _rows_kept_by_scan

    rng = np.random.default_rng(seed)
    keys = rng.integers(0, rng.integers(5, 60), size=(rng.integers(1, 80), rng.integers(1, 4)))
    assert np.array_equal(_rows_kept_by_scan(keys), _scan_keeps(keys))



def test_experiments_pass_group_by_length_to_the_pair_sampler(minilm, data_dir):
    from labkit.data import load_banking77
    from labkit.experiment import ExperimentData, training_set

    frame = load_banking77("train", data_dir).iloc[:600].reset_index(drop=True)
    exp = ExperimentData("labelled", frame, frame)
    name = "MultipleNegativesRankingLoss"
    _, plain = training_set(name, exp, 8, 4, 16, seed=0)
    _, grouped = training_set(name, exp, 8, 4, 16, seed=0, group_by_length=True, tokenizer=minilm.tokenizer)
    assert not plain.group_by_length and grouped.group_by_length
    assert grouped.lengths.max() == max(len(minilm.tokenizer(text)["input_ids"]) for text in frame["text"])
    with pytest.raises(ValueError, match="group_by_length"):
        training_set("BatchHardTripletLoss", exp, 8, 4, 16, seed=0, group_by_length=True)


def test_padding_benchmark_counts_what_the_collate_function_pads(minilm, snli_rows):
    from benchmark_script import load_benchmark

    from labkit.collate import Collate
    from labkit.sampling import token_lengths

    bench = load_benchmark("padding")
    rows = snli_rows[:96]
    tokens = token_lengths(minilm.tokenizer, rows, bench.MAX_LENGTH)
    batches = NoDuplicatesBatchSampler(rows, 16, seed=0, group_by_length=True, lengths=tokens).batches_for_epoch(0)
    collate = Collate(minilm.tokenizer, bench.MAX_LENGTH)
    features = [collate([(rows[i], None) for i in batch])[0] for batch in batches]
    padded = sum(column["input_ids"].numel() for batch in features for column in batch)
    real = sum(int(column["attention_mask"].sum()) for batch in features for column in batch)
    assert bench.padded_positions(batches, tokens) == (padded, real)
