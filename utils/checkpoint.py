"""Checkpoints: our self-describing format (architecture dict + tensors), atomic writes, and loading any ``.pt``.

Our format is a dict of tensors and plain Python values, readable with ``torch.load(..., weights_only=True)``:
``format``, ``version``, ``arch`` (the model dict with explicit channel counts for pruned models), ``names``,
``stride``, ``model`` (state dict), and where training: ``ema``, ``updates``, ``optimizer``, ``epoch``,
``best_fitness``, ``train_args``, ``hyp``; pruning adds ``pruning`` (a small report).
Official YOLOv5 checkpoints are read through :mod:`utils.official` and converted on the fly.
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import pickle
import shutil
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import torch

from utils.download import describe_failure
from utils.files import atomic_write
from utils.official import ModuleStub, UnsafeCheckpointError, load_official, stub_to_state
from utils.paths import weights_dir
from utils.torch_utils import unwrap

__all__ = ["FORMAT", "CheckpointError", "UnsafeCheckpointError", "atomic_save", "make_checkpoint", "load_checkpoint",
           "load_weights", "resolve_weights", "is_ours", "OFFICIAL_WEIGHTS_URL"]

LOGGER = logging.getLogger(__name__)
FORMAT = "yolo-slim"
VERSION = 1
OFFICIAL_WEIGHTS_URL = "https://github.com/ultralytics/yolov5/releases/download/v7.0/{name}"
_OFFICIAL_NAMES = {f"yolov5{s}{p}.pt" for s in "nsmlx" for p in ("", "6")}


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names it and says why."""


def _plain(x: Any) -> Any:
    """Turn Paths, numpy scalars/arrays and tuples into values ``weights_only`` loading accepts."""
    if isinstance(x, dict):
        return {str(k) if isinstance(k, Path) else k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and hasattr(x, "dtype") and not isinstance(x, torch.Tensor):
        return x.item() if getattr(x, "ndim", 0) == 0 else x.tolist()
    return x


_NEARLY_FULL = 64 * 2**20  # bytes free below which a failed checkpoint write is put down to a full disk


def atomic_save(obj: dict, path: str | Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (:func:`utils.files.atomic_write`): a crash at any moment leaves
    either the old file or the new one. A full disk is one ``OSError`` that names the file."""
    path = Path(path)
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except (OSError, RuntimeError) as e:
        # torch.save's zip writer reports a full disk as a RuntimeError ("unexpected pos ..."): judge by the space left
        full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) or (
            isinstance(e, RuntimeError) and shutil.disk_usage(path.parent).free < _NEARLY_FULL)
        if full:
            raise OSError(errno.ENOSPC, f"no space left on device writing {path} (the previous file, if any, is "
                                        "intact)", str(path)) from None
        raise


def make_checkpoint(model: torch.nn.Module, *, half: bool = False, **extra: Any) -> dict:
    """Build a checkpoint dict of our format for ``model`` (a ``models.yolo.Model``).

    Args:
        model: the model (DDP-wrapped models are unwrapped).
        half: store floating-point weights as fp16 (smaller files for inference).
        **extra: more entries (epoch, ema, optimizer, best_fitness, train_args, hyp, pruning ...).
    """
    model = unwrap(model)
    sd = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
          for k, v in model.state_dict().items()}
    ckpt = {"format": FORMAT, "version": VERSION, "arch": _plain(model.arch()), "names": list(model.names),
            "nc": int(model.nc), "stride": [float(s) for s in model.stride], "model": sd,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    ckpt.update({k: _plain(v) if not isinstance(v, (dict, torch.Tensor)) or k in ("train_args", "hyp", "pruning")
                 else v for k, v in extra.items()})
    return ckpt


def is_ours(ckpt: dict) -> bool:
    """True for a checkpoint in our format."""
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT


def resolve_weights(weights: str | Path) -> Path:
    """Find a weights file: as given, then in ``$YOLO_WEIGHTS_DIR``; an official name missing there is downloaded.

    Raises:
        FileNotFoundError: naming the places searched (and the download URL for official names when offline).
    """
    p = Path(weights)
    searched = [p.resolve()]
    if p.is_file():
        return p
    wd = weights_dir()
    if wd is not None and not p.is_absolute():
        searched.append(wd / p.name)
        if (wd / p.name).is_file():
            return wd / p.name
    if p.name in _OFFICIAL_NAMES and not p.is_absolute():
        url = OFFICIAL_WEIGHTS_URL.format(name=p.name)
        dest = (wd if wd is not None and os.access(wd, os.W_OK) else Path.cwd()) / p.name
        try:
            _download(url, dest)
            return dest
        except OSError as e:
            raise FileNotFoundError(
                f"weights '{weights}' not found (searched {', '.join(map(str, searched))}) and downloading {url} "
                f"failed ({describe_failure(e, url, 10.0)}); download it by hand or set YOLO_WEIGHTS_DIR to the "
                "folder that holds it") from None
    raise FileNotFoundError(f"weights '{weights}' not found (searched {', '.join(map(str, searched))}); "
                            "pass an existing file or set YOLO_WEIGHTS_DIR")


def _download(url: str, dest: Path, timeout: float = 10.0) -> None:
    LOGGER.info(f"Downloading {url} to {dest}...")
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint safely: ours with ``weights_only=True``, official YOLOv5 ones through the allow-list.

    Returns our format in every case (official checkpoints are converted: their model becomes ``arch`` + ``model``).

    Raises:
        CheckpointError: the file is not a checkpoint, or is malformed.
        UnsafeCheckpointError: the file names a class or function outside the allow-list (nothing was run).
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (expected a zip-format .pt file)")
    _check_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as first:
        try:
            ckpt = load_official(path)
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(f"{path}: {e}") from None
        except Exception as e:  # noqa: BLE001 - any other failure means a malformed file
            raise CheckpointError(f"{path}: cannot read checkpoint ({e}; first attempt: {first})") from None
        return _from_official(ckpt, path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    if is_ours(ckpt):
        _check_entries(ckpt, path)
        return ckpt
    raise CheckpointError(f"{path}: not a YOLO checkpoint (keys: {', '.join(map(str, list(ckpt)[:10]))})")


# Entries of our format and the types they must have (None: may be absent).
_ENTRY_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "arch": ((dict,), "a dict (the model architecture)"),
    "model": ((dict,), "a dict of tensors (the state dict)"),
    "names": ((list, dict), "a list of class names (or an {index: name} dict)"),
    "nc": ((int,), "an integer"),
    "stride": ((list,), "a list of numbers"),
    "epoch": ((int,), "an integer"),
    "ema": ((dict, type(None)), "a dict of tensors"),
    "optimizer": ((dict, type(None)), "a dict (the optimizer state)"),
    "train_args": ((dict, type(None)), "a dict"),
    "updates": ((int, type(None)), "an integer"),
}


def _check_entries(ckpt: dict, path: Path) -> None:
    """Refuse a checkpoint of our format whose entries are missing or of the wrong type, naming the entry."""
    for key in ("arch", "model", "names"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no '{key}' entry")
    for key, (types, what) in _ENTRY_TYPES.items():
        v = ckpt.get(key)
        if key in ckpt and (not isinstance(v, types) or isinstance(v, bool)):
            raise CheckpointError(f"{path}: checkpoint entry '{key}' must be {what}, got {type(v).__name__}")
    for key in ("model", "ema"):
        bad = [k for k, v in (ckpt.get(key) or {}).items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: checkpoint entry '{key}' must map names to tensors; '{bad[0]}' is not one")
    names = ckpt["names"]
    if not all(isinstance(n, str) for n in (names.values() if isinstance(names, dict) else names)):
        raise CheckpointError(f"{path}: checkpoint entry 'names' must hold class names (strings)")
    if "nc" in ckpt and len(names) != ckpt["nc"]:
        raise CheckpointError(f"{path}: checkpoint entry 'nc' is {ckpt['nc']} but 'names' has {len(names)} classes")


def _check_archive(path: Path) -> None:
    """Verify the CRC-32 of every record in the checkpoint's zip archive, so that a damaged file (a broken download,
    a bad disk) is refused here instead of loading NaN or garbage weights that validate to mAP 0."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint, its archive cannot be read ({e}); download or copy it "
                              "again") from None
    if bad is not None:
        raise CheckpointError(f"{path}: damaged checkpoint, the record '{bad}' fails its CRC-32 check (the file was "
                              "corrupted after it was written); download or copy it again")


