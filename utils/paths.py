"""Where things live: the repo, the datasets and weights directories, and incremented run directories."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "datasets_dir", "weights_dir", "increment_path"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    """Root for relative dataset ``path`` entries: ``$YOLO_DATASETS_DIR``, else ``<repo>/../datasets``."""
    return Path(os.environ.get("YOLO_DATASETS_DIR") or REPO_ROOT.parent / "datasets").expanduser().resolve()


def weights_dir() -> Path | None:
    """Extra directory searched for ``--weights`` names: ``$YOLO_WEIGHTS_DIR`` (None when unset)."""
    v = os.environ.get("YOLO_WEIGHTS_DIR")
    return Path(v).expanduser().resolve() if v else None


def increment_path(path: str | Path, exist_ok: bool = False, mkdir: bool = False) -> Path:
    """``runs/train/exp`` -> ``runs/train/exp2``, ``exp3``... (the first free one), unless ``exist_ok``."""
    path = Path(path)
    if path.exists() and not exist_ok:
        base, suffix = (path.with_suffix(""), path.suffix) if path.is_file() else (path, "")
        stem = base.name
        n = 2
        while (base.parent / f"{stem}{n}{suffix}").exists():
            n += 1
        path = base.parent / f"{stem}{n}{suffix}"
    if mkdir:
        path.mkdir(parents=True, exist_ok=True)
    return path
