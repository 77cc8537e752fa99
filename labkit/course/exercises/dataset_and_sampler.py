"""Checkers for the exercises of notebooks/02_dataset_and_sampler.ipynb.

Each takes your answer and the inputs of the exercise, computes the right answer with labkit, and prints
whether it is right, or which step to recheck (never the answer itself). Add ``reveal=True`` to see the
solution. Each returns True/False.
"""
from __future__ import annotations

import numpy as np
import torch

from labkit.course.batch_composition import triplet_counts
from labkit.course.exercises import Exercise, Slip, check_number, check_with
from labkit.sampling import PKBatchSampler

# The notebook's inputs (what `solutions` uses when it is given none).
NOTEBOOK_CLASS_SIZES, NOTEBOOK_P, NOTEBOOK_K = (23, 9, 7, 6, 4), 3, 2
NOTEBOOK_BATCH_LABELS = ("x", "y", "x", "z", "x", "y", "w", "x", "z", "y")
NOTEBOOK_LOADER_P, NOTEBOOK_LOADER_K = 4, 4


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the epoch length of a P×K sampler
# ----------------------------------------------------------------------------------------------------------
def _epoch_length(class_sizes=NOTEBOOK_CLASS_SIZES, p: int = NOTEBOOK_P, k: int = NOTEBOOK_K) -> Exercise:
    sizes = np.asarray(class_sizes, dtype=np.int64)
    expected = len(PKBatchSampler(np.repeat(np.arange(len(sizes)), sizes), p=p, k=k))
    groups = sizes // k
    naive_groups = int(groups.sum()) // p
    all_examples = int(sizes.sum()) // (p * k)
    slips = [Slip(naive_groups, "(total groups) // p",
                  f"the classes: a batch needs p = {p} *different* classes, so a class gives at most one group to "
                  "each batch. Find the largest B with sum over classes of min(groups, B) >= p·B")]
    if all_examples != naive_groups:
        slips.insert(0, Slip(all_examples, "all the examples divided by p·k",
                             f"the groups: each class is cut into groups of k = {k}, and the n % k left over in every "
                             "class cannot fill one. Count the groups per class (n // k) first"))
    slips += [
        Slip(lambda value: value > expected, "more batches than the groups can fill",
             "the groups per class: with that many batches some batch would need a class twice, or a group that "
             "does not exist"),
        Slip(lambda value: value < expected, "fewer batches than the groups allow",
             "the groups per class (n // k): the sampler fills as many batches of p distinct classes as they allow"),
    ]
    return Exercise(
        checker="check_epoch_length", with_inputs=True, expected=expected, slips=tuple(slips),
        hint=f"shuffle each class and cut it into groups of k={k}; a batch takes one group from each of p={p} "
             "different classes",
        success=f"{expected} batches. The classes give {groups.tolist()} groups of {k} ({int(groups.sum())} in all), "
                f"and {expected} batches of {p} distinct classes is the most they can fill; "
                f"{int(sizes.sum()) - expected * p * k} examples sit out this epoch (different ones next epoch)",
        why=f"the classes give {groups.tolist()} groups of {k}; {expected} is the largest B with "
            f"sum over classes of min(groups, B) >= {p}·B")


def check_epoch_length(answer, class_sizes, p: int, k: int, reveal: bool = False) -> bool:
    """How many P×K batches does one epoch have for classes of these sizes? A whole number.

    A wrong answer gets the step to recheck; ``check_epoch_length(answer, class_sizes, p, k, reveal=True)``
    prints the solution.
    """
    return check_number(answer, _epoch_length(class_sizes, p, k), whole=True, reveal=reveal)


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: valid triplets in a batch
# ----------------------------------------------------------------------------------------------------------
def _valid_triplets(batch_labels=NOTEBOOK_BATCH_LABELS) -> Exercise:
    labels = list(batch_labels.tolist() if hasattr(batch_labels, "tolist") else batch_labels)
    counts = triplet_counts(labels)
    expected = counts["valid_triplets"]
    size = len(labels)
    _, per_class = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    slips = [
        Slip(counts["positive_pairs"], "the number of (anchor, positive) pairs",
             "the negatives: each pair makes one triplet with every negative of its anchor"),
        Slip(int((per_class**2 * (size - per_class)).sum()), "a count where an anchor is its own positive",
             "the positives: a positive is another example (p ≠ a), so a class with m examples gives m·(m-1) "
             "pairs, not m²"),
        Slip(size**3, "every triple of positions",
             "the definition: the positive needs the anchor's label, the negative another label"),
        Slip(size * (size - 1) * (size - 2) // 6, "the unordered triples of distinct examples",
             "the definition: only a same-label pair plus one other-label example is a triplet, and order counts"),
    ]
    if expected % 2 == 0:
        slips.append(Slip(expected // 2, "each (anchor, positive) pair counted once, unordered",
                          "the order: (a, p, n) and (p, a, n) are two triplets, with different anchors"))
    return Exercise(
        checker="check_valid_triplets", with_inputs=True, expected=expected, slips=tuple(slips),
        hint="for each anchor, count its positives (same label, not itself) and its negatives (other labels); it "
             "makes positives × negatives triplets. Add up over the anchors",
        success=f"{expected} valid triplets. Anchors without a positive (they take part in none): "
                f"{counts['anchors_without_positive']} of {size}. A class with m examples gives m·(m-1)·(B-m)",
        why="a class with m of the B examples gives m·(m-1)·(B-m) triplets; add up over the classes")


