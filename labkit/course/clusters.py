"""Which classes an embedding keeps apart, which it confuses, and with which texts.

`labkit.evaluate` says *how good* an embedding is overall (MAP@R, silhouette, kNN accuracy, separation of
positive and negative pairs). This module breaks that down by class, to see *where* it fails:

* `nearest_neighbour_confusion`: a class × class table; cell (a, b) counts the texts of class a whose
  nearest neighbour (leave-one-out, cosine, as in retrieval) belongs to class b. Off-diagonal cells are
  retrieval mistakes: the confusion matrix of a 1-nearest-neighbour classifier.
* `centroid_similarity`: cosine similarity of the class centroids: which intents the model sees as close.
* `most_confused_pairs`: the class pairs with the most nearest-neighbour mistakes between them.
* `confused_examples`: the actual texts behind a confused pair, with the neighbour that fooled each one.
* `per_class_quality` and `class_changes`: per class silhouette and nearest-neighbour accuracy, and how
  training changed them: which intents improved most, and which not at all.

All of it works on embeddings (arrays or tensors) and labels, whatever model produced them; similarity is
cosine (rows are L2-normalised first, by `labkit.distances`), like everything in `labkit.evaluate`; inputs are
checked by `labkit.validation`.

Taught in notebooks/10_clusters.ipynb.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from labkit.distances import cosine_similarity, paired_cosine_similarity
from labkit.evaluate import ranked_neighbours
from labkit.validation import as_embeddings, label_classes, require_two_classes

__all__ = [
    "nearest_neighbour_confusion", "centroid_similarity", "most_confused_pairs", "confused_examples",
    "per_class_quality", "class_changes",
]

CHUNK = 1024  # queries per block of the similarity matrix: memory grows as CHUNK × N


def _prepare(embeddings, labels):
    """(embeddings as a float32 tensor, integer codes 0..C-1, the class label of each code), checked."""
    x = as_embeddings(embeddings)
    codes, classes = label_classes(labels, len(x))
    return x, codes, classes


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """The L2-normalised rows: what class centroids average, and what the per-class tables are computed on."""
    return F.normalize(x, dim=-1)


def _names(classes: np.ndarray, label_names) -> list[str]:
    """Readable names of the classes: `label_names` is a dict {label: name} or a list indexed by integer label."""
    if label_names is None:
        return [str(c) for c in classes]
    if isinstance(label_names, Mapping):
        return [str(label_names.get(c, c)) for c in classes]
    if isinstance(label_names, str) or not isinstance(label_names, (Sequence, np.ndarray)):
        raise TypeError("label_names must be a dict {label: name} or a list of names indexed by integer label, "
                        f"got {type(label_names).__name__}.")
    try:
        return [str(label_names[int(c)]) for c in classes]
    except (ValueError, TypeError, IndexError):
        raise ValueError(
            f"label_names is a list of {len(label_names)} names, so labels must be integers 0..{len(label_names) - 1}; "
            f"got labels such as {list(classes[:3])}. Pass a dict {{label: name}} instead."
        ) from None


def _nearest_neighbours(x: torch.Tensor, k: int) -> np.ndarray:
    """(N, k) indices of each row's k most similar other rows, best first (leave-one-out), in blocks."""
    n = len(x)
    blocks = [ranked_neighbours(x, np.arange(s, min(s + CHUNK, n)), k) for s in range(0, n, CHUNK)]
    return torch.cat(blocks).numpy()


def _check_k(k: int, n: int) -> int:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer (neighbours per query), got {k!r}.")
    if k > n - 1:
        raise ValueError(f"k={k} but each of the {n} texts has only {n - 1} others: use a smaller k.")
    return int(k)


# --------------------------------------------------------------------------------------------------------------
# Class × class tables
# --------------------------------------------------------------------------------------------------------------
def nearest_neighbour_confusion(embeddings, labels, k: int = 1) -> pd.DataFrame:
    """Counts[a, b] = how many of the k nearest neighbours of class-a texts belong to class b.

    Every text is a query against all the others (leave-one-out, cosine similarity), as in
    `labkit.evaluate.retrieval_metrics`. With k = 1 this is the confusion matrix of a 1-nearest-neighbour
    classifier: the diagonal holds the queries whose nearest neighbour has their class (their precision@1
    is 1), row a sums to k × (size of a), and cell (a, b) off the diagonal counts a's texts that a search
    would answer with a text of b. A symmetric pair of large cells marks two classes the model mixes up.

    Returns: a DataFrame of ints, index = query class, columns = neighbour class (labels in sorted order).

    Taught in notebooks/10_clusters.ipynb.
    """
    x, codes, classes = _prepare(embeddings, labels)
    k = _check_k(k, len(codes))
    neighbour_codes = codes[_nearest_neighbours(x, k)]  # (N, k)
    c = len(classes)
    flat = np.repeat(codes, k) * c + neighbour_codes.reshape(-1)
    counts = np.bincount(flat, minlength=c * c).reshape(c, c)
    return pd.DataFrame(counts, index=pd.Index(classes, name="query class"),
                        columns=pd.Index(classes, name="neighbour class"))


