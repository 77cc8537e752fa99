"""Checkers for the exercises of notebooks/02_dataset_and_sampler.ipynb.

Each takes your answer and the inputs of the exercise, computes the right answer with labkit, and prints
what is right or a hint at what is off. Each returns True/False.
"""
from __future__ import annotations

import numpy as np
import torch

from labkit.course.batch_composition import triplet_counts
from labkit.course.exercises import describe_difference, report
from labkit.sampling import PKBatchSampler


def _as_int(answer):
    """The answer as an int if it is a whole number (int, NumPy or tensor scalar, 14.0), else None."""
    try:
        value = float(answer.item() if hasattr(answer, "item") else answer)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the epoch length of a P×K sampler
# ----------------------------------------------------------------------------------------------------------
def check_epoch_length(answer, class_sizes, p: int, k: int) -> bool:
    """How many P×K batches does one epoch have for classes of these sizes?"""
    sizes = np.asarray(class_sizes, dtype=np.int64)
    expected = len(PKBatchSampler(np.repeat(np.arange(len(sizes)), sizes), p=p, k=k))
    groups = sizes // k
    if answer is None:
        return report(False, "", f"You have not answered yet. Hint: shuffle each class and cut it into groups of "
                                 f"k={k}; a batch takes one group from each of p={p} different classes.")
    value = _as_int(answer)
    if value is None:
        return report(False, "", f"Give a whole number of batches; you gave {answer!r}.")
    if value == expected:
        return report(True, f"Right: {expected} batches. The classes give {groups.tolist()} groups of {k} "
                            f"({int(groups.sum())} in all), and {expected} batches of {p} distinct classes is the "
                            f"most they can fill; {int(sizes.sum()) - expected * p * k} examples sit out this epoch "
                            "(different ones next epoch).", "")
    naive_groups = int(groups.sum()) // p
    if value == int(sizes.sum()) // (p * k) and value != naive_groups:
        return report(False, "", f"{value} divides all {int(sizes.sum())} examples by p·k. But each class is cut "
                                 f"into groups of {k}: the n % k left over in every class cannot fill a group. "
                                 "Count the groups per class (n // k) first.")
    if value == naive_groups:
        biggest = int(groups.argmax())
        return report(False, "", f"{value} = (total groups) // p counts the groups, but a batch needs p "
                                 f"*different* classes: class {biggest} has {int(groups[biggest])} groups and can "
                                 f"give at most one to each batch. Find the largest B with "
                                 f"sum over classes of min(groups, B) >= p·B.")
    if value > expected:
        return report(False, "", f"Too many: {describe_difference(value, expected)}. With {value} batches some batch "
                                 "would need a class twice or a group that does not exist.")
    return report(False, "", f"Too few: {describe_difference(value, expected)}. Each class gives n // k groups; "
                             "the sampler fills as many batches of p distinct classes as those groups allow.")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: valid triplets in a batch
# ----------------------------------------------------------------------------------------------------------
def check_valid_triplets(answer, batch_labels) -> bool:
    """How many valid (anchor, positive, negative) triplets does a batch with these labels hold?"""
    labels = list(batch_labels.tolist() if hasattr(batch_labels, "tolist") else batch_labels)
    counts = triplet_counts(labels)
    expected = counts["valid_triplets"]
    size = len(labels)
    _, per_class = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: for each anchor, count its positives (same "
                                 "label, not itself) and its negatives (other labels); it makes "
                                 "positives × negatives triplets. Add up over the anchors.")
    value = _as_int(answer)
    if value is None:
        return report(False, "", f"Give a whole number of triplets; you gave {answer!r}.")
    if value == expected:
        return report(True, f"Right: {expected} valid triplets. Anchors without a positive (they take part in "
                            f"none): {counts['anchors_without_positive']} of {size}. A class with m examples gives "
                            "m·(m-1)·(B-m).", "")
    wrong = {
        counts["positive_pairs"]: "is the number of (anchor, positive) pairs. Each pair makes one triplet "
                                  "with every negative of the anchor: multiply by the number of negatives.",
        int((per_class**2 * (size - per_class)).sum()): "lets an anchor be its own positive. A positive must be "
                                                        "another example (p ≠ a): a class with m examples gives "
                                                        "m·(m-1) pairs, not m².",
        size**3: "counts every triple of positions. Most are not triplets: the positive needs the anchor's "
                 "label, the negative another label.",
        size * (size - 1) * (size - 2) // 6: "counts the unordered triples of distinct examples. Only those "
                                              "with a same-label pair and one other-label example are triplets.",
    }
    if expected % 2 == 0:
        wrong.setdefault(expected // 2, "counts each (anchor, positive) pair once, unordered. (a, p, n) and "
                                        "(p, a, n) are two triplets: the anchor differs. Count ordered pairs.")
    if value in wrong:
        return report(False, "", f"{value} {wrong[value]}")
    return report(False, "", f"Not quite: {describe_difference(value, expected)}. Hint: group the batch by class; "
                             "with B examples in the batch and m in a class, each anchor of that class has m-1 "
                             "positives and B-m negatives.")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: a DataLoader of P×K batches with dynamic padding