def _from_official(ckpt: Any, path: Path) -> dict:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    stub = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(stub, ModuleStub) or not isinstance(stub.__dict__.get("yaml"), dict):
        raise CheckpointError(f"{path}: checkpoint has no model with a 'yaml' architecture")
    arch = {k: v for k, v in stub.yaml.items() if k != "ch"}
    names = stub.__dict__.get("names", [])
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    stride = stub.__dict__.get("stride")
    opt = ckpt.get("opt")
    return {"format": FORMAT, "version": VERSION, "arch": arch, "names": names, "nc": int(arch.get("nc", len(names))),
            "stride": [float(s) for s in stride] if stride is not None else [], "model": stub_to_state(stub),
            "epoch": int(ckpt.get("epoch", -1) or -1), "best_fitness": _plain(ckpt.get("best_fitness")),
            "train_args": _plain(opt) if isinstance(opt, dict) else {}, "source": "yolov5-official",
            "date": str(ckpt.get("date", ""))}


def load_weights(model: torch.nn.Module, state: dict, path: str | Path, entry: str = "model") -> None:
    """Load the state dict ``state`` (checkpoint entry ``entry`` of ``path``) into ``model`` exactly, as fp32.

    Raises:
        CheckpointError: the weights do not fit the model (missing, unexpected or differently shaped tensors), or
            hold NaN/Inf, naming the file, the entry and the first tensor at fault.
    """
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:  # such weights validate to 0 and detect nothing, silently
        raise CheckpointError(f"{path}: checkpoint entry '{entry}' holds NaN or infinite values (first in '{bad}'); "
                              "the weights are damaged, e.g. by a training run that diverged")
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{path}: checkpoint entry '{entry}' does not fit the model's architecture: "
                              f"{' '.join(x.strip() for x in first[:3])}") from None
