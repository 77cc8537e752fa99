"""Pooling: from one vector per token to one vector per sentence.

A transformer returns a (batch, tokens, dim) tensor. Padding tokens are there only to make the batch
rectangular, so every pooling below uses the attention mask to ignore them.

Taught in notebooks/03_pooling.ipynb.
"""
from __future__ import annotations

import torch
from torch import Tensor

POOLING_MODES = ("mean", "cls", "max")


def mean_pooling(token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the real (mask == 1) token vectors: sum(h_t * m_t) / sum(m_t)."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    # clamp: a row with no real token would divide by zero
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def cls_pooling(token_embeddings: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The vector of the first token ([CLS]); the mask is not needed because [CLS] is never padding."""
    return token_embeddings[:, 0]


def max_pooling(token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
    """Element-wise maximum over the real tokens; padding is set to -inf so it can never win."""
    padding = attention_mask.unsqueeze(-1) == 0
    return token_embeddings.masked_fill(padding, float("-inf")).max(dim=1).values


def pool(token_embeddings: Tensor, attention_mask: Tensor, mode: str = "mean") -> Tensor:
    """Apply the pooling named by `mode` ("mean", "cls" or "max")."""
    if mode == "mean":
        return mean_pooling(token_embeddings, attention_mask)
    if mode == "cls":
        return cls_pooling(token_embeddings, attention_mask)
    if mode == "max":
        return max_pooling(token_embeddings, attention_mask)
    raise ValueError(f"Unknown pooling mode {mode!r}: use one of {POOLING_MODES}.")


def l2_normalize(embeddings: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale every row to unit length, so Euclidean distance and cosine similarity carry the same ranking."""
    return torch.nn.functional.normalize(embeddings, p=2, dim=-1, eps=eps)