# ----------------------------------------------------------------------------------------------------------
_LOADER_RECIPE = ("DataLoader(TextDataset(texts, labels), batch_sampler=PKBatchSampler(labels, p=p, k=k, seed=0), "
                  "collate_fn=Collate(tokenizer, max_length=...))")


def check_pk_loader(loader, p: int, k: int) -> bool:
    """Does ``loader`` yield (features, labels) batches of p classes × k examples, padded dynamically?

    Looks at the loader's first batch without moving the sampler on to the next epoch.
    """
    from torch.utils.data import BatchSampler, DataLoader

    if loader is None:
        return report(False, "", f"You have not answered yet. Hint: {_LOADER_RECIPE}.")
    if not isinstance(loader, DataLoader):
        return report(False, "", f"Give a torch DataLoader; you gave a {type(loader).__name__}. Recipe: "
                                 f"{_LOADER_RECIPE}.")
    sampler = loader.batch_sampler
    if not isinstance(sampler, PKBatchSampler):
        where = ("You passed batch_size= or sampler=, so the DataLoader made plain batches. "
                 if isinstance(sampler, BatchSampler) or sampler is None else "")
        return report(False, "", f"{where}Pass the P×K sampler as batch_sampler=PKBatchSampler(...) (it yields "
                                 "whole batches of indices), and leave batch_size and shuffle out.")
    if (sampler.p, sampler.k) != (p, k):
        return report(False, "", f"Your sampler makes batches of p={sampler.p} classes × k={sampler.k}; the "
                                 f"exercise asks for p={p}, k={k}.")
    if len(loader.dataset) != len(sampler.class_codes):
        return report(False, "", f"The dataset has {len(loader.dataset)} rows but the sampler was given "
                                 f"{len(sampler.class_codes)} labels: give both the same rows, in the same order.")
    epoch = sampler.epoch
    try:
        batch = next(iter(loader))
    except Exception as error:  # the learner's loader: report what broke instead of a traceback
        return report(False, "", f"Taking a batch from your loader failed: {type(error).__name__}: {error}")
    finally:
        sampler.set_epoch(epoch)
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], dict)):
        return report(False, "", "A batch should be (features, labels) with features a dict of tensors. Without "
                                 "collate_fn the texts stay strings: pass "
                                 "collate_fn=Collate(tokenizer, max_length=...).")
    features, labels = batch
    if not isinstance(labels, torch.Tensor):
        return report(False, "", "The batch has no label tensor: build the dataset as TextDataset(texts, labels).")
    expected_labels = sampler.classes[sampler.class_codes[sampler.batches_for_epoch(epoch)[0]]]
    if [str(label) for label in labels.tolist()] != [str(label) for label in expected_labels]:
        return report(False, "", "The labels in the batch are not those the sampler chose for these rows: the "
                                 "dataset's labels and the sampler's labels must be the same list, in the same order.")
    if "input_ids" not in features or "attention_mask" not in features:
        return report(False, "", "The features need input_ids and an attention_mask: use labkit.collate.Collate.")
    width = int(features["input_ids"].shape[1])
    longest = int(features["attention_mask"].sum(dim=1).max())
    if width != longest:
        return report(False, "", f"The batch is {width} positions wide but its longest text has {longest} tokens: "
                                 "it is padded to max_length. Pad each batch to its longest text (Collate does).")
    return report(True, f"Right: {len(labels)} rows = {p} classes × {k} examples, padded to {width} positions "
                        "(its longest text after truncation), ready for one move to the device.", "")
