"""labkit.mining against NumPy / Python-loop references: masks, picks, semi-hard choice, kinds, label checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labkit import mining as M
from labkit.distances import euclidean_distance
from labkit.validation import check_class_labels
from naive_triplets import (
    naive_anchor_negative_mask,
    naive_anchor_positive_mask,
    naive_hardest_negative,
    naive_hardest_positive,
    naive_kind,
    naive_semi_hard_negative,
    naive_valid_triplet_mask,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

LABEL_CASES = {
    "pk": [0, 0, 1, 1, 2, 2, 3, 3],
    "mixed": [3, 1, 3, 7, 1, 1, 9, 3, 2],  # 2 and 9 have no positive
    "single_class": [4, 4, 4, 4],
    "all_singletons": [0, 1, 2, 3, 4],
    "one_example": [5],
    "two_classes_of_one": [0, 1],
}


def random_labels(batch_size, num_classes, seed):
    return torch.randint(0, num_classes, (batch_size,), generator=torch.Generator().manual_seed(seed))


def random_dist(batch_size, seed, dim=16):
    x = torch.randn(batch_size, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return euclidean_distance(x)


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------
def all_label_cases():
    cases = [torch.tensor(v) for v in LABEL_CASES.values()]
    cases += [random_labels(b, c, seed) for seed, (b, c) in enumerate([(8, 3), (32, 8), (64, 20), (32, 32)])]
    return cases


@pytest.mark.parametrize("labels", all_label_cases())
def test_masks_match_loops(labels):
    np.testing.assert_array_equal(M.anchor_positive_mask(labels).numpy(), naive_anchor_positive_mask(labels.tolist()))
    np.testing.assert_array_equal(M.anchor_negative_mask(labels).numpy(), naive_anchor_negative_mask(labels.tolist()))
    positive, negative = M.label_masks(labels)
    np.testing.assert_array_equal(positive.numpy(), naive_anchor_positive_mask(labels.tolist()))
    np.testing.assert_array_equal(negative.numpy(), naive_anchor_negative_mask(labels.tolist()))
    if labels.numel() <= 32:
        np.testing.assert_array_equal(M.valid_triplet_mask(labels).numpy(), naive_valid_triplet_mask(labels.tolist()))


# ----------------------------------------------------------------------------------------------
# Hardest positive / negative
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", all_label_cases())
def test_hardest_positive_and_negative_match_loops(labels):
    dist = random_dist(labels.numel(), seed=labels.numel())
    for ours, naive in ((M.hardest_positive, naive_hardest_positive), (M.hardest_negative, naive_hardest_negative)):
        values, indices, valid = ours(dist, labels)
        expected_values, expected_indices, expected_valid = naive(dist.numpy(), labels.tolist())
        np.testing.assert_array_equal(valid.numpy(), expected_valid)
        np.testing.assert_array_equal(indices.numpy(), expected_indices)
        np.testing.assert_allclose(values.numpy(), expected_values, rtol=1e-12)


def test_hardest_picks_carry_the_gradient_of_the_chosen_entry_only():
    dist = random_dist(6, seed=1).requires_grad_()
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    positive = M.hardest_positive(dist, labels)
    (grad,) = torch.autograd.grad(positive.values.sum(), dist)
    expected = torch.zeros(6, 6, dtype=dist.dtype)
    for anchor, index in enumerate(positive.indices.tolist()):
        if index >= 0:
            expected[anchor, index] = 1
    torch.testing.assert_close(grad, expected)


def test_pick_hardest_raw_form_marks_rows_without_candidates():
    dist = random_dist(4, seed=2)
    candidates = torch.tensor([[False, True, True, False]] * 3 + [[False] * 4])
    values, indices, valid = M.pick_hardest(dist, candidates, farthest=False)
    assert valid.tolist() == [True, True, True, False]
    assert values[3] == float("inf")
    for row in range(3):
        assert indices[row] in (1, 2) and values[row] == dist[row, 1:3].min()


# ----------------------------------------------------------------------------------------------
# Semi-hard
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", all_label_cases())
def test_semi_hard_negative_matches_loops(labels):
    batch_size = labels.numel()
    dist = random_dist(batch_size, seed=batch_size + 1)
    pick = M.semi_hard_negative(dist, labels, margin=1.0)
    positive_mask = naive_anchor_positive_mask(labels.tolist())
    for a in range(batch_size):
        for p in range(batch_size):
            negative, found = naive_semi_hard_negative(dist.numpy(), labels.tolist(), a, p)
            valid = bool(positive_mask[a, p]) and negative is not None
            assert pick.valid[a, p].item() == valid
            if not valid:
                assert pick.indices[a, p] == -1 and pick.values[a, p] == 0
                continue
            assert pick.indices[a, p].item() == negative
            assert pick.semi_hard[a, p].item() == found
            assert pick.values[a, p].item() == dist[a, negative].item()
            within = found and dist[a, negative].item() < dist[a, p].item() + 1.0
            assert pick.in_margin[a, p].item() == within


@pytest.mark.parametrize("labels", all_label_cases())
def test_semi_hard_triplets_list_the_same_choices(labels):
    dist = random_dist(labels.numel(), seed=labels.numel() + 2)
    pick = M.semi_hard_negative(dist, labels)
    anchor, positive, negative = M.semi_hard_triplets(dist, *M.label_masks(labels))
    listed = sorted(zip(anchor.tolist(), positive.tolist(), negative.tolist()))
    a, p = pick.valid.nonzero(as_tuple=True)
    expected = sorted(zip(a.tolist(), p.tolist(), pick.indices[a, p].tolist()))
    assert listed == expected


def test_semi_hard_ties_go_to_the_lower_index():
    # Anchor 0; positive 1 at distance 1; negatives 2, 3 both at distance 2, negative 4 at distance 3.
    dist = torch.tensor(
        [
            [0.0, 1.0, 2.0, 2.0, 3.0],
            [1.0, 0.0, 1.0, 1.0, 1.0],
            [2.0, 1.0, 0.0, 1.0, 1.0],
            [2.0, 1.0, 1.0, 0.0, 1.0],
            [3.0, 1.0, 1.0, 1.0, 0.0],
        ]
    )
    pick = M.semi_hard_negative(dist, torch.tensor([0, 0, 1, 2, 3]))
    assert pick.indices[0, 1] == 2 and pick.semi_hard[0, 1]


def test_semi_hard_falls_back_to_the_farthest_negative():
    dist = torch.tensor([[0.0, 5.0, 1.0, 2.0], [5.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0], [2.0, 1.0, 1.0, 0.0]])
    pick = M.semi_hard_negative(dist, torch.tensor([0, 0, 1, 1]))
    assert pick.indices[0, 1] == 3 and not pick.semi_hard[0, 1] and pick.in_margin is None


# ----------------------------------------------------------------------------------------------
# Kinds
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("margin", [0.0, 0.5, 5.0])
@pytest.mark.parametrize("labels", [torch.tensor(LABEL_CASES["mixed"]), random_labels(12, 3, seed=4)])
def test_triplet_kinds_match_loops(labels, margin):
    batch_size = labels.numel()
    dist = random_dist(batch_size, seed=5, dim=3) / 2
    kinds = M.triplet_kinds(dist, labels, margin)
    valid = naive_valid_triplet_mask(labels.tolist())
    counts = {"easy": 0, "semi-hard": 0, "hard": 0}
    for a in range(batch_size):
        for p in range(batch_size):
            for n in range(batch_size):
                if not valid[a, p, n]:
                    assert kinds[a, p, n] == M.TripletKind.INVALID
                    continue
                expected = naive_kind(dist[a, p].item(), dist[a, n].item(), margin)
                assert M.TripletKind(kinds[a, p, n].item()).label == expected
                counts[expected] += 1
    assert M.count_triplet_kinds(dist, labels, margin) == counts


def test_classify_triplets_boundaries():
    d_ap = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0])
    d_an = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0])
    labels = [M.TripletKind(k).label for k in M.classify_triplets(d_ap, d_an, margin=1.0).tolist()]
    assert labels == ["hard", "hard", "semi-hard", "easy", "easy"]
    # At margin 0 a zero loss is easy, even when d_an == d_ap.
    assert M.classify_triplets(torch.tensor(1.0), torch.tensor(1.0), 0.0).item() == M.TripletKind.EASY


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------
def test_labels_from_lists_and_arrays_are_accepted():
    assert check_class_labels([0, 1, 1]).dtype == torch.long
    assert check_class_labels(np.array([0, 1, 1], dtype=np.int32)).tolist() == [0, 1, 1]
    assert M.anchor_positive_mask([0, 1, 1]).tolist() == naive_anchor_positive_mask([0, 1, 1]).tolist()


@pytest.mark.parametrize(
    "labels,error,match",
    [
        (torch.tensor([0.0, 1.0]), TypeError, "integer class ids"),
        (torch.tensor([True, False]), TypeError, "integer class ids"),
        (np.array([0.5, 1.0]), TypeError, "integer class ids"),
        (torch.tensor([[0], [1]]), ValueError, "1-D"),
        ("0011", TypeError, "1-D integer tensor"),
    ],
)
def test_bad_labels_are_clear_errors(labels, error, match):
    with pytest.raises(error, match=match):
        check_class_labels(labels)


def test_wrong_number_of_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 4 labels"):
        M.hardest_positive(random_dist(4, seed=0), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="square"):
        M.hardest_negative(torch.zeros(3, 4), torch.tensor([0, 1, 1]))


def test_docstring_examples_run():
    import doctest

    results = doctest.testmod(M)
    assert results.attempted > 0 and results.failed == 0
