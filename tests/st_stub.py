"""Call sentence-transformers' own loss classes on embeddings we choose.

sentence-transformers losses take a model and tokenized features. `EmbeddingStub` is a model whose
"features" are the embeddings themselves, so `st_loss(StLossClass, *embeddings, labels=...)` runs the
reference implementation on exactly the tensors a labkit loss sees, gradients included.
"""
from __future__ import annotations

import torch
from torch import nn


class EmbeddingStub(nn.Module):
    """Stands in for a SentenceTransformer: returns the embedding it is given."""

    def forward(self, features: dict) -> dict:
        return {"sentence_embedding": features["sentence_embedding"]}

    # Some sentence-transformers losses read these when they build model cards or check the device.
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


def st_loss(loss_class, *embeddings: torch.Tensor, labels=None, **kwargs) -> torch.Tensor:
    """Build `loss_class(EmbeddingStub(), **kwargs)` and apply it to the given embedding columns."""
    loss = loss_class(EmbeddingStub(), **kwargs)
    features = [{"sentence_embedding": e} for e in embeddings]
    return loss(features, labels)
