"""GIST: in-batch negatives with a guide model that takes the false negatives out (Solatorio 2024).

With in-batch negatives, another row's positive is only *probably* a negative: in a batch of questions about
card payments, the answer to "how do I change my PIN" is also a good answer to "I forgot my PIN". MNRL still
pushes it away. GIST asks a second, fixed model (the guide) how similar each candidate is to the anchor; a
candidate the guide finds at least as similar as the anchor's own positive (minus a margin) is a likely
false negative and is left out of the softmax.

* `GISTEmbedLoss`: runs the model and the guide on the tokenized columns.
* `CachedGISTEmbedLoss`: the same loss with GradCache (`labkit.losses.cached`), for batches beyond memory.

Both compute `compute_loss_from_embeddings(embeddings, guide_embeddings)`, which can also be called on
embeddings you made yourself; ``explain`` shows which candidates the guide suppressed.
Same names, parameters, defaults and values as sentence-transformers 6.3.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.distances import cos_sim, in_fp32
from labkit.losses.cached import GradCache
from labkit.losses.ranking import RankingExplanation, explain_logits
from labkit.validation import check_embedding_columns

__all__ = ["GISTEmbedLoss", "CachedGISTEmbedLoss", "GISTExplanation", "gist_similarities"]

MARGIN_STRATEGIES = ("absolute", "relative")


@dataclass
class GISTExplanation(RankingExplanation):
    """A `RankingExplanation` of GIST, with what the guide decided.

    Blocks (row i = anchor i, or positive i for ``positive_positive``): ``anchor_positive``,
    ``anchor_anchor`` and ``positive_positive`` (when contrasted), ``anchor_negative_1``, ... (one per
    hard-negative column). ``similarity`` holds the model's cosines with ``-inf`` where an entry left the
    softmax; ``guide_similarity`` the guide's cosines; ``suppressed`` is True where the guide's cosine
    exceeded ``threshold[i]`` (the guide's cosine of anchor i with its own positive, less the margin):
    a likely false negative. ``logits = similarity / temperature``.
    """

    guide_similarity: dict[str, Tensor] | None = None
    suppressed: dict[str, Tensor] | None = None
    threshold: Tensor | None = None

    def blocks(self) -> dict[str, dict[str, Tensor]]:
        return {**super().blocks(), "guide_similarity": self.guide_similarity, "suppressed": self.suppressed}

    def to_frame(self, what: str = "probabilities", direction: str = "anchor_positive", decimals: int = 4):
        return super().to_frame(what, direction, decimals)


def gist_similarities(
    embeddings: Sequence[Tensor],
    guide_embeddings: Sequence[Tensor],
    margin_strategy: str = "absolute",
    margin: float = 0.0,
    contrast_anchors: bool = True,
    contrast_positives: bool = True,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor], Tensor]:
    """The model's cosine blocks with the guide's false negatives (and self-pairs) set to ``-inf``.

    Returns ``(similarity, guide_similarity, suppressed, threshold)``, each block (B, B), in the order they
    enter the softmax: anchor_positive, anchor_anchor, positive_positive, anchor_negative_1, ...
    Anchor i's own positive (column i of anchor_positive) is never suppressed.
    """
    anchor, positive, *negatives = embeddings
    guide_anchor, guide_positive, *guide_negatives = guide_embeddings
    pairs = {"anchor_positive": (anchor, positive, guide_anchor, guide_positive)}
    if contrast_anchors:
        pairs["anchor_anchor"] = (anchor, anchor, guide_anchor, guide_anchor)
    if contrast_positives:
        pairs["positive_positive"] = (positive, positive, guide_positive, guide_positive)
    for k, (negative, guide_negative) in enumerate(zip(negatives, guide_negatives)):
        pairs[f"anchor_negative_{k + 1}"] = (anchor, negative, guide_anchor, guide_negative)

    guide_similarity = {name: cos_sim(g_left, g_right) for name, (_, _, g_left, g_right) in pairs.items()}
    own = guide_similarity["anchor_positive"].diagonal().view(-1, 1)
    threshold = own - margin if margin_strategy == "absolute" else own - own.abs() * margin
    diagonal = torch.eye(anchor.shape[0], dtype=torch.bool, device=anchor.device)
    similarity, suppressed = {}, {}
    for name, (left, right, _, _) in pairs.items():
        suppressed[name] = guide_similarity[name] > threshold
        if name == "anchor_positive":
            suppressed[name] &= ~diagonal  # the positive itself stays
        hidden = suppressed[name] | diagonal if name in ("anchor_anchor", "positive_positive") else suppressed[name]
        similarity[name] = cos_sim(left, right).masked_fill(hidden, -math.inf)  # no self-negatives either
    return similarity, guide_similarity, suppressed, threshold


class _GISTLoss:
    """What `GISTEmbedLoss` and `CachedGISTEmbedLoss` share: the options, the guide pass and the loss itself."""

    def _set_options(self, guide, temperature, margin_strategy, margin, contrast_anchors, contrast_positives):
        if not isinstance(guide, nn.Module):
            raise TypeError(f"{type(self).__name__} needs a guide model (an nn.Module that embeds the same "
                            f"tokenized columns), got {type(guide).__name__}.")
        if margin_strategy not in MARGIN_STRATEGIES:
            raise ValueError(f"margin_strategy must be 'absolute' or 'relative', got {margin_strategy!r}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        # Not a submodule: its parameters must not reach the optimizer (labkit.train adds the loss's own).
        self.__dict__["guide"] = guide
        self.temperature = temperature
        self.margin_strategy = margin_strategy
        self.margin = margin
        self.contrast_anchors = contrast_anchors
        self.contrast_positives = contrast_positives
        self.must_retokenize = _must_retokenize(self.model, guide)

    def guide_embeddings(self, features: Sequence[dict], mini_batch_size: int | None = None) -> list[Tensor]:
        """The guide's embeddings of every column, without gradients (re-tokenized if the guide's tokenizer
        differs from the model's), `mini_batch_size` rows at a time (all at once if None)."""
        with torch.no_grad():
            columns = [self._guide_features(column) for column in features]
            return [_embed_in_chunks(self.guide, column, mini_batch_size) for column in columns]

    def _guide_features(self, features: dict) -> dict:
        if not self.must_retokenize:
            return dict(features)  # a shallow copy: a model may write into the dict it is given
        texts = self.model.tokenizer.batch_decode(features["input_ids"], skip_special_tokens=True)
        tokenized = self.guide.tokenize(texts)
        device = next(self.guide.parameters()).device
        return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in tokenized.items()}

    def compute_loss_from_embeddings(self, embeddings: Sequence[Tensor], guide_embeddings: Sequence[Tensor]) -> Tensor:
        """The loss from the model's embeddings (with gradients) and the guide's (without), one per column."""
        blocks = self._similarities(embeddings, guide_embeddings)[0]
        scores = torch.cat(list(blocks.values()), dim=1) / self.temperature
        targets = torch.arange(scores.shape[0], device=scores.device)
        return F.cross_entropy(scores, targets)

    def _similarities(self, embeddings, guide_embeddings):
        embeddings, guide_embeddings = list(embeddings), list(guide_embeddings)
        name = type(self).__name__
        if len(embeddings) < 2 or len(guide_embeddings) != len(embeddings):
            raise ValueError(f"{name} needs [anchor, positive, *negatives] embeddings and as many guide embeddings, "
                             f"got {len(embeddings)} and {len(guide_embeddings)}.")
        names = ("anchor", "positive") + tuple(f"negative {i + 1}" for i in range(len(embeddings) - 2))
        check_embedding_columns(name, *embeddings, names=names)
        check_embedding_columns(name, *guide_embeddings, names=tuple(f"guide {n}" for n in names))
        if guide_embeddings[0].shape[0] != embeddings[0].shape[0]:
            raise ValueError(f"{name}: the guide embedded {guide_embeddings[0].shape[0]} rows, the model "
                             f"{embeddings[0].shape[0]}.")
        options = (self.margin_strategy, self.margin, self.contrast_anchors, self.contrast_positives)
        return in_fp32(lambda *columns: gist_similarities(columns[:len(embeddings)], columns[len(embeddings):],
                                                          *options), *embeddings, *guide_embeddings)

    @torch.no_grad()
    def explain(self, embeddings: Sequence[Tensor], guide_embeddings: Sequence[Tensor]) -> GISTExplanation:
        """Every intermediate quantity of the loss on these embeddings: each block's cosines (model and guide),
        which candidates the guide suppressed, the softmax rows, per-anchor cross-entropy and their mean (equal
        to `compute_loss_from_embeddings`)."""
        similarity, guide_similarity, suppressed, threshold = self._similarities(embeddings, guide_embeddings)
        logits = {block: values / self.temperature for block, values in similarity.items()}
        rows, columns = _names(embeddings[0].shape[0], list(logits))
        explanation = explain_logits(logits, 1.0 / self.temperature, "joint", columns, rows, similarity=similarity,
                                     positive_block="anchor_positive")
        return GISTExplanation(**vars(explanation), guide_similarity=guide_similarity, suppressed=suppressed,
                               threshold=threshold.squeeze(1))

    def _gist_config(self) -> dict:
        return {"guide": getattr(self.guide, "name_or_path", type(self.guide).__name__),
                "temperature": self.temperature, "margin_strategy": self.margin_strategy, "margin": self.margin,
                "contrast_anchors": self.contrast_anchors, "contrast_positives": self.contrast_positives}


