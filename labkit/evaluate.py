"""Evaluate embeddings: retrieval, STS correlation, triplet and pair accuracy, similarity distributions.

Everything here works on embeddings (NumPy arrays, tensors or lists; one row per text) plus labels or gold
scores, so the same numbers come out whatever model produced them. Similarity is always cosine: rows are
L2-normalised first (by `labkit.distances`, the one place cosine is computed). Inputs are checked by
`labkit.validation`, whose errors say what was wrong. A few thin wrappers (`evaluate_retrieval`, `evaluate_sts`, `evaluate_triplets`) take an
`EmbeddingModel` and texts, encode once, and call the embedding-level function.

The definitions are those of the libraries people compare against:

* retrieval (`retrieval_metrics`): pytorch-metric-learning's `AccuracyCalculator` with the query set equal to
  the reference set (each query is left out of its own results): precision@1, R-precision and MAP@R, plus
  recall@k as used in the metric-learning literature (PML has no recall@k, see `retrieval_metrics`);
* STS (`sts_correlation`): sentence-transformers' `EmbeddingSimilarityEvaluator` (Pearson and Spearman of the
  cosine similarity against the gold scores);
* triplets (`triplet_accuracy`): sentence-transformers' `TripletEvaluator`;
* pair classification (`pair_classification`): sentence-transformers' `BinaryClassificationEvaluator`
  threshold search, run on a dev split and applied to a test split.

Taught in notebooks/09_training.ipynb (retrieval, curves), notebooks/10_clusters.ipynb (cluster
quality, similarity distributions) and notebooks/11_choosing_a_loss.ipynb (STS correlation).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, rankdata, spearmanr

from labkit.distances import (
    cosine_similarity,
    paired_cosine_similarity,
    paired_euclidean_distance,
    paired_manhattan_distance,
    pairwise_dot_score,
)
from labkit.validation import (
    as_binary_labels, as_embeddings, as_gold_scores, check_same_length, label_codes, require_two_classes,
)

__all__ = [
    "retrieval_metrics", "sts_correlation", "triplet_accuracy", "pair_classification",
    "best_accuracy_threshold", "best_f1_threshold", "similarity_distributions", "separation_summary",
    "cluster_quality", "evaluate_retrieval", "evaluate_sts", "evaluate_triplets", "ranked_neighbours",
]

TRIPLET_SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan")


# --------------------------------------------------------------------------------------------------------------
# Row-by-row cosine of two checked embedding columns
# --------------------------------------------------------------------------------------------------------------
def _pairwise_cosine(a, b, names=("embeddings1", "embeddings2")) -> torch.Tensor:
    a, b = as_embeddings(a, names[0]), as_embeddings(b, names[1])
    check_same_length((names[0], len(a)), (names[1], len(b)))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} has dimension {a.shape[1]} but {names[1]} has {b.shape[1]}.")
    # Normalising clamps tiny norms, so an all-zero row gives similarity 0 rather than NaN (as in ST).
    return paired_cosine_similarity(a, b)


# --------------------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------------------
def ranked_neighbours(embeddings: torch.Tensor, queries: np.ndarray, depth: int) -> torch.Tensor:
    """Indices of the `depth` rows most similar (cosine) to each query row, best first, the query itself left out.

    `embeddings` is an (N, D) float tensor (e.g. from `labkit.validation.as_embeddings`), `queries` the
    row indices to answer (a block of them: memory grows as len(queries) x N). Ties keep `torch.topk`'s order.
    """
    query_index = torch.as_tensor(queries)
    sims = cosine_similarity(embeddings[query_index], embeddings)
    sims[torch.arange(len(query_index)), query_index] = -float("inf")
    return torch.topk(sims, depth, dim=1, largest=True, sorted=True).indices


def _mean(values: np.ndarray, codes: np.ndarray, avg_of_avgs: bool) -> float:
    """Mean over queries, or (avg_of_avgs) the mean over classes of the per-class means, as PML does."""
    if not avg_of_avgs:
        return float(values.mean())
    present = np.unique(codes)
    sums = np.bincount(codes, weights=values)[present]
    return float(np.mean(sums / np.bincount(codes)[present]))


def retrieval_metrics(
    embeddings, labels, ks: Sequence[int] = (1, 5, 10), avg_of_avgs: bool = False, chunk_size: int = 1024
) -> dict:
    """Retrieval quality when every text is a query against all the others (leave-one-out).

    For query q of class c there are R = (number of texts of class c) - 1 relevant items. Rank all other
    texts by cosine similarity to q and let rel(i) = 1 when the i-th one has class c. Then

    * ``precision_at_1`` = rel(1), the nearest neighbour has the same class;
    * ``recall_at_{k}`` = 1 if rel(i) = 1 for some i <= k, else 0 (the "Recall@K" of the metric-learning
      literature, e.g. Oh Song et al. 2016; pytorch-metric-learning has no metric of that name, and
      ``recall_at_1`` equals its ``precision_at_1``);
    * ``r_precision`` = (1/R) sum_{i<=R} rel(i);
    * ``mean_average_precision_at_r`` (MAP@R, Musgrave et al. 2020) = (1/R) sum_{i<=R} P(i) rel(i), where
      P(i) is the precision among the first i results;

    each averaged over queries. The names and values are those of pytorch-metric-learning's
    ``AccuracyCalculator().get_accuracy(embeddings, labels)`` (query set == reference set, k="max_bin_count",
    cosine similarity), including its rule for classes with a single example: such a query has R = 0 relevant
    items, so it is left out of every average (it still appears in the other queries' results).

    Args:
        embeddings: (N, D) array or tensor. labels: N class labels (ints or strings).
        ks: the k of each recall@k (capped at N - 1 results).
        avg_of_avgs: average per class first, then over classes (PML's option), so large classes do not
            dominate.
        chunk_size: queries per block of the N x N similarity matrix; memory grows as chunk_size * N.

    Returns:
        dict with the metrics above plus ``num_queries`` (queries averaged over) and ``num_lone_queries``
        (queries left out because their class has one example).

    Taught in notebooks/09_training.ipynb.
    """
    x = as_embeddings(embeddings)
    codes = label_codes(labels, len(x))
    require_two_classes(codes)
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, e.g. (1, 5, 10); got {ks}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")

    num_relevant = np.bincount(codes)[codes] - 1
    queries = np.flatnonzero(num_relevant > 0)
    if len(queries) == 0:
        raise ValueError("Every class has a single example, so no query has a relevant item to retrieve.")
    depth = min(len(x) - 1, max(ks[-1], int(num_relevant.max())))
    codes_t = torch.as_tensor(codes)

    per_query = {name: np.empty(len(queries)) for name in ["precision_at_1", "r_precision", "map_at_r"]}
    per_query.update({k: np.empty(len(queries)) for k in ks})
    for start in range(0, len(queries), chunk_size):
        block = queries[start : start + chunk_size]
        rows = slice(start, start + len(block))
        neighbours = ranked_neighbours(x, block, depth)
        rel = (codes_t[neighbours] == codes_t[block].unsqueeze(1)).numpy()  # rel[q, i]: i-th result relevant
        R = num_relevant[block]
        within_r = np.arange(depth)[None, :] < R[:, None]
        rel_r = rel & within_r
        precision_at_i = np.cumsum(rel_r, axis=1) / np.arange(1, depth + 1)
        per_query["precision_at_1"][rows] = rel[:, 0]
        per_query["r_precision"][rows] = rel_r.sum(axis=1) / R
        per_query["map_at_r"][rows] = (precision_at_i * rel_r).sum(axis=1) / R
        for k in ks:
            per_query[k][rows] = rel[:, :k].any(axis=1)

    query_codes = codes[queries]
    metrics = {
        "precision_at_1": _mean(per_query["precision_at_1"], query_codes, avg_of_avgs),
        **{f"recall_at_{k}": _mean(per_query[k], query_codes, avg_of_avgs) for k in ks},
        "r_precision": _mean(per_query["r_precision"], query_codes, avg_of_avgs),
        "mean_average_precision_at_r": _mean(per_query["map_at_r"], query_codes, avg_of_avgs),
        "num_queries": int(len(queries)),
        "num_lone_queries": int(len(codes) - len(queries)),
    }
    return metrics


# --------------------------------------------------------------------------------------------------------------
# STS, triplets
# --------------------------------------------------------------------------------------------------------------
def sts_correlation(embeddings1, embeddings2, scores) -> dict:
    """Pearson and Spearman correlation between cos(embeddings1[i], embeddings2[i]) and the gold scores.

    This is what sentence-transformers' `EmbeddingSimilarityEvaluator` reports for cosine similarity
    (`scipy.stats.pearsonr` / `spearmanr` of gold scores against float32 cosine similarities). Spearman only
    looks at the ranking of the pairs, so it is the usual headline number: a model is rewarded for ordering
    pairs like the annotators, whatever the scale of its similarities.

    Returns: ``{"pearson_cosine": float, "spearman_cosine": float}``.

    Taught in notebooks/11_choosing_a_loss.ipynb.
    """
    similarities = _pairwise_cosine(embeddings1, embeddings2).numpy()
    gold = as_gold_scores(scores, len(similarities))
    if len(gold) < 2:
        raise ValueError("A correlation needs at least 2 pairs.")
    if np.ptp(gold) == 0:
        raise ValueError("All gold scores are equal, so their correlation with anything is undefined.")
    return {
        "pearson_cosine": float(pearsonr(gold, similarities)[0]),
        "spearman_cosine": float(spearmanr(gold, similarities)[0]),
    }


def _pairwise_similarity(a: torch.Tensor, b: torch.Tensor, similarity: str) -> torch.Tensor:
    """Row-by-row similarity; distances are negated so that larger always means more similar (as in ST)."""
    if similarity == "cosine":
        return paired_cosine_similarity(a, b)
    if similarity == "dot":
        return pairwise_dot_score(a, b)
    if similarity == "euclidean":
        return -paired_euclidean_distance(a, b)
    return -paired_manhattan_distance(a, b)


def triplet_accuracy(anchors, positives, negatives, similarity: str = "cosine", margin: float = 0.0) -> float:
    """Fraction of triplets where the anchor is closer to its positive than to its negative.

    Counts ``sim(a, p) > sim(a, n) + margin`` (strictly), exactly as sentence-transformers' `TripletEvaluator`.
    `similarity` is "cosine" (default), "dot", "euclidean" or "manhattan"; for the two distances the
    similarity is minus the distance, so the test reads "d(a, p) < d(a, n) - margin".

    For triplet data (e.g. `labkit.data.snli_triplets`); no notebook uses it yet.
    """
    if similarity not in TRIPLET_SIMILARITIES:
        raise ValueError(f"Unknown similarity {similarity!r}: use one of {TRIPLET_SIMILARITIES}.")
    a = as_embeddings(anchors, "anchors")
    p = as_embeddings(positives, "positives")
    n = as_embeddings(negatives, "negatives")
    check_same_length(("anchors", len(a)), ("positives", len(p)), ("negatives", len(n)))
    if not a.shape[1] == p.shape[1] == n.shape[1]:
        raise ValueError("anchors, positives and negatives must have the same embedding dimension.")
    positive_sims = _pairwise_similarity(a, p, similarity)
    negative_sims = _pairwise_similarity(a, n, similarity)
    return float((positive_sims > negative_sims + margin).float().mean())


# --------------------------------------------------------------------------------------------------------------
# Pair classification: pick a cosine threshold on dev, report on test.
# --------------------------------------------------------------------------------------------------------------
def _sorted_runs(scores, labels):
    """Scores sorted high to low, their labels, and a mask marking the last item of each run of equal scores.

    A threshold can only fall between two different scores, so only run ends are candidate cut points.
    """
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], np.asarray(labels)[order]
    run_end = np.append(s[1:] != s[:-1], True)
    return s, y, run_end


def _cut_between(s: np.ndarray, i: int):
    """Threshold just below s[i]: the midpoint with the next score, as sentence-transformers picks it."""
    if i == len(s) - 1:
        return s[i]
    midpoint = (s[i] + s[i + 1]) / 2
    return s[i] if midpoint == s[i + 1] else midpoint  # rounding must not pull in the next score


def best_accuracy_threshold(scores, labels) -> tuple[float, float]:
    """(best accuracy, threshold) for predicting "similar" when score >= threshold.

    A vectorised `BinaryClassificationEvaluator.find_best_acc_and_threshold` (high score = more similar):
    scores sorted high to low, every cut between two distinct scores tried, the first best kept; when no cut
    beats "everything dissimilar", the threshold lies just above the highest score.
    """
    s, y, run_end = _sorted_runs(scores, labels)
    if len(s) == 0:
        return 0.0, -1.0
    positives_above = np.cumsum(y == 1)
    negatives_below = (y == 0).sum() - np.cumsum(y == 0)
    accuracy = (positives_above + negatives_below) / len(y)
    candidates = np.flatnonzero(run_end)
    best = candidates[np.argmax(accuracy[candidates])]
    all_dissimilar = (y == 0).sum() / len(y)
    if accuracy[best] > all_dissimilar:
        return float(accuracy[best]), float(_cut_between(s, best))
    dtype = np.result_type(s.dtype, np.float16)
    return float(all_dissimilar), float(np.nextafter(s[0], np.inf, dtype=dtype))


def best_f1_threshold(scores, labels) -> tuple[float, float, float, float]:
    """(best F1, its precision, its recall, threshold) for predicting "similar" when score >= threshold.

    A vectorised `BinaryClassificationEvaluator.find_best_f1_and_threshold`; (0, 0, 0, 0) without positives.
    """
    s, y, run_end = _sorted_runs(scores, labels)
    true_positives = np.cumsum(y == 1)
    candidates = np.flatnonzero(run_end & (true_positives > 0))
    if len(candidates) == 0:
        return 0.0, 0.0, 0.0, 0.0
    precision = true_positives[candidates] / (candidates + 1)
    recall = true_positives[candidates] / true_positives[-1]
    f1 = 2 * precision * recall / (precision + recall)
    best = int(np.argmax(f1))
    return float(f1[best]), float(precision[best]), float(recall[best]), float(_cut_between(s, candidates[best]))


def _classification_scores(similarities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    predicted = similarities >= threshold
    true_positives = int((predicted & (labels == 1)).sum())
    precision = true_positives / predicted.sum() if predicted.any() else 0.0
    recall = true_positives / (labels == 1).sum() if (labels == 1).any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if true_positives else 0.0
    return {"accuracy": float((predicted == labels).mean()), "f1": float(f1),
            "precision": float(precision), "recall": float(recall)}


def pair_classification(
    dev_embeddings1, dev_embeddings2, dev_labels, test_embeddings1, test_embeddings2, test_labels
) -> dict:
    """Duplicate/paraphrase detection: choose cosine thresholds on dev, then measure them on test.

    Choosing the threshold on the data it is scored on flatters the model; here the accuracy threshold and the
    F1 threshold are chosen on dev (sentence-transformers' `BinaryClassificationEvaluator` search, see
    `best_accuracy_threshold`) and a test pair counts as "similar" when its cosine similarity >= threshold.

    Returns: ``accuracy`` (test, at ``accuracy_threshold``), ``f1``, ``precision``, ``recall`` (test, at
    ``f1_threshold``), ``dev_accuracy``, ``dev_f1``, and ``average_precision`` on test (threshold-free).

    Used by `python -m labkit evaluate` on 0/1 pair data (labkit/experiment.py).
    """
    from sklearn.metrics import average_precision_score

    dev_sims = _pairwise_cosine(dev_embeddings1, dev_embeddings2, ("dev_embeddings1", "dev_embeddings2")).numpy()
    test_sims = _pairwise_cosine(test_embeddings1, test_embeddings2, ("test_embeddings1", "test_embeddings2")).numpy()
    dev_y = as_binary_labels(dev_labels, len(dev_sims), "dev_labels")
    test_y = as_binary_labels(test_labels, len(test_sims), "test_labels")
    dev_accuracy, accuracy_threshold = best_accuracy_threshold(dev_sims, dev_y)
    dev_f1, _, _, f1_threshold = best_f1_threshold(dev_sims, dev_y)
    at_f1_threshold = _classification_scores(test_sims, test_y, f1_threshold)
    has_both = 0 < test_y.sum() < len(test_y)
    return {
        "accuracy": _classification_scores(test_sims, test_y, accuracy_threshold)["accuracy"],
        "accuracy_threshold": accuracy_threshold,
        "f1": at_f1_threshold["f1"],
        "precision": at_f1_threshold["precision"],
        "recall": at_f1_threshold["recall"],
        "f1_threshold": f1_threshold,
        "dev_accuracy": dev_accuracy,
        "dev_f1": dev_f1,
        "average_precision": float(average_precision_score(test_y, test_sims)) if has_both else float("nan"),
    }


# --------------------------------------------------------------------------------------------------------------
# Similarity distributions of positive (same class) and negative (different class) pairs
# --------------------------------------------------------------------------------------------------------------
def _sample_pairs(per_anchor: np.ndarray, partner, n: int, max_pairs: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Up to `max_pairs` distinct unordered pairs (i < j), uniformly at random, without building all pairs.

    Ordered pairs are numbered 0..total-1, anchor by anchor (anchor a has `per_anchor[a]` partners);
    `partner(anchors, r)` gives the r-th partner of each anchor. Each unordered pair has two numbers, so
    2 * max_pairs distinct numbers always hold at least max_pairs distinct pairs.
    """
    total = int(per_anchor.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    flat = np.arange(total) if total <= 2 * max_pairs else rng.choice(total, size=2 * max_pairs, replace=False)
    ends = np.cumsum(per_anchor)
    anchors = np.searchsorted(ends, flat, side="right")
    others = partner(anchors, flat - (ends[anchors] - per_anchor[anchors]))
    keys = np.unique(np.minimum(anchors, others) * n + np.maximum(anchors, others))
    if len(keys) > max_pairs:
        keys = np.sort(rng.choice(keys, size=max_pairs, replace=False))
    return keys // n, keys % n


def similarity_distributions(embeddings, labels, max_pairs: int = 100_000, seed: int = 0):
    """Cosine similarities of positive pairs (same label) and negative pairs (different labels).

    All pairs when there are at most `max_pairs` of a kind, else `max_pairs` distinct pairs drawn uniformly
    (with `seed`), never building the N x N matrix. A good embedding puts the two histograms far apart; see
    `separation_summary` for numbers and `labkit.viz.plot_similarity_histograms` for the picture.

    Returns: (positive_similarities, negative_similarities), 1-D float32 NumPy arrays (either may be empty:
    no positives when every class has one example, no negatives with a single class).

    Taught in notebooks/10_clusters.ipynb.
    """
    x = as_embeddings(embeddings)
    codes = label_codes(labels, len(x))
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1, got {max_pairs}.")
    n = len(codes)
    rng = np.random.default_rng(seed)
    # Items sorted by class: class c occupies by_class[start[c] : start[c] + size[c]].
    by_class = np.argsort(codes, kind="stable")
    size = np.bincount(codes)
    start = np.cumsum(size) - size
    rank_in_class = np.empty(n, np.int64)
    rank_in_class[by_class] = np.arange(n) - start[codes[by_class]]

    def positive_partner(a, r):  # r-th other member of a's class, skipping a itself
        return by_class[start[codes[a]] + r + (r >= rank_in_class[a])]

    def negative_partner(a, r):  # r-th item outside a's class block
        return by_class[np.where(r < start[codes[a]], r, r + size[codes[a]])]

    pairs = [
        _sample_pairs(size[codes] - 1, positive_partner, n, max_pairs, rng),
        _sample_pairs(n - size[codes], negative_partner, n, max_pairs, rng),
    ]
    return tuple(paired_cosine_similarity(x[torch.as_tensor(i)], x[torch.as_tensor(j)]).numpy() for i, j in pairs)


def separation_summary(positive_similarities, negative_similarities, bins: int = 50) -> dict:
    """How well similarity separates positive from negative pairs.

    * ``auc``: probability that a random positive pair is more similar than a random negative pair (ties count
      half; the ROC AUC of using cosine similarity as the classifier). 0.5 = no separation, 1.0 = perfect.
    * ``mean_positive``, ``mean_negative``, ``mean_gap`` = mean_positive - mean_negative.
    * ``histogram_overlap``: shared area of the two normalised histograms on common bins (1 = same
      distribution, 0 = no overlap).

    Taught in notebooks/10_clusters.ipynb.
    """
    pos = np.asarray(positive_similarities, dtype=np.float64).reshape(-1)
    neg = np.asarray(negative_similarities, dtype=np.float64).reshape(-1)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(
            f"Need both positive and negative pairs, got {len(pos)} and {len(neg)}: "
            "use data with at least 2 classes and a class with 2 or more examples."
        )
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("Similarities contain NaN or infinite values.")
    # Mann-Whitney U from ranks of the pooled sample = AUC, with ties counted half.
    ranks = rankdata(np.concatenate([pos, neg]))
    auc = (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    edges = np.histogram_bin_edges(np.concatenate([pos, neg]), bins=bins)
    pos_hist = np.histogram(pos, bins=edges)[0] / len(pos)
    neg_hist = np.histogram(neg, bins=edges)[0] / len(neg)
    return {
        "auc": float(auc),
        "mean_positive": float(pos.mean()),
        "mean_negative": float(neg.mean()),
        "mean_gap": float(pos.mean() - neg.mean()),
        "histogram_overlap": float(np.minimum(pos_hist, neg_hist).sum()),
    }


# --------------------------------------------------------------------------------------------------------------
# Cluster quality (numbers printed beside the UMAP maps)
# --------------------------------------------------------------------------------------------------------------
def cluster_quality(embeddings, labels, k: int = 5, sample_size: int | None = 5000, seed: int = 0) -> dict:
    """Two numbers for "are the classes clusters?", measured in the original embedding space (not on a 2-D map).

    * ``silhouette``: mean silhouette coefficient with cosine distance (scikit-learn's `silhouette_score`):
      for each point, (b - a) / max(a, b) with a the mean distance to its own class and b to the nearest
      other class. Between -1 and 1; near 0 means classes overlap. Computed on `sample_size` random points
      (all if None or fewer) because it costs N^2.
    * ``knn_accuracy``: leave-one-out k-nearest-neighbour classification accuracy with cosine similarity
      (majority vote of the k most similar other points; a tie goes to the class whose votes have the smaller
      sum of ranks, then to the first label in sorted order).
      Every point counts, including classes with a single example.

    Taught in notebooks/10_clusters.ipynb.
    """
    from sklearn.metrics import silhouette_score

    x = as_embeddings(embeddings)
    codes = label_codes(labels, len(x))
    require_two_classes(codes)
    n = len(codes)
    if n < 3 or codes.max() + 1 >= n:
        raise ValueError("cluster_quality needs more points than classes (some class with 2+ examples).")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    k = min(k, n - 1)

    silhouette = silhouette_score(
        F.normalize(x, dim=-1).numpy(), codes, metric="cosine",  # scored on the unit rows, as always
        sample_size=sample_size if sample_size and sample_size < n else None, random_state=seed,
    )
    # A vote at rank r (0 = nearest) weighs k(k+1) + (k - r): all bonuses together stay below k(k+1), so the
    # count decides and ranks only break ties. Integers keep tied rank sums exactly tied.
    vote_weights = k * (k + 1) + torch.arange(k, 0, -1)
    codes_t = torch.as_tensor(codes)
    correct = 0
    for start in range(0, n, 1024):
        block = np.arange(start, min(start + 1024, n))
        neighbour_codes = codes_t[ranked_neighbours(x, block, k)]
        votes = torch.zeros(len(block), int(codes.max()) + 1, dtype=torch.int64)
        votes.scatter_add_(1, neighbour_codes, vote_weights.expand(len(block), k).contiguous())
        correct += int((votes.argmax(dim=1) == codes_t[block]).sum())
    return {"silhouette": float(silhouette), "knn_accuracy": correct / n, "k": k}


# --------------------------------------------------------------------------------------------------------------
# Model-level wrappers: encode once, then call the functions above.
# --------------------------------------------------------------------------------------------------------------
def evaluate_retrieval(model, texts, labels, batch_size: int = 64, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Encode `texts` with `model` once and return `retrieval_metrics` of the embeddings.

    Taught in notebooks/09_training.ipynb.
    """
    texts = list(texts)
    label_codes(labels, len(texts))  # fail before the slow part
    embeddings = model.encode(texts, batch_size=batch_size, normalize=True)
    return retrieval_metrics(embeddings, labels, ks=ks)


def evaluate_sts(model, sentences1, sentences2, scores, batch_size: int = 64) -> dict:
    """Encode both sides of every pair in one call and return `sts_correlation`.

    Taught in notebooks/11_choosing_a_loss.ipynb.
    """
    sentences1, sentences2 = list(sentences1), list(sentences2)
    check_same_length(("sentences1", len(sentences1)), ("sentences2", len(sentences2)))
    as_gold_scores(scores, len(sentences1))
    embeddings = model.encode(sentences1 + sentences2, batch_size=batch_size)
    return sts_correlation(embeddings[: len(sentences1)], embeddings[len(sentences1) :], scores)


def evaluate_triplets(
    model, anchors, positives, negatives, batch_size: int = 64, similarity: str = "cosine", margin: float = 0.0
) -> float:
    """Encode anchors, positives and negatives in one call and return `triplet_accuracy`.

    For triplet data (e.g. `labkit.data.snli_triplets`); no notebook uses it yet.
    """
    anchors, positives, negatives = list(anchors), list(positives), list(negatives)
    check_same_length(("anchors", len(anchors)), ("positives", len(positives)), ("negatives", len(negatives)))
    embeddings = model.encode(anchors + positives + negatives, batch_size=batch_size)
    n = len(anchors)
    return triplet_accuracy(embeddings[:n], embeddings[n : 2 * n], embeddings[2 * n :], similarity, margin)
