"""Where this process stands among the processes of one training run: its rank, the number of processes, its GPU.

A tiny module on purpose: the samplers need to know their share of a global batch and `labkit.distributed`
needs the same facts to join the processes, and neither should have to import the other. ``torchrun`` sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a plain single process is rank 0 of 1.

Taught in notebooks/13_scaling_up.ipynb.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist

__all__ = ["World", "current_world"]


@dataclass(frozen=True)
class World:
    """Where this process stands: its ``rank`` among ``size`` processes, and its GPU index on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, draws progress bars and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"Environment variable {name}={value!r} must be an integer (torchrun sets it).") from None


def current_world() -> World:
    """This process's rank and the number of processes: from the process group if one is running, else from
    the variables torchrun sets (so a sampler built before `init_from_env()` already knows its share),
    else a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={size} are inconsistent: need 0 <= RANK < WORLD_SIZE.")
    return World(rank, size, local_rank)
