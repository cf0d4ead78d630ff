"""Atomic files: checkpoints, label caches, tables and run state are rewritten while runs go on, and a crash or a full
disk must leave either the old file or the new one, never half of one. :func:`atomic_write` is the one way it is done.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "read_json"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a binary temporary file beside ``path``, fsync it, then rename it over ``path``.

    The file gets the permissions a plain ``open()`` would give (``mkstemp`` makes it 0600); the folder is made. On
    any error the temporary file is removed and the error propagates; ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """:func:`atomic_write_text` of ``obj`` as indented JSON (numpy/torch scalars become floats)."""
    return atomic_write_text(path, json.dumps(obj, indent=1, default=float))


def read_json(path: str | Path) -> dict:
    """A JSON file's contents, or ``{}`` when it does not exist.

    Raises:
        ValueError: the file is not valid JSON, naming it.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); delete it to rebuild it") from None
