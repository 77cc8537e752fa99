"""Losses for pairs with a graded similarity score (STS-style data) or a class label (NLI-style data).

* `CosineSimilarityLoss`: regress cos(u, v) onto the gold score (Reimers & Gurevych 2019).
* `CoSENTLoss`: only the *order* of the scores matters: every pair with a higher gold score should get a
  higher cosine than every pair with a lower one (Su 2022).
* `AnglELoss`: CoSENT with AnglE's angle similarity, which keeps a gradient where cosine saturates
  (Li & Li 2023).
* `SoftmaxLoss`: classify the pair (entailment / neutral / contradiction) from (u, v, |u - v|) with a
  trainable linear layer, as SBERT was first trained on NLI (Reimers & Gurevych 2019).

Same names, parameters, defaults and reductions as sentence-transformers 6.2, on embedding tensors.

Taught in notebooks/06_similarity_losses.ipynb.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from labkit.distances import in_fp32
from labkit.losses.pairs import LossExplanation, as_float_list
from labkit.distances import pairwise_angle_sim, pairwise_cos_sim
from labkit.validation import check_embedding_columns, check_pair_labels

__all__ = ["CosineSimilarityLoss", "CoSENTLoss", "AnglELoss", "SoftmaxLoss"]


def _check_scored_pairs(loss_name: str, emb_a: Tensor, emb_b: Tensor, labels) -> Tensor:
    check_embedding_columns(loss_name, emb_a, emb_b, names=("emb_a", "emb_b"))
    return check_pair_labels(loss_name, labels, emb_a.shape[0], emb_a.device)


def _per_item_loss(loss_name: str, loss_fct, predicted: Tensor, target: Tensor) -> tuple[Tensor, Tensor, str]:
    """`loss_fct` item by item: (per-item terms, their reduction, the reduction's name).

    Works for the torch losses with a `reduction` of "mean" or "sum" and no class weights (MSELoss,
    L1Loss, CrossEntropyLoss, ...): a copy with reduction="none" gives one term per item.
    """
    reduction = getattr(loss_fct, "reduction", None)
    if reduction not in ("mean", "sum") or getattr(loss_fct, "weight", None) is not None:
        raise TypeError(
            f"{loss_name}.explain needs a loss_fct such as nn.MSELoss() or nn.CrossEntropyLoss(): a torch loss "
            f"with reduction 'mean' or 'sum' and no class weights; got {loss_fct!r}."
        )
    per_item_fct = copy.copy(loss_fct)
    per_item_fct.reduction = "none"
    terms = per_item_fct(predicted, target)
    return terms, (terms.mean() if reduction == "mean" else terms.sum()), reduction


class CosineSimilarityLoss(nn.Module):
    r"""Regress the cosine similarity of each pair onto its gold similarity score.

    Definition, for pairs :math:`(u_i, v_i)` with gold score :math:`s_i`::

        loss = loss_fct( cos_score_transformation(cos(u_i, v_i)),  s_i )      # default: mean_i (cos_i - s_i)**2

    Inputs:
        ``loss(emb_a, emb_b, labels)``: two (B, D) embedding tensors and B float scores, usually scaled to
        [0, 1] (e.g. STS-B's 0-5 divided by 5).

    Args:
        loss_fct: compares predicted and gold scores; default ``nn.MSELoss()`` (mean squared error).
        cos_score_transformation: applied to the cosine first; default ``nn.Identity()``.

    When to use:
        (text, text, score) data such as STS-B. Simple and well understood, but it asks for exact
        cosine values; `CoSENTLoss` only asks for the right order and usually trains better.

    References:
        Reimers & Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks", EMNLP 2019.

    Example:
        >>> import torch
        >>> from labkit.losses.regression import CosineSimilarityLoss
        >>> u, v = torch.randn(3, 8), torch.randn(3, 8)
        >>> CosineSimilarityLoss()(u, v, torch.tensor([1.0, 0.3, 0.0])).dim()
        0

    Taught in notebooks/06_similarity_losses.ipynb.
    """

    def __init__(self, loss_fct: nn.Module = nn.MSELoss(), cos_score_transformation: nn.Module = nn.Identity()) -> None:
        super().__init__()
        self.loss_fct = loss_fct
        self.cos_score_transformation = cos_score_transformation

    def forward(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> Tensor:
        labels = _check_scored_pairs(type(self).__name__, emb_a, emb_b, labels)
        # fp32 under autocast: fp16 overflows, bf16 rounds
        predicted = self.cos_score_transformation(in_fp32(torch.cosine_similarity, emb_a, emb_b))
        return self.loss_fct(predicted, labels.to(predicted.dtype))

    @torch.no_grad()
    def explain(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> LossExplanation:
        """Every step of `forward` on this batch: each pair's cosine, gold score and squared error.

        `per_pair` columns: ``label`` (gold score), ``cosine``, ``prediction`` (only if
        `cos_score_transformation` is not the identity), ``loss_i`` (the pair's term of `loss_fct`: (cos − label)²
        by default). `loss` is their mean (or sum) and equals ``forward(emb_a, emb_b, labels)``.

        Taught in notebooks/06_similarity_losses.ipynb.
        """
        import pandas as pd

        name = type(self).__name__
        labels = _check_scored_pairs(name, emb_a, emb_b, labels)
        cosines = torch.cosine_similarity(emb_a, emb_b)
        predicted = self.cos_score_transformation(cosines)
        terms, loss, reduction = _per_item_loss(name, self.loss_fct, predicted, labels.to(predicted.dtype))
        columns = {"label": as_float_list(labels.double()), "cosine": as_float_list(cosines)}
        if not isinstance(self.cos_score_transformation, nn.Identity):
            columns["prediction"] = as_float_list(predicted)
        columns["loss_i"] = as_float_list(terms)
        per_pair = pd.DataFrame(columns)
        per_pair.index.name = "pair"
        return LossExplanation(per_pair, float(loss), f"{reduction} of loss_i over {len(terms)} pairs",
                               {"loss_fct": type(self.loss_fct).__name__})


class CoSENTLoss(nn.Module):
    r"""CoSENT (Su 2022): rank the pairs of a batch by similarity in the order of their gold scores.

    Definition, with :math:`s_i = scale \cdot sim(u_i, v_i)` and gold scores :math:`y_i`::

        loss = log( 1 + sum_{(i, j): y_i > y_j} exp(s_j - s_i) )

    Every pair of pairs where i should be more similar than j but is not (s_j > s_i) adds a large term;
    correctly ordered ones add little. Ties in the gold scores add nothing. Only the order of the scores
    matters, so their range is free (STS's 0-5 works as well as 0-1).

    Inputs:
        ``loss(emb_a, emb_b, labels)``: two (B, D) embedding tensors and B float scores.

    Args:
        scale: multiplies the similarities (inverse temperature). 20 is the value of the paper and of
            sentence-transformers: cosine differences of ~0.1 then become logit gaps of ~2.
        similarity_fct: row-wise similarity; default `pairwise_cos_sim`.

    When to use:
        (text, text, score) data such as STS-B; a drop-in replacement for `CosineSimilarityLoss` that
        usually converges faster and further. Needs batches with several distinct scores.

    References:
        Su Jianlin, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT", 2022
        (https://kexue.fm/archives/8847); Huang et al., "CoSENT: Consistent Sentence Embedding via
        Similarity Ranking", IEEE/ACM TASLP 2024.

    Example:
        >>> import torch
        >>> from labkit.losses.regression import CoSENTLoss
        >>> u, v = torch.randn(4, 8), torch.randn(4, 8)
        >>> CoSENTLoss()(u, v, torch.tensor([5.0, 3.2, 1.0, 0.0])).dim()
        0

    Taught in notebooks/06_similarity_losses.ipynb.
    """

    def __init__(
        self, scale: float = 20.0, similarity_fct: Callable[[Tensor, Tensor], Tensor] = pairwise_cos_sim
    ) -> None:
        super().__init__()
        self.scale = scale
        self.similarity_fct = similarity_fct

    def forward(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> Tensor:
        labels = _check_scored_pairs(type(self).__name__, emb_a, emb_b, labels)
        if labels.dtype == torch.bool:
            labels = labels.int()
        scores = in_fp32(self.similarity_fct, emb_a, emb_b)  # fp32 under autocast: fp16 overflows, bf16 rounds
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()  # exp of scaled scores needs more than half precision
        scores = scores * self.scale

        # The sum runs over all (i, j) with label_i > label_j: a B×B matrix of gaps s_j - s_i (see `explain`).
        # Sorting by label turns it into O(B log B): for each pair j, the terms with a higher-labelled i add up to
        # exp(s_j) · Σ_{i above j} exp(-s_i), and that inner sum is a running (suffix) logsumexp over the sorted
        # pairs. searchsorted(..., right=True) skips pairs with an equal label: ties are not ranked.
        labels, order = labels.sort()
        scores = scores[order]
        first_higher = torch.searchsorted(labels, labels, right=True)
        suffix = torch.logcumsumexp(-scores.flip(0), dim=0).flip(0)
        suffix = torch.cat([suffix, scores.new_full((1,), float("-inf"))])  # "nothing above the top label"
        per_pair = scores + suffix[first_higher]  # log Σ_{i above j} exp(s_j - s_i)
        # The leading 0 is the "1 +" inside the log (exp(0) = 1).
        return torch.logsumexp(torch.cat([scores.new_zeros(1), per_pair]), dim=0)

    @torch.no_grad()
    def explain(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor) -> LossExplanation:
        """Every step of `forward` on this batch: scores, the pairs of pairs that enter the sum, and their weights.

        `per_pair` columns: ``label`` (gold score), ``similarity`` (cosine for CoSENT, angle similarity for
        AnglE), ``score`` s = scale · similarity.

        `details["pairs_of_pairs"]`: one row per ordered pair of pairs (i, j) with label_i > label_j (pair i
        should be more similar than pair j): ``score_i``, ``score_j``, ``gap`` = s_j − s_i (positive when the
        order is wrong), ``exp_gap``, and ``weight`` = exp(gap) / (1 + Σ exp(gap)), the share of the gradient
        this term gets (∂loss/∂gap). `details["score_gaps"]` is the full (B, B) matrix s_j − s_i and
        `details["enters"]` the (B, B) mask of the terms in the sum.

        `loss` = log(1 + Σ exp(gap)) equals ``forward(emb_a, emb_b, labels)``.

        Taught in notebooks/06_similarity_losses.ipynb.
        """
        import pandas as pd

        labels = _check_scored_pairs(type(self).__name__, emb_a, emb_b, labels)
        if labels.dtype == torch.bool:
            labels = labels.int()
        similarities = self.similarity_fct(emb_a, emb_b)
        if similarities.dtype in (torch.float16, torch.bfloat16):
            similarities = similarities.float()
        scores = similarities * self.scale
        score_gaps = scores[None, :] - scores[:, None]
        enters = labels[:, None] > labels[None, :]
        rows, columns = enters.nonzero(as_tuple=True)  # row-major: i ascending, then j
        gaps = score_gaps[rows, columns]
        loss = torch.logsumexp(torch.cat([scores.new_zeros(1), gaps]), dim=0)
        label_values = labels.double()
        pairs_of_pairs = pd.DataFrame({
            "i": rows.tolist(), "j": columns.tolist(),
            "label_i": as_float_list(label_values[rows]), "label_j": as_float_list(label_values[columns]),
            "score_i": as_float_list(scores[rows]), "score_j": as_float_list(scores[columns]),
            "gap": as_float_list(gaps), "exp_gap": as_float_list(gaps.exp()), "weight": as_float_list((gaps - loss).exp()),
        })
        per_pair = pd.DataFrame({"label": as_float_list(label_values), "similarity": as_float_list(similarities),
                                 "score": as_float_list(scores)})
        per_pair.index.name = "pair"
        details = {"scale": self.scale, "pairs_of_pairs": pairs_of_pairs, "score_gaps": score_gaps, "enters": enters,
                   "similarity_fct": getattr(self.similarity_fct, "__name__", repr(self.similarity_fct))}
        reduction = f"log(1 + sum of exp(gap) over the {len(gaps)} pairs of pairs with label_i > label_j)"
        return LossExplanation(per_pair, float(loss), reduction, details)

    def get_config_dict(self) -> dict:
        similarity_name = getattr(self.similarity_fct, "__name__", repr(self.similarity_fct))
        return {"scale": self.scale, "similarity_fct": similarity_name}


class AnglELoss(CoSENTLoss):
    r"""AnglE (Li & Li 2023): CoSENT with an angle similarity that does not saturate like cosine.

    Definition: `CoSENTLoss` with ``similarity_fct = pairwise_angle_sim``::

        loss = log( 1 + sum_{(i, j): y_i > y_j} exp(scale * (a_j - a_i)) ),   a_i = |cos(u_i, v_i) + sin(u_i, v_i)|

    where the "sine" pairs dimension k with dimension k + D/2 (the embedding read as D/2 complex numbers;
    see `labkit.distances.pairwise_angle_sim`). Near cos = +-1 the cosine's gradient vanishes; the angle
    term keeps one, which helps on pairs that are already very similar or very different.

    Inputs:
        ``loss(emb_a, emb_b, labels)``: two (B, D) embedding tensors and B float scores.

    Args:
        scale: inverse temperature, 20 as in the paper and sentence-transformers.

    When to use:
        Same (text, text, score) data as CoSENT; the paper combines it with an in-batch negatives loss
        (MultipleNegativesRankingLoss). sentence-transformers also accepts (anchor, positive, negatives)
        tuples here; labkit keeps to pairs.

    References:
        Li & Li, "AnglE-optimized Text Embeddings", 2023 (arXiv:2309.12871; ACL 2024 as
        "AoE: Angle-optimized Embeddings for Semantic Textual Similarity").

    Example:
        >>> import torch
        >>> from labkit.losses.regression import AnglELoss
        >>> u, v = torch.randn(4, 8), torch.randn(4, 8)
        >>> AnglELoss()(u, v, torch.tensor([1.0, 0.8, 0.2, 0.0])).dim()
        0

    Taught in notebooks/06_similarity_losses.ipynb.
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__(scale=scale, similarity_fct=pairwise_angle_sim)


def classifier_input_size(loss_name: str, embedding_dimension, embedding_dim, num_labels, labels_hint: str,
                          example_labels: int):
    """``embedding_dimension`` or its alias ``embedding_dim`` (a loss with a classifier head needs one of them, and
    ``num_labels``): the argument handling SoftmaxLoss and ClassificationLoss share."""
    if embedding_dimension is not None and embedding_dim is not None and embedding_dimension != embedding_dim:
        raise ValueError("Pass embedding_dimension or its alias embedding_dim, not two different values.")
    embedding_dimension = embedding_dimension if embedding_dimension is not None else embedding_dim
    if embedding_dimension is None or num_labels is None:
        raise TypeError(
            f"{loss_name} needs embedding_dimension (e.g. model.embedding_dim) and {labels_hint}, "
            f"e.g. {loss_name}(embedding_dimension=384, num_labels={example_labels})."
        )
    return embedding_dimension


class SoftmaxLoss(nn.Module):
    r"""Classify each pair from its two embeddings with a trainable linear layer (SBERT's NLI objective).

    Definition, for pair embeddings u, v (default features)::

        features = concat(u, v, |u - v|)              # (B, 3 * embedding_dimension)
        logits   = classifier(features)               # nn.Linear -> (B, num_labels)
        loss     = loss_fct(logits, labels)           # default: cross-entropy, averaged over the batch

    The classifier belongs to the loss: it is an ``nn.Linear`` in ``loss.parameters()``, so give the
    optimizer both ``model.parameters()`` and ``loss.parameters()``. It is thrown away after training; only
    the encoder is kept.

    Inputs:
        ``loss(emb_a, emb_b, labels)``: two (B, embedding_dimension) tensors and B integer class labels
        (or (B, num_labels) class probabilities). With ``labels=None`` it returns the logits.

    Args:
        embedding_dimension: size of each embedding (``model.embedding_dim``). ``embedding_dim=`` is
            accepted as an alias.
        num_labels: number of classes (3 for NLI).
        concatenation_sent_rep: include u and v (default True).
        concatenation_sent_difference: include |u - v| (default True; the SBERT paper found it the most
            important feature).
        concatenation_sent_multiplication: include u * v (default False).
        loss_fct: default ``nn.CrossEntropyLoss()``.

    When to use:
        (premise, hypothesis, class) data such as SNLI/MultiNLI. Historically important (SBERT 2019);
        `MultipleNegativesRankingLoss` on (anchor, entailment) pairs usually gives better embeddings.

    References:
        Reimers & Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks", EMNLP 2019.

    Example:
        >>> import torch
        >>> from labkit.losses.regression import SoftmaxLoss
        >>> loss_fn = SoftmaxLoss(embedding_dimension=8, num_labels=3)
        >>> u, v = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss_fn(u, v, torch.tensor([0, 2, 1, 0])).dim()
        0

    Taught in notebooks/06_similarity_losses.ipynb.
    """

    def __init__(
        self,
        embedding_dimension: int | None = None,
        num_labels: int | None = None,
        concatenation_sent_rep: bool = True,
        concatenation_sent_difference: bool = True,
        concatenation_sent_multiplication: bool = False,
        loss_fct: Callable = nn.CrossEntropyLoss(),
        *,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        embedding_dimension = classifier_input_size("SoftmaxLoss", embedding_dimension, embedding_dim, num_labels,
                                                    "num_labels", example_labels=3)
        if int(embedding_dimension) < 1 or int(num_labels) < 1:
            raise ValueError("embedding_dimension and num_labels must be positive integers.")
        num_vectors = 2 * concatenation_sent_rep + concatenation_sent_difference + concatenation_sent_multiplication
        if num_vectors == 0:
            raise ValueError(
                "At least one of concatenation_sent_rep, concatenation_sent_difference, "
                "or concatenation_sent_multiplication must be True."
            )
        self.embedding_dimension = int(embedding_dimension)
        self.num_labels = int(num_labels)
        self.concatenation_sent_rep = concatenation_sent_rep
        self.concatenation_sent_difference = concatenation_sent_difference
        self.concatenation_sent_multiplication = concatenation_sent_multiplication
        self.classifier = nn.Linear(num_vectors * self.embedding_dimension, self.num_labels)
        self.loss_fct = loss_fct

    def pair_features(self, emb_a: Tensor, emb_b: Tensor) -> Tensor:
        """The classifier's input: the chosen concatenation of u, v, |u - v| and u * v."""
        parts = []
        if self.concatenation_sent_rep:
            parts += [emb_a, emb_b]
        if self.concatenation_sent_difference:
            parts.append(torch.abs(emb_a - emb_b))
        if self.concatenation_sent_multiplication:
            parts.append(emb_a * emb_b)
        return torch.cat(parts, dim=1)

    def forward(self, emb_a: Tensor, emb_b: Tensor, labels: Tensor | None = None) -> Tensor:
        name = type(self).__name__
        check_embedding_columns(name, emb_a, emb_b, names=("emb_a", "emb_b"))
        if emb_a.shape[1] != self.embedding_dimension:
            raise ValueError(
                f"{name} was built for embedding_dimension={self.embedding_dimension} but got embeddings of size "
                f"{emb_a.shape[1]}: create it with SoftmaxLoss(embedding_dimension={emb_a.shape[1]}, "
                f"num_labels={self.num_labels}) (model.embedding_dim gives the size)."
            )
        logits = self.classifier(self.pair_features(emb_a, emb_b).to(self.classifier.weight.dtype))
        if labels is None:
            return logits
        if not isinstance(labels, Tensor) or labels.device != logits.device:
            labels = torch.as_tensor(labels, device=logits.device)
        if self.num_labels == 1 or labels.shape != logits.shape:  # class indices, not class probabilities
            labels = check_pair_labels(name, labels, emb_a.shape[0], logits.device)
            if not labels.is_floating_point() and self.num_labels > 1:
                self._check_class_indices(labels)
        return self.loss_fct(logits, labels)

    def feature_names(self) -> list[str]:
        """Names of the classifier's inputs, in order: u[0], ..., v[0], ..., |u-v|[0], ..., u*v[0], ..."""
        parts = (["u", "v"] if self.concatenation_sent_rep else []) + (
            ["|u-v|"] if self.concatenation_sent_difference else []) + (
            ["u*v"] if self.concatenation_sent_multiplication else [])
        return [f"{part}[{k}]" for part in parts for k in range(self.embedding_dimension)]

    @torch.no_grad()
    def explain(
        self, emb_a: Tensor, emb_b: Tensor, labels: Tensor, label_names: Sequence[str] | None = None
    ) -> LossExplanation:
        """Every step of `forward` on this batch: features, logits, class probabilities and each pair's term.

        `per_pair` columns: ``label``, ``logit[c]`` and ``prob[c]`` for every class c (named by `label_names`
        if given), ``loss_i`` (−log prob[label] with the default cross-entropy). `details["features"]` is the
        classifier's input as a DataFrame (columns u[k], v[k], |u-v|[k], ...). `loss` is the mean (or sum)
        of ``loss_i`` and equals ``forward(emb_a, emb_b, labels)``. Needs class-index labels.

        Taught in notebooks/06_similarity_losses.ipynb.
        """
        import pandas as pd

        name = type(self).__name__
        logits = self.forward(emb_a, emb_b)  # checks the embeddings
        labels = check_pair_labels(name, labels, emb_a.shape[0], logits.device)
        if labels.is_floating_point() and self.num_labels > 1:
            raise TypeError(
                f"{name}.explain needs integer class labels (0..{self.num_labels - 1}), got {labels.dtype}."
            )
        if self.num_labels > 1:
            self._check_class_indices(labels)
        class_names = list(label_names) if label_names is not None else [str(c) for c in range(self.num_labels)]
        if len(class_names) != self.num_labels:
            raise ValueError(f"label_names has {len(class_names)} names but the loss has num_labels={self.num_labels}.")
        terms, loss, reduction = _per_item_loss(name, self.loss_fct, logits, labels)
        probabilities = logits.softmax(dim=1)
        columns = {"label": labels.cpu().tolist()}
        columns.update({f"logit[{c}]": as_float_list(logits[:, k]) for k, c in enumerate(class_names)})
        columns.update({f"prob[{c}]": as_float_list(probabilities[:, k]) for k, c in enumerate(class_names)})
        columns["loss_i"] = as_float_list(terms)
        per_pair = pd.DataFrame(columns)
        per_pair.index.name = "pair"
        features = self.pair_features(emb_a, emb_b).to(self.classifier.weight.dtype)
        feature_table = pd.DataFrame(features.cpu().numpy(), columns=self.feature_names())
        feature_table.index.name = "pair"
        details = {"features": feature_table, "logits": logits, "probabilities": probabilities,
                   "label_names": class_names}
        return LossExplanation(per_pair, float(loss), f"{reduction} of loss_i over {len(terms)} pairs", details)

    def _check_class_indices(self, labels: Tensor) -> None:
        smallest, largest = torch.aminmax(labels)  # one small reduction: this runs on every batch
        if smallest.item() < 0 or largest.item() >= self.num_labels:
            raise ValueError(
                f"SoftmaxLoss was built for num_labels={self.num_labels}, so labels must be in "
                f"0..{self.num_labels - 1}; got {labels.unique().tolist()}."
            )

    def get_config_dict(self) -> dict:
        return {
            "num_labels": self.num_labels,
            "concatenation_sent_rep": self.concatenation_sent_rep,
            "concatenation_sent_difference": self.concatenation_sent_difference,
            "concatenation_sent_multiplication": self.concatenation_sent_multiplication,
        }
