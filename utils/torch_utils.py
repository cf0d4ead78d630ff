"""Device selection, timing, seeding and model (un)wrapping."""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["select_device", "plan_device", "cuda_ids", "DevicePlan", "NeedsTorchrun", "time_sync", "unwrap",
           "init_seeds", "model_dtype"]

LOGGER = logging.getLogger(__name__)


class NeedsTorchrun(ValueError):
    """``--device`` names several GPUs in a training process that torchrun did not start: it would train on one of
    them. DDP runs one process per GPU; :meth:`with_command` gives the message with the exact command to launch."""

    def __init__(self, device: str, nproc: int, command: str = "") -> None:
        self.device, self.nproc = device, nproc
        how = command or f"python -m torch.distributed.run --nproc_per_node {nproc} train.py <your flags>"
        first = cuda_ids(device)[0]
        super().__init__(f"--device {device} names {nproc} GPUs, but this process was not started by torchrun, so it "
                         f"would train on one GPU only; multi-GPU training runs one process per GPU (DDP). For GPU "
                         f"{first} alone pass --device {first}; to train on all {nproc}, launch: {how}")

    def with_command(self, command: str) -> NeedsTorchrun:
        """The same error, naming ``command`` (the user's own flags under torchrun) as the way to launch."""
        return NeedsTorchrun(self.device, self.nproc, command)


@dataclass(frozen=True)
class DevicePlan:
    """What ``--device`` means for this process (see :func:`plan_device`)."""

    device: str  # 'cpu', 'mps' or 'cuda:<i>', i counted among the visible GPUs
    warning: str = ""  # something the user should know, e.g. that a one-process script uses only the first GPU


def cuda_ids(device: str | int) -> list[str]:
    """The CUDA ids that a ``--device`` string names ('0,1' -> ['0', '1']; '', 'cpu' and 'mps' -> []).

    Raises:
        ValueError: neither 'cpu', 'mps', '' nor CUDA ids.
    """
    s = str(device).strip().lower().replace("cuda:", "").replace("none", "").replace(" ", "")
    if s in ("", "cpu", "mps"):
        return []
    ids = [x for x in s.split(",") if x]
    if not ids or not all(x.isdigit() for x in ids):
        raise ValueError(f"--device '{device}' is not valid: use 'cpu', 'mps', or CUDA ids like '0' or '0,1'")
    return ids


