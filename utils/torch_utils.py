"""Device selection, timing, seeding and model (un)wrapping."""

from __future__ import annotations

import logging
import os
import random
import time

import numpy as np
import torch
from torch import nn

__all__ = ["select_device", "time_sync", "unwrap", "init_seeds", "model_dtype"]

LOGGER = logging.getLogger(__name__)


def select_device(device: str | int | torch.device = "", batch_size: int = 0) -> torch.device:
    """Parse ``--device`` ('', 'cpu', '0', '0,1', 'cuda:1', 'mps') into a torch.device.

    '' picks CUDA device 0 when available, else the CPU. For several CUDA ids, ``CUDA_VISIBLE_DEVICES`` is set before
    CUDA is initialised and the batch size must divide by the device count.

    Raises:
        ValueError: an unknown device string, CUDA asked for but not available, or a batch size that does not divide.
    """
    if isinstance(device, torch.device):
        return device
    s = str(device).strip().lower().replace("cuda:", "").replace("none", "")
    if s == "cpu":
        return torch.device("cpu")
    if s == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("--device mps requested but MPS is not available")
        return torch.device("mps")
    if s:
        ids = [x for x in s.replace(" ", "").split(",") if x]
        if not all(x.isdigit() for x in ids):
            raise ValueError(f"--device '{device}' is not valid: use 'cpu', 'mps', or CUDA ids like '0' or '0,1'")
        if not torch.cuda.is_initialized():
            os.environ.setdefault("CUDA_VISIBLE_DEVICES", ",".join(ids))
        if not torch.cuda.is_available() or torch.cuda.device_count() < len(ids):
            raise ValueError(f"--device {device} requested but CUDA sees {torch.cuda.device_count()} device(s); "
                             "use --device cpu")
        if len(ids) > 1 and batch_size and batch_size % len(ids):
            raise ValueError(f"--batch-size {batch_size} is not a multiple of the {len(ids)} devices in --device")
        local = int(os.environ.get("LOCAL_RANK", -1))
        return torch.device(f"cuda:{max(local, 0)}")
    if torch.cuda.is_available():
        return torch.device(f"cuda:{max(int(os.environ.get('LOCAL_RANK', -1)), 0)}")
    return torch.device("cpu")


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
