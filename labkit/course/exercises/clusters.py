"""Checkers for the exercises of notebooks/10_clusters.ipynb.

Exercise 1: count the nearest-neighbour confusions between two classes of a few 2-D points (cosine,
leave-one-out). Exercise 2: the cosine similarity of two class centroids. Exercise 3: the AUC of a handful of
positive and negative pair similarities. Each checker computes the right answer with labkit
(`labkit.course.clusters`, `labkit.evaluate.separation_summary`) and says which slip a wrong answer looks like.
"""
from __future__ import annotations

import numpy as np

from labkit.course.exercises import first_slip, matches, numeric_answer, report

# Exercises 1 and 2: eight texts as 2-D embeddings, classes "A", "B" and "C". The vectors have different
# lengths on purpose: cosine similarity looks only at directions, Euclidean distance also at lengths.
POINTS = np.array([
    [1.0, 0.0], [2.87, 0.89], [1.96, -0.4],    # A
    [0.97, 0.25], [2.19, 1.2], [0.76, 0.64],   # B
    [-0.42, 0.91], [-1.18, 1.62],              # C
])
LABELS = np.array(["A", "A", "A", "B", "B", "B", "C", "C"])
PAIR = ("A", "B")

# Exercise 3: cosine similarities of four positive and five negative pairs (one tie across the two groups).
POSITIVE_SIMILARITIES = (0.9, 0.7, 0.6, 0.4)
NEGATIVE_SIMILARITIES = (0.65, 0.5, 0.4, 0.3, 0.1)


def pair_confusions(points=POINTS, labels=LABELS, pair=PAIR) -> int:
    """Texts of pair[0] whose nearest neighbour is in pair[1], plus the other way round (labkit's count)."""
    from labkit.course.clusters import nearest_neighbour_confusion

    counts = nearest_neighbour_confusion(points, labels)
    a, b = pair
    return int(counts.loc[a, b] + counts.loc[b, a])


def _euclidean_confusions(include_self: bool = False) -> int:
    """The same count with Euclidean distance (or, with include_self, without leaving the query out)."""
    distances = np.linalg.norm(POINTS[:, None] - POINTS[None], axis=-1)
    if not include_self:
        np.fill_diagonal(distances, np.inf)
    nearest = LABELS[distances.argmin(axis=1)]
    a, b = PAIR
    return int(((LABELS == a) & (nearest == b)).sum() + ((LABELS == b) & (nearest == a)).sum())


def check_pair_confusions(answer) -> bool:
    """Exercise 1: how many A-texts have a B-text as nearest neighbour, plus B-texts with an A-text (cosine)."""
    from labkit.course.clusters import nearest_neighbour_confusion

    expected = pair_confusions()
    hint = ("Normalise the rows, compute all cosine similarities, set each text's similarity to itself to -inf "
            "(a text is not its own neighbour), take each row's argmax, then count A→B and B→A.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if value == expected:
        return report(True, f"Right: {expected} confusions between A and B. Cosine compares directions only: "
                            "a long and a short vector pointing the same way are neighbours.", "")
    counts = nearest_neighbour_confusion(POINTS, LABELS)
    a_to_b, b_to_a = int(counts.loc["A", "B"]), int(counts.loc["B", "A"])
    slips = [
        (_euclidean_confusions(), "that is the count with Euclidean distance; use cosine similarity "
                                  "(normalise the rows first), as retrieval does."),
        (0, "with the text itself still among the candidates every text finds itself (similarity 1): leave "
            "it out before taking the nearest."),
        *[(count, "that counts one direction only (A→B or B→A); a confused pair counts both.")
          for count in (a_to_b, b_to_a)],
    ]
    message = first_slip(value, slips)
    return report(False, "", f"You got {value:g}: {message}" if message else f"You got {value:g}, not the expected "
                                                                              "count. " + hint)


def centroid_cosine(points=POINTS, labels=LABELS, pair=PAIR) -> float:
    """Cosine similarity of the two classes' centroids, as `labkit.course.clusters.centroid_similarity` computes it."""
    from labkit.course.clusters import centroid_similarity

    return float(centroid_similarity(np.asarray(points, dtype=np.float64), labels).loc[pair[0], pair[1]])


def check_centroid_similarity(answer) -> bool:
    """Exercise 2: the cosine similarity of the centroids of classes A and B (rows normalised first)."""
    expected = centroid_cosine()
    hint = ("Normalise every row to length 1, average the rows of each class, then take the cosine of the two "
            "averages (normalise them too).")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: {expected:.4f}. Normalising first lets every text count equally.", "")
    a, b = (POINTS[LABELS == c] for c in PAIR)
    raw_centroids = a.mean(axis=0), b.mean(axis=0)
    unnormalised = float(raw_centroids[0] @ raw_centroids[1]
                         / np.linalg.norm(raw_centroids[0]) / np.linalg.norm(raw_centroids[1]))
    na, nb = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    mean_pairwise = float((na @ nb.T).mean())
    slips = [
        (unnormalised, "you averaged the raw vectors: the long ones pull the centroid towards them. Normalise "
                       "each row first."),
        (mean_pairwise, "that is the mean cosine over all A–B pairs, i.e. the dot product of the two centroids "
                        "before they are normalised; divide by the centroids' lengths."),
    ]
    message = first_slip(value, slips)
    return report(False, "", f"You got {value:.4f}: {message}" if message else
                  f"You got {value:.4f}, expected a different value. " + hint)


def auc(positive=POSITIVE_SIMILARITIES, negative=NEGATIVE_SIMILARITIES) -> float:
    """The AUC of `labkit.evaluate.separation_summary`: P(positive pair more similar than negative pair)."""
    from labkit.evaluate import separation_summary

    return separation_summary(positive, negative)["auc"]


def check_auc(answer) -> bool:
    """Exercise 3: the AUC of `POSITIVE_SIMILARITIES` against `NEGATIVE_SIMILARITIES` (ties count half)."""
    expected = auc()
    hint = (f"Compare each of the {len(POSITIVE_SIMILARITIES)} positive similarities with each of the "
            f"{len(NEGATIVE_SIMILARITIES)} negative ones: count 1 when the positive is larger, 1/2 for a tie, "
            "and divide by the number of comparisons.")
    value = numeric_answer(answer, hint)
    if value is None:
        return False
    if matches(value, expected):
        return report(True, f"Right: AUC = {expected:.4f}: a random positive pair beats a random negative pair "
                            f"{expected:.0%} of the time.", "")
    pos, neg = np.asarray(POSITIVE_SIMILARITIES), np.asarray(NEGATIVE_SIMILARITIES)
    comparisons = pos.size * neg.size
    ties = float((pos[:, None] == neg[None, :]).sum())
    slips = [
        (expected - ties / 2 / comparisons, "you counted the tie as a loss; a tie counts 1/2."),
        (expected + ties / 2 / comparisons, "you counted the tie as a win; a tie counts 1/2."),
        (1 - expected, "you counted how often the negative pair wins; the AUC counts the positive pair's wins."),
        (pos.mean() - neg.mean(), "that is the gap between the mean similarities, another summary; the AUC "
                                  "counts pairwise wins."),
    ]
    message = first_slip(value, slips)
    return report(False, "", f"You got {value:.4f}: {message}" if message else
                  f"You got {value:.4f}, not the expected value. " + hint)
