"""GradCache: MultipleNegativesRankingLoss over a batch larger than memory (Gao et al. 2021).

Why it is needed: with in-batch negatives every example is a negative of every other, so the loss of a
batch of 4096 is *not* the sum of the losses of 128 batches of 32 (gradient accumulation gives each anchor
only 31 negatives, not 4095). But the memory of a training step is dominated by the encoder's activations,
not by the B x B similarity matrix. GradCache splits the step at the embeddings:

1. Embed the whole batch mini-batch by mini-batch **without** building a graph (cheap in memory), and
   remember the random-number state before each mini-batch (dropout!).
2. Compute the loss on the full batch of embeddings and backpropagate it **only to the embeddings**:
   the gradient d loss / d embedding (B x D numbers) is the cache.
3. On ``loss.backward()``: re-embed each mini-batch **with** a graph, replaying its random-number state
   so dropout draws the same masks, and backpropagate ``sum(embedding * cached_gradient)``, whose gradient
   w.r.t. the model parameters is exactly that mini-batch's share of d loss / d parameters (chain rule).

The result is the same loss and the same parameter gradients as `MultipleNegativesRankingLoss` on the
full batch, for the memory of one mini-batch, at the price of a second forward pass (~20-40 % slower).

Taught in notebooks/07_in_batch_negatives.ipynb.
"""
from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.losses.ranking import MultipleNegativesRankingLoss
from labkit.distances import cos_sim

__all__ = ["CachedMultipleNegativesRankingLoss", "CachedMultipleNegativesSymmetricRankingLoss", "GradCache",
           "RandContext"]


class RandContext:
    """Remember the random-number state now; ``with context:`` runs its block from that same state.

    Used so the second (gradient) forward pass of a mini-batch draws the same dropout masks as the first.
    The state outside the block is restored afterwards, so replaying does not disturb later randomness.
    Covers the CPU generator and the CUDA/MPS generators of the devices the given tensors live on.
    """

    def __init__(self, *tensors: Tensor) -> None:
        tensors = [t for t in tensors if isinstance(t, Tensor)]
        self.cpu_state = torch.get_rng_state()
        self.cuda_devices = sorted({t.device.index for t in tensors if t.is_cuda})
        self.cuda_states = [torch.cuda.get_rng_state(device) for device in self.cuda_devices]
        uses_mps = any(t.device.type == "mps" for t in tensors)
        self.mps_state = torch.mps.get_rng_state() if uses_mps else None

    def __enter__(self) -> None:
        # fork_rng saves the CPU and CUDA states now and puts them back on exit.
        self._fork = torch.random.fork_rng(devices=self.cuda_devices)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        for device, state in zip(self.cuda_devices, self.cuda_states):
            torch.cuda.set_rng_state(state, device)
        if self.mps_state is not None:
            self._mps_state_outside = torch.mps.get_rng_state()
            torch.mps.set_rng_state(self.mps_state)

    def __exit__(self, *exc_info) -> None:
        if self.mps_state is not None:
            torch.mps.set_rng_state(self._mps_state_outside)
        self._fork.__exit__(*exc_info)


def _batch_size(features: dict) -> int:
    for key in ("input_ids", "attention_mask"):
        if isinstance(features.get(key), Tensor):
            return features[key].shape[0]
    return next(value.shape[0] for value in features.values() if isinstance(value, Tensor) and value.dim() > 0)


def _autocast_state(features: dict) -> tuple[str, torch.dtype] | None:
    """(device type, dtype) of the autocast active for the features' device, or None when it is off."""
    device_type = next(v for v in features.values() if isinstance(v, Tensor)).device.type
    if not torch.is_autocast_enabled(device_type):
        return None
    return device_type, torch.get_autocast_dtype(device_type)


def _slice_features(features: dict, begin: int, end: int) -> dict:
    """Rows begin:end of every tensor in a tokenized batch (other values are passed through)."""
    return {key: value[begin:end] if isinstance(value, Tensor) else value for key, value in features.items()}