def centroid_similarity(embeddings, labels) -> pd.DataFrame:
    """Cosine similarity between class centroids; the centroid of a class is the mean of its normalised rows.

    Normalising first makes every text count equally, whatever its vector's length. Note the difference with
    the *mean* cosine between the texts of two classes: that is the dot product of the two centroids before
    they are normalised, and it is smaller when a class is spread out. Here the centroids are normalised too,
    so the number says in which *direction* each class lies.

    Returns: a symmetric C × C DataFrame (1 on the diagonal), classes in sorted order.

    Taught in notebooks/10_clusters.ipynb.
    """
    x, codes, classes = _prepare(embeddings, labels)
    sums = torch.zeros(len(classes), x.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.as_tensor(codes), _unit_rows(x).double())
    # Cosine of the sums = cosine of the centroids: the mean's length does not matter once normalised.
    return pd.DataFrame(cosine_similarity(sums).numpy(), index=pd.Index(classes), columns=pd.Index(classes))


def most_confused_pairs(embeddings, labels, top: int = 10, k: int = 1, label_names=None) -> pd.DataFrame:
    """The class pairs with the most nearest-neighbour mistakes between them, worst first.

    For each unordered pair {a, b}: ``a_to_b`` = neighbours of a-texts that are b-texts (from
    `nearest_neighbour_confusion` with this k), ``b_to_a`` the other way, ``confusions`` their sum,
    ``confusion_rate`` = confusions / (k × (size_a + size_b)) (the share of the pair's neighbour slots that
    went across), and their ``centroid_similarity``. Pairs without any confusion are left out; ties are
    broken by centroid similarity.

    Args:
        top: how many pairs to return (at most; fewer when fewer pairs are confused).
        label_names: a dict {label: name} or a list of names indexed by integer label (e.g.
            ``frame.attrs["label_names"]`` of `labkit.data.load_banking77`); adds ``name_a`` and ``name_b``.

    Taught in notebooks/10_clusters.ipynb.
    """
    if not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}.")
    x, codes, classes = _prepare(embeddings, labels)
    require_two_classes(codes)
    normed = _unit_rows(x)
    counts = nearest_neighbour_confusion(normed, codes, k=k).to_numpy()
    centroids = centroid_similarity(normed, codes).to_numpy()
    sizes = np.bincount(codes, minlength=len(classes))
    a, b = np.triu_indices(len(classes), k=1)
    table = pd.DataFrame({
        "class_a": classes[a], "class_b": classes[b], "size_a": sizes[a], "size_b": sizes[b],
        "a_to_b": counts[a, b], "b_to_a": counts[b, a], "confusions": counts[a, b] + counts[b, a],
        "confusion_rate": (counts[a, b] + counts[b, a]) / (k * (sizes[a] + sizes[b])),
        "centroid_similarity": centroids[a, b],
    })
    if label_names is not None:
        names = np.asarray(_names(classes, label_names), dtype=object)
        table.insert(2, "name_a", names[a])
        table.insert(3, "name_b", names[b])
    table = table[table["confusions"] > 0]
    table = table.sort_values(["confusions", "centroid_similarity"], ascending=False, kind="stable")
    return table.head(int(top)).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# The texts behind a confusion
# --------------------------------------------------------------------------------------------------------------
def confused_examples(embeddings, labels, texts, class_a, class_b, n: int = 5, label_names=None) -> pd.DataFrame:
    """Texts of class a whose nearest neighbour is a text of class b, and the other way round, most similar first.

    Each row: the query ``text`` and its ``label``, the ``neighbour_text`` and ``neighbour_label`` it was
    matched with (leave-one-out, cosine), their ``similarity``, and ``best_own_class`` — the similarity to the
    closest text of the query's own class, which the wrong neighbour beat. Reading these rows tells whether
    the model is wrong, the intents overlap, or the label is.

    Returns: at most `n` rows (all such queries when n is None), the most similar wrong matches first.
    With `label_names` (a dict or a list indexed by integer label) the two label columns hold names.

    Taught in notebooks/10_clusters.ipynb.
    """
    x, codes, classes = _prepare(embeddings, labels)
    texts = [str(t) for t in texts]
    if len(texts) != len(codes):
        raise ValueError(f"Got {len(codes)} embeddings but {len(texts)} texts: pass one text per embedding.")
    label_array = classes[codes]
    for name, value in (("class_a", class_a), ("class_b", class_b)):
        if value not in set(classes.tolist()):
            raise ValueError(f"{name}={value!r} is not among the labels (e.g. {classes[:5].tolist()}).")
    if class_a == class_b:
        raise ValueError("class_a and class_b are the same class: pass two different classes.")
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}.")

    nearest = _nearest_neighbours(x, 1)[:, 0]
    crossed = ((label_array == class_a) & (label_array[nearest] == class_b)) | (
        (label_array == class_b) & (label_array[nearest] == class_a))
    queries = np.flatnonzero(crossed)
    similarity = paired_cosine_similarity(x[queries], x[nearest[queries]]).numpy()
    # The closest own-class text of each query (itself excluded): what the wrong neighbour had to beat.
    own = cosine_similarity(x[queries], x)
    same_class = torch.as_tensor(codes[None, :] == codes[queries][:, None])
    same_class[torch.arange(len(queries)), torch.as_tensor(queries)] = False
    best_own = own.masked_fill(~same_class, -float("inf")).max(dim=1).values.numpy()
    table = pd.DataFrame({
        "text": [texts[i] for i in queries], "label": label_array[queries],
        "neighbour_text": [texts[i] for i in nearest[queries]], "neighbour_label": label_array[nearest[queries]],
        "similarity": similarity, "best_own_class": np.where(np.isfinite(best_own), best_own, np.nan),
    })
    if label_names is not None:
        names = dict(zip(classes.tolist(), _names(classes, label_names)))
        table["label"] = table["label"].map(names)
        table["neighbour_label"] = table["neighbour_label"].map(names)
    table = table.sort_values("similarity", ascending=False, kind="stable").reset_index(drop=True)
    return table if n is None else table.head(int(n))


