"""Shared entry-point behaviour for the scripts: logging set-up and clear one-line errors instead of tracebacks."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, TypeVar

__all__ = ["run_script", "USER_ERRORS"]

T = TypeVar("T")

# Errors caused by user input (bad flags, files, configs): shown as one line; anything else keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, PermissionError)


def run_script(fn: Callable[[], T]) -> T:
    """Run a script's main with INFO logging; exit with status 2 and a one-line message on a user error.

    Set ``YOLO_TRACEBACK=1`` to see the full traceback of such errors.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return fn()
    except USER_ERRORS as e:
        if os.environ.get("YOLO_TRACEBACK"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"ERROR: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