class GradCache(nn.Module):
    """The GradCache machinery shared by the cached losses: a loss over embeddings, a model run in mini-batches.

    A subclass says what the loss is on the full batch of embeddings (`loss_from_embeddings`); this class
    embeds the columns mini-batch by mini-batch without a graph, caches d loss / d embeddings, and re-embeds
    each mini-batch with a graph inside ``loss.backward()`` (see the module docstring).
    """

    runs_the_model = True  # labkit.train.compute_loss hands it the tokenized batch instead of embeddings

    def __init__(self, model: nn.Module, mini_batch_size: int = 32, show_progress_bar: bool = False) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"{type(self).__name__} needs the model (it re-runs it in mini-batches), "
                f"got {type(model).__name__}. Pass e.g. labkit.load_model() or labkit.model.tiny_model()."
            )
        if int(mini_batch_size) < 1:
            raise ValueError(f"mini_batch_size must be a positive integer, got {mini_batch_size}.")
        self.model = model
        self.mini_batch_size = int(mini_batch_size)
        self.show_progress_bar = show_progress_bar

    def loss_from_embeddings(self, embeddings: list[Tensor], features: list[dict]) -> Tensor:
        """The loss on the full batch of embeddings (one (B, D) tensor per column); `features` are the
        tokenized columns they came from (for losses that also run another model on them)."""
        raise NotImplementedError

    def forward(self, features: Sequence[dict], labels: Tensor | None = None) -> Tensor:
        features = self._check_features(features)
        needs_backward = torch.is_grad_enabled()

        # Step 1: embed every column without a graph; remember each mini-batch's random state.
        embeddings, random_states = [], []
        for column in features:
            column_embeddings, column_states = [], []
            for mini_batch in self._mini_batches(column, "Embed mini-batches"):
                column_states.append(RandContext(*mini_batch.values()) if needs_backward else None)
                with torch.no_grad():
                    column_embeddings.append(self.model(mini_batch))
            embeddings.append(torch.cat(column_embeddings))
            random_states.append(column_states)

        if not needs_backward:  # evaluation: the value is all we need
            return self.loss_from_embeddings(embeddings, features)

        # Step 2: the loss on the full batch, backpropagated to the embeddings only (the cache).
        embeddings = [column.detach().requires_grad_() for column in embeddings]
        loss = self.loss_from_embeddings(embeddings, features)
        embedding_grads = torch.autograd.grad(loss, embeddings)

        # Step 3 runs during loss.backward(): a fresh leaf carries the value, its hook does the model pass.
        loss = loss.detach().requires_grad_()
        backward_hook = partial(
            self._backward_through_model,
            features=features,
            embedding_grads=embedding_grads,
            random_states=random_states,
            autocast_state=_autocast_state(features[0]),
        )
        loss.register_hook(backward_hook)
        return loss

    def _backward_through_model(
        self, grad_output: Tensor, features: list[dict], embedding_grads: Sequence[Tensor], random_states: list[list],
        autocast_state: tuple[str, torch.dtype] | None = None,
    ) -> None:
        """Re-embed each mini-batch with a graph (same dropout) and push its cached gradient into the model."""
        # backward() runs outside the caller's autocast: replay it, or step 3 embeds in fp32, unlike step 1.
        replay = torch.autocast(autocast_state[0], dtype=autocast_state[1]) if autocast_state else nullcontext()
        with torch.enable_grad(), replay:
            for column, column_grad, column_states in zip(features, embedding_grads, random_states):
                begin = 0
                for mini_batch, random_state in zip(self._mini_batches(column, "Backward mini-batches"), column_states):
                    with random_state:
                        mini_batch_embeddings = self.model(mini_batch)
                    cached_grad = column_grad[begin : begin + len(mini_batch_embeddings)]
                    begin += len(mini_batch_embeddings)
                    if not mini_batch_embeddings.requires_grad:  # a frozen model (or tower): nothing to train
                        continue
                    # d/dθ of sum(e(θ) * g) is g · de/dθ: the cached gradient, chained into the model.
                    surrogate = (mini_batch_embeddings * cached_grad).sum() * grad_output
                    surrogate.backward()

    def _mini_batches(self, features: dict, description: str) -> Iterator[dict]:
        batch_size = _batch_size(features)
        starts = range(0, batch_size, self.mini_batch_size)
        for begin in tqdm(starts, desc=description, disable=not self.show_progress_bar, leave=False):
            yield _slice_features(features, begin, begin + self.mini_batch_size)

    def _check_features(self, features: Iterable[dict]) -> list[dict]:
        name = type(self).__name__
        if isinstance(features, dict):
            raise TypeError(
                f"{name} expects a list of tokenized batches [anchor_features, positive_features, ...], "
                "got a single dict."
            )
        features = list(features)
        if len(features) < 2:
            raise ValueError(f"{name} needs at least an anchor and a positive column, got {len(features)}.")
        for index, column in enumerate(features):
            if not isinstance(column, dict) or not any(isinstance(v, Tensor) for v in column.values()):
                raise TypeError(
                    f"{name}: column {index} must be a tokenized batch (model.tokenize(texts)), "
                    f"got {type(column).__name__}."
                )
        sizes = [_batch_size(column) for column in features]
        if len(set(sizes)) != 1:
            raise ValueError(f"{name}: every column must have the same number of rows, got {sizes}.")
        return features


