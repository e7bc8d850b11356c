"""DistributedDataParallel plumbing: one process per device, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m fcnkit train ...`` sets RANK / WORLD_SIZE /
LOCAL_RANK; :func:`init_distributed` reads them and joins the group (gloo on CPU,
nccl on CUDA). Without them everything here is a no-op, so the same training code
runs single-process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .runtime import resolve_device


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


def current() -> DistInfo:
    """This process's place in the joined group (single-process when none is joined)."""
    if not active():
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def split_cpu_threads() -> int:
    """Give each of this machine's ranks an equal share of its cores for intra-op threads
    (torchrun's default OMP_NUM_THREADS=1 idles all but one core per rank when there are
    fewer ranks than cores); returns the thread count set (unchanged when single-process)."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local_world <= 1:
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // local_world)
    torch.set_num_threads(threads)
    return threads


@contextmanager
def joined(device: str = "auto") -> Iterator[tuple[DistInfo, torch.device]]:
    """Join torchrun's group when its environment says so (else a no-op), for one job:
    yields this rank's place and device (``cuda:LOCAL_RANK`` under ``auto`` where CUDA
    exists, else CPU with the cores split between the machine's ranks); leaves the group
    afterwards unless it had been joined before (e.g. by the trainer)."""
    owns = not active()
    info = init_distributed(resolve_device(device).type)
    try:
        dev = resolve_device(device, local_rank=info.local_rank)
        if info.enabled and dev.type == "cpu":
            split_cpu_threads()
        yield info, dev
    finally:
        if owns:
            cleanup()


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


__all__ = ["DistInfo", "active", "all_reduce_sum", "barrier", "cleanup", "current", "gather_objects",
           "init_distributed", "joined", "split_cpu_threads", "sync_buffers"]
