"""The one place that knows about ranks: everything reads them from here, nothing keeps them in globals."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.distributed as dist

__all__ = ["rank", "local_rank", "world_size", "is_main", "is_distributed", "init_distributed", "barrier",
           "main_first", "cleanup", "torchrun_command"]


def rank() -> int:
    """Global rank (-1 when not launched by torchrun)."""
    return int(os.environ.get("RANK", -1))


def local_rank() -> int:
    """Rank on this machine (-1 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", -1))


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """True in the process that writes files and prints (rank 0 or single process)."""
    return rank() in (-1, 0)


def is_distributed() -> bool:
    """True when a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def init_distributed(device: torch.device) -> None:
    """Initialise the process group for torchrun: NCCL on CUDA, gloo on CPU."""
    if world_size() > 1 and not is_distributed():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)


def barrier() -> None:
    """Wait for all ranks (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Let rank 0 run the block first (e.g. to build a cache), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast_str(value: str) -> str:
    """Rank 0's ``value`` on every rank (unchanged when not distributed)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    """Destroy the process group if one exists."""
    if is_distributed():
        dist.destroy_process_group()


def torchrun_command(nproc: int, script: str, args: Sequence[str], python: str | None = None) -> str:
    """The shell command that runs ``script args`` as ``nproc`` DDP processes on this machine, one per GPU
    (``python -m torch.distributed.run`` is the ``torchrun`` command). ``python`` defaults to ``python`` when that is
    the interpreter running now, else to its full path, so the command can be pasted as it is."""
    if python is None:
        found = shutil.which("python")
        # Paths compared unresolved: a venv's python links to the system one, which lacks the venv's packages.
        same = found is not None and os.path.abspath(found) == os.path.abspath(sys.executable)
        python = "python" if same else sys.executable
    return shlex.join([python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), script, *args])
