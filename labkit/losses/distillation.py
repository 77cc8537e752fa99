"""Distillation: train a student to reproduce a teacher, whose outputs come in as the labels.

* `EmbedDistillLoss`, `MSELoss`: the student's embedding of each text should equal the teacher's
  (labels: the teacher's embeddings, precomputed once). MSELoss is the multilingual-distillation loss of
  Reimers & Gurevych 2020.
* `MarginMSELoss`: the student's score margin sim(q, p) - sim(q, n) should equal the teacher's (labels:
  the teacher's margins, or its scores), Hofstätter et al. 2020.
* `DistillKLDivLoss`: the student's softmax over (q, candidates) should equal the teacher's (labels: the
  teacher's scores), KL divergence.

Same names, parameters, defaults and values as sentence-transformers 6.3, on embedding tensors: call
``loss(*columns, labels)`` (labkit.train passes the labels last) or ``loss(*columns, labels=labels)``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.distances import in_fp32, pairwise_dot_score
from labkit.validation import check_embedding_columns

__all__ = ["EmbedDistillLoss", "MSELoss", "MarginMSELoss", "DistillKLDivLoss"]

DISTANCE_METRICS = ("mse", "l2", "cosine")


def _split_labels(loss_name: str, columns: tuple, labels) -> tuple[tuple, Tensor]:
    """The embedding columns and the labels: given by keyword, or the last positional argument."""
    if labels is None:
        if len(columns) < 2:
            raise ValueError(f"{loss_name} needs the embedding columns and the teacher's labels: "
                             "loss(*columns, labels).")
        columns, labels = columns[:-1], columns[-1]
    if not isinstance(labels, Tensor):
        raise TypeError(f"{loss_name}: labels must be a tensor of the teacher's outputs, got {type(labels).__name__}.")
    return columns, labels.detach()


def _similarity_name(similarity_fct: Callable) -> str:
    return getattr(similarity_fct, "__name__", repr(similarity_fct))


class EmbedDistillLoss(nn.Module):
    r"""The student's embedding of every text should be the teacher's embedding of it.

    Definitions, for each column c (e.g. anchors, positives) of student embeddings s_i and teacher
    embeddings t_i (i = 1..B), with an optional learned projection W (student dim -> teacher dim)::

        "mse":    loss_c = mean_{i, k} (W s_i - t_i)_k ** 2
        "l2":     loss_c = mean_i ||W s_i - t_i||
        "cosine": loss_c = mean_i 1 - cos(W s_i, t_i)          (default: only the directions must match)
        loss = mean_c loss_c

    Inputs:
        ``loss(*columns, labels)``: (B, D) student columns; ``labels`` the teacher's embeddings, (B, D_t)
        (one target for every column, e.g. translation pairs: both sides should embed as the English
        sentence does in the teacher) or (B, n_columns, D_t) (one per column).

    Args:
        distance_metric: ``"cosine"`` (default), ``"mse"`` or ``"l2"``.
        projection_dim: the teacher's dimension, to learn a linear projection from the student's (when they
            differ). Its weights are parameters of the loss: give them to the optimizer too
            (labkit.train does).
        embedding_dimension: the student's dimension, needed with ``projection_dim`` (sentence-transformers
            reads it off the model; labkit's losses do not hold the model). E.g. ``model.embedding_dim``.

    Requirements:
        The teacher's embeddings of the training texts, computed once beforehand (e.g. ``teacher.encode``).

    Recommendations:
        ``"cosine"`` when the student is evaluated by cosine similarity; ``"mse"`` to copy the teacher
        exactly (lengths too). A projection lets a small student learn from a wide teacher.

    References:
        Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
        Distillation", EMNLP 2020; Kim et al., "EmbedDistill", 2023; sentence-transformers' EmbedDistillLoss.

    Example:
        >>> import torch
        >>> from labkit.losses.distillation import EmbedDistillLoss
        >>> student, teacher = torch.randn(4, 8), torch.randn(4, 16)
        >>> EmbedDistillLoss(projection_dim=16, embedding_dimension=8)(student, teacher).dim()
        0

    A worked example to check by hand: student (3, 4) against teacher (6, 8) (the same direction, twice as
    long): cosine gives 1 - 1 = 0, "l2" gives ||(-3, -4)|| = 5, "mse" gives (9 + 16) / 2 = 12.5:

        >>> s, t = torch.tensor([[3.0, 4.0]]), torch.tensor([[6.0, 8.0]])
        >>> [round(EmbedDistillLoss(metric)(s, t).item(), 4) for metric in ("cosine", "l2", "mse")]
        [0.0, 5.0, 12.5]
    """

    def __init__(
        self, distance_metric: str = "cosine", projection_dim: int | None = None, embedding_dimension: int | None = None
    ) -> None:
        super().__init__()
        if distance_metric not in DISTANCE_METRICS:
            raise ValueError(f"distance_metric must be one of 'mse', 'l2', 'cosine', but got {distance_metric!r}.")
        self.distance_metric = distance_metric
        self.projection_dim = projection_dim
        self.projection: nn.Linear | None = None
        if projection_dim is not None:
            if embedding_dimension is None:
                raise ValueError(f"{type(self).__name__}(projection_dim={projection_dim}) needs embedding_dimension, "
                                 "the student's embedding size (e.g. model.embedding_dim), to size the projection.")
            self.projection = nn.Linear(int(embedding_dimension), int(projection_dim))

    def forward(self, *columns: Tensor, labels: Tensor | None = None) -> Tensor:
        name = type(self).__name__
        columns, labels = _split_labels(name, columns, labels)
        check_embedding_columns(name, *columns, names=tuple(f"column {i + 1}" for i in range(len(columns))))
        return self.compute_loss_from_embeddings(list(columns), self._teacher_columns(labels, len(columns)))

    def _teacher_columns(self, labels: Tensor, num_columns: int) -> list[Tensor]:
        if labels.dim() == 2:  # one teacher embedding for every column
            return [labels] * num_columns
        if labels.dim() == 3 and labels.shape[1] == num_columns:
            return list(labels.unbind(1))
        raise ValueError(f"{type(self).__name__}: labels must be the teacher's embeddings, (batch_size, teacher_dim) "
                         f"or (batch_size, {num_columns}, teacher_dim); got shape {tuple(labels.shape)}.")

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], teacher_embeddings: list[Tensor]) -> Tensor:
        """The mean over columns of each column's distance to its teacher embeddings."""
        return torch.stack([in_fp32(self._column_loss, student, teacher)
                            for student, teacher in zip(embeddings, teacher_embeddings)]).mean()

    def _column_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        if self.projection is not None:
            student = self.projection(student.to(self.projection.weight.dtype))
        teacher = teacher.to(device=student.device, dtype=student.dtype)
        if student.shape != teacher.shape:
            raise ValueError(f"{type(self).__name__}: student embeddings {tuple(student.shape)} and teacher "
                             f"embeddings {tuple(teacher.shape)} differ; pass projection_dim={teacher.shape[-1]} "
                             "(and embedding_dimension) to learn a projection.")
        if self.distance_metric == "mse":
            return F.mse_loss(student, teacher)
        if self.distance_metric == "l2":
            return torch.norm(student - teacher, dim=-1).mean()
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()

    def get_config_dict(self) -> dict:
        return {"distance_metric": self.distance_metric, "projection_dim": self.projection_dim}


