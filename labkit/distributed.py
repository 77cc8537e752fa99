"""Training on several GPUs at once: one process per GPU, and one big batch across all of them.

``torchrun --nproc_per_node=N train.py`` starts N copies of the same script, one per GPU, and tells each
its place through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). Each process embeds its own share of the batch; `fit()` then does three things:

1. ``init_from_env()`` joins the processes into a group (NCCL between GPUs, gloo between CPU processes)
   and pins the process to its GPU. In a plain single process it does nothing.
2. ``GatheredLoss(loss)`` collects the embeddings (and labels) of every process with
   ``all_gather_with_grad`` before calling the loss, so with N processes × B rows each, the loss sees
   **one batch of N·B rows**: every anchor gets N·B - 1 in-batch negatives (MultipleNegativesRankingLoss),
   the batch triplet losses mine among N·B embeddings. Every process computes the same loss value.
3. ``DistributedDataParallel`` (DDP) averages the parameter gradients of the processes after ``backward``,
   so every process takes the same optimizer step and the copies of the model stay identical.

Why the result is exactly the single-process gradient on the concatenated batch, without rescaling the loss:
let L(e_1, ..., e_N) be the loss of the gathered batch (e_r: the embeddings of process r) and g_r the
part of dL/dθ that flows through e_r, so the single-process gradient is g = Σ_r g_r.

* Every process computes the same L. The gather's backward (`all_gather_with_grad`) *sums*, over the N
  processes, the gradient each computed for slot r, and hands that sum to process r: process r gets
  N · dL/de_r on its own embeddings, hence N · g_r on the parameters.
* DDP averages over the N processes: (1/N) Σ_r N · g_r = Σ_r g_r = g.

The other common recipe, "all_gather without gradient, then put the local tensor back in its slot", gives
process r only dL/de_r, so after DDP's averaging the gradient is g / N: it would need the loss multiplied by
N, and then the gradient of a loss's own parameters (a learnable scale, SoftmaxLoss's classifier), which does
not flow through the gather, would come out N times too large. The summing gather needs no correction.

Every process computes the whole (N·B) × (N·B) loss: redundant, but exact for *every* loss (batch-all's
count of active triplets, batch-hard's mining over the whole batch) without changing any loss, and cheap
next to the encoder. (sentence-transformers' ``gather_across_devices`` computes only the local anchors'
rows of MNRL: less work, same gradient, but each process then reports a different loss value.)

Batches: the samplers give each process a disjoint share of one global batch (``PKBatchSampler(...,
num_replicas, rank)``: the global batch has N·P classes, each process gets P of them × K examples), so the
gathered batch is exactly the batch one process would train on with N·P classes. ``p`` and ``batch_size``
are **per process** (as the per-device batch size of the Hugging Face Trainer): N GPUs give N times more
in-batch negatives at the memory cost of one.

Not supported with several processes: `CachedMultipleNegativesRankingLoss`. GradCache runs its own
forward and backward passes, mini-batch by mini-batch, inside ``loss.backward()``; making that work with
DDP's gradient synchronisation and with gathered embeddings is not implemented here, and `fit()` says so.
Use MultipleNegativesRankingLoss with more GPUs, or GradCache on one GPU.

Taught in notebooks/13_scaling_up.ipynb.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from datetime import timedelta
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from labkit.world import World, current_world

__all__ = [
    "init_from_env",
    "process_device",
    "all_gather_with_grad",
    "GatheredLoss",
    "data_parallel",
    "has_unused_pooler",
    "no_gradient_sync",
    "barrier",
    "shutdown",
]


def init_from_env(backend: str | None = None, timeout_s: float = 1800) -> World:
    """Join the processes that torchrun started; return this process's `World`. Safe to call twice.

    A single process (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``) needs no group: nothing happens. Otherwise the
    default backend is NCCL for CUDA tensors and gloo for CPU tensors (``"cpu:gloo,cuda:nccl"`` on a GPU
    machine, so a CPU tensor can still be gathered there; ``"gloo"`` on a CPU-only machine), and the
    process is pinned to GPU ``LOCAL_RANK`` so that ``"cuda"`` means its own GPU.

    Args:
        backend: force a backend ("gloo", "nccl", ...); None picks as above.
        timeout_s: how long a collective waits for the other processes before failing (a process that
            crashed otherwise leaves the others waiting forever).
    """
    world = current_world()
    if not world.is_distributed:
        return world
    if not dist.is_available():
        raise RuntimeError("This PyTorch build has no torch.distributed: train with a single process.")
    if dist.is_initialized():
        return world
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise RuntimeError(
            f"WORLD_SIZE={world.size} but MASTER_ADDR/MASTER_PORT are not set: start the processes with "
            "torchrun (e.g. torchrun --nproc_per_node=2 -m labkit train ...), which sets them."
        )
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank)
        backend = backend or "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend or "gloo", rank=world.rank, world_size=world.size,
                            timeout=timedelta(seconds=timeout_s))
    return current_world()


def process_device(device: torch.device, world: World) -> torch.device:
    """This process's own GPU (``cuda:LOCAL_RANK``) when training on CUDA with several processes."""
    if world.is_distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


