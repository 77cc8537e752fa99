"""Stand-in models for the losses that run a model themselves (the cached losses, GIST): run labkit's and
sentence-transformers' versions on embeddings we choose, and read d loss / d embeddings off the leaves.

A "feature" column is ``{"sentence_embedding": leaf}`` (and, for a guide, ``"guide_embedding"``); the stubs
return the tensor they are given, so a GradCache loss's second pass backpropagates into the leaf itself.
"""
from __future__ import annotations

import torch
from st_stub import EmbeddingStub
from torch import nn

from labkit.model import default_model_path


class STModelStub(EmbeddingStub):
    """A sentence-transformers-side model: returns ``features[key]``; has what GIST and GradCache inspect."""

    def __init__(self, key: str = "sentence_embedding", tokenizer=None, max_seq_length: int = 128):
        super().__init__()
        self.key, self.tokenizer, self.max_seq_length = key, tokenizer, max_seq_length

    def forward(self, features: dict) -> dict:
        return {"sentence_embedding": features[self.key]}

    def __getitem__(self, index):  # GradCache checks model[0] for a StaticEmbedding
        return self


class LabkitModelStub(nn.Module):
    """A labkit-side model: ``forward(features) -> features[key]``, with the tokenizer GIST compares."""

    def __init__(self, key: str = "sentence_embedding", tokenizer=None, max_seq_length: int = 128):
        super().__init__()
        self.key, self.tokenizer, self.max_seq_length = key, tokenizer, max_seq_length

    def forward(self, features: dict) -> torch.Tensor:
        return features[self.key]


def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_path())


def leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors]


def columns(*tensors: torch.Tensor, guide: tuple[torch.Tensor, ...] = ()) -> list[dict]:
    """Feature columns for the stubs: each holds its embedding (and its guide embedding, if given)."""
    out = [{"sentence_embedding": t} for t in tensors]
    for column, guide_embedding in zip(out, guide):
        column["guide_embedding"] = guide_embedding
    return out
