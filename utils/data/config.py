"""Dataset YAML loading and dataset directory settings.

A dataset YAML (YOLOv5 format) names a dataset root ``path`` plus ``train``/``val``/``test`` image sources relative to
it, and the class ``names``. A relative ``path`` is resolved under the datasets directory (env ``YOLO_DATASETS_DIR``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from utils.paths import datasets_dir
from utils.yaml_io import read_yaml

__all__ = [
    "datasets_dir",
    "user_cache_dir",
    "load_dataset_config",
    "download_dataset",
    "download_file",
    "path_hash",
]

LOGGER = logging.getLogger(__name__)

# Repository root: utils/data/config.py -> parents[2].
_REPO_ROOT = Path(__file__).resolve().parents[2]


def user_cache_dir() -> Path:
    """Return the per-user cache directory (env ``YOLO_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``/yolo-slim).

    Used for label caches and ``.npy`` image caches when the dataset itself is read-only.
    """
    env = os.environ.get("YOLO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "yolo-slim"


def path_hash(path: str | Path, n: int = 16) -> str:
    """Short stable hash of an absolute path, used to key user-cache entries."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:n]


def _find_yaml(data: str | Path) -> Path:
    """Locate a dataset YAML: as given, else relative to the repo or its ``data/`` (so the defaults work anywhere)."""
    p = Path(data).expanduser()
    if p.is_file():
        return p.resolve()
    tried = [str(p)]
    if not p.is_absolute():
        for alt in (_REPO_ROOT / p, _REPO_ROOT / "data" / p):
            if alt.is_file():
                return alt.resolve()
            tried.append(str(alt))
    raise FileNotFoundError(f"Dataset YAML not found: {data} (looked at {', '.join(tried)})")


def _parse_names(names: Any, where: str) -> list[str]:
    """Turn ``names`` (list or {index: name} dict) into a list indexed by class id."""
    if isinstance(names, dict):
        try:
            keyed = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: 'names' dict keys must be integer class ids ({e})") from None
        if sorted(keyed) != list(range(len(keyed))):
            raise ValueError(f"{where}: 'names' dict keys must be 0..{len(keyed) - 1} without gaps, got {sorted(keyed)}")
        return [keyed[i] for i in range(len(keyed))]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    raise ValueError(f"{where}: 'names' must be a list or an {{index: name}} dict, got {type(names).__name__}")


def _resolve_split(value: Any, root: Path, key: str, where: str) -> str | list[str] | None:
    """Make a split entry (str or list of str) absolute under the dataset root."""
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        return str((root / Path(value).expanduser()).resolve())  # absolute entries stay absolute
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, Path)) for v in value):
        return [str((root / Path(v).expanduser()).resolve()) for v in value]
    raise ValueError(f"{where}: '{key}' must be a path or a list of paths, got {value!r}")


def _as_list(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def load_dataset_config(data: str | Path | dict, autodownload: bool = False) -> dict:
    """Read and check a YOLOv5-style dataset YAML.

    Args:
        data: path to the YAML (also looked up under ``<repo>/data/``), or an already loaded dict.
        autodownload: if the val images are missing and the YAML has a ``download`` URL, try to fetch it with
            :func:`download_dataset` into the datasets directory. Off by default (this project runs offline).

    Returns:
        dict with the YAML's keys plus normalised ``path`` (str, absolute), ``train``/``val``/``test`` (absolute str
        or list of str, ``test`` may be None), ``names`` (list[str]), ``nc`` (int) and ``yaml_file`` (str or None).

    Raises:
        FileNotFoundError: the YAML or the val images are missing.
        ValueError: ``names`` missing/invalid or ``nc`` disagrees with ``names``.
    """
    if isinstance(data, dict):
        cfg, yaml_file = dict(data), None
    else:
        yaml_path = _find_yaml(data)
        cfg = read_yaml(yaml_path, "dataset YAML") or {}
        if not isinstance(cfg, dict):
            raise ValueError(f"{yaml_path}: expected a mapping at top level, got {type(cfg).__name__}")
        yaml_file = str(yaml_path)
    where = yaml_file or "dataset dict"

    if "names" not in cfg:
        raise ValueError(f"{where}: missing required key 'names' (class names as a list or {{index: name}} dict)")
    names = _parse_names(cfg["names"], where)
    if "nc" in cfg and cfg["nc"] is not None and int(cfg["nc"]) != len(names):
        raise ValueError(f"{where}: 'nc' is {cfg['nc']} but 'names' has {len(names)} entries")
    for key in ("train", "val"):
        if cfg.get(key) is None:
            raise ValueError(f"{where}: missing required key '{key}'")

    root = Path(str(cfg.get("path") or "")).expanduser()
    if not root.is_absolute():
        root = datasets_dir() / root
    root = root.resolve()

    out = dict(cfg)
    out.update(
        path=str(root),
        train=_resolve_split(cfg.get("train"), root, "train", where),
        val=_resolve_split(cfg.get("val"), root, "val", where),
        test=_resolve_split(cfg.get("test"), root, "test", where),
        names=names,
        nc=len(names),
        yaml_file=yaml_file,
    )

    missing = [p for p in _as_list(out["val"]) if not Path(p).exists()]
    if missing:
        url = cfg.get("download")
        if autodownload and isinstance(url, str) and url.startswith(("http://", "https://")):
            download_dataset(url, datasets_dir())
            missing = [p for p in _as_list(out["val"]) if not Path(p).exists()]
        if missing:
            msg = (
                f"{where}: val images not found at {', '.join(missing)} "
                f"(dataset path {root}; YOLO_DATASETS_DIR={os.environ.get('YOLO_DATASETS_DIR', '<unset>')}, "
                f"datasets dir {datasets_dir()})."
            )
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                msg += f" It would be downloaded from {url}, but downloads are unavailable offline."
            raise FileNotFoundError(msg)
    return out


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    """Extract a zip, refusing members that would land outside ``dest`` (path traversal)."""
    dest = dest.resolve()
    for member in zf.namelist():
        target = (dest / member).resolve()
        if target != dest and dest not in target.parents:
            raise RuntimeError(f"Refusing to extract {member!r}: it points outside {dest}")
    zf.extractall(dest)


def download_file(url: str, file: str | Path, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``file`` (its folder must exist) and return the path.

    Raises:
        urllib.error.URLError, OSError, ValueError: unreachable, refused, HTTP error, or not a URL urllib can open;
            callers say what the download was for.
    """
    with urllib.request.urlopen(url, timeout=timeout) as r, open(file, "wb") as f:
        shutil.copyfileobj(r, f)
    return Path(file)


def download_dataset(url: str, dest: str | Path, timeout: float = 30.0) -> Path:
    """Download ``url`` into directory ``dest``; zip files are extracted there. Returns ``dest``.

    Network errors become a RuntimeError that names the URL, so offline use fails clearly.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    LOGGER.info("Downloading %s to %s ...", url, dest)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        file = Path(tmp) / name
        try:
            download_file(url, file, timeout)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RuntimeError(f"Download of {url} failed ({e}); downloads are unavailable offline, "
                               f"place the dataset under {dest} yourself") from e
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as zf:
                _safe_extract(zf, dest)
        else:
            shutil.move(str(file), dest / name)
    return dest
