"""Registry that maps the module names used in model YAML files to classes.

The YAML schema rows are ``[from, number, module, args]``. How a row's ``args`` become constructor arguments depends on
the module's *kind*, recorded at registration:

- ``conv``: ``args[0]`` is the output width (scaled by ``width_multiple``); the input width is inserted in front.
- ``csp``: like ``conv``, and the row's ``number`` (scaled by ``depth_multiple``) is passed as the third argument
  instead of repeating the module.
- ``concat``: output width is the sum of the input widths; ``args`` pass through.
- ``identity``: output width equals the input width; ``args`` pass through (``nn.Upsample``, pooling).
- ``head``: the Detect head; it gets the list of input widths appended.

Blocks register themselves where they are defined (``@register_module(...)`` on the class; torch layers that the
schema names, such as ``nn.Upsample``, are registered in ``models.common``). This module imports none of them: importing
the ``models`` package imports the block modules once, so every name is registered before a YAML is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

__all__ = ["ModuleSpec", "register_module", "get_module", "list_modules", "KINDS"]

KINDS = ("conv", "csp", "concat", "identity", "head")


@dataclass(frozen=True)
class ModuleSpec:
    """A registered module: its class and how the builder wires its arguments."""

    name: str
    cls: type[nn.Module]
    kind: str


_REGISTRY: dict[str, ModuleSpec] = {}


def register_module(name: str | None = None, kind: str = "conv") -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that registers a module under ``name`` (default: the class name).

    Args:
        name: the name used in model YAML files.
        kind: one of ``KINDS``; says how the builder passes widths (see the module docstring).

    Raises:
        ValueError: on an unknown kind or a name registered twice.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown module kind '{kind}', expected one of {KINDS}")

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        key = name or cls.__name__
        if key in _REGISTRY:
            raise ValueError(f"module name '{key}' is registered twice ({_REGISTRY[key].cls} and {cls})")
        _REGISTRY[key] = ModuleSpec(key, cls, kind)
        return cls

    return wrap


def get_module(name: str) -> ModuleSpec:
    """Look up a registered module by its YAML name.

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown module '{name}'; known modules: {', '.join(sorted(_REGISTRY))}") from None


def list_modules() -> list[str]:
    """Names of all registered modules, sorted."""
    return sorted(_REGISTRY)

