"""labkit.course.clusters against slow, obviously-correct Python loops on small random data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkit.course import clusters
from labkit.evaluate import cluster_quality


# ----------------------------------------------------------------------------------------------------------
# Naive references
# ----------------------------------------------------------------------------------------------------------
def naive_cosine(x):
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    sims = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            sims[i, j] = x[i] @ x[j] / (math.sqrt(x[i] @ x[i]) * math.sqrt(x[j] @ x[j]))
    return sims


def naive_neighbours(x, k):
    """For each i, the k other indices with the highest cosine similarity, best first."""
    sims = naive_cosine(x)
    result = []
    for i in range(len(x)):
        others = sorted((j for j in range(len(x)) if j != i), key=lambda j: -sims[i, j])
        result.append(others[:k])
    return result


def naive_confusion(x, labels, k=1):
    classes = sorted(set(labels.tolist()))
    counts = {(a, b): 0 for a in classes for b in classes}
    for i, neighbours in enumerate(naive_neighbours(x, k)):
        for j in neighbours:
            counts[(labels[i], labels[j])] += 1
    return classes, counts


def naive_centroid_similarity(x, labels, a, b):
    x = np.asarray(x, dtype=np.float64)
    def centroid(c):
        rows = [x[i] / np.linalg.norm(x[i]) for i in range(len(x)) if labels[i] == c]
        return sum(rows) / len(rows)
    ca, cb = centroid(a), centroid(b)
    return ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb))


def naive_silhouette(x, labels):
    """Per point (b - a) / max(a, b) with cosine distance; 0 for a point alone in its class (scikit-learn)."""
    dist = 1 - naive_cosine(x)
    out = []
    for i in range(len(x)):
        own = [dist[i, j] for j in range(len(x)) if j != i and labels[j] == labels[i]]
        if not own:
            out.append(0.0)
            continue
        a = sum(own) / len(own)
        b = min(np.mean([dist[i, j] for j in range(len(x)) if labels[j] == c])
                for c in set(labels.tolist()) if c != labels[i])
        out.append((b - a) / max(a, b))
    return np.array(out)


@pytest.fixture()
def blobs():
    """40 points in 6-D, 5 classes of uneven size, classes overlapping enough to confuse some."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), [10, 8, 9, 6, 7])
    centres = rng.normal(size=(5, 6))
    x = centres[labels] + 0.9 * rng.normal(size=(len(labels), 6))
    return x.astype(np.float32), labels


# ----------------------------------------------------------------------------------------------------------
# nearest_neighbour_confusion
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
def test_confusion_matches_naive_loop(blobs, k):
    x, labels = blobs
    table = clusters.nearest_neighbour_confusion(x, labels, k=k)
    classes, counts = naive_confusion(x, labels, k)
    assert list(table.index) == classes and list(table.columns) == classes
    for (a, b), count in counts.items():
        assert table.loc[a, b] == count
    assert (table.sum(axis=1).to_numpy() == k * np.bincount(labels)).all()


def test_confusion_with_string_labels_tensor_input_and_small_chunks(blobs, monkeypatch):
    x, labels = blobs
    names = np.array(["zeta", "alpha", "mid", "beta", "omega"])[labels]
    expected = clusters.nearest_neighbour_confusion(x, labels)
    monkeypatch.setattr(clusters, "CHUNK", 7)  # several blocks of queries
    table = clusters.nearest_neighbour_confusion(torch.tensor(x), names)
    assert list(table.index) == sorted(set(names))
    for code, name in enumerate(["zeta", "alpha", "mid", "beta", "omega"]):
        for code2, name2 in enumerate(["zeta", "alpha", "mid", "beta", "omega"]):
            assert table.loc[name, name2] == expected.loc[code, code2]


def test_confusion_diagonal_is_precision_at_1(blobs):
    from labkit.evaluate import retrieval_metrics

    x, labels = blobs
    table = clusters.nearest_neighbour_confusion(x, labels)
    assert np.trace(table.to_numpy()) / len(labels) == pytest.approx(retrieval_metrics(x, labels)["precision_at_1"])