class CachedMultipleNegativesRankingLoss(GradCache):
    r"""`MultipleNegativesRankingLoss` with GradCache: same loss and gradients, batch size beyond memory.

    Definition: exactly `MultipleNegativesRankingLoss` (InfoNCE with in-batch negatives) over the whole
    batch::

        loss = mean_i -log softmax_j(scale * sim(a_i, c_j))[i]

    computed in three steps (see the module docstring): embed all mini-batches without gradients, cache
    d loss / d embeddings, then, inside ``loss.backward()``, re-embed each mini-batch with gradients
    (same dropout, thanks to `RandContext`) and backpropagate the cached gradients into the model.

    Unlike the other labkit losses this one owns the model, because it has to run it twice.

    Inputs:
        ``loss(features)`` with ``features = [anchor_features, positive_features, *negative_features]``,
        each a tokenized batch (``model.tokenize(texts)``: a dict of ``input_ids`` / ``attention_mask``
        tensors) with the same number of rows. Returns the loss; call ``.backward()`` on it (once) to fill
        ``model``'s parameter gradients. A ``labels`` argument is accepted and ignored, as in
        sentence-transformers (the targets are the diagonal). Under ``torch.no_grad()`` it only computes
        the value.

    Args:
        model: an `labkit.model.EmbeddingModel` (``forward(features) -> (B, D)``).
        scale: 1 / temperature, default 20 (for cosine similarity).
        similarity_fct: all-pairs similarity, default `cos_sim`.
        mini_batch_size: rows embedded at once; bounds the memory. Larger is faster; 32 by default.
        show_progress_bar: show tqdm bars over the mini-batches.
        directions, partition_mode, hardness_mode, hardness_strength: passed to `MultipleNegativesRankingLoss`
            (keyword-only).

    When to use:
        (anchor, positive[, negatives]) data as for MNRL, when the batch you want (hundreds to thousands:
        more in-batch negatives give a stronger signal) does not fit in memory. With a batch that fits, use
        plain MNRL: it is faster. Do not combine with gradient accumulation expecting more negatives.

    References:
        Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
        RepL4NLP 2021 (GradCache); Henderson et al. 2017 and van den Oord et al. 2018 (the loss itself);
        sentence-transformers' CachedMultipleNegativesRankingLoss (the backward-hook design followed here).

    Example:
        >>> import torch
        >>> from labkit.model import tiny_model
        >>> from labkit.losses.cached import CachedMultipleNegativesRankingLoss
        >>> model = tiny_model(seed=0)
        >>> loss_fn = CachedMultipleNegativesRankingLoss(model, mini_batch_size=2)
        >>> anchors = model.tokenize(["a cat", "a dog", "the sun", "rain"])
        >>> positives = model.tokenize(["a kitten", "a puppy", "sunshine", "a storm"])
        >>> loss = loss_fn([anchors, positives])
        >>> loss.backward()   # second pass: re-embeds each mini-batch and fills the model's .grad

    Taught in notebooks/07_in_batch_negatives.ipynb.
    """

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
        *,
        directions: Sequence[str] = ("query_to_doc",),
        partition_mode: str = "joint",
        hardness_mode: str | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        super().__init__(model, mini_batch_size, show_progress_bar)
        self.loss = MultipleNegativesRankingLoss(
            scale=scale, similarity_fct=similarity_fct, directions=directions, partition_mode=partition_mode,
            hardness_mode=hardness_mode, hardness_strength=hardness_strength,
        )

    @property
    def scale(self) -> float:
        return self.loss.scale

    @property
    def similarity_fct(self) -> Callable[[Tensor, Tensor], Tensor]:
        return self.loss.similarity_fct

    def loss_from_embeddings(self, embeddings: list[Tensor], features: list[dict]) -> Tensor:
        return self.loss(*embeddings)

    def get_config_dict(self) -> dict:
        return {**self.loss.get_config_dict(), "mini_batch_size": self.mini_batch_size}