def check_valid_triplets(answer, batch_labels, reveal: bool = False) -> bool:
    """How many valid (anchor, positive, negative) triplets does a batch with these labels hold?

    A wrong answer gets the step to recheck; ``check_valid_triplets(answer, batch_labels, reveal=True)``
    prints the solution.
    """
    return check_number(answer, _valid_triplets(batch_labels), whole=True, reveal=reveal)


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: a DataLoader of P×K batches with dynamic padding
# ----------------------------------------------------------------------------------------------------------
_LOADER_RECIPE = ("DataLoader(TextDataset(texts, labels), batch_sampler=PKBatchSampler(labels, p=p, k=k, seed=0), "
                  "collate_fn=Collate(tokenizer, max_length=...))")


def _pk_loader(p: int = NOTEBOOK_LOADER_P, k: int = NOTEBOOK_LOADER_K, success: str = "") -> Exercise:
    return Exercise(
        checker="check_pk_loader", with_inputs=True, expected=None, success=success,
        shown=_LOADER_RECIPE.replace("p=p, k=k", f"p={p}, k={k}"),
        hint="a DataLoader takes the P×K sampler as batch_sampler= and the tokenizing Collate as collate_fn=",
        why="the sampler yields whole batches of indices (so no batch_size or shuffle), and Collate pads each "
            "batch to its longest text")


def _loader_problem(loader, p: int, k: int) -> tuple[str | None, str]:
    """What is off with a learner's loader (None if nothing), and the success sentence if nothing is."""
    from torch.utils.data import BatchSampler, DataLoader

    if not isinstance(loader, DataLoader):
        return f"Give a torch DataLoader; you gave a {type(loader).__name__}.", ""
    sampler = loader.batch_sampler
    if not isinstance(sampler, PKBatchSampler):
        where = ("You passed batch_size= or sampler=, so the DataLoader made plain batches. "
                 if isinstance(sampler, BatchSampler) or sampler is None else "")
        return (f"{where}Pass the P×K sampler as batch_sampler=PKBatchSampler(...) (it yields whole batches of "
                "indices), and leave batch_size and shuffle out."), ""
    if (sampler.p, sampler.k) != (p, k):
        return (f"Your sampler makes batches of p={sampler.p} classes × k={sampler.k}; the exercise asks for "
                f"p={p}, k={k}."), ""
    if len(loader.dataset) != len(sampler.class_codes):
        return (f"The dataset has {len(loader.dataset)} rows but the sampler was given {len(sampler.class_codes)} "
                "labels: give both the same rows, in the same order."), ""
    epoch = sampler.epoch
    try:
        batch = next(iter(loader))
    except Exception as error:  # the learner's loader: report what broke instead of a traceback
        return f"Taking a batch from your loader failed: {type(error).__name__}: {error}", ""
    finally:
        sampler.set_epoch(epoch)
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], dict)):
        return ("A batch should be (features, labels) with features a dict of tensors. Without collate_fn the "
                "texts stay strings: pass collate_fn=Collate(tokenizer, max_length=...)."), ""
    features, labels = batch
    if not isinstance(labels, torch.Tensor):
        return "The batch has no label tensor: build the dataset as TextDataset(texts, labels).", ""
    expected_labels = sampler.classes[sampler.class_codes[sampler.batches_for_epoch(epoch)[0]]]
    if [str(label) for label in labels.tolist()] != [str(label) for label in expected_labels]:
        return ("The labels in the batch are not those the sampler chose for these rows: the dataset's labels and "
                "the sampler's labels must be the same list, in the same order."), ""
    if "input_ids" not in features or "attention_mask" not in features:
        return "The features need input_ids and an attention_mask: use labkit.collate.Collate.", ""
    width = int(features["input_ids"].shape[1])
    longest = int(features["attention_mask"].sum(dim=1).max())
    if width != longest:
        return (f"The batch is {width} positions wide but its longest text has {longest} tokens: it is padded to "
                "max_length. Pad each batch to its longest text (Collate does)."), ""
    return None, (f"{len(labels)} rows = {p} classes × {k} examples, padded to {width} positions (its longest text "
                  "after truncation), ready for one move to the device")


def check_pk_loader(loader, p: int, k: int, reveal: bool = False) -> bool:
    """Does ``loader`` yield (features, labels) batches of p classes × k examples, padded dynamically?

    Looks at the loader's first batch without moving the sampler on to the next epoch. A wrong loader gets
    what is off; ``check_pk_loader(loader, p, k, reveal=True)`` prints the recipe.
    """
    problem, success = (None, "") if loader is None or loader is Ellipsis else _loader_problem(loader, p, k)
    return check_with(loader, _pk_loader(p, k, success), problem_of=lambda _: problem, reveal=reveal)


_EXERCISES = {"epoch_length": _epoch_length, "valid_triplets": _valid_triplets, "pk_loader": _pk_loader}