class MSELoss(EmbedDistillLoss):
    r"""Mean squared error between the student's and the teacher's embeddings: `EmbedDistillLoss("mse")`.

    Definitions: for each column, ``mean_{i, k} (s_i - t_i)_k ** 2`` over the B x D entries; the mean over
    the columns. The loss of multilingual knowledge distillation: the teacher embeds English sentences, the
    student must embed the sentences *and* their translations as the teacher embeds the English.

    Inputs:
        ``loss(*columns, labels)``: (B, D) student columns; labels the teacher's embeddings, (B, D_t) or
        (B, n_columns, D_t).

    Args:
        projection_dim, embedding_dimension: as in `EmbedDistillLoss` (a learned projection when the
            student's and the teacher's dimensions differ).

    Requirements:
        The teacher's embeddings, precomputed.

    Recommendations:
        For (English, translation) pairs with the English sentence's teacher embedding as the label
        (one target for both columns).

    References:
        Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
        Distillation", EMNLP 2020; sentence-transformers' MSELoss.

    Example:
        >>> import torch
        >>> from labkit.losses.distillation import MSELoss
        >>> english, german, teacher = torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 3)
        >>> MSELoss()(english, german, teacher).item()   # (0 + 1) / 2: the English column is exact
        0.5
    """

    def __init__(self, projection_dim: int | None = None, embedding_dimension: int | None = None) -> None:
        super().__init__("mse", projection_dim=projection_dim, embedding_dimension=embedding_dimension)

    def get_config_dict(self) -> dict:
        return {"projection_dim": self.projection_dim}


