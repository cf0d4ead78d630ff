"""Per-leaf channel overrides: how a pruned architecture is described and rebuilt.

A pruned model is the original model dict plus an entry ``channels``: a dict from module path (``"model.2.cv1.conv"``)
to the new shape of that leaf:

- ``nn.Conv2d``: ``[in_channels, out_channels, groups]``
- ``nn.BatchNorm2d`` / ``nn.BatchNorm1d``: ``[num_features]``
- ``nn.Linear``: ``[in_features, out_features]``

The builder first makes the original structure, then :func:`apply_channel_overrides` swaps each listed leaf for a fresh
module of the new shape with the same hyperparameters. No block needs pruning-specific constructor arguments, so every
architecture the builder can make can be pruned, and a checkpoint (arch dict + state dict) rebuilds it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from models.builder import ModelConfigError
from models.summary import count_params

__all__ = ["apply_channel_overrides", "leaf_shape"]


def leaf_shape(m: nn.Module) -> list[int]:
    """The override shape of a leaf module as it is now (the format of the ``channels`` entries).

    Raises:
        TypeError: ``m`` is not a Conv2d, BatchNorm1d/2d or Linear.
    """
    if isinstance(m, nn.Conv2d):
        return [m.in_channels, m.out_channels, m.groups]
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return [m.num_features]
    if isinstance(m, nn.Linear):
        return [m.in_features, m.out_features]
    raise TypeError(f"no channel override format for {type(m).__name__}")


def _rebuilt(path: str, old: nn.Module, shape: Sequence[int]) -> nn.Module:
    """A fresh module like ``old`` (same class and hyperparameters) with the channel shape ``shape``."""
    shape = [int(v) for v in shape]
    expected = len(leaf_shape(old))
    if len(shape) != expected or min(shape) < 1:
        raise ModelConfigError(f"channels['{path}']: expected {expected} positive ints for a {type(old).__name__} "
                               f"({'[in, out, groups]' if expected == 3 else '[in, out]' if expected == 2 else '[n]'}),"
                               f" got {list(shape)}")
    if isinstance(old, nn.Conv2d):
        c1, c2, g = shape
        if c1 % g or c2 % g:
            raise ModelConfigError(f"channels['{path}']: in ({c1}) and out ({c2}) must divide by groups ({g})")
        return type(old)(c1, c2, old.kernel_size, old.stride, old.padding, old.dilation, g, bias=old.bias is not None,
                         padding_mode=old.padding_mode)
    if isinstance(old, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return type(old)(shape[0], eps=old.eps, momentum=old.momentum, affine=old.affine,
                         track_running_stats=old.track_running_stats)
    return type(old)(shape[0], shape[1], bias=old.bias is not None)


def apply_channel_overrides(root: nn.Module, channels: Mapping[str, Sequence[int]]) -> None:
    """Replace each leaf named in ``channels`` (paths relative to ``root``) by a fresh module of the given shape.

    New modules are created on the CPU in float32 with default initial values: call this while building, before
    weights are loaded. The builder's per-layer parameter counts (``np`` on ``root.model`` layers) are refreshed.

    Raises:
        ModelConfigError: naming the path, when it does not exist, is not a Conv2d/BatchNorm/Linear, or the shape is
            malformed.
    """
    for path, shape in channels.items():
        parent_path, _, name = path.rpartition(".")
        try:
            parent = root.get_submodule(parent_path) if parent_path else root
            old = getattr(parent, name)
        except AttributeError:
            raise ModelConfigError(f"channels['{path}']: the model has no module at this path") from None
        if not isinstance(old, (nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d, nn.Linear)):
            raise ModelConfigError(f"channels['{path}']: expected a Conv2d, BatchNorm or Linear, "
                                   f"found {type(old).__name__}")
        setattr(parent, name, _rebuilt(path, old, shape))  # also right for Sequential/ModuleList items ("0", "1"...)
    layers = getattr(root, "model", None)
    if isinstance(layers, nn.Sequential):
        for layer in layers:
            if hasattr(layer, "np"):
                layer.np = count_params(layer)
