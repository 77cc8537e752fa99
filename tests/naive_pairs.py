"""Slow, obviously-correct references for the pair, similarity, classification and in-batch-negatives losses.

Plain Python loops over lists of floats and the `math` module, written straight from the formulas in the
papers (and sentence-transformers' definitions where they fix a detail, e.g. the eps inside the Euclidean
norm). No torch, no vectorisation: a reader should be able to check each line against the math.

Inputs are nested lists (`tensor.tolist()`); outputs are floats. `numerical_gradient` turns any of them into
a gradient by central finite differences, to check autograd gradients on small inputs.
"""
from __future__ import annotations

import math

PAIRWISE_DISTANCE_EPS = 1e-6  # torch.nn.functional.pairwise_distance adds it to x - y


# ---------------------------------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------------------------------
def dot(x, y):
    total = 0.0
    for k in range(len(x)):
        total += x[k] * y[k]
    return total


def norm(x):
    return math.sqrt(dot(x, x))


def cosine(x, y):
    nx, ny = norm(x), norm(y)
    if nx == 0.0 or ny == 0.0:
        return 0.0
    return dot(x, y) / (nx * ny)


def euclidean(x, y):
    total = 0.0
    for k in range(len(x)):
        total += (x[k] - y[k] + PAIRWISE_DISTANCE_EPS) ** 2
    return math.sqrt(total)


def manhattan(x, y):
    total = 0.0
    for k in range(len(x)):
        total += abs(x[k] - y[k] + PAIRWISE_DISTANCE_EPS)
    return total


def cosine_distance(x, y):
    return 1.0 - cosine(x, y)


DISTANCES = {"EUCLIDEAN": euclidean, "MANHATTAN": manhattan, "COSINE_DISTANCE": cosine_distance}


def angle_similarity(x, y):
    """|cos + sin| of AnglE: L2-normalise, pair dimension k with k + D/2 (pad odd D with a zero)."""
    x, y = list(x), list(y)
    if len(x) % 2 == 1:
        x.append(0.0)
        y.append(0.0)
    nx, ny = norm(x), norm(y)
    x = [v / nx for v in x]
    y = [v / ny for v in y]
    half = len(x) // 2
    cos_part = 0.0
    sin_part = 0.0
    for k in range(len(x)):
        cos_part += x[k] * y[k]
    for k in range(half):
        sin_part += x[k + half] * y[k] - x[k] * y[k + half]
    return abs(cos_part + sin_part)


def log_sum_exp(values):
    values = [v for v in values if v != -math.inf]
    if not values:
        return -math.inf
    biggest = max(values)
    return biggest + math.log(sum(math.exp(v - biggest) for v in values))


def mean(values):
    return sum(values) / len(values)


# ---------------------------------------------------------------------------------------------------
# Pair losses (labels 0/1)
# ---------------------------------------------------------------------------------------------------
def contrastive_loss(a, b, labels, distance="COSINE_DISTANCE", margin=0.5, size_average=True):
    per_pair = []
    for i in range(len(a)):
        d = DISTANCES[distance](a[i], b[i])
        if labels[i] == 1:
            per_pair.append(0.5 * d * d)
        else:
            per_pair.append(0.5 * max(0.0, margin - d) ** 2)
    return mean(per_pair) if size_average else sum(per_pair)


def online_contrastive_loss(a, b, labels, distance="COSINE_DISTANCE", margin=0.5):
    positives = [DISTANCES[distance](a[i], b[i]) for i in range(len(a)) if labels[i] == 1]
    negatives = [DISTANCES[distance](a[i], b[i]) for i in range(len(a)) if labels[i] == 0]
    # sentence-transformers: without the other kind, compare with the mean of the same kind.
    negative_threshold = max(positives) if positives else mean(negatives)
    positive_threshold = min(negatives) if negatives else mean(positives)
    total = 0.0
    for d in positives:
        if d > positive_threshold:
            total += d * d
    for d in negatives:
        if d < negative_threshold:
            total += max(0.0, margin - d) ** 2
    return total


# ---------------------------------------------------------------------------------------------------
# Similarity regression (float scores)
# ---------------------------------------------------------------------------------------------------
def cosine_similarity_loss(a, b, scores):
    """Mean squared error between cos(a_i, b_i) and the gold score."""
    return mean([(cosine(a[i], b[i]) - scores[i]) ** 2 for i in range(len(a))])


