"""Channel dependency graph: coupled channel groups derived from how channels flow through a built model.

A :class:`ChannelGroup` is a set of producer layers whose output channels are tied index by index (one conv alone, or
the convs a residual add / a squeeze-excite multiply joins), with everything that must shrink with them: the BatchNorms
on those channels, depthwise convs, and the input slices of the layers reading them (a concat puts a group's channels
at an offset in its readers' inputs). Group channel ``k`` is kept or removed everywhere at once.

Built from a trace (:mod:`pruning.trace`), not from module names, so any architecture the builder makes is covered;
what cannot be mapped exactly is reported as unprunable with the reason.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from pruning.slots import ChannelTrace
from pruning.trace import trace_channels
from utils.torch_utils import unwrap

__all__ = ["Member", "ChannelGroup", "build_groups", "groups_from_trace", "default_input"]

ROLES = ("producer", "bn", "depthwise", "consumer")


@dataclass
class Member:
    """One layer's share of a group.

    Attributes:
        path: module path (``model.2.cv1.conv``).
        role: ``producer`` (its output channels), ``bn``, ``depthwise`` (in = out channels) or ``consumer`` (its input
            channels).
        positions: the layer's channel indices (output, BN, or input index) that belong to this group.
        index: for each position, the group channel it carries (a concat reader sees a group at an offset; SPPF's
            reader sees the same group channel four times).
    """

    path: str
    role: str
    positions: list[int] = field(default_factory=list)
    index: list[int] = field(default_factory=list)


@dataclass
class ChannelGroup:
    """Channels kept or removed together; see the module docstring.

    Attributes:
        id: position in the list returned by :func:`build_groups`.
        width: number of group channels.
        members: every layer that shrinks when a group channel goes.
        residual: tied by a residual add (these are skipped in ``mode='normal'``).
        prunable: False when any of its channels cannot be removed exactly; ``reason`` says why.
    """

    id: int
    width: int
    members: list[Member]
    residual: bool = False
    prunable: bool = True
    reason: str = ""

    def by_role(self, role: str) -> list[Member]:
        """Members with the given role."""
        return [m for m in self.members if m.role == role]

    @property
    def bns(self) -> list[Member]:
        """The BatchNorm members (their gammas score the group's channels)."""
        return self.by_role("bn")

    @property
    def name(self) -> str:
        """A readable label: the first producer's path (or, without one, the input of the first reader)."""
        prods = self.by_role("producer")
        return prods[0].path if prods else f"input of {self.members[0].path}"


def default_input(model: nn.Module, imgsz: int = 64, ch: int = 3) -> torch.Tensor:
    """A zero image on the model's device and dtype; ``imgsz`` should be a multiple of the largest stride."""
    p = next(model.parameters(), None)
    kw = {"device": p.device, "dtype": p.dtype} if p is not None else {}
    stride = getattr(model, "stride", None)
    if isinstance(stride, torch.Tensor) and stride.numel():
        s = int(stride.max().item())
        imgsz = max(imgsz, s) // s * s
    return torch.zeros(1, ch, imgsz, imgsz, **kw)


def build_groups(model: nn.Module, example_input: torch.Tensor | None = None) -> list[ChannelGroup]:
    """Trace ``model`` and return its coupled channel groups (prunable or not, with reasons).

    Args:
        model: the model (DDP wrappers are unwrapped); it is run once in eval mode and left as it was.
        example_input: an input tensor; default a 64x64 zero image (:func:`default_input`).
    """
    model = unwrap(model)
    x = example_input if example_input is not None else default_input(model)
    return groups_from_trace(trace_channels(model, x))


def groups_from_trace(trace: ChannelTrace) -> list[ChannelGroup]:
    """Turn a :class:`ChannelTrace` into groups: producer spaces joined by shared channel classes."""
    n = len(trace.parent)
    root = [trace.find(s) for s in range(n)]
    # Spaces are joined when a channel class spans them (an add or a multiply tied them).
    sp_parent = list(range(len(trace.spaces)))

    def sp_find(i: int) -> int:
        while sp_parent[i] != i:
            sp_parent[i] = sp_parent[sp_parent[i]]
            i = sp_parent[i]
        return i

    for s in range(n):
        a, b = sp_find(trace.space_of[s]), sp_find(trace.space_of[root[s]])
        if a != b:
            sp_parent[max(a, b)] = min(a, b)
    # Group channels: the distinct classes of a component, in trace order.
    comp_classes: dict[int, dict[int, int]] = defaultdict(dict)
    for s in range(n):
        classes = comp_classes[sp_find(trace.space_of[s])]
        if root[s] not in classes:
            classes[root[s]] = len(classes)
    reason: dict[int, str] = {}
    for s in sorted(trace.reasons):
        reason.setdefault(root[s], trace.reasons[s])
    soft: dict[int, str] = {}
    for s in sorted(trace.soft_reasons):
        soft.setdefault(root[s], trace.soft_reasons[s])
    residual_roots = {root[s] for s in trace.residual}

    members: dict[int, dict[tuple[str, str], Member]] = defaultdict(dict)
    has_bn: set[int] = set()
    for rec in trace.records.values():
        for j, s in enumerate(rec.slots.tolist()):
            r = root[s]
            comp = sp_find(trace.space_of[r])
            m = members[comp].setdefault((rec.path, rec.role), Member(rec.path, rec.role))
            m.positions.append(j)
            m.index.append(comp_classes[comp][r])
            if rec.role == "bn":
                has_bn.add(r)

    comp_kinds: dict[int, set[str]] = defaultdict(set)
    for sp in trace.spaces:
        comp_kinds[sp_find(sp.index)].add(sp.kind)
    groups: list[ChannelGroup] = []
    for comp in sorted(members):
        classes = comp_classes[comp]
        mems = sorted(members[comp].values(), key=lambda m: ROLES.index(m.role))
        why = next((reason[r] for r in classes if r in reason), "")
        kinds = comp_kinds[comp]
        if not why and not all(r in has_bn for r in classes):
            why = "no BatchNorm on these channels to score them"
        if not why and not kinds <= {"conv", "linear"}:
            why = "channels of unknown origin"
        if not why:
            why = next((soft[r] for r in classes if r in soft), "")
        groups.append(ChannelGroup(id=len(groups), width=len(classes), members=mems,
                                   residual=any(r in residual_roots for r in classes), prunable=not why, reason=why))
    return groups