class MarginMSELoss(nn.Module):
    r"""The student's score margins between a positive and each negative should be the teacher's.

    Definitions, for queries q_i, positives p_i, negatives n_i^(1..k) and the teacher's margins
    m_i^(j) = teacher(q_i, p_i) - teacher(q_i, n_i^(j))::

        loss = mean_{i, j} ( sim(q_i, p_i) - sim(q_i, n_i^(j)) - m_i^(j) ) ** 2

    Only differences are matched, so the student's scores may sit on another scale's offset than the
    teacher's (a cross-encoder, typically), as long as they separate positive from negatives as much.

    Inputs:
        ``loss(query, positive, *negatives, labels)``: (B, D) tensors; labels the teacher's margins,
        (B,) with one negative or (B, k), or its raw scores (B, 1 + k) (positive first), from which the
        margins are taken.

    Args:
        similarity_fct: the paired similarity, default `labkit.distances.pairwise_dot_score` (as the paper).

    Requirements:
        (query, positive, negative...) rows with the teacher's scores, computed beforehand.

    Recommendations:
        A cross-encoder teacher; the dot product, so the student's scores are not squeezed into [-1, 1].

    References:
        Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
        Distillation", 2020; sentence-transformers' MarginMSELoss.

    Example:
        A worked example to check by hand: q = (1, 0), p = (2, 0), n = (1, 1): the student's margin is
        q·p - q·n = 2 - 1 = 1; the teacher's is 3, so the loss is (1 - 3)² = 4:

        >>> import torch
        >>> from labkit.losses.distillation import MarginMSELoss
        >>> q, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])
        >>> MarginMSELoss()(q, p, n, torch.tensor([3.0])).item()
        4.0
    """

    def __init__(self, similarity_fct: Callable[[Tensor, Tensor], Tensor] = pairwise_dot_score) -> None:
        super().__init__()
        self.similarity_fct = similarity_fct

    def forward(self, *columns: Tensor, labels: Tensor | None = None) -> Tensor:
        name = type(self).__name__
        columns, labels = _split_labels(name, columns, labels)
        if len(columns) < 3:
            raise ValueError(f"{name} needs (query, positive, negative, ...) columns, got {len(columns)}.")
        names = ("query", "positive") + tuple(f"negative {i + 1}" for i in range(len(columns) - 2))
        check_embedding_columns(name, *columns, names=names)
        margins = in_fp32(self._margins, *columns)
        return F.mse_loss(margins, self._teacher_margins(labels, *margins.shape).to(margins.dtype))

    def _margins(self, query: Tensor, positive: Tensor, *negatives: Tensor) -> Tensor:
        positive_scores = self.similarity_fct(query, positive)
        return torch.stack([positive_scores - self.similarity_fct(query, negative) for negative in negatives], dim=1)

    def _teacher_margins(self, labels: Tensor, batch_size: int, num_negatives: int) -> Tensor:
        if labels.shape == (batch_size, num_negatives + 1):  # raw scores, positive first
            labels = labels[:, :1] - labels[:, 1:]
        if labels.shape == (batch_size,):
            labels = labels.unsqueeze(1)
        if labels.shape != (batch_size, num_negatives):
            raise ValueError(
                f"{type(self).__name__}: labels shape {tuple(labels.shape)} does not match {(batch_size, num_negatives)}:"
                " give the teacher's margins (positive score - negative score, one per negative) or its scores "
                f"(positive first, {num_negatives + 1} per row)."
            )
        return labels

    def get_config_dict(self) -> dict:
        return {"similarity_fct": _similarity_name(self.similarity_fct)}


