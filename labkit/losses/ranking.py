"""In-batch negatives: every other example of the batch serves as a negative, for free.

* `MultipleNegativesRankingLoss` (MNRL, a.k.a. InfoNCE): for each anchor, pick its own positive out of all
  the positives (and hard negatives) of the batch, with a softmax cross-entropy (Henderson et al. 2017;
  van den Oord et al. 2018).
* `MultipleNegativesSymmetricRankingLoss`: the same plus the reverse question (each positive picks its
  anchor), averaged.
* `ContrastiveTensionLossInBatchNegatives`: unsupervised; two encoders embed the same sentences and each
  sentence must pick itself out of the batch (Carlsson et al. 2021).

Same names, parameters, defaults and reductions as sentence-transformers 6.3, on embedding tensors.
The similarity functions live in `labkit.distances` (re-exported here for convenience). Each loss also has
``explain(...)``, which returns every intermediate quantity of one batch (a `RankingExplanation`) for the
worked examples.

Taught in notebooks/07_in_batch_negatives.ipynb.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.distances import in_fp32
from labkit.distances import cos_sim, dot_score, pairwise_cos_sim  # noqa: F401  (re-exported)
from labkit.validation import check_embedding_columns

__all__ = [
    "RankingExplanation",
    "MultipleNegativesRankingLoss",
    "MultipleNegativesSymmetricRankingLoss",
    "ContrastiveTensionLossInBatchNegatives",
    "cos_sim",
    "dot_score",
    "pairwise_cos_sim",
]

VALID_DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
SAME_TYPE_DIRECTIONS = {"query_to_query", "doc_to_doc"}
HARDNESS_MODES = (None, "in_batch_negatives", "hard_negatives", "all_negatives")


def _similarity_name(similarity_fct: Callable) -> str:
    return getattr(similarity_fct, "__name__", repr(similarity_fct))


def check_directions(directions: Sequence[str], partition_mode: str) -> tuple[str, ...]:
    """Validate MNRL's `directions` and `partition_mode` (sentence-transformers' rules) and return the directions."""
    if isinstance(directions, str):
        directions = (directions,)
    directions = tuple(directions)
    if not directions:
        raise ValueError("At least one direction must be specified, e.g. directions=('query_to_doc',).")
    unknown = set(directions) - set(VALID_DIRECTIONS)
    if unknown:
        raise ValueError(f"Invalid directions: {sorted(unknown)}. Valid: {list(VALID_DIRECTIONS)}.")
    if "query_to_doc" not in directions:
        raise ValueError("'query_to_doc' direction is required (it contains the positive pair).")
    if partition_mode not in ("joint", "per_direction"):
        raise ValueError(f"partition_mode must be 'joint' or 'per_direction', got {partition_mode!r}.")
    if partition_mode == "per_direction" and set(directions) & SAME_TYPE_DIRECTIONS:
        raise ValueError(
            "partition_mode='per_direction' requires every direction's candidates to include the positive pair; "
            "'query_to_query' and 'doc_to_doc' never do. Use partition_mode='joint' with them."
        )
    return directions


def check_hardness(hardness_mode: str | None, hardness_strength: float) -> None:
    """Validate MNRL's `hardness_mode` and `hardness_strength` (sentence-transformers' rules)."""
    if hardness_mode not in HARDNESS_MODES:
        raise ValueError(f"hardness_mode must be one of {list(HARDNESS_MODES)}, got {hardness_mode!r}.")
    if not hardness_strength >= 0.0:
        raise ValueError(f"hardness_strength must be non-negative, got {hardness_strength}.")
    if hardness_mode is not None and hardness_strength == 0.0:
        warnings.warn(
            f"hardness_mode={hardness_mode!r} is set but hardness_strength=0.0, so hardness weighting has no "
            "effect. Set hardness_strength to a positive value (e.g. 5 or 9) to enable it.", stacklevel=3,
        )


def hardness_penalty(
    similarity: Tensor, num_columns: int, hardness_mode: str | None, hardness_strength: float
) -> Tensor | None:
    """``hardness_strength * stop_grad(similarity)`` on the negatives `hardness_mode` names, 0 elsewhere.

    `similarity` is the (B, B * num_columns) anchor-to-candidate matrix (positives, then each hard-negative
    column). Added to the scaled logits, the penalty makes a negative count more in the softmax the more
    similar it already is (Lan et al. 2025, Eq. 5). It is never applied to an anchor's own positive.
    None when there is nothing to add.
    """
    if hardness_mode is None or hardness_strength == 0.0:
        return None
    batch_size = similarity.shape[0]
    own = torch.eye(batch_size, dtype=torch.bool, device=similarity.device).repeat(1, num_columns)
    own_positive = torch.zeros_like(own)
    own_positive[:, :batch_size] = own[:, :batch_size]
    penalised = {
        "in_batch_negatives": ~own,  # the other rows' positives and hard negatives
        "hard_negatives": own & ~own_positive,  # the anchor's own hard negatives
        "all_negatives": ~own_positive,  # both
    }[hardness_mode]
    return (hardness_strength * similarity.detach()).masked_fill(~penalised, 0.0)


# ----------------------------------------------------------------------------------------------
# What an in-batch-negatives loss did on one batch (for worked examples)
# ----------------------------------------------------------------------------------------------
@dataclass
class RankingExplanation:
    """Every intermediate quantity of an in-batch-negatives loss on one batch, row i = anchor i.

    One (B, n) block per direction (``"query_to_doc"``: anchor i against every candidate column;
    ``"doc_to_query"``: positive i against every anchor; ...), in the order the loss concatenates them:

    * ``similarity[d]``: the raw similarities (``-inf`` where an entry is not a candidate, e.g. an anchor
      against itself in ``"query_to_query"``);
    * ``logits[d]``: ``scale * similarity[d]`` (plus the hardness penalty, if any, on ``"query_to_doc"``);
    * ``probabilities[d]``: the softmax of each row, taken over all directions together
      (``partition_mode="joint"``) or within each direction (``"per_direction"``);
    * ``columns[d]`` / ``rows[d]``: a name for every column and row (``a0`` = anchor 0, ``p0`` = positive 0,
      ``n0`` = the hard negative of anchor 0 when there is one negative column; with several, ``n1_0``,
      ``n2_0``, ... = anchor 0's hard negative in the first, second, ... column).

    ``target[i]`` is the column of anchor i's own positive (``i``, in every direction), and::

        per_anchor[i] = log_normaliser[i] - positive_logit[i]      # cross-entropy of row i
        loss = per_anchor.mean()                                    # == the loss's forward value

    with ``log_normaliser[i]`` the logsumexp of row i over all directions (joint) or the mean of the
    per-direction logsumexps (per_direction).
    """

    similarity: dict[str, Tensor]
    logits: dict[str, Tensor]
    probabilities: dict[str, Tensor]
    columns: dict[str, list[str]]
    rows: dict[str, list[str]]
    target: Tensor
    positive_logit: Tensor
    log_normaliser: Tensor
    per_anchor: Tensor
    loss: Tensor
    scale: float
    partition_mode: str

    def to_frame(self, what: str = "probabilities", direction: str = "query_to_doc", decimals: int = 4):
        """One block (``"similarity"``, ``"logits"`` or ``"probabilities"``) as a DataFrame, rows a0, a1, ...

        Rounded to `decimals` so printed worked examples are the same on every machine.
        """
        import pandas as pd

        blocks = self.blocks()
        if what not in blocks:
            raise ValueError(f"what must be one of {sorted(blocks)}, got {what!r}.")
        if direction not in self.logits:
            raise ValueError(f"direction {direction!r} is not in this explanation; it has {list(self.logits)}.")
        values = blocks[what][direction].detach().cpu().double().numpy().round(decimals)
        return pd.DataFrame(values, index=self.rows[direction], columns=self.columns[direction]) + 0.0  # no "-0.0"

    def blocks(self) -> dict[str, dict[str, Tensor]]:
        """The (B, n) blocks `to_frame` can show, by name."""
        return {"similarity": self.similarity, "logits": self.logits, "probabilities": self.probabilities}


def explain_logits(
    logits: dict[str, Tensor],
    scale: float,
    partition_mode: str,
    columns: dict[str, list[str]],
    rows: dict[str, list[str]],
    similarity: dict[str, Tensor] | None = None,
    positive_block: str = "query_to_doc",
) -> RankingExplanation:
    """Softmax rows, targets, per-anchor cross-entropy and the mean, from the scaled logits of each direction.

    The same arithmetic as `MultipleNegativesRankingLoss.forward`, kept apart so every step can be shown.
    `similarity` defaults to ``logits / scale`` (right unless a hardness penalty was added to the logits);
    column i of `positive_block` holds anchor i's positive.
    """
    batch_size = next(iter(logits.values())).shape[0]
    targets = torch.arange(batch_size, device=logits[positive_block].device)
    positive_logit = logits[positive_block][targets, targets]
    if partition_mode == "joint":
        joint = torch.cat(list(logits.values()), dim=1)
        widths = [block.shape[1] for block in logits.values()]
        probabilities = dict(zip(logits, torch.softmax(joint, dim=1).split(widths, dim=1)))
        log_normaliser = torch.logsumexp(joint, dim=1)
    else:
        probabilities = {direction: torch.softmax(block, dim=1) for direction, block in logits.items()}
        log_normaliser = torch.stack([torch.logsumexp(block, dim=1) for block in logits.values()]).mean(dim=0)
    per_anchor = log_normaliser - positive_logit
    return RankingExplanation(
        similarity=similarity or {direction: block / scale for direction, block in logits.items()},
        logits=dict(logits),
        probabilities=probabilities,
        columns=columns,
        rows=rows,
        target=targets,
        positive_logit=positive_logit,
        log_normaliser=log_normaliser,
        per_anchor=per_anchor,
        loss=per_anchor.mean(),
        scale=float(scale),
        partition_mode=partition_mode,
    )


def _row_and_column_names(batch_size: int, num_negatives: int, directions: Sequence[str]):
    positives = [f"p{j}" for j in range(batch_size)]
    # One hard-negative column: n0 is anchor 0's hard negative (as notebook 07 writes it); several: n1_0, n2_0, ...
    negatives = ([f"n{j}" for j in range(batch_size)] if num_negatives == 1 else
                 [f"n{k + 1}_{j}" for k in range(num_negatives) for j in range(batch_size)])
    anchors = [f"a{j}" for j in range(batch_size)]
    columns = {"query_to_doc": positives + negatives, "query_to_query": anchors,
               "doc_to_query": anchors, "doc_to_doc": positives + negatives}
    rows = {"query_to_doc": anchors, "query_to_query": anchors, "doc_to_query": positives, "doc_to_doc": positives}
    return {d: rows[d] for d in directions}, {d: columns[d] for d in directions}


class MultipleNegativesRankingLoss(nn.Module):
    r"""In-batch negatives cross-entropy (InfoNCE): each anchor must rank its own positive first.

    Definition, for anchors :math:`a_i`, positives :math:`p_i` and optional hard negatives
    :math:`n^{(1)}_i, ..., n^{(k)}_i` (i = 1..B), with candidates
    :math:`c = [p_1..p_B, n^{(1)}_1..n^{(1)}_B, ...]` (B(1+k) of them)::

        logits[i, j] = scale * sim(a_i, c_j)
        loss = mean_i  -log( exp(logits[i, i]) / sum_j exp(logits[i, j]) )
             = cross_entropy(logits, target=[0, 1, ..., B-1])

    So the other B - 1 positives (and all hard negatives) are the negatives of anchor i. A batch that
    contains the same positive twice therefore asks the model to tell a text from itself; sample batches
    without duplicates (labkit.sampling's no-duplicates sampler).

    Extra directions (sentence-transformers' ``directions``) add more logits to the softmax of row i:

    * ``"doc_to_query"``: ``scale * sim(p_i, a_j)`` for all j (the positive must also pick its anchor);
    * ``"query_to_query"``: ``scale * sim(a_i, a_j)``, j != i;
    * ``"doc_to_doc"``: ``scale * sim(p_i, c_j)`` for the candidates c_j of other anchors.

    ``partition_mode="joint"`` puts all of them in one softmax; ``"per_direction"`` computes one
    log-normaliser per direction and averages them (the symmetric InfoNCE of CLIP and jina).

    Hardness weighting (sentence-transformers' ``hardness_mode``, off by default) adds a penalty, *not*
    multiplied by scale and with no gradient, to some negative logits of ``"query_to_doc"``::

        logits[i, j] = scale * sim(a_i, c_j) + hardness_strength * stop_grad(sim(a_i, c_j))

    so a negative that is already close counts more in the denominator (Lan et al. 2025, Eq. 5). Which
    negatives: ``"in_batch_negatives"`` (the other rows' positives and hard negatives; Lan et al. use
    strength 9), ``"hard_negatives"`` (the anchor's own hard negatives only; EmbeddingGemma uses 5) or
    ``"all_negatives"`` (both). The positive is never penalised.

    Inputs:
        ``loss(anchor, positive, *negatives)``: (B, D) tensors; any number of hard-negative columns.

    Args:
        scale: multiplies the similarities (scale = 1 / temperature). 20 (temperature 0.05) suits cosine
            similarity, whose range [-1, 1] would otherwise make a too-flat softmax.
        similarity_fct: all-pairs similarity, default `cos_sim`; with `dot_score` use scale=1.
        directions: which interaction terms; default ``("query_to_doc",)`` is the classic MNRL.
        partition_mode: ``"joint"`` (default) or ``"per_direction"``.
        hardness_mode: ``None`` (default: no penalty), ``"in_batch_negatives"``, ``"hard_negatives"`` or
            ``"all_negatives"``.
        hardness_strength: the penalty's weight alpha, >= 0; ignored when ``hardness_mode`` is None.

    When to use:
        (anchor, positive) pairs, e.g. (question, answer), (query, passage), (sentence, paraphrase),
        NLI (premise, entailment [, contradiction as hard negative]). The strongest general-purpose loss
        when only positives are known; larger batches give more negatives (see
        `CachedMultipleNegativesRankingLoss` to go beyond memory).

    References:
        Henderson et al., "Efficient Natural Language Response Suggestion for Smart Reply", 2017;
        van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding" (InfoNCE), 2018;
        Reimers & Gurevych, "Sentence-BERT", 2019 (sentence-transformers);
        Lan et al., "LLaVE: Large Language and Vision Embedding Models with Hardness-Weighted Contrastive
        Learning", 2025 (hardness_mode); Schechter Vera et al., "EmbeddingGemma", 2025.

    Example:
        >>> import torch
        >>> from labkit.losses.ranking import MultipleNegativesRankingLoss
        >>> anchor, positive, hard_negative = torch.randn(3, 4, 8).unbind(0)
        >>> MultipleNegativesRankingLoss()(anchor, positive, hard_negative).dim()
        0
        >>> symmetric = MultipleNegativesRankingLoss(directions=("query_to_doc", "doc_to_query"),
        ...                                          partition_mode="per_direction")
        >>> hard = MultipleNegativesRankingLoss(hardness_mode="hard_negatives", hardness_strength=5.0)
        >>> hard(anchor, positive, hard_negative).dim()
        0

    Taught in notebooks/07_in_batch_negatives.ipynb.
    """

    def __init__(
        self,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        directions: Sequence[str] = ("query_to_doc",),
        partition_mode: str = "joint",
        hardness_mode: str | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive (it is 1 / temperature), got {scale}.")
        self.scale = scale
        self.similarity_fct = similarity_fct
        self.directions = check_directions(directions, partition_mode)
        self.partition_mode = partition_mode
        check_hardness(hardness_mode, hardness_strength)
        self.hardness_mode = hardness_mode
        self.hardness_strength = hardness_strength

    @property
    def temperature(self) -> float:
        return 1.0 / self.scale

    def forward(self, anchor: Tensor, positive: Tensor, *negatives: Tensor) -> Tensor:
        names = ("anchor", "positive") + tuple(f"negative {i + 1}" for i in range(len(negatives)))
        check_embedding_columns(type(self).__name__, anchor, positive, *negatives, names=names)
        # fp32 under autocast: fp16 overflows, bf16 rounds
        logits = in_fp32(self.logits_by_direction, anchor, positive, *negatives)
        # Shift each row by its (detached) largest logit: the value and gradient are unchanged, but
        # logsumexp's backward, exp(x - lse(x)), no longer subtracts two large numbers (logits ~1e5 in fp32).
        row_max = torch.stack([block.detach().amax(dim=1) for block in logits.values()]).amax(dim=0)
        logits = {direction: block - row_max[:, None] for direction, block in logits.items()}
        rows = torch.arange(anchor.shape[0], device=anchor.device)
        positive_logits = logits["query_to_doc"][rows, rows]  # candidate i is anchor i's positive
        if len(logits) == 1:  # one direction: no (B, n) copy to concatenate
            log_normaliser = torch.logsumexp(logits["query_to_doc"], dim=1)
        elif self.partition_mode == "joint":
            log_normaliser = torch.logsumexp(torch.cat(list(logits.values()), dim=1), dim=1)
        else:
            log_normaliser = torch.stack([torch.logsumexp(x, dim=1) for x in logits.values()]).mean(dim=0)
        return (log_normaliser - positive_logits).mean()

    def logits_by_direction(self, anchor: Tensor, positive: Tensor, *negatives: Tensor) -> dict[str, Tensor]:
        """The logits each anchor i is normalised over, one (B, n) matrix per direction: the similarities
        times `scale`, plus the hardness penalty (not scaled) on the query_to_doc negatives it selects."""
        similarities = self.similarities_by_direction(anchor, positive, *negatives)
        logits = {direction: similarity * self.scale for direction, similarity in similarities.items()}
        penalty = hardness_penalty(
            similarities["query_to_doc"], 1 + len(negatives), self.hardness_mode, self.hardness_strength
        )
        if penalty is not None:
            logits["query_to_doc"] = logits["query_to_doc"] + penalty
        return logits

    def similarities_by_direction(self, anchor: Tensor, positive: Tensor, *negatives: Tensor) -> dict[str, Tensor]:
        """The raw similarities of each direction (``-inf`` where an entry is not a candidate)."""
        batch_size = anchor.shape[0]
        candidates = torch.cat([positive, *negatives], dim=0) if negatives else positive  # (B * (1 + k), D)
        similarities = {"query_to_doc": self.similarity_fct(anchor, candidates)}
        if len(self.directions) == 1:  # the classic MNRL: nothing to mask
            return similarities

        own_anchor = torch.eye(batch_size, dtype=torch.bool, device=anchor.device)
        if "query_to_query" in self.directions:
            # An anchor compared with itself is not a negative.
            similarities["query_to_query"] = self.similarity_fct(anchor, anchor).masked_fill(own_anchor, -math.inf)
        if "doc_to_query" in self.directions:
            similarities["doc_to_query"] = self.similarity_fct(anchor, positive).T
        if "doc_to_doc" in self.directions:
            # Candidates of the same anchor (its positive and its hard negatives) are not negatives of its positive.
            same_anchor = own_anchor.repeat(1, 1 + len(negatives))
            similarities["doc_to_doc"] = self.similarity_fct(candidates, positive).T.masked_fill(same_anchor, -math.inf)
        return similarities

    @torch.no_grad()
    def explain(self, anchor: Tensor, positive: Tensor, *negatives: Tensor) -> RankingExplanation:
        """Every intermediate quantity of `forward` on this batch: similarities, logits, softmax rows, targets,
        per-anchor cross-entropy and their mean (equal to ``forward(anchor, positive, *negatives)``).

        >>> import torch
        >>> anchor, positive = torch.randn(2, 3, 4).unbind(0)
        >>> loss_fn = MultipleNegativesRankingLoss()
        >>> torch.allclose(loss_fn.explain(anchor, positive).loss, loss_fn(anchor, positive))
        True
        """
        names = ("anchor", "positive") + tuple(f"negative {i + 1}" for i in range(len(negatives)))
        check_embedding_columns(type(self).__name__, anchor, positive, *negatives, names=names)
        logits = self.logits_by_direction(anchor, positive, *negatives)
        rows, columns = _row_and_column_names(anchor.shape[0], len(negatives), list(logits))
        similarity = self.similarities_by_direction(anchor, positive, *negatives)
        return explain_logits(logits, self.scale, self.partition_mode, columns, rows, similarity=similarity)

    def get_config_dict(self) -> dict:
        return {
            "scale": self.scale,
            "similarity_fct": _similarity_name(self.similarity_fct),
            "directions": self.directions,
            "partition_mode": self.partition_mode,
            "hardness_mode": self.hardness_mode,
            "hardness_strength": self.hardness_strength,
        }


class MultipleNegativesSymmetricRankingLoss(MultipleNegativesRankingLoss):
    r"""Symmetric in-batch negatives: anchors pick their positive AND positives pick their anchor.

    Definition (sentence-transformers' MultipleNegativesSymmetricRankingLoss), with
    ``logits = scale * sim(anchors, candidates)``::

        forward_i  = -log softmax_j(scale * sim(a_i, c_j))[i]      # over positives and hard negatives
        backward_i = -log softmax_j(scale * sim(p_i, a_j))[i]      # over the anchors
        loss = mean_i (forward_i + backward_i) / 2

    It is `MultipleNegativesRankingLoss(directions=("query_to_doc", "doc_to_query"),
    partition_mode="per_direction")`, given its own name for convenience (sentence-transformers 6.2 marks
    its class deprecated in favour of that spelling; the values are the same).

    Inputs:
        ``loss(anchor, positive, *negatives)``: (B, D) tensors.

    Args:
        scale: 1 / temperature, default 20 (for cosine similarity).
        similarity_fct: all-pairs similarity, default `cos_sim`.

    When to use:
        Pairs where both directions are queries you care about: (question, answer) retrieval in both
        directions, translation pairs, paraphrases. The CLIP objective has this form.

    References:
        van den Oord et al. 2018 (InfoNCE); Radford et al., "CLIP", 2021; Günther et al.,
        "Jina Embeddings 2", 2023.

    Example:
        >>> import torch
        >>> from labkit.losses.ranking import MultipleNegativesSymmetricRankingLoss
        >>> anchor, positive = torch.randn(4, 8), torch.randn(4, 8)
        >>> MultipleNegativesSymmetricRankingLoss()(anchor, positive).dim()
        0

    Taught in notebooks/07_in_batch_negatives.ipynb.
    """

    def __init__(self, scale: float = 20.0, similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim) -> None:
        super().__init__(
            scale=scale,
            similarity_fct=similarity_fct,
            directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
        )


class ContrastiveTensionLossInBatchNegatives(nn.Module):
    r"""Contrastive Tension with in-batch negatives (Carlsson et al. 2021): unsupervised, no labels.

    Training set-up: two copies of the encoder start from the same weights; one (here "model 1") is an
    independent, frozen or separately trained copy, the other ("model 2") is the one being trained and
    kept. Each batch of sentences is encoded by *both*: ``emb_1 = model_1(batch)``, ``emb_2 = model_2(batch)``.
    The loss does not own or copy any model (unlike sentence-transformers', which deep-copies its model):
    the training code encodes the same sentences with the two encoders and passes both embeddings in.

    Definition: with ``S = exp(logit_scale) * sim(emb_1, emb_2)`` (B x B), sentence i must pick itself::

        loss = ( cross_entropy(S, [0..B-1]) + cross_entropy(S.T, [0..B-1]) ) / 2

    a symmetric InfoNCE whose positives are the diagonal (the same sentence through the two encoders) and
    whose negatives are the other sentences of the batch.

    The scale is learnable, stored as sentence-transformers stores it: ``logit_scale = log(scale)``, an
    ``nn.Parameter`` of the loss (learning its logarithm keeps the scale positive). Add
    ``loss.parameters()`` to the optimizer to train it.

    Inputs:
        ``loss(emb_1, emb_2)``: two (B, D) tensors, the same B sentences through the two encoders.

    Args:
        scale: initial scale (inverse temperature), default 20.
        similarity_fct: all-pairs similarity, default `cos_sim`.

    When to use:
        Unlabelled in-domain sentences only (no pairs, no scores): domain adaptation before or instead of
        supervised training. Larger batches help.

    References:
        Carlsson et al., "Semantic Re-tuning with Contrastive Tension", ICLR 2021.

    Example:
        >>> import torch
        >>> from labkit.losses.ranking import ContrastiveTensionLossInBatchNegatives
        >>> loss_fn = ContrastiveTensionLossInBatchNegatives()
        >>> emb_1, emb_2 = torch.randn(4, 8), torch.randn(4, 8)   # model_1(batch), model_2(batch)
        >>> loss_fn(emb_1, emb_2).dim()
        0

    Taught in notebooks/07_in_batch_negatives.ipynb.
    """

    def __init__(self, scale: float = 20.0, similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}.")
        self.similarity_fct = similarity_fct
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(scale))

    @property
    def scale(self) -> float:
        """The current (learned) scale, exp(logit_scale)."""
        return self.logit_scale.exp().item()

    def forward(self, emb_1: Tensor, emb_2: Tensor) -> Tensor:
        check_embedding_columns(type(self).__name__, emb_1, emb_2, names=("emb_1", "emb_2"))
        # fp32 under autocast: fp16 overflows, bf16 rounds
        logits = in_fp32(self.similarity_fct, emb_1, emb_2) * self.logit_scale.exp()
        targets = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    @torch.no_grad()
    def explain(self, emb_1: Tensor, emb_2: Tensor) -> RankingExplanation:
        """Every intermediate quantity of `forward`: the loss is a symmetric InfoNCE with emb_1 as anchors.

        ``"query_to_doc"`` holds the rows (sentence i of model 1 against every sentence of model 2),
        ``"doc_to_query"`` the columns (sentence i of model 2 against every sentence of model 1); the
        softmax is taken within each, and ``per_anchor[i]`` is the average of row i's and column i's
        cross-entropy, so ``loss`` equals ``forward(emb_1, emb_2)``.
        """
        check_embedding_columns(type(self).__name__, emb_1, emb_2, names=("emb_1", "emb_2"))
        scale = self.logit_scale.exp()
        rows = self.similarity_fct(emb_1, emb_2) * scale
        logits = {"query_to_doc": rows, "doc_to_query": rows.T}
        batch_size = emb_1.shape[0]
        first, second = [f"e1_{j}" for j in range(batch_size)], [f"e2_{j}" for j in range(batch_size)]
        columns = {"query_to_doc": second, "doc_to_query": first}
        rows = {"query_to_doc": first, "doc_to_query": second}
        return explain_logits(logits, scale.item(), "per_direction", columns, rows)

    def get_config_dict(self) -> dict:
        return {"scale": self.scale, "similarity_fct": _similarity_name(self.similarity_fct)}
