"""Joining a torchrun process group: one way for both training loops (depth prior, renderer).

Why here: both loops run alone or under torchrun, pick NCCL on GPUs and gloo on CPUs, and bind
each process to its local GPU; a loop that stops early (a time limit) must stop on every process
at the same step, or the others wait forever in their next gradient all-reduce.
"""

from __future__ import annotations

import os

import torch


def init_distributed() -> tuple[int, int]:
    """(rank, world size): (0, 1) alone; under torchrun the process group is joined here."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def all_agree(flag: bool, world: int) -> bool:
    """True on every process when it is true on any (so all stop at the same step)."""
    if world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def leave_distributed(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