def test_confusion_refuses_bad_input(blobs):
    x, labels = blobs
    with pytest.raises(ValueError, match="one label per embedding"):
        clusters.nearest_neighbour_confusion(x, labels[:-1])
    with pytest.raises(ValueError, match="k="):
        clusters.nearest_neighbour_confusion(x, labels, k=len(labels))
    with pytest.raises(ValueError, match="positive integer"):
        clusters.nearest_neighbour_confusion(x, labels, k=0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clusters.nearest_neighbour_confusion(bad, labels)
    with pytest.raises(ValueError, match="2-D"):
        clusters.nearest_neighbour_confusion(x[0], labels[:1])


# ----------------------------------------------------------------------------------------------------------
# centroid_similarity
# ----------------------------------------------------------------------------------------------------------
def test_centroid_similarity_matches_naive_loop(blobs):
    x, labels = blobs
    table = clusters.centroid_similarity(x, labels)
    for a in range(5):
        for b in range(5):
            assert table.loc[a, b] == pytest.approx(naive_centroid_similarity(x, labels, a, b), abs=1e-6)
    assert np.allclose(table.to_numpy(), table.to_numpy().T)


def test_centroid_similarity_ignores_vector_lengths():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    scaled = x * np.array([[10.0], [1.0], [3.0]])
    labels = np.array([0, 0, 1])
    assert np.allclose(clusters.centroid_similarity(x, labels), clusters.centroid_similarity(scaled, labels))
    # By hand: class 0's centroid points at 45°, like class 1's single vector.
    assert clusters.centroid_similarity(x, labels).loc[0, 1] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------------
# most_confused_pairs
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2])
def test_most_confused_pairs_matches_naive_ranking(blobs, k):
    x, labels = blobs
    classes, counts = naive_confusion(x, labels, k)
    sizes = np.bincount(labels)
    rows = []
    for i, a in enumerate(classes):
        for b in classes[i + 1 :]:
            total = counts[(a, b)] + counts[(b, a)]
            if total:
                rows.append((total, naive_centroid_similarity(x, labels, a, b), a, b, counts[(a, b)], counts[(b, a)]))
    rows.sort(key=lambda r: (-r[0], -r[1]))
    table = clusters.most_confused_pairs(x, labels, top=100, k=k)
    assert len(table) == len(rows) > 0
    for (total, centroid, a, b, ab, ba), (_, row) in zip(rows, table.iterrows()):
        assert (row.class_a, row.class_b, row.a_to_b, row.b_to_a, row.confusions) == (a, b, ab, ba, total)
        assert row.confusion_rate == pytest.approx(total / (k * (sizes[a] + sizes[b])))
        assert row.centroid_similarity == pytest.approx(centroid, abs=1e-6)
    assert len(clusters.most_confused_pairs(x, labels, top=2, k=k)) == 2


def test_most_confused_pairs_names_and_well_separated_classes():
    x = np.array([[1.0, 0.0], [0.99, 0.1], [0.98, -0.1], [0.0, 1.0], [0.1, 0.99], [-1.0, 0.0], [-0.99, 0.1]])
    labels = np.array([0, 1, 1, 2, 2, 3, 3])
    table = clusters.most_confused_pairs(x, labels, label_names=["w", "x", "y", "z"])
    # By angle: point 0 (class 0, alone, at 0°) has its nearest neighbour in class 1 (point 1, at 5.8°), and
    # both class-1 points (at ±5.8°) are closer to point 0 than to each other (11.6° apart). Nothing else mixes.
    assert table[["class_a", "class_b", "name_a", "name_b", "a_to_b", "b_to_a"]].values.tolist() == [
        [0, 1, "w", "x", 1, 2]]
    named = clusters.most_confused_pairs(x, labels, label_names={0: "w", 1: "x"})
    assert named.loc[0, "name_b"] == "x"
    with pytest.raises(ValueError, match="integers"):
        clusters.most_confused_pairs(x, np.array(list("abbccdd")), label_names=["w", "x", "y", "z"])
    with pytest.raises(TypeError, match="label_names"):
        clusters.most_confused_pairs(x, labels, label_names="wxyz")
    with pytest.raises(ValueError, match="top"):
        clusters.most_confused_pairs(x, labels, top=0)
    with pytest.raises(ValueError, match="2 classes"):
        clusters.most_confused_pairs(x, np.zeros(len(x), int))