def plan_device(device: str | int, env: Mapping[str, str], cuda_count: int, *, ddp: bool = False,
                batch_size: int = 0, no_cuda: str = "") -> DevicePlan:
    """Decide this process's device from ``--device``, the environment torchrun sets and the visible GPU count: pure,
    so every case is tested without GPUs.

    Args:
        device: the ``--device`` value ('', 'cpu', 'mps', '0', '0,1', 'cuda:1').
        env: the process environment; torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``.
        cuda_count: the GPUs CUDA sees (with ``CUDA_VISIBLE_DEVICES`` set to the ids), 0 without CUDA.
        ddp: the caller trains with one process per GPU (train.py). Several ids then need torchrun; other scripts
            run on the first GPU named, with a warning.
        batch_size: the total batch size, split over the GPUs when ``ddp`` (0: not checked).
        no_cuda: why CUDA is unavailable, for the message (e.g. 'PyTorch 2.3.0+cpu is built without CUDA').

    Raises:
        NeedsTorchrun: several GPUs for training in a process that torchrun did not start.
        ValueError: an unknown device string, CUDA asked for but not there (or too few GPUs), torchrun starting more
            processes on this machine than there are GPUs, or a batch size that does not split over the GPUs.
    """
    ids = cuda_ids(device)
    s = str(device).strip().lower()
    launched = "RANK" in env and "WORLD_SIZE" in env
    local_rank = int(env.get("LOCAL_RANK", 0)) if launched else 0
    local_world = int(env.get("LOCAL_WORLD_SIZE") or env.get("WORLD_SIZE") or 1) if launched else 1
    if s in ("cpu", "mps"):
        return DevicePlan(s)
    if not ids:  # '': the GPU of this local rank when there is CUDA, else the CPU
        if not cuda_count:
            return DevicePlan("cpu")
        if local_rank >= cuda_count:
            raise ValueError(f"torchrun started local rank {local_rank}, but CUDA sees {cuda_count} GPU(s) on this "
                             f"machine: use --nproc_per_node {cuda_count} or fewer (or --device cpu)")
        return DevicePlan(f"cuda:{local_rank}")
    n, named = len(ids), f"GPU{'s' * (len(ids) > 1)} {','.join(ids)}"
    if not cuda_count:
        raise ValueError(f"--device {device} asks for CUDA {named}, but CUDA is not available on this machine"
                         f"{f' ({no_cuda})' if no_cuda else ''}: use --device cpu")
    if cuda_count < n:
        raise ValueError(f"--device {device} asks for {n} CUDA GPUs, but CUDA sees {cuda_count}: name at most "
                         f"{cuda_count} (nvidia-smi lists them)")
    if launched and local_world > n:
        raise ValueError(f"torchrun started {local_world} processes on this machine, but --device {device} names {n} "
                         f"{named}: give one GPU per process (--nproc_per_node {n}, or --device with {local_world} "
                         "ids)")
    if n > 1 and ddp and batch_size and batch_size % n:
        raise ValueError(f"--batch-size {batch_size} is not a multiple of the {n} GPUs in --device {device} (it is "
                         "the total, split over them)")
    if n > 1 and ddp and not launched:
        raise NeedsTorchrun(str(device), n)
    if n > 1 and not launched:
        return DevicePlan("cuda:0", f"--device {device}: this script runs on one GPU, {ids[0]} (cuda:0); only "
                                    "train.py spreads over several (one process per GPU, under torchrun)")
    warning = (f"--device {device} names {n} GPUs but torchrun started {local_world} process(es) on this machine: "
               f"GPUs {','.join(ids[local_world:])} stay idle" if launched and local_world < n and local_rank == 0
               else "")
    return DevicePlan(f"cuda:{local_rank}", warning)


def select_device(device: str | int | torch.device = "", batch_size: int = 0, ddp: bool = False) -> torch.device:
    """Parse ``--device`` ('', 'cpu', '0', '0,1', 'cuda:1', 'mps') into this process's torch.device.

    '' picks the CUDA device of this local rank (0 outside torchrun) when available, else the CPU. For CUDA ids,
    ``CUDA_VISIBLE_DEVICES`` is set to them before CUDA is initialised, so under torchrun each local rank takes its
    own. Several ids: training (``ddp``) must run under torchrun, one process per GPU (:class:`NeedsTorchrun` names
    the command otherwise); other scripts use the first GPU, with a warning. See :func:`plan_device`.

    Raises:
        NeedsTorchrun: several GPUs for training without torchrun.
        ValueError: an unknown device string, CUDA or MPS asked for but not available, too few GPUs, or a batch size
            that does not split over the GPUs.
    """
    if isinstance(device, torch.device):
        return device
    if str(device).strip().lower() == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("--device mps requested but MPS is not available")
        return torch.device("mps")
    ids = cuda_ids(device)
    if ids and not torch.cuda.is_initialized():
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", ",".join(ids))
    count = torch.cuda.device_count() if str(device).strip().lower() != "cpu" and torch.cuda.is_available() else 0
    no_cuda = (f"PyTorch {torch.__version__} is built without CUDA" if torch.version.cuda is None else
               f"no GPU visible to PyTorch {torch.__version__} (CUDA {torch.version.cuda}; check the driver with "
               f"nvidia-smi, and CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
    plan = plan_device(device, os.environ, count, ddp=ddp, batch_size=batch_size, no_cuda=no_cuda)
    if plan.warning:
        LOGGER.warning(plan.warning)
    return torch.device(plan.device)


def time_sync() -> float:
    """Wall-clock time after waiting for queued CUDA work, so timings measure the work and not its launch."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DataParallel/DistributedDataParallel wrapper, else ``model`` itself.

    The wrapper types are named rather than any ``.module`` attribute followed, so that a model (or head) that happens
    to own a submodule called ``module`` is never mistaken for a wrapper.
    """
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"


def model_dtype(model: nn.Module) -> torch.dtype:
    """dtype of the model's first parameter."""
    return next(model.parameters()).dtype