def cosent_loss(a, b, labels, scale=20.0, similarity="cosine"):
    """log(1 + sum over (i, j) with label_i > label_j of exp(scale * (s_j - s_i)))."""
    similarity_fn = cosine if similarity == "cosine" else angle_similarity
    s = [scale * similarity_fn(a[i], b[i]) for i in range(len(a))]
    exponents = [0.0]  # the "1 +"
    for i in range(len(a)):
        for j in range(len(a)):
            if labels[i] > labels[j]:
                exponents.append(s[j] - s[i])
    return log_sum_exp(exponents)


def angle_loss(a, b, labels, scale=20.0):
    return cosent_loss(a, b, labels, scale=scale, similarity="angle")


def softmax_loss(a, b, labels, weight, bias, rep=True, difference=True, multiplication=False):
    """Cross-entropy of a linear classifier on concat(u, v, |u - v|, u * v), averaged over pairs."""
    losses = []
    for i in range(len(a)):
        u, v = a[i], b[i]
        features = []
        if rep:
            features += list(u) + list(v)
        if difference:
            features += [abs(u[k] - v[k]) for k in range(len(u))]
        if multiplication:
            features += [u[k] * v[k] for k in range(len(u))]
        logits = [dot(weight[c], features) + bias[c] for c in range(len(weight))]
        losses.append(log_sum_exp(logits) - logits[labels[i]])
    return mean(losses)


# ---------------------------------------------------------------------------------------------------
# In-batch negatives
# ---------------------------------------------------------------------------------------------------
def multiple_negatives_ranking_loss(
    anchor, positive, negatives=(), scale=20.0, similarity="cosine", directions=("query_to_doc",), partition_mode="joint"
):
    """InfoNCE with every positive and hard negative of the batch as candidates, one anchor at a time.

    candidates = positives of all rows, then each hard-negative column, in order.
    """
    sim = cosine if similarity == "cosine" else dot
    batch_size = len(anchor)
    candidates = [row for row in positive]
    owner = list(range(batch_size))  # which anchor each candidate belongs to
    for column in negatives:
        candidates += [row for row in column]
        owner += list(range(batch_size))

    losses = []
    for i in range(batch_size):
        rows = {}
        rows["query_to_doc"] = [scale * sim(anchor[i], c) for c in candidates]
        if "query_to_query" in directions:
            rows["query_to_query"] = [scale * sim(anchor[i], anchor[j]) for j in range(batch_size) if j != i]
        if "doc_to_query" in directions:
            rows["doc_to_query"] = [scale * sim(positive[i], anchor[j]) for j in range(batch_size)]
        if "doc_to_doc" in directions:
            rows["doc_to_doc"] = [
                scale * sim(positive[i], candidates[j]) for j in range(len(candidates)) if owner[j] != i
            ]
        positive_logit = scale * sim(anchor[i], positive[i])
        if partition_mode == "joint":
            everything = []
            for direction in rows:
                everything += rows[direction]
            log_normaliser = log_sum_exp(everything)
        else:
            log_normaliser = mean([log_sum_exp(rows[direction]) for direction in rows])
        losses.append(log_normaliser - positive_logit)
    return mean(losses)


def contrastive_tension_in_batch_loss(emb_1, emb_2, scale=20.0):
    """Each sentence must find itself: symmetric cross-entropy over S[i][j] = scale * cos(e1_i, e2_j)."""
    batch_size = len(emb_1)
    S = [[scale * cosine(emb_1[i], emb_2[j]) for j in range(batch_size)] for i in range(batch_size)]
    row_losses = [log_sum_exp(S[i]) - S[i][i] for i in range(batch_size)]
    column_losses = [log_sum_exp([S[j][i] for j in range(batch_size)]) - S[i][i] for i in range(batch_size)]
    return (mean(row_losses) + mean(column_losses)) / 2


# ---------------------------------------------------------------------------------------------------
# Gradients by finite differences
# ---------------------------------------------------------------------------------------------------
def numerical_gradient(loss_of_lists, inputs, step=1e-6):
    """d loss / d input for every entry of every (nested list) input, by central differences.

    `loss_of_lists(*inputs)` must return a float. Returns nested lists shaped like `inputs`.
    """
    gradients = []
    for index, matrix in enumerate(inputs):
        gradient = [[0.0] * len(row) for row in matrix]
        for i in range(len(matrix)):
            for k in range(len(matrix[i])):
                original = matrix[i][k]
                matrix[i][k] = original + step
                upper = loss_of_lists(*inputs)
                matrix[i][k] = original - step
                lower = loss_of_lists(*inputs)
                matrix[i][k] = original
                gradient[i][k] = (upper - lower) / (2 * step)
        gradients.append(gradient)
    return gradients