# ----------------------------------------------------------------------------------------------------------
# confused_examples
# ----------------------------------------------------------------------------------------------------------
def test_confused_examples_matches_naive_loop(blobs):
    x, labels = blobs
    texts = [f"text {i}" for i in range(len(labels))]
    pair = clusters.most_confused_pairs(x, labels, top=1).iloc[0]
    a, b = pair.class_a, pair.class_b
    sims = naive_cosine(x)
    expected = []
    for i, (j,) in enumerate(naive_neighbours(x, 1)):
        if {labels[i], labels[j]} == {a, b}:
            best_own = max(sims[i, m] for m in range(len(x)) if m != i and labels[m] == labels[i])
            expected.append((texts[i], labels[i], texts[j], labels[j], sims[i, j], best_own))
    expected.sort(key=lambda r: -r[4])
    table = clusters.confused_examples(x, labels, texts, a, b, n=None)
    assert len(table) == len(expected) == pair.confusions
    for row, exp in zip(table.itertuples(index=False), expected):
        assert (row.text, row.label, row.neighbour_text, row.neighbour_label) == exp[:4]
        assert row.similarity == pytest.approx(exp[4], abs=1e-6)
        assert row.best_own_class == pytest.approx(exp[5], abs=1e-6)
        assert row.similarity >= row.best_own_class - 1e-6  # the wrong neighbour beat every own-class text
    assert len(clusters.confused_examples(x, labels, texts, a, b, n=1)) == 1
    named = clusters.confused_examples(x, labels, texts, a, b, n=None, label_names=list("vwxyz"))
    assert named["label"].tolist() == ["vwxyz"[r[1]] for r in expected]
    assert named["neighbour_label"].tolist() == ["vwxyz"[r[3]] for r in expected]


def test_confused_examples_refuses_bad_input(blobs):
    x, labels = blobs
    texts = [str(i) for i in range(len(labels))]
    with pytest.raises(ValueError, match="not among the labels"):
        clusters.confused_examples(x, labels, texts, 0, 99)
    with pytest.raises(ValueError, match="same class"):
        clusters.confused_examples(x, labels, texts, 1, 1)
    with pytest.raises(ValueError, match="one text per embedding"):
        clusters.confused_examples(x, labels, texts[:-1], 0, 1)
    with pytest.raises(ValueError, match="n must"):
        clusters.confused_examples(x, labels, texts, 0, 1, n=0)


# ----------------------------------------------------------------------------------------------------------
# per_class_quality, class_changes
# ----------------------------------------------------------------------------------------------------------
def test_per_class_quality_matches_naive_loops(blobs):
    x, labels = blobs
    table = clusters.per_class_quality(x, labels, label_names=["a", "b", "c", "d", "e"])
    classes, counts = naive_confusion(x, labels, 1)
    silhouette = naive_silhouette(x, labels)
    centroids = clusters.centroid_similarity(x, labels).to_numpy()
    for c in classes:
        row = table.loc[c]
        size = int((labels == c).sum())
        assert row["size"] == size and row["name"] == "abcde"[c]
        assert row["nn_accuracy"] == pytest.approx(counts[(c, c)] / size)
        assert row["silhouette"] == pytest.approx(silhouette[labels == c].mean(), abs=1e-5)
        wrong = {d: counts[(c, d)] for d in classes if d != c}
        top = max(wrong, key=lambda d: (wrong[d], -d)) if max(wrong.values()) else None
        others = [d for d in classes if d != c]
        nearest = max(others, key=lambda d: centroids[c, d])
        assert row["most_confused_with"] == "abcde"[top if top is not None else nearest]
        assert row["nearest_centroid_similarity"] == pytest.approx(centroids[c, nearest])
    # The size-weighted mean of the per-class silhouettes is the overall silhouette of cluster_quality.
    overall = (table["silhouette"] * table["size"]).sum() / table["size"].sum()
    assert overall == pytest.approx(cluster_quality(x, labels, sample_size=None)["silhouette"], abs=1e-5)


def test_per_class_quality_lone_class_and_errors():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.2]])
    table = clusters.per_class_quality(x, np.array([0, 0, 1, 1, 2]))
    assert np.isnan(table.loc[2, "silhouette"]) and table.loc[2, "nn_accuracy"] == 0
    assert table.loc[0, "nn_accuracy"] == 1 and table.loc[1, "nn_accuracy"] == 1
    with pytest.raises(ValueError, match="more texts than classes"):
        clusters.per_class_quality(x[:3], np.array([0, 1, 2]))


def test_class_changes_are_after_minus_before_sorted(blobs):
    x, labels = blobs
    rng = np.random.default_rng(0)
    after = x + 0.5 * rng.normal(size=x.shape).astype(np.float32)
    table = clusters.class_changes(x, after, labels)
    old, new = clusters.per_class_quality(x, labels), clusters.per_class_quality(after, labels)
    for c in range(5):
        assert table.loc[c, "change"] == pytest.approx(new.loc[c, "silhouette"] - old.loc[c, "silhouette"])
        assert table.loc[c, "nn_accuracy_before"] == old.loc[c, "nn_accuracy"]
    assert table["change"].is_monotonic_decreasing
    same = clusters.class_changes(x, x, labels, metric="nn_accuracy")
    assert (same["change"] == 0).all()
    with pytest.raises(ValueError, match="metric"):
        clusters.class_changes(x, after, labels, metric="map")
    with pytest.raises(ValueError, match="same texts"):
        clusters.class_changes(x, after[:-1], labels)
