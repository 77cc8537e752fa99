"""Checkers for the exercises of notebooks/00_start_here.ipynb.

Each takes your answer and the inputs of the exercise, computes the right answer with labkit, and prints
whether it is right, or which step to recheck (never the answer itself). Add ``reveal=True`` to see the
solution. Each returns True/False.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from labkit.course.exercises import Exercise, Slip, check_array, check_index, check_number, read_index
from labkit.distances import cos_sim, dot_score

# The notebook's inputs (what `solutions` uses when it is given none).
NOTEBOOK_U, NOTEBOOK_V = (1.0, 2.0, 2.0), (2.0, 0.0, 1.0)
NOTEBOOK_QUERY = "My card hasn't arrived yet."
NOTEBOOK_CANDIDATES = ("How do I change my PIN?", "I am still waiting for the card you sent me.",
                       "Has my card been sent out?", "My card was declined at the shop.")
NOTEBOOK_X = ((3.0, 4.0, 0.0), (1.0, 1.0, 1.0), (0.0, -2.0, 5.0), (2.0, 0.5, -1.0))


def _as_float_tensor(x) -> torch.Tensor:
    if isinstance(x, str):
        raise TypeError("expected numbers, got a string")
    return torch.as_tensor(np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64))


def _cosine_similarity(a=NOTEBOOK_U, b=NOTEBOOK_V) -> Exercise:
    a, b = _as_float_tensor(a), _as_float_tensor(b)
    expected = float(cos_sim(a, b))
    dot = float(a @ b)
    angle = float(np.arccos(np.clip(expected, -1, 1)))
    return Exercise(
        checker="check_cosine_similarity", with_inputs=True, expected=expected,
        hint="the dot product of the two vectors (np.dot), divided by both their lengths (np.linalg.norm)",
        success=f"cos = {expected:.4f}. 1 means same direction, 0 unrelated (orthogonal), −1 opposite",
        why="cos(a, b) = a·b / (‖a‖·‖b‖)",
        slips=(
            Slip(dot, "the dot product a·b", "the division: cosine similarity also divides by both lengths, so "
                                             "it only measures the angle"),
            Slip(1 - expected, "the cosine *distance* 1 − cos", "what is asked: the similarity itself"),
            Slip(angle, "the angle between the vectors (in radians)", "the last step: return its cosine"),
            Slip(float(np.degrees(angle)), "the angle between the vectors (in degrees)",
                 "the last step: return its cosine"),
            Slip(dot / float(a @ a), "a division by one squared length", "the denominator: ‖a‖·‖b‖, both lengths"),
            Slip(dot / float(b @ b), "a division by one squared length", "the denominator: ‖a‖·‖b‖, both lengths"),
        ))


def check_cosine_similarity(answer, a, b, reveal: bool = False) -> bool:
    """cos(a, b) = a·b / (‖a‖ ‖b‖) for two vectors, computed by hand: one number.

    A wrong answer gets the step to recheck; ``check_cosine_similarity(answer, a, b, reveal=True)`` prints
    the solution.
    """
    return check_number(answer, _cosine_similarity(a, b), reveal=reveal, rel_tol=0, abs_tol=1e-6)


def _most_similar(query=NOTEBOOK_QUERY, candidates=NOTEBOOK_CANDIDATES, model=None) -> Exercise:
    if model is None:
        import labkit

        model = labkit.load_model(device="cpu")
    embeddings = model.encode([query, *candidates], convert_to_tensor=True)
    similarities = cos_sim(embeddings[:1], embeddings[1:])[0]
    expected = int(similarities.argmax())
    runner_up = float(similarities.topk(2).values[-1]) if len(candidates) > 1 else float("nan")
    return Exercise(
        checker="check_most_similar", with_inputs=True, expected=expected,
        hint="encode the query and the candidates, compute cos_sim(query_embedding, candidate_embeddings) and "
             "take the argmax of the query's row (a row, not a column)",
        success=f"{candidates[expected]!r}, cosine {float(similarities[expected]):.3f} (the runner-up has "
                f"{runner_up:.3f})",
        why=f"candidate {expected}, {candidates[expected]!r}, has the highest cosine similarity with the query, "
            f"{float(similarities[expected]):.3f}",
        slips=(
            Slip(int(similarities.argmin()), "the *least* similar candidate", "the last step: argmax, not argmin"),
        ))


def check_most_similar(answer, query: str, candidates: Sequence[str], model, reveal: bool = False) -> bool:
    """Index (or text) of the candidate whose embedding is closest in cosine similarity to the query's.

    A wrong answer gets the step to recheck; ``check_most_similar(answer, query, candidates, model,
    reveal=True)`` prints the solution.
    """
    candidates = list(candidates)

    def read(answer):
        if isinstance(answer, str):
            if answer in candidates:
                return candidates.index(answer), None
            return None, "That text is not one of the candidates; give an index into `candidates` (or its text)."
        return read_index(answer, len(candidates), "candidates")

    return check_index(answer, _most_similar(query, candidates, model), count=len(candidates), read=read,
                       reveal=reveal)


def _cosine_matrix(embeddings=NOTEBOOK_X) -> Exercise:
    x = _as_float_tensor(embeddings)
    expected = cos_sim(x, x)
    columns = x / x.norm(dim=0, keepdim=True)
    return Exercise(
        checker="check_cosine_matrix", with_inputs=True, expected=expected,
        hint="divide every row by its length (np.linalg.norm(x, axis=1, keepdims=True)), then multiply by the "
             "transpose; the diagonal must be 1",
        success="normalise the rows, then one matrix product gives every pair's cosine. The diagonal is 1: "
                "every vector has cosine 1 with itself",
        why="x / ‖x‖ row by row, then (x/‖x‖) @ (x/‖x‖).T",
        slips=(
            Slip(dot_score(x, x), "the dot products", "the normalisation: the vectors are not unit length, so "
                                                      "divide each row by its norm first (the diagonal should be 1)"),
            Slip(columns @ columns.T, "a matrix of normalised *columns*",
                 "the axis: normalise each row (axis=1 / dim=1), a row is a vector"),
        ))


def check_cosine_matrix(answer, embeddings, reveal: bool = False) -> bool:
    """The (N, N) cosine-similarity matrix of the rows of `embeddings`, with one matrix product.

    A wrong answer gets the step to recheck; ``check_cosine_matrix(answer, embeddings, reveal=True)``
    prints the solution.
    """
    n = len(_as_float_tensor(embeddings))
    return check_array(answer, _cosine_matrix(embeddings), atol=1e-6,
                       shape_hint=f"With {n} vectors it has one row and one column per vector (x @ x.T, not x.T @ x).",
                       reveal=reveal)


_EXERCISES = {"cosine_similarity": _cosine_similarity, "most_similar": _most_similar, "cosine_matrix": _cosine_matrix}
