"""labkit.evaluate against pytorch-metric-learning, sentence-transformers' evaluators and naive Python loops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from scipy.stats import pearsonr, spearmanr
from sentence_transformers.sentence_transformer.evaluation import (
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    TripletEvaluator,
)

from labkit import evaluate as ev

PML_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


# ---------------------------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------------------------
def pml_accuracy(embeddings, labels, avg_of_avgs=False) -> dict:
    """pytorch-metric-learning's numbers: query set == reference set, cosine kNN, k = max_bin_count."""
    calculator = AccuracyCalculator(
        include=PML_METRICS, k="max_bin_count", knn_func=CustomKNN(CosineSimilarity()),
        device=torch.device("cpu"), avg_of_avgs=avg_of_avgs,
    )
    return calculator.get_accuracy(embeddings, labels)


def cosine(u, v) -> float:
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


def naive_retrieval(embeddings, labels, ks):
    """One query at a time: rank the others by cosine similarity, read the definitions off the ranking."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = list(labels)
    results = {"precision_at_1": [], "r_precision": [], "mean_average_precision_at_r": []}
    results.update({f"recall_at_{k}": [] for k in ks})
    for q in range(len(labels)):
        others = [i for i in range(len(labels)) if i != q]
        ranked = sorted(others, key=lambda i: -cosine(embeddings[q], embeddings[i]))
        relevant = [labels[i] == labels[q] for i in ranked]
        R = sum(relevant)
        if R == 0:  # a class with one example: no relevant item, left out as PML does
            continue
        results["precision_at_1"].append(float(relevant[0]))
        for k in ks:
            results[f"recall_at_{k}"].append(float(any(relevant[:k])))
        results["r_precision"].append(sum(relevant[:R]) / R)
        hits, average_precision = 0, 0.0
        for i in range(R):
            if relevant[i]:
                hits += 1
                average_precision += hits / (i + 1)
        results["mean_average_precision_at_r"].append(average_precision / R)
    return {name: float(np.mean(values)) for name, values in results.items()}


class LookupModel:
    """Stands in for a SentenceTransformer inside ST's evaluators: each 'sentence' is a key to a fixed embedding."""

    similarity_fn_name = "cosine"

    class model_card_data:  # evaluators record their metrics here; nothing to record in a test
        @staticmethod
        def set_evaluation_metrics(*args, **kwargs):
            pass

    def __init__(self, table: dict):
        self.table = table

    def encode(self, sentences, **kwargs):
        return np.stack([self.table[s] for s in sentences])

    encode_query = encode_document = encode


def keyed(*arrays):
    """Name the rows of each array ("a0", "b0", ...) and return (names per array, lookup table)."""
    table, names = {}, []
    for prefix, array in zip("abcdef", arrays):
        column = [f"{prefix}{i}" for i in range(len(array))]
        table.update(zip(column, np.asarray(array)))
        names.append(column)
    return names, table


def class_structure(name, rng):
    """Embeddings and labels with a given class structure (clustered enough that metrics are not all ~0)."""
    if name == "balanced":
        labels = np.repeat(np.arange(10), 8)
    elif name == "imbalanced_with_singletons":
        labels = np.concatenate([np.repeat(0, 30), np.repeat(1, 7), np.repeat(2, 2), [3, 4, 5], np.repeat(6, 15)])
    elif name == "two_classes":
        labels = np.repeat([0, 1], [40, 25])
    else:  # many small classes, shuffled order
        labels = rng.permutation(np.repeat(np.arange(40), 3))
    centres = rng.normal(size=(labels.max() + 1, 16))
    embeddings = centres[labels] + 1.3 * rng.normal(size=(len(labels), 16))
    return embeddings.astype(np.float32), labels


STRUCTURES = ["balanced", "imbalanced_with_singletons", "two_classes", "many_small"]


# ---------------------------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("avg_of_avgs", [False, True])
def test_retrieval_matches_pytorch_metric_learning(structure, avg_of_avgs):
    embeddings, labels = class_structure(structure, np.random.default_rng(STRUCTURES.index(structure)))
    expected = pml_accuracy(embeddings, labels, avg_of_avgs)
    got = ev.retrieval_metrics(embeddings, labels, avg_of_avgs=avg_of_avgs)
    for name in PML_METRICS:
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name
    assert 0 < got["mean_average_precision_at_r"] < 1  # the data is neither trivial nor hopeless