# --------------------------------------------------------------------------------------------------------------
# Per-class quality, before and after
# --------------------------------------------------------------------------------------------------------------
def per_class_quality(embeddings, labels, label_names=None) -> pd.DataFrame:
    """One row per class: how well it is separated, and from which class it is hardest to tell apart.

    * ``nn_accuracy``: share of the class's texts whose nearest neighbour has their class (leave-one-out),
      i.e. the class's precision@1;
    * ``silhouette``: mean cosine silhouette of its texts (scikit-learn's `silhouette_samples`; the overall
      mean is `labkit.evaluate.cluster_quality`'s silhouette on all points): near 1 a tight, isolated class,
      near 0 or below a class that overlaps others;
    * ``most_confused_with``: the class that takes most of its wrong nearest neighbours (the nearest centroid
      when there are none), and ``nearest_centroid_similarity``: its highest centroid similarity to another class.

    Classes with one text have no silhouette (NaN) and an nn_accuracy of 0 (their neighbour cannot match).

    Taught in notebooks/10_clusters.ipynb.
    """
    from sklearn.metrics import silhouette_samples

    x, codes, classes = _prepare(embeddings, labels)
    require_two_classes(codes)
    if len(codes) <= len(classes):
        raise ValueError("per_class_quality needs more texts than classes (some class with 2+ texts).")
    normed = _unit_rows(x)
    counts = nearest_neighbour_confusion(normed, codes).to_numpy()
    sizes = counts.sum(axis=1)
    centroids = centroid_similarity(normed, codes).to_numpy(copy=True)
    np.fill_diagonal(centroids, -np.inf)
    mistakes = counts.copy()
    np.fill_diagonal(mistakes, -1)
    most_confused = np.where(mistakes.max(axis=1) > 0, mistakes.argmax(axis=1), centroids.argmax(axis=1))
    silhouette = silhouette_samples(normed.numpy(), codes, metric="cosine")
    silhouette[sizes[codes] == 1] = np.nan  # scikit-learn scores a lone point 0; it has no cluster to be in
    mean_silhouette = np.bincount(codes, weights=np.nan_to_num(silhouette), minlength=len(classes)) / sizes
    mean_silhouette[sizes == 1] = np.nan
    names = _names(classes, label_names)
    return pd.DataFrame({
        "name": names, "size": sizes, "nn_accuracy": np.diag(counts) / sizes, "silhouette": mean_silhouette,
        "most_confused_with": np.asarray(names, dtype=object)[most_confused],
        "nearest_centroid_similarity": centroids.max(axis=1),
    }, index=pd.Index(classes, name="class"))


def class_changes(emb_before, emb_after, labels, label_names=None, metric: str = "silhouette") -> pd.DataFrame:
    """`per_class_quality` before and after training side by side, sorted by the change in `metric`.

    Columns: ``name``, ``size``, then ``nn_accuracy`` and ``silhouette`` before and after, ``change`` (after -
    before of `metric`), and ``most_confused_with`` after training. The first rows are the classes that
    improved most; the last rows those that improved least or got worse.

    Taught in notebooks/10_clusters.ipynb.
    """
    if metric not in ("silhouette", "nn_accuracy"):
        raise ValueError(f"metric must be 'silhouette' or 'nn_accuracy', got {metric!r}.")
    before = as_embeddings(emb_before, "emb_before")
    after = as_embeddings(emb_after, "emb_after")
    if len(before) != len(after):
        raise ValueError(f"Got {len(before)} embeddings before and {len(after)} after: pass the same texts to both.")
    old = per_class_quality(before, labels, label_names)
    new = per_class_quality(after, labels, label_names)
    table = pd.DataFrame({
        "name": new["name"], "size": new["size"],
        "nn_accuracy_before": old["nn_accuracy"], "nn_accuracy_after": new["nn_accuracy"],
        "silhouette_before": old["silhouette"], "silhouette_after": new["silhouette"],
        "change": new[metric] - old[metric], "most_confused_with": new["most_confused_with"],
    })
    return table.sort_values("change", ascending=False, kind="stable")
