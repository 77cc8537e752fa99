"""Checkers for the exercises of notebooks/00_start_here.ipynb.

Each takes your answer and the inputs of the exercise, computes the right answer with labkit, and
prints what is right or a hint at what is off. Each returns True/False.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from labkit.course.exercises import close, describe_difference, report
from labkit.distances import cos_sim, dot_score


def _as_float_array(x) -> np.ndarray:
    if isinstance(x, str):
        raise TypeError("expected numbers, got a string")
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)


def check_cosine_similarity(answer, a, b) -> bool:
    """cos(a, b) = a·b / (‖a‖ ‖b‖) for two vectors, computed by hand."""
    a, b = _as_float_array(a), _as_float_array(b)
    expected = float(cos_sim(torch.from_numpy(a), torch.from_numpy(b)))
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: the dot product of the two vectors (np.dot), "
                                 "divided by both their lengths (np.linalg.norm).")
    try:
        value = _as_float_array(answer)
    except (TypeError, ValueError):
        return report(False, "", f"Give a number, not {type(answer).__name__}.")
    if value.size != 1:
        return report(False, "", "Give one number: the similarity of the two vectors, not a vector or matrix.")
    value = float(value.reshape(()))
    if not np.isclose(value, expected, rtol=0, atol=1e-6):
        dot = float(a @ b)
        if np.isclose(value, dot):
            return report(False, "", f"{value:.4f} is the dot product a·b. Cosine similarity also divides by both "
                                     "lengths, so it only measures the angle.")
        if np.isclose(value, 1 - expected):
            return report(False, "", f"{value:.4f} is the cosine *distance* 1 − cos. Return the similarity itself.")
        if np.isclose(value, np.arccos(np.clip(expected, -1, 1))) or np.isclose(value, np.degrees(np.arccos(expected))):
            return report(False, "", "That is the angle between the vectors; return its cosine.")
        if np.isclose(value, dot / float(a @ a)) or np.isclose(value, dot / float(b @ b)):
            return report(False, "", "Divide by the product of both lengths, ‖a‖·‖b‖, not by one squared length.")
        return report(False, "", f"Not quite: {describe_difference(value, expected)}. "
                                 "Hint: (a·b) / (‖a‖·‖b‖), with ‖a‖ = sqrt(a·a).")
    return report(True, f"Right: cos = {expected:.4f}. 1 means same direction, 0 unrelated (orthogonal), "
                        "−1 opposite.", "")


def check_most_similar(answer, query: str, candidates: Sequence[str], model) -> bool:
    """Index (or text) of the candidate whose embedding is closest in cosine similarity to the query's."""
    embeddings = model.encode([query, *candidates], convert_to_tensor=True)
    similarities = cos_sim(embeddings[:1], embeddings[1:])[0]
    expected = int(similarities.argmax())
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: encode the query and the candidates, compute "
                                 "cos_sim(query_embedding, candidate_embeddings) and take the argmax.")
    if isinstance(answer, str):
        index = list(candidates).index(answer) if answer in candidates else None
        if index is None:
            return report(False, "", "That text is not one of the candidates; give an index into `candidates`.")
    else:
        try:
            index = int(answer.item() if hasattr(answer, "item") else answer)
        except (TypeError, ValueError):
            return report(False, "", f"Give the index of a candidate (an int), not {type(answer).__name__}.")
        if not 0 <= index < len(candidates):
            return report(False, "", f"{index} is not an index of `candidates` (0 to {len(candidates) - 1}).")
    if index == expected:
        runner_up = float(similarities.topk(2).values[-1]) if len(candidates) > 1 else float("nan")
        return report(True, f"Right: {candidates[expected]!r}, cosine {float(similarities[expected]):.3f} "
                            f"(the runner-up has {runner_up:.3f}).", "")
    if index == int(similarities.argmin()):
        return report(False, "", "That is the *least* similar candidate: you want argmax, not argmin.")
    return report(False, "", f"Candidate {index} has cosine {float(similarities[index]):.3f} with the query; another "
                             f"has {float(similarities[expected]):.3f}. Hint: compare the query with every candidate "
                             "and take the largest similarity (in the row of the query, not the column).")


def check_cosine_matrix(answer, embeddings) -> bool:
    """The (N, N) cosine-similarity matrix of the rows of `embeddings`, with one matrix product."""
    x = torch.as_tensor(_as_float_array(embeddings))
    expected = cos_sim(x, x)
    if answer is None:
        return report(False, "", "You have not answered yet. Hint: divide every row by its length "
                                 "(np.linalg.norm(x, axis=1, keepdims=True)), then multiply by the transpose.")
    if close(answer, expected, atol=1e-6):
        return report(True, "Right: normalise the rows, then one matrix product gives every pair's cosine. "
                            "The diagonal is 1: every vector has cosine 1 with itself.", "")
    try:
        value = _as_float_array(answer)
    except (TypeError, ValueError):
        return report(False, "", f"Give a matrix (NumPy array or tensor), not {type(answer).__name__}.")
    if value.shape != tuple(expected.shape):
        return report(False, "", f"Your matrix has shape {value.shape}; with {len(x)} vectors it should be "
                                 f"{tuple(expected.shape)}: one row and one column per vector (x @ x.T, not x.T @ x).")
    if close(value, dot_score(x, x), atol=1e-6):
        return report(False, "", "These are dot products: the vectors are not unit length, so divide each row by "
                                 "its norm first (the diagonal should be all 1).")
    column_normalised = x / x.norm(dim=0, keepdim=True)
    if close(value, column_normalised @ column_normalised.T, atol=1e-6):
        return report(False, "", "You normalised the columns. Normalise each row (axis=1 / dim=1): a row is a vector.")
    return report(False, "", f"Not quite: {describe_difference(value, expected)}. Hint: the diagonal should be 1.")