@pytest.mark.parametrize("structure", STRUCTURES)
def test_retrieval_matches_naive_loop(structure):
    embeddings, labels = class_structure(structure, np.random.default_rng(10 + STRUCTURES.index(structure)))
    ks = (1, 3, 5, 10)
    expected = naive_retrieval(embeddings, labels, ks)
    got = ev.retrieval_metrics(embeddings, labels, ks=ks)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name
    assert got["recall_at_1"] == got["precision_at_1"]
    lone = int(sum(np.sum(labels == c) == 1 for c in np.unique(labels)))
    assert (got["num_lone_queries"], got["num_queries"]) == (lone, len(labels) - lone)


def test_retrieval_is_the_same_in_small_chunks_and_for_tensors_and_string_labels():
    embeddings, labels = class_structure("imbalanced_with_singletons", np.random.default_rng(3))
    whole = ev.retrieval_metrics(embeddings, labels, ks=(1, 5))
    assert ev.retrieval_metrics(embeddings, labels, ks=(1, 5), chunk_size=7) == whole
    names = np.array(["class_%d" % c for c in labels])
    assert ev.retrieval_metrics(torch.from_numpy(embeddings), names, ks=(1, 5)) == whole


def test_retrieval_perfect_clusters_score_one_and_shuffled_labels_score_near_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(20), 50)
    centres = rng.normal(size=(20, 32))
    embeddings = centres[labels] + 0.01 * rng.normal(size=(1000, 32))
    perfect = ev.retrieval_metrics(embeddings, labels)
    for name in ["precision_at_1", "recall_at_5", "r_precision", "mean_average_precision_at_r"]:
        assert perfect[name] == pytest.approx(1.0)

    shuffled = ev.retrieval_metrics(embeddings, rng.permutation(labels))
    chance = 49 / 999  # probability that a random other item shares the query's class
    assert abs(shuffled["precision_at_1"] - chance) < 0.03
    assert abs(shuffled["r_precision"] - chance) < 0.02
    assert shuffled["mean_average_precision_at_r"] < 2 * chance


def test_retrieval_ks_larger_than_the_data_are_capped():
    embeddings, labels = class_structure("two_classes", np.random.default_rng(5))
    got = ev.retrieval_metrics(embeddings, labels, ks=(1, 1000))
    assert got["recall_at_1000"] == 1.0