class DistillKLDivLoss(nn.Module):
    r"""The student's softmax over each query's candidates should match the teacher's: KL divergence.

    Definitions, for queries q_i and N candidate columns c_i^(1..N) (a positive and negatives), with the
    teacher's scores T_ij (the labels), student temperature tau_s and teacher temperature tau_t::

        student_ij = log_softmax_j( sim(q_i, c_i^(j)) / tau_s )
        teacher_ij = softmax_j( T_ij / tau_t )
        loss = tau_s ** 2 * mean_i sum_j teacher_ij * (log teacher_ij - student_ij)

    The tau_s² factor keeps the gradient's size independent of the temperature (Hinton et al. 2015).
    Unlike `MarginMSELoss` the whole ranking of the candidates is matched, not each margin.

    Inputs:
        ``loss(query, *candidates, labels)``: (B, D) tensors, at least two candidate columns; labels the
        teacher's scores, (B, N).

    Args:
        similarity_fct: paired similarity, default `labkit.distances.pairwise_dot_score`.
        temperature: both temperatures, default 1.
        student_temperature, teacher_temperature: override one of them (default: ``temperature``).

    Requirements:
        (query, positive, negative_1, ...) rows with the teacher's score of every candidate.

    Recommendations:
        Raise ``teacher_temperature`` if the teacher's scores spread over more than ~100 times it (the
        softmax would put exactly 0 on some candidates).

    References:
        Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015; Lin et al., "In-Batch
        Negatives for Knowledge Distillation with Tightly-Coupled Teachers for Dense Retrieval", 2021;
        sentence-transformers' DistillKLDivLoss.

    Example:
        A worked example to check by hand: a student whose scores equal the teacher's has loss 0; one that
        scores two candidates equally when the teacher gives them 0 and ln 3 (probabilities 1/4, 3/4) pays
        KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.1308:

        >>> import torch
        >>> from labkit.losses.distillation import DistillKLDivLoss
        >>> q, c = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
        >>> round(DistillKLDivLoss()(q, c, c, torch.tensor([[0.0, torch.log(torch.tensor(3.0))]])).item(), 4)
        0.1308
    """

    def __init__(
        self,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = pairwise_dot_score,
        temperature: float = 1.0,
        student_temperature: float | None = None,
        teacher_temperature: float | None = None,
    ) -> None:
        super().__init__()
        self.similarity_fct = similarity_fct
        self.temperature = temperature
        self.student_temperature = student_temperature if student_temperature is not None else temperature
        self.teacher_temperature = teacher_temperature if teacher_temperature is not None else temperature
        for label in ("temperature", "student_temperature", "teacher_temperature"):
            value = getattr(self, label)
            if not 0 < value < math.inf:
                raise ValueError(f"{label} must be a positive finite number, got {value}.")

    def forward(self, *columns: Tensor, labels: Tensor | None = None) -> Tensor:
        name = type(self).__name__
        columns, labels = _split_labels(name, columns, labels)
        if len(columns) < 3:
            raise ValueError(f"{name} expects at least 3 columns (query, positive, negative_1, ...), got "
                             f"{len(columns)}: a softmax over one candidate is constant, so the loss would be 0.")
        names = ("query",) + tuple(f"candidate {i + 1}" for i in range(len(columns) - 1))
        check_embedding_columns(name, *columns, names=names)
        batch_size, num_candidates = columns[0].shape[0], len(columns) - 1
        if labels.shape != (batch_size, num_candidates):
            raise ValueError(f"{name} expects teacher scores of shape (batch_size, N) = ({batch_size}, "
                             f"{num_candidates}) for N candidate columns, but got {tuple(labels.shape)}.")
        if labels.isnan().any():
            raise ValueError(f"{name}: the teacher scores contain NaN; check the column holding them.")
        scores = in_fp32(lambda q, *c: torch.stack([self.similarity_fct(q, x) for x in c], dim=1), *columns)
        student_log_probabilities = torch.log_softmax(scores / self.student_temperature, dim=1)
        teacher_probabilities = torch.softmax(labels.to(scores.dtype) / self.teacher_temperature, dim=1)
        kl = F.kl_div(student_log_probabilities, teacher_probabilities, reduction="batchmean")
        return kl * self.student_temperature ** 2

    def get_config_dict(self) -> dict:
        config = {"similarity_fct": _similarity_name(self.similarity_fct), "temperature": self.temperature}
        if self.student_temperature != self.temperature:
            config["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config["teacher_temperature"] = self.teacher_temperature
        return config
