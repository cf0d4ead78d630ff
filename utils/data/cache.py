"""On-disk caches of the data pipeline: verified labels and decoded images.

Nothing here uses pickle: label caches are ``np.savez`` archives of plain arrays read back with
``allow_pickle=False`` (a foreign or tampered cache is simply ignored), images are plain ``.npy`` arrays.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from utils.files import atomic_write

from .config import path_hash, user_cache_dir

__all__ = [
    "CACHE_VERSION",
    "scan_key",
    "label_cache_candidates",
    "load_label_cache",
    "save_label_cache",
    "image_npy_path",
    "is_writable_dir",
]

LOGGER = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when the verification rules or the archive layout change (2: polygon rows read)
_ARRAYS = ("im_files", "label_files", "shapes", "counts", "labels", "stats", "msgs")


def _stat(p: str) -> tuple[int, int]:
    try:
        st = os.stat(p)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def scan_key(im_files: Sequence[str], label_files: Sequence[str], nc: Optional[int]) -> str:
    """Hash of the file list, sizes and mtimes of images and labels, ``nc`` and the cache version."""
    h = hashlib.sha256(f"v{CACHE_VERSION} nc={nc}\n".encode())
    for im, lb in zip(im_files, label_files):
        h.update(f"{im}|{_stat(im)}|{lb}|{_stat(lb)}\n".encode())
    return h.hexdigest()


def _mode_allows_write(p: Path) -> bool:
    """os.access plus the permission bits: root passes os.access everywhere, but a tree marked read-only
    (like the shared datasets) must stay untouched."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return os.access(p, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def is_writable_dir(d: Path, create: bool = True) -> bool:
    """True if files may be created in ``d``; with ``create`` a missing ``d`` is made when its parent allows."""
    d = Path(d)
    if not d.is_dir():
        if not create:
            return False
        parent = next((p for p in d.parents if p.exists()), None)
        if parent is None or not _mode_allows_write(parent):
            return False
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
    return _mode_allows_write(d) and os.access(d, os.X_OK)


def label_cache_candidates(label_dir: Path) -> list[Path]:
    """Where a label cache may live, in order: ``<labels dir>.cache``, then the user cache dir."""
    label_dir = Path(label_dir).resolve()
    primary = label_dir.with_suffix(".cache") if label_dir.suffix != ".cache" else label_dir / "labels.cache"
    return [primary, user_cache_dir() / "labels" / f"{label_dir.name}-{path_hash(label_dir)}.cache"]


def load_label_cache(candidates: Sequence[Path], key: str) -> Optional[dict]:
    """Arrays of the first candidate cache whose version and key match, else None (stale/foreign caches ignored)."""
    for p in candidates:
        if not p.is_file():
            continue
        try:
            with np.load(p, allow_pickle=False) as z:
                if int(z["version"]) != CACHE_VERSION or str(z["key"]) != key:
                    continue
                out = {k: z[k] for k in _ARRAYS}
        except Exception:  # not ours (e.g. a YOLOv5 pickle cache), truncated, or old layout: rebuild
            continue
        out["path"] = p
        return out
    return None


def save_label_cache(candidates: Sequence[Path], key: str, arrays: dict, prefix: str = "") -> Optional[Path]:
    """Write the cache to the first writable candidate; returns its path, or None if none was writable."""
    payload = {"version": np.array(CACHE_VERSION), "key": np.array(key)}
    payload.update({k: np.asarray(arrays[k]) for k in _ARRAYS})
    for i, p in enumerate(candidates):
        if not is_writable_dir(p.parent, create=i > 0) or (p.exists() and not _mode_allows_write(p)):
            if i == 0:
                LOGGER.info("%sCache dir %s is not writable, using %s", prefix, p.parent, candidates[1:] or "none")
            continue
        try:
            atomic_write(p, lambda f: np.savez(f, **payload))  # a file object: numpy appends no '.npz'
        except OSError as e:
            LOGGER.warning("%sCould not write label cache %s: %s", prefix, p, e)
            continue
        LOGGER.info("%sNew label cache created: %s", prefix, p)
        return p
    LOGGER.warning("%sLabel cache not saved: no writable location among %s", prefix, [str(c) for c in candidates])
    return None


def image_npy_path(im_file: str) -> Path:
    """Where the ``.npy`` copy of an image goes: next to it if writable, else in the user cache dir.

    The user-cache name includes size and mtime, so an edited image never reads a stale copy.
    """
    p = Path(im_file)
    if is_writable_dir(p.parent, create=False):
        return p.with_suffix(".npy")
    size, mtime = _stat(im_file)
    tag = path_hash(f"{p.resolve()}|{size}|{mtime}")
    return user_cache_dir() / "images" / f"{p.stem}-{tag}.npy"
