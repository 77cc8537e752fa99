"""Texts to tensors: a Dataset of (text, label) rows and a collate function with dynamic padding.

Padding every text to a fixed `max_length` (as the original article does with `padding='max_length'`)
makes the model compute on many padding positions; padding each batch only to its longest text does
the same work on far fewer positions. Taught in notebooks/01_tokenization.ipynb and
notebooks/02_dataset_and_sampler.ipynb.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from labkit.validation import check_texts


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize a batch of texts into CPU tensors, padded to the batch's longest text, cut at `max_length` tokens.

    The one tokenizer call of labkit: the training batches (`Collate`) and `EmbeddingModel.tokenize` /
    `encode` both go through it, so a text becomes the same token ids and attention mask either way.
    Returns a plain dict (``input_ids``, ``attention_mask``, and ``token_type_ids`` for BERT-style models).
    """
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


class TextDataset(Dataset):
    """Rows of (text, label); label may be an int class, a float score, or None for unlabelled text.

    Tokenization happens in the collate function, per batch, so `__getitem__` stays cheap and stays on the CPU.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence | None = None):
        check_texts(texts)
        if labels is not None and len(labels) != len(texts):
            raise ValueError(f"Got {len(texts)} texts but {len(labels)} labels: they must have the same length.")
        self.texts = list(texts)
        self.labels = None if labels is None else list(labels)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int):
        return self.texts[index], (None if self.labels is None else self.labels[index])


class PairDataset(Dataset):
    """Rows of text columns, e.g. (anchor, positive) or (sentence1, sentence2) with an optional label/score."""

    def __init__(self, *columns: Sequence[str], labels: Sequence | None = None):
        if not columns:
            raise ValueError("PairDataset needs at least one text column.")
        lengths = {len(c) for c in columns} | ({len(labels)} if labels is not None else set())
        if len(lengths) != 1:
            raise ValueError(f"All columns (and labels) must have the same length; got lengths {sorted(lengths)}.")
        for column in columns:
            check_texts(column)
        self.columns = [list(c) for c in columns]
        self.labels = None if labels is None else list(labels)

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, index: int):
        texts = tuple(column[index] for column in self.columns)
        return texts, (None if self.labels is None else self.labels[index])


class Collate:
    """Tokenize a list of dataset rows into padded tensors, padding only to the longest text in the batch.

    For `TextDataset` rows it returns `(features, labels)`; for `PairDataset` rows `(list_of_features, labels)`,
    one features dict per text column. Labels come back as a tensor (int64 for ints, float32 for floats) or None.
    Tensors stay on the CPU: the training loop moves them, with pinned memory and non-blocking copies on a GPU.
    """

    def __init__(self, tokenizer, max_length: int = 128):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """One text column of a batch, through the module's `tokenize` with this collate's tokenizer and length."""
        return tokenize(self.tokenizer, texts, self.max_length)

    def __call__(self, rows):
        texts, labels = zip(*rows)
        if isinstance(texts[0], tuple):
            features = [self.tokenize(column) for column in zip(*texts)]
        else:
            features = self.tokenize(texts)
        return features, labels_to_tensor(labels)


def labels_to_tensor(labels) -> torch.Tensor | None:
    if labels[0] is None:
        return None
    if isinstance(labels[0], torch.Tensor):  # vectors per row (a teacher's embeddings): one stack, not a slow copy
        tensor = torch.stack(list(labels))
    elif isinstance(labels[0], np.ndarray):
        tensor = torch.from_numpy(np.stack(labels))
    else:
        tensor = torch.as_tensor(labels)
    return tensor.float() if tensor.is_floating_point() else tensor.long()
