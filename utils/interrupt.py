"""Ctrl-C at a safe point: the first SIGINT is noted and acted on where the caller checks (between training
iterations), so the interrupt never lands inside a library's half-done work (a TensorBoard writer's queue left
locked hung train.py on exit); a second Ctrl-C interrupts at once."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

__all__ = ["DeferredInterrupt"]


class DeferredInterrupt:
    """Context manager: while open, the first SIGINT sets ``requested``; ``check()`` raises KeyboardInterrupt then.
    Outside the main thread (where handlers cannot be set) it does nothing and the default behaviour stays."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # asked twice: stop now
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed since the context opened."""
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
