"""Trace one forward pass and record how channels flow: the raw material of the channel dependency graph.

Every channel of every traced tensor carries a *slot* (an int). Convs and linears make fresh slots for their outputs
(a *space* per layer); element-wise ops pass slots through; a residual add or a squeeze-excite multiply *unites* the
slots of its two operands (union-find), so that they are kept or removed together; a concat lines up its inputs' slots.
Whatever the tracer cannot map exactly (a channel split, a channel shuffle, an unknown op) marks the slots it reads
as unprunable, with a reason. The result is a :class:`ChannelTrace`; :mod:`pruning.graph` turns it into groups.

The trace runs the real model (eval mode, ``no_grad``) under a ``TorchFunctionMode``, so any Python control flow works
and every op is seen with real shapes. Layers are identified by their parameters (a conv is the module whose weight
``F.conv2d`` receives), never by module names.

Besides slots, each tensor channel carries a *gated* flag: whether it is exactly 0 when its channel is masked (BN gamma
and beta zeroed). A normal conv reading a channel that is not gated (e.g. a sigmoid after the BN) could not drop it
without changing its output, so such channels are unprunable too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from pruning import ops
from pruning.slots import ChannelTrace

__all__ = ["trace_channels"]

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class _Info:
    slots: np.ndarray
    gated: np.ndarray
    src: str | None = None  # the conv/linear whose output this tensor is, if directly


def _arg(args: tuple, kwargs: dict, i: int, name: str, default=None):  # noqa: ANN001, ANN202 - any torch argument
    return args[i] if len(args) > i else kwargs.get(name, default)


def _full_slice(e: object) -> bool:
    return isinstance(e, slice) and e == slice(None)


def _index_keeps_channels(idx: object, ndim: int) -> bool:
    """True when ``x[idx]`` leaves dims 0 (batch) and 1 (channels) whole and in place."""
    items = idx if isinstance(idx, tuple) else (idx,)
    if any(isinstance(e, (torch.Tensor, list, bool, np.ndarray)) for e in items):
        return False  # advanced indexing may move dims
    ell = [i for i, e in enumerate(items) if e is Ellipsis]
    head = items[:ell[0]] if ell else items
    if not all(_full_slice(e) for e in head[:2]):
        return False
    if len(head) >= 2 or not ell:
        return True
    n_tail = sum(1 for e in items[ell[0] + 1:] if e is not None)
    return ndim - n_tail >= 2


class _Tracer(TorchFunctionMode):
    """Records every torch call of the forward pass into a :class:`ChannelTrace`."""

    def __init__(self, trace: ChannelTrace, leaves: dict[int, tuple[str, nn.Module]], where: list[str]) -> None:
        super().__init__()
        self.t = trace
        self.leaves = leaves
        self.where = where
        self.info: dict[int, _Info] = {}
        self.alive: list[torch.Tensor] = []  # traced tensors stay alive so that their ids are never reused

    # -- bookkeeping ---------------------------------------------------------------------------------------------------
    def set(self, x: torch.Tensor, info: _Info) -> None:
        self.info[id(x)] = info
        self.alive.append(x)

    def get(self, x: object) -> _Info | None:
        return self.info.get(id(x)) if isinstance(x, torch.Tensor) else None

    def get_or_opaque(self, x: torch.Tensor, what: str) -> _Info:
        info = self.get(x)
        if info is None:
            c = x.shape[1] if x.ndim >= 2 else 0
            info = _Info(self.t.new_space("opaque", None, c, f"{what} of unknown origin"), np.zeros(c, bool))
        return info

    def here(self) -> str:
        return self.where[-1] if self.where else "the model"

    def opaque(self, name: str, ins: list[torch.Tensor], outs: list[torch.Tensor], why: str = "") -> None:
        """An op the tracer cannot map: its inputs' channels become unprunable, its outputs get unprunable slots."""
        reason = why or f"read by unsupported op '{name}' in {self.here()}"
        for x in ins:
            info = self.get(x)
            if info is not None:
                self.t.mark(info.slots, reason)
        for y in outs:
            if y.ndim >= 2:
                self.set(y, _Info(self.t.new_space("opaque", None, y.shape[1], reason), np.zeros(y.shape[1], bool)))

    def preserve(self, x: _Info, outs: list[torch.Tensor], like: torch.Tensor, gated: bool | None = None) -> None:
        """Outputs carry the input's channels (same slots); ``gated`` False when the op turns 0 into non-zero."""
        g = x.gated.copy() if gated is None or gated else np.zeros_like(x.gated)
        for y in outs:
            if y.ndim >= 2 and y.shape[1] == len(x.slots) and (y.ndim == like.ndim or y.shape[:2] == like.shape[:2]):
                self.set(y, _Info(x.slots, g))
            elif y.ndim >= 2:
                self.opaque("", [like], [y], f"channel count changed by an op in {self.here()}")

    # -- the mode ------------------------------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch protocol
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name not in ops.IGNORED_OPS:
            self.handle(name, args, kwargs, out)
        return out

    def handle(self, name: str, args: tuple, kwargs: dict, out: object) -> None:
        """Map one call's channels (see the module docstring)."""
        layer = {"conv2d": self.conv, "linear": self.linear, "batch_norm": self.batch_norm}.get(name)
        if layer is not None:
            return layer(args, kwargs, out)
        ins = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor) and id(a) in self.info]
        if not ins:
            return None
        if name == "__setitem__":
            return self.opaque(name, ins, [], f"in-place index assignment in {self.here()}")
        outs = [y for y in tree_leaves(out) if isinstance(y, torch.Tensor)]
        if not outs:
            return None
        if name in ops.ADD_OPS | ops.RSUB_OPS | ops.MUL_OPS | ops.DIV_OPS | ops.RDIV_OPS:
            return self.binary(name, args, kwargs, out)
        if name in ops.CAT_OPS or name == "stack":
            return self.cat(name, args, kwargs, out)
        x = args[0] if args and isinstance(args[0], torch.Tensor) else ins[0]
        xi = self.get(x)
        if xi is None:  # only a secondary argument is traced (e.g. a weight computed from features)
            return self.opaque(name, ins, outs)
        if name in ops.RESHAPE_OPS | ops.PERMUTE_OPS | ops.TRANSPOSE_OPS | ops.SPLIT_OPS or name == "__getitem__":
            return self.shape_op(name, args, kwargs, x, xi, outs)
        return self.pointwise(name, args, kwargs, x, xi, outs)

    def pointwise(self, name: str, args: tuple, kwargs: dict, x: torch.Tensor, xi: _Info,
                  outs: list[torch.Tensor]) -> None:
        """Ops that keep every channel where it is (activations, pooling, resampling, clamps, reductions over
        spatial dims); anything else is unsupported."""
        if name in ops.ZERO_PRESERVING or name in ops.NOT_ZERO_PRESERVING:
            return self.preserve(xi, outs, x, gated=name in ops.ZERO_PRESERVING)
        if name in ops.CLAMP_OPS or name == "hardtanh":
            ht = name == "hardtanh"
            lo = _arg(args, kwargs, 1, "min_val" if ht else "min", -1.0 if ht else None)
            hi = _arg(args, kwargs, 2, "max_val" if ht else "max", 1.0 if ht else None)
            ok = (lo is None or float(lo) <= 0) and (hi is None or float(hi) >= 0)
            return self.preserve(xi, outs, x, gated=ok)
        if name == "prelu":
            w = _arg(args, kwargs, 1, "weight")
            if isinstance(w, torch.Tensor) and w.numel() == 1:
                return self.preserve(xi, outs, x)
            return self.opaque(name, [x], outs, f"per-channel PReLU weights in {self.here()} are not sliced")
        if name == "pad":
            pad = _arg(args, kwargs, 1, "pad")
            mode, value = _arg(args, kwargs, 2, "mode", "constant"), _arg(args, kwargs, 3, "value", None)
            if len(pad) // 2 > x.ndim - 2:
                return self.opaque(name, [x], outs, f"padding of the channel dim in {self.here()}")
            return self.preserve(xi, outs, x, gated=mode != "constant" or not value)
        if name in ops.SOFTMAX_OPS or name in ops.REDUCE_OPS:
            d = _arg(args, kwargs, 1, "dim")
            dims = [d] if isinstance(d, int) else list(d or [])
            if not dims or any(k % x.ndim < 2 for k in dims):
                return self.opaque(name, [x], outs, f"'{name}' over the channel or batch dim in {self.here()}")
            return self.preserve(xi, outs, x, gated=name in ops.REDUCE_OPS)
        return self.opaque(name, [x], outs)

    def shape_op(self, name: str, args: tuple, kwargs: dict, x: torch.Tensor, xi: _Info,
                 outs: list[torch.Tensor]) -> None:
        """Reshapes, indexing, permutations and splits: fine while dims 0 and 1 stay whole and in place."""
        if name in ops.RESHAPE_OPS or name == "__getitem__":
            keep = name != "__getitem__" or _index_keeps_channels(args[1], x.ndim)
            y = outs[0]
            if keep and len(outs) == 1 and y.ndim >= 2 and tuple(y.shape[:2]) == tuple(x.shape[:2]):
                return self.preserve(xi, outs, x)
            what = "channel slice/index" if name == "__getitem__" else f"'{name}' across the channel dim"
            return self.opaque(name, [x], outs, f"{what} in {self.here()} (e.g. a channel split or shuffle)")
        if name in ops.SPLIT_OPS:
            d = _arg(args, kwargs, 1 if name == "unbind" else 2, "dim", 0) % x.ndim
            if d >= 2 or (d == 0 and name != "unbind"):
                return self.preserve(xi, outs, x)
            return self.opaque(name, [x], outs, f"'{name}' along the channel dim in {self.here()}: the pruned model "
                                                "would split at other positions")
        if name in ops.PERMUTE_OPS:
            perm = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
            keep = [p % x.ndim for p in (perm or kwargs.get("dims", ()))][:2] == [0, 1]
        else:
            keep = all(_arg(args, kwargs, i, n) % x.ndim >= 2 for i, n in ((1, "dim0"), (2, "dim1")))
        if keep:
            return self.preserve(xi, outs, x)
        return self.opaque(name, [x], outs, f"'{name}' moves the channel dim in {self.here()}")

    # -- layers --------------------------------------------------------------------------------------------------------
    def leaf(self, w: object) -> tuple[str, nn.Module] | None:
        return self.leaves.get(id(w)) if isinstance(w, torch.Tensor) else None

    def conv(self, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        x, leaf = args[0], self.leaf(_arg(args, kwargs, 1, "weight"))
        if leaf is None:
            return self.opaque("conv2d", [x], [out], f"conv2d with a computed weight in {self.here()}")
        path, m = leaf
        xi = self.get_or_opaque(x, f"input of {path}")
        g = m.groups
        if g > 1 and g == m.in_channels == m.out_channels:  # depthwise: output channel j is input channel j
            self.t.record(path, "depthwise", xi.slots)
            return self.set(out, _Info(xi.slots, xi.gated & (m.bias is None), src=path))
        grouped = f"grouped conv {path} (groups={g}) keeps its widths" if g > 1 else None
        if grouped:
            self.t.mark(xi.slots, grouped)
        self.t.record(path, "consumer", xi.slots, xi.gated)
        slots = self.t.space_for(path, "conv", m.out_channels, grouped)
        self.t.record(path, "producer", slots)
        self.set(out, _Info(slots, np.zeros(len(slots), bool), src=path))

    def linear(self, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        x, leaf = args[0], self.leaf(_arg(args, kwargs, 1, "weight"))
        if leaf is None or x.ndim != 2:
            why = (f"linear over a {x.ndim}-d tensor in {self.here()}" if leaf
                   else f"linear with a computed weight in {self.here()}")
            return self.opaque("linear", [x], [out], why)
        path, m = leaf
        xi = self.get_or_opaque(x, f"input of {path}")
        self.t.record(path, "consumer", xi.slots, xi.gated)
        slots = self.t.space_for(path, "linear", m.out_features)
        self.t.record(path, "producer", slots)
        self.set(out, _Info(slots, np.zeros(len(slots), bool), src=path))

    def batch_norm(self, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        x = args[0]
        leaf = self.leaf(_arg(args, kwargs, 3, "weight")) or self.leaf(_arg(args, kwargs, 1, "running_mean"))
        if leaf is None:
            return self.opaque("batch_norm", [x], [out], f"functional batch_norm in {self.here()}")
        path, m = leaf
        xi = self.get_or_opaque(x, f"input of {path}")
        if not m.affine:
            self.t.mark(xi.slots, f"{path} has no affine weights to score")
            return self.set(out, _Info(xi.slots, np.zeros(len(xi.slots), bool)))
        self.t.record(path, "bn", xi.slots)
        if xi.src is not None:
            self.t.bn_after.setdefault(xi.src, path)
        self.set(out, _Info(xi.slots, np.ones(len(xi.slots), bool)))

    # -- multi-input ops -----------------------------------------------------------------------------------------------
    def binary(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        """add/sub tie both operands (a residual), mul/div too (squeeze-excite); broadcast operands are neutral."""
        a, b = args[0], _arg(args, kwargs, 1, "other")
        operands = [t for t in (a, b) if isinstance(t, torch.Tensor)]
        if not isinstance(out, torch.Tensor) or out.ndim < 2:
            return self.opaque(name, operands, [out] if isinstance(out, torch.Tensor) else [])
        c = out.shape[1]
        aligned: list[_Info] = []
        neutral = len(operands) < 2  # a Python scalar
        for t in operands:
            info = self.get(t)
            k = 1 - (out.ndim - t.ndim)  # t's dim that lines up with the output's channel dim
            size = t.shape[k] if k >= 0 else 1
            if info is not None and t.ndim != out.ndim:
                return self.opaque(name, operands, [out], f"'{name}' moves channels to another dim in {self.here()}")
            if info is not None and size == c:
                aligned.append(info)
            elif info is not None:  # a one-channel tensor broadcast over all channels
                self.t.mark(info.slots, f"one channel broadcast over many in {self.here()}")
                neutral = True
            elif size == c and c > 1:  # a per-channel tensor the tracer did not follow (a parameter, a constant)
                return self.opaque(name, operands, [out], f"'{name}' with a per-channel tensor of unknown origin in "
                                                          f"{self.here()}")
            else:
                neutral = True
        if not aligned:
            return self.opaque(name, operands, [out])
        if len(aligned) == 2:
            self.t.union(aligned[0].slots, aligned[1].slots, residual=name in ops.ADD_OPS | ops.RSUB_OPS)
        if name in ops.MUL_OPS:
            gated = np.logical_or.reduce([i.gated for i in aligned])
        elif name in ops.DIV_OPS or name in ops.RDIV_OPS:
            ni = self.get(a if name in ops.DIV_OPS else b)
            gated = ni.gated.copy() if ni is not None else np.zeros(c, bool)
        else:
            gated = np.logical_and.reduce([i.gated for i in aligned]) & (not neutral)
        self.set(out, _Info(aligned[0].slots, np.asarray(gated, bool)))

    def cat(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        """Concat along channels lines slots up end to end; along another dim it ties the inputs like an add."""
        tensors = list(_arg(args, kwargs, 0, "tensors"))
        d = _arg(args, kwargs, 1, "dim", 0) % out.ndim
        if name == "stack" and d < 2:
            return self.opaque(name, tensors, [out], f"'stack' along the batch/channel dim in {self.here()}")
        if name != "stack" and d == 1:
            infos = [self.get_or_opaque(t, f"part of a concat in {self.here()}") for t in tensors]
            return self.set(out, _Info(np.concatenate([i.slots for i in infos]),
                                       np.concatenate([i.gated for i in infos])))
        infos = [self.get(t) for t in tensors]
        if any(i is None for i in infos) or len({len(i.slots) for i in infos}) != 1:
            return self.opaque(name, tensors, [out], f"'{name}' of traced with untraced tensors in {self.here()}")
        for i in infos[1:]:
            self.t.union(infos[0].slots, i.slots)
        self.set(out, _Info(infos[0].slots, np.logical_and.reduce([i.gated for i in infos])))


def trace_channels(model: nn.Module, example_input: torch.Tensor) -> ChannelTrace:
    """Run ``model`` once on ``example_input`` (eval mode, no_grad; modes restored) and record its channel flow.

    Args:
        model: any module whose forward takes one image tensor (a ``models.yolo.Model``, a backbone, a toy net).
        example_input: an input of the right channel count; its values do not matter, its size must be valid.

    Returns:
        The :class:`ChannelTrace`: slots, their union-find ties and unprunable reasons, and per-layer records.
    """
    trace = ChannelTrace()
    leaves: dict[int, tuple[str, nn.Module]] = {}
    for path, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear) + _BN_TYPES):
            key = m.weight if m.weight is not None else getattr(m, "running_mean", None)
            if key is not None:
                leaves[id(key)] = (path, m)
    where: list[str] = []  # the stack of modules being run, for reasons that say where

    def enter(label: str):  # noqa: ANN202
        def hook(*_: object) -> None:
            where.append(label)
        return hook

    def leave(*_: object) -> None:  # returns None: a forward hook's return value would replace the output
        where.pop()

    handles = []
    for path, m in model.named_modules():
        handles.append(m.register_forward_pre_hook(enter(f"{path or 'the model'} ({type(m).__name__})")))
        handles.append(m.register_forward_hook(leave))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    tracer = _Tracer(trace, leaves, where)
    c = example_input.shape[1]
    tracer.set(example_input, _Info(trace.new_space("input", None, c, "model input channels"), np.zeros(c, bool)))
    try:
        with torch.no_grad(), tracer:
            out = model(example_input)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    for y in tree_leaves(out):
        info = tracer.get(y)
        if info is not None:
            trace.mark(info.slots, "reaches the model output")
    for rec in trace.records.values():
        if rec.role == "consumer" and rec.gated is not None and not rec.gated.all():
            for slot in rec.slots[~rec.gated].tolist():
                trace.soft_reasons.setdefault(slot, f"not zero when masked where {rec.path} reads it (an op such as a "
                                                    "sigmoid between the BatchNorm and the reader)")
    return trace
