"""Slow, obviously-correct references for the triplet family: plain Python loops over i, j, k.

After Olivier Moindrot's tests for triplet_loss.py: every mask and every loss is written as the definition
reads, one index at a time. Distances are computed one pair at a time with small torch operations, so that
autograd through these loops gives reference *gradients* as well; every decision (which positive, which
negative, is the triplet active) is made on Python floats.

Conventions, as documented in labkit.losses.triplets (they follow sentence-transformers except where noted):
  * batch-hard: an anchor without a positive uses d(a, p) = 0; an anchor without a negative (single-label
    batch) contributes 0 (sentence-transformers: an artefact of its masking);
  * batch-all: sum of max(d_ap - d_an + m, 0) over valid triplets / (number with loss > 1e-16 + 1e-16);
  * semi-hard: per positive pair, closest negative farther than the positive, else the farthest negative;
    mean over all positive pairs; an anchor without a negative contributes 0.
"""
from __future__ import annotations

import numpy as np
import torch


# ----------------------------------------------------------------------------------------------
# Distances, one pair at a time
# ----------------------------------------------------------------------------------------------
def naive_distance(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance between two vectors, as a 0-d tensor (differentiable)."""
    if metric in ("euclidean", "squared_euclidean"):
        squared = ((x - y) ** 2).sum()
        if metric == "squared_euclidean":
            return squared
        # sqrt has an infinite slope at 0: a distance of exactly 0 is given gradient 0.
        return squared.sqrt() if squared.item() > 0 else squared * 0.0
    if metric == "cosine":
        x_norm = torch.clamp(torch.sqrt((x * x).sum()), min=1e-12)
        y_norm = torch.clamp(torch.sqrt((y * y).sum()), min=1e-12)
        return 1 - (x * y).sum() / (x_norm * y_norm)
    if metric == "manhattan":
        return (x - y).abs().sum()
    raise ValueError(metric)


def naive_distance_matrix(embeddings: torch.Tensor, metric: str) -> list:
    """List of lists: entry [i][j] is naive_distance(embeddings[i], embeddings[j])."""
    batch_size = embeddings.shape[0]
    return [[naive_distance(embeddings[i], embeddings[j], metric) for j in range(batch_size)] for i in range(batch_size)]


def as_floats(matrix: list) -> np.ndarray:
    return np.array([[value.item() for value in row] for row in matrix], dtype=np.float64)


def _zero(embeddings: torch.Tensor) -> torch.Tensor:
    return (embeddings * 0.0).sum()


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------
def naive_anchor_positive_mask(labels) -> np.ndarray:
    labels = list(labels)
    n = len(labels)
    mask = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            mask[i, j] = i != j and labels[i] == labels[j]
    return mask


def naive_anchor_negative_mask(labels) -> np.ndarray:
    labels = list(labels)
    n = len(labels)
    mask = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for k in range(n):
            mask[i, k] = labels[i] != labels[k]
    return mask


def naive_valid_triplet_mask(labels) -> np.ndarray:
    labels = list(labels)
    n = len(labels)
    mask = np.zeros((n, n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                distinct = i != j and i != k and j != k
                mask[i, j, k] = distinct and labels[i] == labels[j] and labels[i] != labels[k]
    return mask


# ----------------------------------------------------------------------------------------------
# Mining
# ----------------------------------------------------------------------------------------------
def naive_hardest_positive(dist: np.ndarray, labels):
    """(values, indices, valid) with index -1 and value 0 where the anchor has no positive."""
    labels = list(labels)
    values, indices, valid = [], [], []
    for a in range(len(labels)):
        best, best_index = None, -1
        for p in range(len(labels)):
            if p != a and labels[p] == labels[a] and (best is None or dist[a, p] > best):
                best, best_index = dist[a, p], p
        values.append(0.0 if best is None else best)
        indices.append(best_index)
        valid.append(best is not None)
    return np.array(values), np.array(indices), np.array(valid)


def naive_hardest_negative(dist: np.ndarray, labels):
    labels = list(labels)
    values, indices, valid = [], [], []
    for a in range(len(labels)):
        best, best_index = None, -1
        for n in range(len(labels)):
            if labels[n] != labels[a] and (best is None or dist[a, n] < best):
                best, best_index = dist[a, n], n
        values.append(0.0 if best is None else best)
        indices.append(best_index)
        valid.append(best is not None)
    return np.array(values), np.array(indices), np.array(valid)


def naive_semi_hard_negative(dist: np.ndarray, labels, a: int, p: int):
    """The negative chosen for the pair (a, p), and whether it was semi-hard (not the fallback).

    Among negatives farther than p: the closest (lowest index on ties); otherwise the farthest negative.
    Returns (None, False) when a has no negative.
    """
    labels = list(labels)
    negatives = [n for n in range(len(labels)) if labels[n] != labels[a]]
    if not negatives:
        return None, False
    farther = [n for n in negatives if dist[a, n] > dist[a, p]]
    if farther:
        return min(farther, key=lambda n: (dist[a, n], n)), True
    return max(negatives, key=lambda n: (dist[a, n], -n)), False


def naive_kind(d_ap: float, d_an: float, margin: float) -> str:
    if d_an >= d_ap + margin:
        return "easy"
    if d_an <= d_ap:
        return "hard"
    return "semi-hard"


# ----------------------------------------------------------------------------------------------
# Losses (each returns a 0-d tensor that autograd can differentiate w.r.t. the embeddings)
# ----------------------------------------------------------------------------------------------
def naive_triplet_loss(anchor, positive, negative, metric: str = "euclidean", margin: float = 5.0):
    terms = []
    for i in range(anchor.shape[0]):
        d_ap = naive_distance(anchor[i], positive[i], metric)
        d_an = naive_distance(anchor[i], negative[i], metric)
        value = d_ap - d_an + margin
        terms.append(value if value.item() > 0 else value * 0.0)
    return sum(terms) / len(terms)


def naive_batch_all_triplet_loss(embeddings, labels, metric: str = "euclidean", margin: float = 5.0):
    labels = [int(v) for v in labels]
    dist = naive_distance_matrix(embeddings, metric)
    total, num_positive = _zero(embeddings), 0
    n = len(labels)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                if i == j or labels[i] != labels[j] or labels[k] == labels[i]:
                    continue
                value = dist[i][j] - dist[i][k] + margin
                if value.item() >= 0:
                    total = total + value
                if value.item() > 1e-16:
                    num_positive += 1
    return total / (num_positive + 1e-16)


def naive_batch_hard_triplet_loss(embeddings, labels, metric: str = "euclidean", margin: float = 5.0, soft: bool = False):
    labels = [int(v) for v in labels]
    dist = naive_distance_matrix(embeddings, metric)
    n = len(labels)
    terms = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        if not negatives:
            terms.append(_zero(embeddings))
            continue
        if positives:
            hardest_p = max(positives, key=lambda p: (dist[a][p].item(), -p))
            d_ap = dist[a][hardest_p]
        else:
            d_ap = _zero(embeddings)
        hardest_n = min(negatives, key=lambda k: (dist[a][k].item(), k))
        d_an = dist[a][hardest_n]
        if soft:
            terms.append(torch.nn.functional.softplus(d_ap - d_an))
        else:
            value = d_ap - d_an + margin
            terms.append(value if value.item() >= 0 else value * 0.0)
    return sum(terms) / n


def naive_batch_semi_hard_triplet_loss(embeddings, labels, metric: str = "euclidean", margin: float = 5.0):
    labels = [int(v) for v in labels]
    dist = naive_distance_matrix(embeddings, metric)
    values = as_floats(dist)
    n = len(labels)
    total, num_pairs = _zero(embeddings), 0
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            num_pairs += 1
            negative, _ = naive_semi_hard_negative(values, labels, a, p)
            if negative is None:
                continue
            value = dist[a][p] - dist[a][negative] + margin
            if value.item() > 0:
                total = total + value
    return total / max(num_pairs, 1e-16)


NAIVE_BATCH_LOSSES = {
    "BatchAllTripletLoss": naive_batch_all_triplet_loss,
    "BatchHardTripletLoss": naive_batch_hard_triplet_loss,
    "BatchHardSoftMarginTripletLoss": lambda e, l, metric="euclidean", margin=None: naive_batch_hard_triplet_loss(
        e, l, metric, 0.0, soft=True
    ),
    "BatchSemiHardTripletLoss": naive_batch_semi_hard_triplet_loss,
}
