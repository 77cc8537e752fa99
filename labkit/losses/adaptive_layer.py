"""Adaptive layers: train a model whose first few layers already give good embeddings, so users can cut it.

`AdaptiveLayerLoss` wraps a labkit loss: the loss on the last layer's embeddings, plus the same loss on the
embeddings pooled after a few earlier layers (drawn at random each step), plus a KL term pulling each earlier
layer's embedding towards the last one's. After training, keeping the first 3 of MiniLM's 6 layers halves the
encoding time at a smaller loss of quality than cutting an untrained model. `Matryoshka2dLoss` adds Matryoshka's
truncated dimensions on top (2D Matryoshka: fewer layers *and* fewer dimensions).

Same names, parameters, defaults and arithmetic as sentence-transformers 6 (``AdaptiveLayerLoss``,
``Matryoshka2dLoss``). Unlike labkit's other losses these run the model (they need every layer's output, which
`EmbeddingModel.layer_embeddings` gives in one pass), so they take the model and tokenized batches.

Tested against sentence-transformers in tests/test_adaptive_layer_loss.py.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.losses.matryoshka import MatryoshkaLoss

__all__ = ["AdaptiveLayerLoss", "Matryoshka2dLoss"]

LAYER_WEIGHTINGS = ("uniform", "log", "linear")


class AdaptiveLayerLoss(nn.Module):
    r"""A loss on the last layer's embeddings plus the same loss, and a KL pull, on earlier layers' embeddings.

    Definitions, with e^(l) the embeddings pooled after layer l (l = 0: before the first transformer layer,
    l = L: the model's output), S the earlier layers drawn this step and w(l) the layer weighting::

        loss = last_layer_weight * L(e^(L))
             + sum_{l in S} L(e^(l)) * w(l) / |S| * prior_layers_weight
             + sum_{l in S} KL(softmax(e^(L) / T) || softmax(e^(l) / T)) * T * kl_div_weight

    The KL term compares each embedding's numbers as a distribution (softmax over the dimensions, temperature
    T = ``kl_temperature``; the last layer's side is detached, so only earlier layers move towards it); it is left
    out when T = 0. Weightings: "uniform" w = 1, "log" w = 1 / (1 + ln(1 + l)), "linear" w = 1 / (1 + l), or a
    callable of l.

    Requirements:
        A labkit `EmbeddingModel` (its `layer_embeddings` gives every layer in one pass) and a loss that takes
        embeddings; not a cached (GradCache) loss, which back-propagates from a hook.

    Inputs:
        ``loss(features, labels=None)``: a tokenized batch (labelled data) or a list of them (one per column),
        as `labkit.train.compute_loss` passes to losses that run the model.

    Recommendations:
        ``n_layers_per_step=1`` (the default and the 2DMSE paper's choice) keeps a step only slightly more
        expensive than the plain loss: every layer comes out of the one forward pass anyway.

    References:
        Li et al., "2D Matryoshka Sentence Embeddings" (2DMSE), arXiv 2402.14776; Zhuang et al., "Starbucks"
        (uniform weighting), arXiv 2410.13230; sentence-transformers' ``AdaptiveLayerLoss``.

    Example:
        >>> from labkit.model import tiny_model
        >>> from labkit.losses import MultipleNegativesRankingLoss
        >>> from labkit.losses.adaptive_layer import AdaptiveLayerLoss
        >>> model = tiny_model(seed=0)
        >>> loss_fn = AdaptiveLayerLoss(model, MultipleNegativesRankingLoss())
        >>> loss = loss_fn([model.tokenize(["a cat", "the sun"]), model.tokenize(["a kitten", "sunshine"])])
        >>> loss.backward()
    """

    runs_the_model = True  # labkit.train.compute_loss hands it the tokenized batch instead of embeddings

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        n_layers_per_step: int = 1,
        last_layer_weight: float = 1.0,
        prior_layers_weight: float = 1.0,
        kl_div_weight: float = 1.0,
        kl_temperature: float = 0.3,
        layer_weighting: str | Callable[[int], float] = "uniform",
    ) -> None:
        super().__init__()
        if not hasattr(model, "layer_embeddings"):
            raise TypeError(f"{type(self).__name__} needs a labkit EmbeddingModel (it reads every layer's output), "
                            f"got {type(model).__name__}. Pass e.g. labkit.load_model().")
        if getattr(loss, "runs_the_model", False):
            raise TypeError(f"{type(self).__name__} cannot wrap {type(loss).__name__}: a cached loss back-propagates "
                            "from a hook. Wrap the plain loss (e.g. MultipleNegativesRankingLoss) instead.")
        if not callable(layer_weighting) and layer_weighting not in LAYER_WEIGHTINGS:
            raise ValueError(f"layer_weighting must be one of {LAYER_WEIGHTINGS} or a callable of the layer index, "
                             f"got {layer_weighting!r}.")
        self.model = model
        self.loss = loss
        self.n_layers_per_step = n_layers_per_step
        self.last_layer_weight = last_layer_weight
        self.prior_layers_weight = prior_layers_weight
        self.kl_div_weight = kl_div_weight
        self.kl_temperature = kl_temperature
        self.layer_weighting = layer_weighting

    def layer_weight(self, layer: int) -> float:
        """w(layer) of the chosen weighting (layer 0 = the embedding layer's output)."""
        if callable(self.layer_weighting):
            return self.layer_weighting(layer)
        if self.layer_weighting == "log":
            return 1.0 / (1.0 + math.log(1 + layer))
        if self.layer_weighting == "linear":
            return 1.0 / (1 + layer)
        return 1.0

    def _earlier_layers(self, num_layers: int) -> Sequence[int]:
        """The layers below the last one used this step (Python's `random`, as sentence-transformers)."""
        layers = range(num_layers - 1)
        if 0 < self.n_layers_per_step < num_layers - 1:
            layers = random.sample(layers, self.n_layers_per_step)
        return layers

    def _loss_on(self, columns: list[Tensor], labels: Tensor | None) -> Tensor:
        return self.loss(*columns, labels) if labels is not None else self.loss(*columns)

    def _kl_to_last(self, layer_columns: list[Tensor], last_distribution: Tensor) -> Tensor:
        log_probabilities = F.log_softmax(torch.cat(layer_columns) / self.kl_temperature, dim=-1)
        return F.kl_div(log_probabilities, last_distribution, reduction="batchmean") * self.kl_temperature

    def forward(self, features, labels: Tensor | None = None) -> Tensor:
        columns = [features] if isinstance(features, dict) else list(features)
        per_column = [self.model.layer_embeddings(column) for column in columns]  # column → layer → (B, D)
        by_layer = [list(layer) for layer in zip(*per_column)]  # layer → column → (B, D)
        loss = self._loss_on(by_layer[-1], labels) * self.last_layer_weight
        if self.kl_temperature > 0:
            last_distribution = F.softmax(torch.cat(by_layer[-1]) / self.kl_temperature, dim=-1).detach()
        earlier = self._earlier_layers(len(by_layer))
        for layer in earlier:
            layer_loss = self._loss_on(by_layer[layer], labels)
            loss = loss + layer_loss * self.layer_weight(layer) / len(earlier) * self.prior_layers_weight
            if self.kl_temperature > 0:
                loss = loss + self._kl_to_last(by_layer[layer], last_distribution) * self.kl_div_weight
        return loss

    def get_config_dict(self) -> dict:
        weighting = self.layer_weighting if isinstance(self.layer_weighting, str) else getattr(
            self.layer_weighting, "__name__", "custom")
        return {"loss": type(self.loss).__name__, "n_layers_per_step": self.n_layers_per_step,
                "last_layer_weight": self.last_layer_weight, "prior_layers_weight": self.prior_layers_weight,
                "kl_div_weight": self.kl_div_weight, "kl_temperature": self.kl_temperature,
                "layer_weighting": weighting}


class Matryoshka2dLoss(AdaptiveLayerLoss):
    """2D Matryoshka: `AdaptiveLayerLoss` around `MatryoshkaLoss` — fewer layers and fewer dimensions.

    Definition: ``AdaptiveLayerLoss(model, MatryoshkaLoss(loss, matryoshka_dims, matryoshka_weights,
    n_dims_per_step), ...)``; note the defaults of one layer and one dimension drawn per step (the 2DMSE paper's).
    The KL term compares full-width embeddings, as in sentence-transformers.

    References: Li et al., "2D Matryoshka Sentence Embeddings", arXiv 2402.14776; sentence-transformers'
    ``Matryoshka2dLoss``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Sequence[float] | None = None,
        n_layers_per_step: int = 1,
        n_dims_per_step: int = 1,
        last_layer_weight: float = 1.0,
        prior_layers_weight: float = 1.0,
        kl_div_weight: float = 1.0,
        kl_temperature: float = 0.3,
        layer_weighting: str | Callable[[int], float] = "uniform",
    ) -> None:
        super().__init__(
            model,
            MatryoshkaLoss(loss, matryoshka_dims, matryoshka_weights=matryoshka_weights, n_dims_per_step=n_dims_per_step),
            n_layers_per_step=n_layers_per_step,
            last_layer_weight=last_layer_weight,
            prior_layers_weight=prior_layers_weight,
            kl_div_weight=kl_div_weight,
            kl_temperature=kl_temperature,
            layer_weighting=layer_weighting,
        )