class CachedMultipleNegativesSymmetricRankingLoss(CachedMultipleNegativesRankingLoss):
    r"""`MultipleNegativesSymmetricRankingLoss` with GradCache: anchors pick their positive and positives pick
    their anchor, over a batch larger than memory.

    Definition: exactly `MultipleNegativesSymmetricRankingLoss` over the whole batch::

        loss = mean_i ( -log softmax_j(scale * sim(a_i, c_j))[i] - log softmax_j(scale * sim(p_i, a_j))[i] ) / 2

    i.e. `CachedMultipleNegativesRankingLoss(model, directions=("query_to_doc", "doc_to_query"),
    partition_mode="per_direction")` under its sentence-transformers name (deprecated there in favour of that
    spelling; the values are the same). It runs the model itself, twice (see the module docstring).

    Inputs:
        ``loss(features)`` with ``features = [anchor_features, positive_features, *negative_features]``, each
        ``model.tokenize(texts)``; call ``.backward()`` on the result to fill the model's gradients.

    Args:
        model: the `labkit.model.EmbeddingModel` being trained.
        scale: 1 / temperature, default 20 (for cosine similarity).
        similarity_fct: all-pairs similarity, default `cos_sim`.
        mini_batch_size: rows embedded at once (bounds the memory), default 32.
        show_progress_bar: show tqdm bars over the mini-batches.

    Requirements:
        (anchor, positive) pairs; batches without duplicates (labkit.sampling's no-duplicates sampler).

    Recommendations:
        Large batches, when symmetric retrieval matters (both directions are queries); with a batch that
        fits in memory, `MultipleNegativesSymmetricRankingLoss` is faster and gives the same gradients.

    References:
        Henderson et al. 2017 (Section 4.4); Gao et al. 2021 (GradCache); sentence-transformers'
        CachedMultipleNegativesSymmetricRankingLoss.

    Example:
        >>> from labkit.model import tiny_model
        >>> from labkit.losses.cached import CachedMultipleNegativesSymmetricRankingLoss
        >>> model = tiny_model(seed=0)
        >>> loss_fn = CachedMultipleNegativesSymmetricRankingLoss(model, mini_batch_size=2)
        >>> loss = loss_fn([model.tokenize(["a cat", "a dog", "rain"]), model.tokenize(["a kitten", "a puppy", "a storm"])])
        >>> loss.backward()
    """

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        mini_batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(
            model, scale=scale, similarity_fct=similarity_fct, mini_batch_size=mini_batch_size,
            show_progress_bar=show_progress_bar, directions=("query_to_doc", "doc_to_query"),
            partition_mode="per_direction",
        )
