"""Read official YOLOv5 checkpoints without running code from them.

An official ``.pt`` file is a zip-pickle of live objects (``models.yolo.Model`` and friends). We unpickle it with an
allow-list: the tensor rebuild functions, ``OrderedDict``/``set``, and the expected module classes, which are turned into
inert stubs that only record their state. Anything else (``os.system``, ``builtins.eval``, an unknown class) stops the
load with :class:`UnsafeCheckpointError` before it is called. The stubs are then read into plain state dicts.
"""

from __future__ import annotations

import collections
import pickle
import types
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnsafeCheckpointError", "load_official", "stub_to_state", "ModuleStub"]

_YOLO_CLASSES = {
    "models.yolo": {"Model", "DetectionModel", "Detect"},
    "models.common": {"Conv", "DWConv", "Focus", "Bottleneck", "C3", "SPP", "SPPF", "Concat", "GhostConv",
                      "GhostBottleneck", "C3Ghost"},
}
_TORCH_MODULES = {
    "torch.nn.modules.activation": {"SiLU", "ReLU", "LeakyReLU", "Hardswish", "Sigmoid", "Identity"},
    "torch.nn.modules.batchnorm": {"BatchNorm2d"},
    "torch.nn.modules.container": {"ModuleList", "Sequential"},
    "torch.nn.modules.conv": {"Conv2d"},
    "torch.nn.modules.pooling": {"MaxPool2d"},
    "torch.nn.modules.upsampling": {"Upsample"},
    "torch.nn.modules.linear": {"Identity"},
}
_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("torch", "Size"): torch.Size,
}


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint names a global that is not on the allow-list (a ValueError too: scripts report it as a user
    error, one ``ERROR:`` line and exit code 2)."""


class ModuleStub:
    """Inert stand-in for a pickled module: keeps the pickled ``__dict__`` and the original class path."""

    qualname = "ModuleStub"

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {})


_STUBS: dict[str, type] = {}


def _stub_class(path: str) -> type:
    if path not in _STUBS:
        _STUBS[path] = type(path.rsplit(".", 1)[-1], (ModuleStub,), {"qualname": path})
    return _STUBS[path]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _FUNCTIONS:
            return _FUNCTIONS[(module, name)]
        if name in _YOLO_CLASSES.get(module, ()) or name in _TORCH_MODULES.get(module, ()):
            return _stub_class(f"{module}.{name}")
        raise UnsafeCheckpointError(f"refusing to load '{module}.{name}': not an expected class in a YOLOv5 checkpoint")


def _restricted_pickle_module() -> types.ModuleType:
    mod = types.ModuleType("restricted_pickle")
    mod.Unpickler = _RestrictedUnpickler
    mod.load = lambda f, **kw: _RestrictedUnpickler(f, **kw).load()
    mod.__name__ = "restricted_pickle"
    return mod


def load_official(path: str | Path) -> dict:
    """Unpickle an official YOLOv5 checkpoint with the allow-list; module objects come back as :class:`ModuleStub`.

    Raises:
        UnsafeCheckpointError: the file names a global outside the allow-list (nothing from it was called).
    """
    # weights_only=False is required to pass our own pickle module; the allow-list in find_class is the safety net.
    return torch.load(path, map_location="cpu", pickle_module=_restricted_pickle_module(), weights_only=False)


def stub_to_state(stub: ModuleStub, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a stub tree into a ``state_dict``-style mapping (parameters and persistent buffers)."""
    out: dict[str, torch.Tensor] = {}
    d = stub.__dict__
    non_persistent = d.get("_non_persistent_buffers_set", set())
    for k, v in (d.get("_parameters") or {}).items():
        if v is not None:
            out[prefix + k] = v.detach()
    for k, v in (d.get("_buffers") or {}).items():
        if v is not None and k not in non_persistent:
            out[prefix + k] = v
    for k, child in (d.get("_modules") or {}).items():
        if isinstance(child, ModuleStub):
            out.update(stub_to_state(child, f"{prefix}{k}."))
    return out