def _names(batch_size: int, blocks: list[str]):
    letters = {"anchor": "a", "positive": "p"}
    rows, columns = {}, {}
    for block in blocks:
        left, right = block.split("_", 1)
        rows[block] = [f"{letters[left]}{j}" for j in range(batch_size)]
        prefix = f"n{right.rsplit('_', 1)[1]}_" if right.startswith("negative") else letters[right]
        columns[block] = [f"{prefix}{j}" for j in range(batch_size)]
    return rows, columns


def _must_retokenize(model: nn.Module, guide: nn.Module) -> bool:
    """As sentence-transformers decides: the guide cannot read the model's tokens if its vocabulary differs or
    it truncates sooner. Models without a tokenizer (stand-ins) are taken to read the same features."""
    model_tokenizer, guide_tokenizer = getattr(model, "tokenizer", None), getattr(guide, "tokenizer", None)
    if model_tokenizer is None or guide_tokenizer is None:
        return False
    shorter = getattr(guide, "max_seq_length", math.inf) < getattr(model, "max_seq_length", 0)
    return shorter or (model_tokenizer is not guide_tokenizer and model_tokenizer.get_vocab() != guide_tokenizer.get_vocab())


def _embed_in_chunks(model: nn.Module, features: dict, mini_batch_size: int | None) -> Tensor:
    rows = next(value.shape[0] for value in features.values() if isinstance(value, Tensor))
    step = mini_batch_size or rows
    chunks = [{key: value[begin:begin + step] if isinstance(value, Tensor) else value for key, value in features.items()}
              for begin in range(0, rows, step)]
    return torch.cat([model(chunk) for chunk in chunks])


