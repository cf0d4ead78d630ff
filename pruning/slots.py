"""Channel slots: the union-find that records which channels of a traced model must be kept or removed together.

Every channel of every traced tensor carries a slot (an int). A producer layer (conv, linear) owns a *space* of fresh
slots for its outputs; ties (a residual add, a squeeze-excite multiply, a layer called twice) unite slots; marks make
slots unprunable with a reason. :mod:`pruning.trace` fills a :class:`ChannelTrace`, :mod:`pruning.graph` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Space", "Record", "ChannelTrace"]


@dataclass
class Space:
    """The output channels of one producer (``conv``/``linear``), or untraceable ones (``input``/``opaque``)."""

    index: int
    kind: str
    path: str | None
    start: int
    size: int


@dataclass
class Record:
    """What one layer does to channels: ``role`` is ``producer`` (its outputs), ``consumer`` (its inputs), ``bn`` or
    ``depthwise`` (in == out channels, tied); ``slots[j]`` is the slot of the layer's channel ``j``."""

    path: str
    role: str
    slots: np.ndarray
    gated: np.ndarray | None = None


@dataclass
class ChannelTrace:
    """Union-find over channel slots plus the records of every layer; see the module docstring."""

    parent: list[int] = field(default_factory=list)
    space_of: list[int] = field(default_factory=list)
    spaces: list[Space] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)  # slot -> why it cannot be pruned (first reason wins)
    soft_reasons: dict[int, str] = field(default_factory=dict)  # slot -> not exactly removable (not zero when masked)
    residual: set[int] = field(default_factory=set)  # slots tied by an add/sub
    records: dict[tuple[str, str], Record] = field(default_factory=dict)  # (path, role) -> record, in call order
    bn_after: dict[str, str] = field(default_factory=dict)  # conv/linear path -> the BN that reads its output directly
    space_by_path: dict[str, int] = field(default_factory=dict)

    def new_space(self, kind: str, path: str | None, size: int, reason: str | None = None) -> np.ndarray:
        """Allocate ``size`` fresh slots (a space), optionally unprunable with ``reason``; returns them."""
        start = len(self.parent)
        space = Space(len(self.spaces), kind, path, start, size)
        self.spaces.append(space)
        self.parent.extend(range(start, start + size))
        self.space_of.extend([space.index] * size)
        slots = np.arange(start, start + size, dtype=np.int64)
        if reason:
            self.mark(slots, reason)
        return slots

    def space_for(self, path: str, kind: str, size: int, reason: str | None = None) -> np.ndarray:
        """The output slots of layer ``path``: the same ones every time the layer is called."""
        if path in self.space_by_path:
            s = self.spaces[self.space_by_path[path]]
            return np.arange(s.start, s.start + s.size, dtype=np.int64)
        slots = self.new_space(kind, path, size, reason)
        self.space_by_path[path] = len(self.spaces) - 1
        return slots

    def find(self, s: int) -> int:
        """Root slot of ``s`` (path halving)."""
        p = self.parent
        while p[s] != s:
            p[s] = p[p[s]]
            s = p[s]
        return s

    def union(self, a: np.ndarray, b: np.ndarray, residual: bool = False) -> None:
        """Tie ``a[i]`` with ``b[i]`` for every i (same channel index on both sides)."""
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)
            if residual:
                self.residual.update((x, y))

    def mark(self, slots: np.ndarray, reason: str) -> None:
        """Make ``slots`` unprunable; the first reason given to a slot is kept."""
        for s in slots.tolist():
            self.reasons.setdefault(s, reason)

    def record(self, path: str, role: str, slots: np.ndarray, gated: np.ndarray | None = None) -> None:
        """Record a layer's channels; a layer called again must see the same channels, so the calls are tied."""
        key = (path, role)
        if key not in self.records:
            self.records[key] = Record(path, role, slots.copy(), None if gated is None else gated.copy())
            return
        rec = self.records[key]
        if len(rec.slots) != len(slots):
            self.mark(np.concatenate([rec.slots, slots]), f"{path} is called on inputs of different widths")
            return
        self.union(rec.slots, slots)
        if gated is not None and rec.gated is not None:
            rec.gated &= gated
