"""Checkers for the exercises of notebooks/10_clusters.ipynb.

Exercise 1: count the nearest-neighbour confusions between two classes of a few 2-D points (cosine,
leave-one-out). Exercise 2: the cosine similarity of two class centroids. Exercise 3: the AUC of a handful of
positive and negative pair similarities. Each checker computes the right answer with labkit
(`labkit.course.clusters`, `labkit.evaluate.separation_summary`) and says which slip a wrong answer looks like
and which step to recheck (never the answer itself). Add ``reveal=True`` to see the solution.
"""
from __future__ import annotations

import numpy as np

from labkit.course.exercises import Exercise, Slip, check_number

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


def _pair_confusions(points=POINTS, labels=LABELS, pair=PAIR) -> int:
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


def _pair_confusions_exercise() -> Exercise:
    from labkit.course.clusters import nearest_neighbour_confusion

    expected = _pair_confusions()
    counts = nearest_neighbour_confusion(POINTS, LABELS)
    one_way = "one direction only (A→B or B→A)", "the count: a confused pair of classes counts both directions"
    return Exercise(
        checker="check_pair_confusions", expected=expected,
        hint="normalise the rows, compute all cosine similarities, set each text's similarity to itself to -inf "
             "(a text is not its own neighbour), take each row's argmax, then count A→B and B→A",
        success=f"{expected} confusions between A and B. Cosine compares directions only: a long and a short "
                "vector pointing the same way are neighbours",
        why="A-texts whose nearest neighbour (cosine, leave-one-out) is a B-text, plus B-texts with an A-text "
            "(labkit.course.clusters.nearest_neighbour_confusion)",
        slips=(
            Slip(_euclidean_confusions(), "the count with Euclidean distance",
                 "the similarity: use cosine (normalise the rows first), as retrieval does"),
            Slip(0, "a count where every text finds itself (similarity 1)",
                 "the search: leave the text itself out before taking the nearest"),
            Slip(int(counts.loc["A", "B"]), *one_way),
            Slip(int(counts.loc["B", "A"]), *one_way),
        ))


def check_pair_confusions(answer, reveal: bool = False) -> bool:
    """Exercise 1: how many A-texts have a B-text as nearest neighbour, plus B-texts with an A-text (cosine).

    A wrong answer gets the step to recheck; ``check_pair_confusions(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _pair_confusions_exercise(), whole=True, reveal=reveal)


def _centroid_cosine(points=POINTS, labels=LABELS, pair=PAIR) -> float:
    """Cosine similarity of the two classes' centroids, as `labkit.course.clusters.centroid_similarity` computes it."""
    from labkit.course.clusters import centroid_similarity

    return float(centroid_similarity(np.asarray(points, dtype=np.float64), labels).loc[pair[0], pair[1]])


def _centroid_similarity() -> Exercise:
    expected = _centroid_cosine()
    a, b = (POINTS[LABELS == c] for c in PAIR)
    raw_a, raw_b = a.mean(axis=0), b.mean(axis=0)
    na, nb = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    return Exercise(
        checker="check_centroid_similarity", expected=expected,
        hint="normalise every row to length 1, average the rows of each class, then take the cosine of the two "
             "averages (normalise them too)",
        success=f"{expected:.4f}. Normalising first lets every text count equally",
        why="the cosine of the means of the normalised rows of A and of B "
            "(labkit.course.clusters.centroid_similarity)",
        slips=(
            Slip(float(raw_a @ raw_b / np.linalg.norm(raw_a) / np.linalg.norm(raw_b)), "centroids of the raw vectors",
                 "the first step: normalise each row, or the long vectors pull the centroid towards them"),
            Slip(float((na @ nb.T).mean()), "the mean cosine over all A–B pairs (the dot product of the two "
                                            "centroids before they are normalised)",
                 "the last step: divide by the centroids' lengths"),
        ))


def check_centroid_similarity(answer, reveal: bool = False) -> bool:
    """Exercise 2: the cosine similarity of the centroids of classes A and B (rows normalised first).

    A wrong answer gets the step to recheck; ``check_centroid_similarity(answer, reveal=True)`` prints the
    solution.
    """
    return check_number(answer, _centroid_similarity(), reveal=reveal)


def _auc(positive=POSITIVE_SIMILARITIES, negative=NEGATIVE_SIMILARITIES) -> float:
    """The AUC of `labkit.evaluate.separation_summary`: P(positive pair more similar than negative pair)."""
    from labkit.evaluate import separation_summary

    return separation_summary(positive, negative)["auc"]


def _auc_exercise() -> Exercise:
    expected = _auc()
    pos, neg = np.asarray(POSITIVE_SIMILARITIES), np.asarray(NEGATIVE_SIMILARITIES)
    comparisons = pos.size * neg.size
    ties = float((pos[:, None] == neg[None, :]).sum())
    return Exercise(
        checker="check_auc", expected=expected,
        hint=f"compare each of the {pos.size} positive similarities with each of the {neg.size} negative ones: count "
             "1 when the positive is larger, 1/2 for a tie, and divide by the number of comparisons",
        success=f"AUC = {expected:.4f}: a random positive pair beats a random negative pair {expected:.0%} of the time",
        why=f"the wins of the positive pairs (a tie counts 1/2) over the {comparisons} comparisons "
            "(labkit.evaluate.separation_summary)",
        slips=(
            Slip(expected - ties / 2 / comparisons, "a tie counted as a loss", "the ties: a tie counts 1/2"),
            Slip(expected + ties / 2 / comparisons, "a tie counted as a win", "the ties: a tie counts 1/2"),
            Slip(1 - expected, "how often the negative pair wins", "whose wins you count: the positive pair's"),
            Slip(float(pos.mean() - neg.mean()), "the gap between the mean similarities, another summary",
                 "what the AUC counts: pairwise wins"),
        ))


def check_auc(answer, reveal: bool = False) -> bool:
    """Exercise 3: the AUC of `POSITIVE_SIMILARITIES` against `NEGATIVE_SIMILARITIES` (ties count half).

    A wrong answer gets the step to recheck; ``check_auc(answer, reveal=True)`` prints the solution.
    """
    return check_number(answer, _auc_exercise(), reveal=reveal)


_EXERCISES = {"pair_confusions": _pair_confusions_exercise, "centroid_similarity": _centroid_similarity,
              "auc": _auc_exercise}