def _all_gather(tensor: Tensor) -> Tensor:
    """Every process's ``tensor``, concatenated along dim 0 in rank order (no gradient)."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every process's rows. Backward: each process receives, for its own rows, the sum
    of the gradients that all the processes computed for them."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        ctx.rows, ctx.rank = tensor.shape[0], dist.get_rank()
        return _all_gather(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()  # all_reduce works in place; autograd may still hold `grad`
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every process along dim 0 (rank 0's rows first); gradients flow back.

    The backward pass *sums* the gradients that every process computed for a process's rows and hands the
    sum to that process (see the module docstring for why that is what DDP's averaging needs; it is what
    ``torch.distributed.nn.functional.all_gather`` does, written out here because that function is deprecated
    in recent PyTorch). Every process must pass a tensor of the same shape. Tensors without gradient
    (labels, scores) are simply gathered. In a single process, returns ``tensor`` itself.

    >>> all_gather_with_grad(torch.ones(2, 3)).shape   # one process: unchanged
    torch.Size([2, 3])
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"all_gather_with_grad needs a tensor, got {type(tensor).__name__}.")
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if tensor.requires_grad:
        return _AllGatherWithGrad.apply(tensor)
    return _all_gather(tensor)


class GatheredLoss(nn.Module):
    """Call ``loss`` on the batch of all processes together: N processes × B rows = one batch of N·B rows.

    Every tensor argument (embedding columns, labels, scores) is gathered with `all_gather_with_grad`, in
    rank order, so row i of the gathered anchors still matches row i of the gathered positives (MNRL's
    targets stay the diagonal) and labels stay with their embeddings. Every process gets the same value:
    the single-process loss of the concatenated batch. Its gradient, after DDP averages it over processes,
    is the single-process gradient (derivation in the module docstring). In one process it is ``loss``.

    Args:
        loss: any labkit loss that takes embedding tensors: batch losses ``loss(embeddings, labels)``,
            in-batch negatives ``loss(anchor, positive, *negatives)``, pair losses. (Losses that average
            independent rows, like ContrastiveLoss, would give the same result without gathering; gathering
            them is harmless.)

    Example:
        >>> from labkit.losses import MultipleNegativesRankingLoss
        >>> loss_fn = GatheredLoss(MultipleNegativesRankingLoss())
        >>> anchor, positive = torch.randn(4, 8), torch.randn(4, 8)
        >>> bool(loss_fn(anchor, positive) == MultipleNegativesRankingLoss()(anchor, positive))  # one process
        True

    Taught in notebooks/13_scaling_up.ipynb.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        if getattr(loss, "runs_the_model", False):
            raise ValueError(
                f"{type(loss).__name__} runs the model itself (GradCache) and cannot be gathered across processes. "
                "Use MultipleNegativesRankingLoss (N GPUs already give N times more in-batch negatives), "
                "or train with a single process."
            )
        self.loss = loss

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.loss(*[all_gather_with_grad(t) for t in tensors])


class _ModelAndLoss(nn.Module):
    """The model and the gathered loss as one module, so DDP sees one forward (and one backward) per batch."""

    def __init__(self, model: nn.Module, loss: nn.Module, compute_loss: Callable) -> None:
        super().__init__()
        self.model = model
        self.loss = GatheredLoss(loss)
        self.compute_loss = compute_loss

    def forward(self, features, labels) -> Tensor:
        return self.compute_loss(self.model, self.loss, features, labels)


def has_unused_pooler(model: nn.Module) -> bool:
    """A BERT checkpoint carries a ``pooler`` layer that mean / cls / max pooling never uses."""
    return any(".pooler." in f".{name}" for name, p in model.named_parameters() if p.requires_grad)


def data_parallel(model: nn.Module, loss: nn.Module, compute_loss: Callable, device: torch.device,
                  find_unused_parameters: bool | None = None):
    """``batch_loss(features, labels)`` for `fit()`: ``compute_loss(model, GatheredLoss(loss), ...)`` under DDP.

    Wrapping the model *and* the loss in one DDP module keeps the loss's own parameters (a learnable scale,
    SoftmaxLoss's classifier) in step across processes too. DDP also copies rank 0's weights to every
    process when it starts, so all processes begin from the same model.

    ``find_unused_parameters``: DDP waits for a gradient of every parameter unless told that some get none
    (at the price of a graph traversal per step). None: True only for a model with an unused pooler.
    """
    from torch.nn.parallel import DistributedDataParallel

    if find_unused_parameters is None:
        find_unused_parameters = has_unused_pooler(model)
    return DistributedDataParallel(
        _ModelAndLoss(model, loss, compute_loss),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )


def no_gradient_sync(batch_loss):
    """Inside a gradient-accumulation step: skip DDP's all-reduce until the last micro-batch, which then
    averages the gradients accumulated over the whole step. A no-op for a plain function."""
    return batch_loss.no_sync() if hasattr(batch_loss, "no_sync") else nullcontext()


def barrier() -> None:
    """Wait until every process gets here (e.g. until rank 0 has written the model). No-op in one process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (at the end of a script run by torchrun). No-op in one process."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
