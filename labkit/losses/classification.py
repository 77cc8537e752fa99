"""Classification fine-tuning as a loss on embeddings: a linear head on each sentence embedding + cross-entropy.

The baseline the original hard-triplet article ends on ("batch hard is not always best; classification
fine-tuning may win"): instead of asking distances to order themselves, train the encoder to make its
embedding *linearly separable* by class, and throw the head away afterwards.

Taught in notebooks/12_reproducing_the_article.ipynb.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from labkit.losses.regression import classifier_input_size
from labkit.validation import check_embedding_columns, check_pair_labels

__all__ = ["ClassificationLoss"]


class ClassificationLoss(nn.Module):
    r"""Classify each text from its own embedding with a trainable linear head; cross-entropy over the classes.

    Definition, for a batch of embeddings :math:`e_i` with class labels :math:`y_i \in \{0, \dots, C-1\}`::

        logits_i = W e_i + b                          # the head: nn.Linear(embedding_dimension, num_labels)
        loss     = mean_i  -log softmax(logits_i)[y_i]  # loss_fct, default nn.CrossEntropyLoss()

    .. math::

        \mathcal{L} = -\frac{1}{B} \sum_{i=1}^{B} \log \frac{\exp(w_{y_i}^\top e_i + b_{y_i})}
        {\sum_{c=1}^{C} \exp(w_c^\top e_i + b_c)}

    This is **not** a sentence-transformers loss (sentence-transformers has no single-text classification
    loss; its ``SoftmaxLoss`` classifies *pairs*). It follows the same conventions: it takes embeddings,
    the head belongs to the loss (``loss.parameters()``, which ``labkit.train.fit`` optimises, with its
    own learning rate ``loss_lr=``), and only the encoder is kept after training.

    Why it can make good embeddings: to separate C classes with one linear layer, the encoder must put each
    class in its own region, roughly around the direction :math:`w_c`. Unlike a triplet loss it does not
    mine: every example pulls towards its class direction and away from *all* the others in every step, so
    no batch composition is needed (ordinary shuffled batches work) and noisy "hardest" pairs get no
    special weight. It needs a fixed, closed set of classes known at training time, and it optimises
    separability, not distances directly (a class can be spread out along its direction).

    Inputs:
        ``loss(embeddings, labels)``: a (B, embedding_dimension) tensor and B integer class labels in
        ``0 .. num_labels - 1``. With ``labels=None`` it returns the (B, num_labels) logits.

    Args:
        embedding_dimension: size of each embedding (``model.embedding_dim``); ``embedding_dim=`` is
            accepted as an alias.
        num_labels: number of classes C.
        bias: whether the head has a bias (default True, as ``nn.Linear``).
        loss_fct: default ``nn.CrossEntropyLoss()`` (mean over the batch); e.g.
            ``nn.CrossEntropyLoss(label_smoothing=0.1)`` to soften the targets.

    When to use:
        Labelled data with a fixed set of classes (intents, topics, chapters) when the embedding will be
        used for retrieval or clustering within those classes. Give the freshly initialised head a larger
        learning rate than the pre-trained encoder (e.g. ``fit(..., lr=5e-5, loss_lr=1e-3)``), or its
        random initial gradients steer the encoder for the first steps.

    References:
        Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019;
        Musgrave, Belongie & Lim, "A Metric Learning Reality Check", ECCV 2020.

    Example:
        >>> import torch
        >>> from labkit.losses.classification import ClassificationLoss
        >>> loss_fn = ClassificationLoss(embedding_dimension=8, num_labels=3)
        >>> embeddings = torch.randn(4, 8)
        >>> loss_fn(embeddings, torch.tensor([0, 2, 1, 0])).dim()
        0
        >>> loss_fn(embeddings).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        embedding_dimension: int | None = None,
        num_labels: int | None = None,
        bias: bool = True,
        loss_fct: Callable = nn.CrossEntropyLoss(),
        *,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        embedding_dimension = classifier_input_size("ClassificationLoss", embedding_dimension, embedding_dim, num_labels,
                                                    "num_labels (the number of classes)", example_labels=70)
        for name, value in (("embedding_dimension", embedding_dimension), ("num_labels", num_labels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        self.embedding_dimension = int(embedding_dimension)
        self.num_labels = int(num_labels)
        self.classifier = nn.Linear(self.embedding_dimension, self.num_labels, bias=bias)
        self.loss_fct = loss_fct

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        name = type(self).__name__
        check_embedding_columns(name, embeddings, names=("embeddings",))
        if embeddings.shape[1] != self.embedding_dimension:
            raise ValueError(
                f"{name} was built for embedding_dimension={self.embedding_dimension} but got embeddings of size "
                f"{embeddings.shape[1]}: create it with ClassificationLoss(embedding_dimension="
                f"{embeddings.shape[1]}, num_labels={self.num_labels}) (model.embedding_dim gives the size)."
            )
        logits = self.classifier(embeddings.to(self.classifier.weight.dtype))
        if labels is None:
            return logits
        labels = check_pair_labels(name, labels, embeddings.shape[0], logits.device)
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(
                f"{name} expects integer class labels (0..{self.num_labels - 1}), got dtype {labels.dtype}; "
                "map class names to codes first (e.g. pandas' factorize)."
            )
        if bool(((labels < 0) | (labels >= self.num_labels)).any()):
            raise ValueError(
                f"{name} was built for num_labels={self.num_labels}, so labels must be in 0..{self.num_labels - 1}; "
                f"got {sorted(labels.unique().tolist())[:10]}. Build it with num_labels = the number of classes."
            )
        return self.loss_fct(logits, labels.long())

    @torch.no_grad()
    def predict(self, embeddings: Tensor) -> Tensor:
        """The head's predicted class for each embedding (argmax of the logits)."""
        return self(embeddings).argmax(dim=1)

    def get_config_dict(self) -> dict:
        return {"embedding_dimension": self.embedding_dimension, "num_labels": self.num_labels}
