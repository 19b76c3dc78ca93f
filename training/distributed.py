"""Distributed training helpers: `torchrun` sets the env vars, this module reads them.

Under ``torchrun --nproc-per-node N`` each process gets RANK / WORLD_SIZE /
LOCAL_RANK (and MASTER_ADDR / MASTER_PORT); :func:`init_distributed` joins the
process group (gloo on CPU, nccl on CUDA). Without those variables everything
degrades to a single process (rank 0 of 1). Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``local_rank`` picks the GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def shard_slice(self) -> tuple[int, int]:
        """(rank, world_size), the form data readers take."""
        return (self.rank, self.world_size)


def local_world_size() -> int:
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def env_dist_info() -> DistInfo:
    """DistInfo from the torchrun environment (single process when the variables are absent)."""
    return DistInfo(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (gloo for CPU, nccl for CUDA)."""
    info = env_dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def wrap_ddp(module: torch.nn.Module, device: torch.device, *, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``module`` in DistributedDataParallel (one device per process).

    ``find_unused_parameters`` costs a graph traversal every step; only a model that leaves some
    parameters without gradient in some steps needs it (DDP raises at the next step otherwise).
    """
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=find_unused_parameters
    )


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: object) -> list[object]:
    """Every process's ``obj`` (a one-element list in a single process)."""
    if dist.is_available() and dist.is_initialized():
        out: list[object] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over processes (identity in a single process)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def all_reduce_min(value: int, device: torch.device | str = "cpu") -> int:
    """Smallest ``value`` over processes (so every rank runs the same number of steps)."""
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([value], dtype=torch.long, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())
    return value