class GISTEmbedLoss(_GISTLoss, nn.Module):
    r"""In-batch negatives (MNRL) without the false negatives: a guide model decides which candidates to drop.

    Definitions, for anchors a_i, positives p_i and optional hard negatives n_i (i = 1..B); ``s`` is the
    trained model's cosine, ``g`` the guide's::

        threshold_i = g(a_i, p_i) - margin                 (margin_strategy="absolute")
                    = g(a_i, p_i) - |g(a_i, p_i)| * margin    (margin_strategy="relative")
        candidates of anchor i: p_j (all j), a_j (j != i), p_i vs p_j (j != i), n_j (all j)
        a candidate x with g(anchor-side, x) > threshold_i is a likely false negative: its logit is -inf
        loss = mean_i  -log softmax(all of row i's kept s / temperature)[p_i]

    The anchor-anchor and positive-positive blocks (``contrast_anchors``, ``contrast_positives``) add the
    other anchors and the other positives as negatives, as in GTE's improved contrastive loss. The positive
    p_i itself is never dropped. With a guide that suppresses nothing and both contrasts off, this is
    `MultipleNegativesRankingLoss` with ``scale = 1 / temperature``.

    It runs two models: the one being trained (with gradients) and the guide (without), on the same
    tokenized columns; when the guide's tokenizer differs (or truncates sooner) the texts are decoded with
    the model's tokenizer and re-tokenized with ``guide.tokenize``.

    Inputs:
        ``loss(features)`` with ``features = [anchor_features, positive_features, *negative_features]``, each
        ``model.tokenize(texts)``. ``compute_loss_from_embeddings(embeddings, guide_embeddings)`` takes the
        (B, D) embeddings directly. A ``labels`` argument is accepted and ignored.

    Args:
        model: the `labkit.model.EmbeddingModel` being trained.
        guide: a fixed model that embeds the same texts (``guide(features) -> (B, D')``, any D'), e.g. a larger
            pretrained embedding model; put it in eval mode.
        temperature: divides the cosines (= 1 / scale); default 0.01, as in sentence-transformers.
        margin_strategy: ``"absolute"`` (default) or ``"relative"`` (the margin is a fraction of g(a_i, p_i)).
        margin: how far below the positive's guide similarity a candidate may be and still be suppressed:
            0 (default) drops only candidates the guide ranks above the positive; larger drops more.
        contrast_anchors, contrast_positives: add the anchor-anchor / positive-positive blocks (default True).

    Requirements:
        (anchor, positive) pairs or (anchor, positive, negative...) rows; a guide that is good at the task
        (its judgement decides what is a negative).

    Recommendations:
        Batches sampled without duplicates; a guide at least as strong as the model you start from. The
        guide's forward pass costs time on every batch. For batches beyond memory, `CachedGISTEmbedLoss`.

    References:
        Solatorio, "GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding
        Fine-tuning", 2024; Li et al., "Towards General Text Embeddings with Multi-stage Contrastive
        Learning" (GTE), 2023; sentence-transformers' GISTEmbedLoss.

    Example:
        >>> from labkit.model import tiny_model
        >>> from labkit.losses.gist import GISTEmbedLoss
        >>> model, guide = tiny_model(seed=0), tiny_model(seed=1)
        >>> loss_fn = GISTEmbedLoss(model, guide)
        >>> loss = loss_fn([model.tokenize(["a cat", "a dog"]), model.tokenize(["a kitten", "a puppy"])])
        >>> loss.backward()   # into the model only: the guide runs without gradients

    A worked example to check by hand (temperature 1, no contrast blocks): model embeddings a0 = p0 = (1, 0),
    a1 = (0, 1), p1 = (0.6, 0.8). With the model as its own guide nothing is suppressed: row 0 is
    ln(e^1 + e^0.6) - 1 = 0.5130, row 1 is ln(e^0 + e^0.8) - 0.8 = 0.3711, the loss their mean 0.4421. A guide
    that finds p1 closer to a0 (0.8) than p0 (0.6) suppresses p1 for anchor 0, whose row becomes -ln 1 = 0:

        >>> import torch
        >>> a, p = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.6, 0.8]])
        >>> loss_fn = GISTEmbedLoss(model, guide, temperature=1.0, contrast_anchors=False, contrast_positives=False)
        >>> round(loss_fn.compute_loss_from_embeddings([a, p], [a, p]).item(), 4)
        0.4421
        >>> guide_a, guide_p = torch.tensor([[1.0, 0.0], [0.6, -0.8]]), torch.tensor([[0.6, 0.8], [0.8, 0.6]])
        >>> explanation = loss_fn.explain([a, p], [guide_a, guide_p])
        >>> explanation.suppressed["anchor_positive"].tolist(), round(explanation.loss.item(), 4)
        ([[False, True], [False, False]], 0.1856)
    """

    runs_the_model = True  # labkit.train.compute_loss hands it the tokenized batch instead of embeddings

    def __init__(
        self,
        model: nn.Module,
        guide: nn.Module,
        temperature: float = 0.01,
        margin_strategy: str = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
    ) -> None:
        nn.Module.__init__(self)
        if not isinstance(model, nn.Module):
            raise TypeError(f"GISTEmbedLoss needs the model it trains (it runs it), got {type(model).__name__}.")
        self.model = model
        self._set_options(guide, temperature, margin_strategy, margin, contrast_anchors, contrast_positives)

    def forward(self, features: Sequence[dict], labels: Tensor | None = None) -> Tensor:
        features = list(features)
        embeddings = [self.model(column) for column in features]
        return self.compute_loss_from_embeddings(embeddings, self.guide_embeddings(features))

    def get_config_dict(self) -> dict:
        return self._gist_config()


