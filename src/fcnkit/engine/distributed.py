"""DistributedDataParallel plumbing: one process per device, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m fcnkit train ...`` sets RANK / WORLD_SIZE /
LOCAL_RANK; :func:`init_distributed` reads them and joins the group (gloo on CPU,
nccl on CUDA). Without them everything here is a no-op, so the same training code
runs single-process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group described by torchrun's environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (identity when single-process)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if active():
        dist.barrier()


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank. DDP broadcasts them
    at the start of each forward, so after the last step of an epoch each rank holds
    statistics of its own shard: sync before validating or saving, so all ranks score
    and keep the one model."""
    if active():
        for b in model.buffers():
            dist.broadcast(b.data, src=0)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` when single-process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


__all__ = ["DistInfo", "all_reduce_sum", "barrier", "cleanup", "gather_objects", "sync_buffers",
           "init_distributed", "active"]
