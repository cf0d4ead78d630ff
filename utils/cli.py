"""Shared entry-point behaviour for the scripts: logging set-up and clear one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

__all__ = ["run_script", "USER_ERRORS", "check_common_flags"]

T = TypeVar("T")

# Errors caused by user input (bad flags, files, configs): shown as one line; anything else keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, PermissionError)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # OSErrors that are the user's to fix: reported like USER_ERRORS


def run_script(fn: Callable[[], T]) -> T:
    """Run a script's main with INFO logging; exit with status 2 and a one-line message on a user error.

    Set ``YOLO_TRACEBACK=1`` to see the full traceback of such errors.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return fn()
    except (*USER_ERRORS, OSError) as e:
        if os.environ.get("YOLO_TRACEBACK") or (type(e) is OSError and e.errno not in _DISK_FULL):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if type(e) is OSError:  # disk full: the message says where
            msg = e.strerror if e.strerror and "no space" in e.strerror else f"no space left on device ({e})"
        print(f"ERROR: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


# Flags several scripts share (argparse dest -> flag, lowest allowed value); checked once here for every script.
_AT_LEAST = {"imgsz": ("--imgsz", 1), "batch_size": ("--batch-size", 1), "max_det": ("--max-det", 1),
             "workers": ("--workers", 0), "epochs": ("--epochs", 1), "line_thickness": ("--line-thickness", 1)}
_UNIT = {"conf_thres": "--conf-thres", "iou_thres": "--iou-thres"}


def check_common_flags(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse shared flags out of range at parse time, naming the flag (``p.error``: usage line, exit code 2):
    image size, batch size, ``--max-det``, ``--epochs`` and ``--line-thickness`` >= 1, ``--workers`` >= 0,
    thresholds in [0, 1], and a ``--project`` that is an existing file."""
    for dest, (flag, lo) in _AT_LEAST.items():
        v = getattr(a, dest, None)
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, int) and x < lo:
                p.error(f"{flag} must be >= {lo}, got {v}")
    for dest, flag in _UNIT.items():
        v = getattr(a, dest, None)
        if v is not None and not 0.0 <= v <= 1.0:
            p.error(f"{flag} must be in [0, 1], got {v}")
    project = getattr(a, "project", None)
    if project and Path(project).exists() and not Path(project).is_dir():
        p.error(f"--project {project} is a file, not a folder")