def test_retrieval_rejects_bad_input():
    embeddings, labels = class_structure("balanced", np.random.default_rng(0))
    with pytest.raises(ValueError, match="labels"):
        ev.retrieval_metrics(embeddings, labels[:-1])
    with pytest.raises(ValueError, match="2 classes"):
        ev.retrieval_metrics(embeddings, np.zeros(len(labels)))
    with pytest.raises(ValueError, match="single example"):
        ev.retrieval_metrics(embeddings[:5], np.arange(5))
    broken = embeddings.copy()
    broken[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ev.retrieval_metrics(broken, labels)
    with pytest.raises(ValueError, match="2-D"):
        ev.retrieval_metrics(embeddings[0], labels[:1])
    with pytest.raises(ValueError, match="ks"):
        ev.retrieval_metrics(embeddings, labels, ks=(0, 5))


# ---------------------------------------------------------------------------------------------------------------
# STS
# ---------------------------------------------------------------------------------------------------------------
def sts_data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    emb1 = rng.normal(size=(n, 12)).astype(np.float32)
    emb2 = (emb1 + rng.normal(scale=rng.uniform(0.2, 2.0, size=(n, 1)), size=(n, 12))).astype(np.float32)
    scores = np.round(rng.uniform(0, 5, size=n), 1)  # rounded: ties, as in real STS-B scores
    return emb1, emb2, scores


def test_sts_matches_sentence_transformers_evaluator():
    emb1, emb2, scores = sts_data()
    (s1, s2), table = keyed(emb1, emb2)
    evaluator = EmbeddingSimilarityEvaluator(s1, s2, scores.tolist(), similarity_fn_names=["cosine"], write_csv=False)
    expected = evaluator(LookupModel(table))
    got = ev.sts_correlation(emb1, emb2, scores)
    assert got["pearson_cosine"] == pytest.approx(expected["pearson_cosine"], abs=1e-6)
    assert got["spearman_cosine"] == pytest.approx(expected["spearman_cosine"], abs=1e-6)


def test_sts_matches_naive_scipy_and_responds_to_quality():
    emb1, emb2, scores = sts_data(seed=1)
    sims = [cosine(a, b) for a, b in zip(emb1.astype(np.float64), emb2.astype(np.float64))]
    got = ev.sts_correlation(torch.from_numpy(emb1), emb2, list(scores))
    assert got["pearson_cosine"] == pytest.approx(pearsonr(scores, sims)[0], abs=1e-6)
    assert got["spearman_cosine"] == pytest.approx(spearmanr(scores, sims)[0], abs=1e-6)
    # Gold scores that are a monotone function of the similarity give Spearman 1.
    assert ev.sts_correlation(emb1, emb2, np.exp(np.array(sims)))["spearman_cosine"] == pytest.approx(1.0)


def test_sts_rejects_bad_input():
    emb1, emb2, scores = sts_data()
    with pytest.raises(ValueError, match="Lengths differ"):
        ev.sts_correlation(emb1, emb2[:-1], scores)
    with pytest.raises(ValueError, match="score"):
        ev.sts_correlation(emb1, emb2, scores[:-1])
    with pytest.raises(ValueError, match="equal"):
        ev.sts_correlation(emb1, emb2, np.ones(len(scores)))
    with pytest.raises(ValueError, match="NaN"):
        ev.sts_correlation(emb1 * np.nan, emb2, scores)


# ---------------------------------------------------------------------------------------------------------------
# Triplets
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("similarity", ev.TRIPLET_SIMILARITIES)
@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_triplet_accuracy_matches_sentence_transformers(similarity, margin):
    rng = np.random.default_rng(0)
    anchors = rng.normal(size=(80, 10)).astype(np.float32)
    positives = (anchors + rng.normal(scale=1.0, size=anchors.shape)).astype(np.float32)
    negatives = rng.normal(size=anchors.shape).astype(np.float32)
    (a, p, n), table = keyed(anchors, positives, negatives)
    evaluator = TripletEvaluator(a, p, n, similarity_fn_names=[similarity], margin=margin, write_csv=False)
    expected = evaluator(LookupModel(table))[f"{similarity}_accuracy"]
    got = ev.triplet_accuracy(anchors, positives, negatives, similarity=similarity, margin=margin)
    assert got == pytest.approx(expected, abs=1e-9)
    assert 0.0 < got < 1.0


def test_triplet_accuracy_matches_naive_loop():
    rng = np.random.default_rng(1)
    a, p, n = (rng.normal(size=(50, 6)) for _ in range(3))
    naive = np.mean([cosine(a[i], p[i]) > cosine(a[i], n[i]) for i in range(50)])
    assert ev.triplet_accuracy(a, p, n) == pytest.approx(naive)
    with pytest.raises(ValueError, match="Lengths differ"):
        ev.triplet_accuracy(a, p[:-1], n)
    with pytest.raises(ValueError, match="similarity"):
        ev.triplet_accuracy(a, p, n, similarity="angle")


# ---------------------------------------------------------------------------------------------------------------
# Pair classification
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_threshold_search_matches_sentence_transformers(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    labels = rng.integers(0, 2, size=n)
    # Rounded scores create ties; some seeds are all one label.
    scores = np.round(rng.normal(size=n) + labels * rng.uniform(0, 2), int(rng.integers(1, 3))).astype(np.float32)
    if seed == 4:
        labels[:] = 0
    expected_acc = BinaryClassificationEvaluator.find_best_acc_and_threshold(scores, labels, True)
    expected_f1 = BinaryClassificationEvaluator.find_best_f1_and_threshold(scores, labels, True)
    assert ev.best_accuracy_threshold(scores, labels) == pytest.approx(expected_acc, abs=1e-12)
    assert ev.best_f1_threshold(scores, labels) == pytest.approx(expected_f1, abs=1e-12)


def pair_split(rng, n, positive_shift):
    """Pairs whose second embedding is the first plus noise (label 1) or an unrelated vector (label 0)."""
    labels = rng.integers(0, 2, size=n)
    emb1 = rng.normal(size=(n, 8))
    related = emb1 + rng.normal(scale=positive_shift, size=(n, 8))
    emb2 = np.where(labels[:, None] == 1, related, rng.normal(size=(n, 8)))
    return emb1.astype(np.float32), emb2.astype(np.float32), labels


def test_pair_classification_picks_thresholds_on_dev_and_reports_test():
    rng = np.random.default_rng(0)
    dev = pair_split(rng, 120, positive_shift=0.6)
    test = pair_split(rng, 150, positive_shift=1.2)  # harder: the best test threshold differs from dev's
    got = ev.pair_classification(*dev, *test)

    (s1, s2), table = keyed(dev[0], dev[1])
    st_dev = BinaryClassificationEvaluator(s1, s2, dev[2].tolist(), similarity_fn_names=["cosine"]).compute_metrics(
        LookupModel(table))["cosine"]
    assert got["accuracy_threshold"] == pytest.approx(st_dev["accuracy_threshold"], abs=1e-6)
    assert got["f1_threshold"] == pytest.approx(st_dev["f1_threshold"], abs=1e-6)
    assert got["dev_accuracy"] == pytest.approx(st_dev["accuracy"])
    assert got["dev_f1"] == pytest.approx(st_dev["f1"])

    test_sims = np.array([cosine(a, b) for a, b in zip(*test[:2])])
    predicted = test_sims >= got["accuracy_threshold"]
    assert got["accuracy"] == pytest.approx(np.mean(predicted == test[2]))
    predicted = test_sims >= got["f1_threshold"]
    tp = np.sum(predicted & (test[2] == 1))
    precision, recall = tp / predicted.sum(), tp / test[2].sum()
    assert got["precision"] == pytest.approx(precision) and got["recall"] == pytest.approx(recall)
    assert got["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    # Not the accuracy of the threshold chosen on test itself (which would flatter the model).
    assert got["accuracy"] <= ev.best_accuracy_threshold(test_sims, test[2])[0]


def test_pair_classification_rejects_bad_labels():
    rng = np.random.default_rng(0)
    dev, test = pair_split(rng, 20, 0.5), pair_split(rng, 20, 0.5)
    with pytest.raises(ValueError, match="0 .* or 1"):
        ev.pair_classification(dev[0], dev[1], dev[2] * 2, *test)
    with pytest.raises(ValueError, match="test_labels"):
        ev.pair_classification(*dev, test[0], test[1], test[2][:-1])


# ---------------------------------------------------------------------------------------------------------------
# Similarity distributions
# ---------------------------------------------------------------------------------------------------------------
def naive_pair_similarities(embeddings, labels):
    pos, neg = [], []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            (pos if labels[i] == labels[j] else neg).append(cosine(embeddings[i], embeddings[j]))
    return np.sort(pos), np.sort(neg)


def test_similarity_distributions_are_all_pairs_when_few():
    embeddings, labels = class_structure("imbalanced_with_singletons", np.random.default_rng(0))
    pos, neg = ev.similarity_distributions(embeddings, labels)
    naive_pos, naive_neg = naive_pair_similarities(embeddings, labels)
    np.testing.assert_allclose(np.sort(pos), naive_pos, atol=1e-5)
    np.testing.assert_allclose(np.sort(neg), naive_neg, atol=1e-5)


def test_similarity_distributions_sample_distinct_pairs_when_many():
    embeddings, labels = class_structure("many_small", np.random.default_rng(1))
    naive_pos, naive_neg = naive_pair_similarities(embeddings, labels)  # 120 positive, 7020 negative pairs
    pos, neg = ev.similarity_distributions(embeddings, labels, max_pairs=100, seed=3)
    assert len(pos) == len(neg) == 100
    for sample, population in ((pos, naive_pos), (neg, naive_neg)):
        nearest = np.abs(sample[:, None] - population[None, :]).min(axis=1)
        assert nearest.max() < 1e-5  # every sampled value is a pair of the right kind
    assert len(np.unique(np.round(neg, 5))) == 100  # distinct pairs (random floats do not repeat)
    again = ev.similarity_distributions(embeddings, labels, max_pairs=100, seed=3)
    np.testing.assert_array_equal(again[1], neg)
    # A uniform sample: its mean is close to the population's.
    big_neg = ev.similarity_distributions(embeddings, labels, max_pairs=3000, seed=0)[1]
    assert abs(big_neg.mean() - naive_neg.mean()) < 0.02


def test_similarity_distributions_edge_cases():
    embeddings, labels = class_structure("balanced", np.random.default_rng(0))
    pos, neg = ev.similarity_distributions(embeddings, np.zeros(len(labels)))
    assert len(neg) == 0 and len(pos) == len(labels) * (len(labels) - 1) // 2
    pos, neg = ev.similarity_distributions(embeddings[:4], np.arange(4))
    assert len(pos) == 0 and len(neg) == 6


def test_separation_summary_matches_naive_auc_and_extremes():
    rng = np.random.default_rng(0)
    pos, neg = np.round(rng.normal(0.6, 0.2, 70), 2), np.round(rng.normal(0.3, 0.2, 90), 2)
    naive_auc = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    summary = ev.separation_summary(pos, neg)
    assert summary["auc"] == pytest.approx(naive_auc)
    assert summary["mean_gap"] == pytest.approx(pos.mean() - neg.mean())
    assert 0 < summary["histogram_overlap"] < 1
    separated = ev.separation_summary(pos + 10, neg)
    assert separated["auc"] == 1.0 and separated["histogram_overlap"] == 0.0
    assert ev.separation_summary(pos, pos)["histogram_overlap"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="negative"):
        ev.separation_summary(pos, [])


# ---------------------------------------------------------------------------------------------------------------
# Cluster quality
# ---------------------------------------------------------------------------------------------------------------
def naive_cluster_quality(embeddings, labels, k):
    n = len(labels)
    distance = [[1 - cosine(embeddings[i], embeddings[j]) for j in range(n)] for i in range(n)]
    silhouettes, correct = [], 0
    for i in range(n):
        same = [distance[i][j] for j in range(n) if j != i and labels[j] == labels[i]]
        if not same:
            silhouettes.append(0.0)  # sklearn's convention for a point alone in its class
        else:
            a = np.mean(same)
            b = min(np.mean([distance[i][j] for j in range(n) if labels[j] == c])
                    for c in set(labels) if c != labels[i])
            silhouettes.append((b - a) / max(a, b))
        ranked = sorted((j for j in range(n) if j != i), key=lambda j: distance[i][j])[:k]
        tally = {}
        for rank, j in enumerate(ranked):
            count, rank_sum = tally.get(labels[j], (0, 0))
            tally[labels[j]] = (count + 1, rank_sum + rank)
        predicted = min(tally, key=lambda c: (-tally[c][0], tally[c][1], c))
        correct += predicted == labels[i]
    return float(np.mean(silhouettes)), correct / n


@pytest.mark.parametrize("k", [1, 4, 5])
def test_cluster_quality_matches_naive_loop(k):
    embeddings, labels = class_structure("imbalanced_with_singletons", np.random.default_rng(k))
    silhouette, knn_accuracy = naive_cluster_quality(embeddings, list(labels), k)
    got = ev.cluster_quality(embeddings, labels, k=k)
    assert got["silhouette"] == pytest.approx(silhouette, abs=1e-5)
    assert got["knn_accuracy"] == pytest.approx(knn_accuracy)


def test_cluster_quality_perfect_and_shuffled():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 40)
    embeddings = rng.normal(size=(10, 24))[labels] + 0.01 * rng.normal(size=(400, 24))
    perfect = ev.cluster_quality(embeddings, labels)
    assert perfect["knn_accuracy"] == 1.0 and perfect["silhouette"] > 0.9
    shuffled = ev.cluster_quality(embeddings, rng.permutation(labels))
    assert shuffled["knn_accuracy"] < 0.25 and shuffled["silhouette"] < 0.05  # random labels: no structure
    with pytest.raises(ValueError, match="2 classes"):
        ev.cluster_quality(embeddings, np.zeros(len(labels)))


# ---------------------------------------------------------------------------------------------------------------
# Model-level wrappers
# ---------------------------------------------------------------------------------------------------------------
class CountingModel:
    """Wraps an EmbeddingModel and counts encode calls."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def encode(self, texts, **kwargs):
        self.calls += 1
        return self.model.encode(texts, **kwargs)


TEXTS = ["a cat sat", "the cat sits", "dogs bark", "a dog barked loudly", "stock prices fell", "markets drop"]


def test_evaluate_retrieval_encodes_once(tiny):
    model = CountingModel(tiny)
    labels = [0, 0, 1, 1, 2, 2]
    got = ev.evaluate_retrieval(model, TEXTS, labels, batch_size=4, ks=(1, 3))
    assert model.calls == 1
    assert got == ev.retrieval_metrics(tiny.encode(TEXTS), labels, ks=(1, 3))
    with pytest.raises(ValueError, match="labels"):
        ev.evaluate_retrieval(model, TEXTS, labels[:-1])
    assert model.calls == 1  # the mismatch is reported before encoding


def test_evaluate_sts_and_triplets_encode_once(tiny):
    model = CountingModel(tiny)
    s1, s2, scores = TEXTS[:3], TEXTS[3:], [1.0, 3.5, 2.0]
    got = ev.evaluate_sts(model, s1, s2, scores)
    assert model.calls == 1
    expected = ev.sts_correlation(tiny.encode(s1), tiny.encode(s2), scores)
    assert got["spearman_cosine"] == pytest.approx(expected["spearman_cosine"], abs=1e-6)
    assert got["pearson_cosine"] == pytest.approx(expected["pearson_cosine"], abs=1e-5)
    accuracy = ev.evaluate_triplets(model, TEXTS[:2], TEXTS[2:4], TEXTS[4:])
    assert model.calls == 2
    assert accuracy == ev.triplet_accuracy(tiny.encode(TEXTS[:2]), tiny.encode(TEXTS[2:4]), tiny.encode(TEXTS[4:]))
    with pytest.raises(ValueError, match="Lengths differ"):
        ev.evaluate_sts(model, s1, s2[:-1], scores)
    assert not math.isnan(got["spearman_cosine"])