class CachedGISTEmbedLoss(_GISTLoss, GradCache):
    r"""`GISTEmbedLoss` with GradCache: the same loss and gradients, for batches larger than memory.

    Definitions: exactly `GISTEmbedLoss` over the whole batch (the guide suppresses likely false negatives;
    see there), computed as `CachedMultipleNegativesRankingLoss` computes MNRL: the model embeds every
    mini-batch without a graph, the guide embeds them too (never with gradients), the loss's gradient with
    respect to the embeddings is cached, and ``loss.backward()`` re-embeds each mini-batch with a graph.

    It runs two models (the model twice, the guide once) and takes both explicitly.

    Inputs:
        ``loss(features)``: tokenized columns ``[anchor, positive, *negatives]``; call ``.backward()`` once.

    Args:
        model, guide, temperature, margin_strategy, margin, contrast_anchors, contrast_positives: as in
            `GISTEmbedLoss`.
        mini_batch_size: rows embedded at once (model and guide), bounds the memory; default 32.
        show_progress_bar: show tqdm bars over the mini-batches.

    Requirements:
        As `GISTEmbedLoss`; a model whose forward pass is deterministic given the random state (dropout is
        replayed).

    Recommendations:
        Use it when the batch you want does not fit; otherwise `GISTEmbedLoss` is faster (one model pass).

    References:
        Solatorio 2024 (GISTEmbed); Gao et al. 2021 (GradCache); sentence-transformers' CachedGISTEmbedLoss.

    Example:
        >>> from labkit.model import tiny_model
        >>> from labkit.losses.gist import CachedGISTEmbedLoss
        >>> model, guide = tiny_model(seed=0), tiny_model(seed=1)
        >>> loss_fn = CachedGISTEmbedLoss(model, guide, mini_batch_size=2)
        >>> loss = loss_fn([model.tokenize(["a cat", "a dog", "rain"]), model.tokenize(["a kitten", "a puppy", "a storm"])])
        >>> loss.backward()
    """

    def __init__(
        self,
        model: nn.Module,
        guide: nn.Module,
        temperature: float = 0.01,
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
        margin_strategy: str = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
    ) -> None:
        GradCache.__init__(self, model, mini_batch_size, show_progress_bar)
        self._set_options(guide, temperature, margin_strategy, margin, contrast_anchors, contrast_positives)

    def loss_from_embeddings(self, embeddings: list[Tensor], features: list[dict]) -> Tensor:
        return self.compute_loss_from_embeddings(embeddings, self.guide_embeddings(features, self.mini_batch_size))

    def get_config_dict(self) -> dict:
        return {**self._gist_config(), "mini_batch_size": self.mini_batch_size}
