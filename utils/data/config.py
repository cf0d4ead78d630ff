"""Dataset YAML loading and dataset directory settings.

A dataset YAML (YOLOv5 format) names a dataset root ``path`` plus ``train``/``val``/``test`` image sources relative to
it, and the class ``names``. A relative ``path`` is resolved under the datasets directory (env ``YOLO_DATASETS_DIR``).
When the val images are missing, the YAML's ``download:`` URL(s) are fetched and unpacked there, as YOLOv5 does; a
``download:`` that is a shell or Python snippet is refused, never run.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from utils.download import DownloadError, download_archives
from utils.paths import datasets_dir
from utils.yaml_io import read_yaml

__all__ = [
    "datasets_dir",
    "user_cache_dir",
    "load_dataset_config",
    "dataset_urls",
    "download_dataset",
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


def load_dataset_config(data: str | Path | dict, autodownload: bool = True) -> dict:
    """Read and check a YOLOv5-style dataset YAML.

    Args:
        data: path to the YAML (also looked up under ``<repo>/data/``), or an already loaded dict.
        autodownload: if the val images are missing and the YAML has a ``download:`` URL (or a list of them), fetch
            and unpack it into the datasets directory (:func:`download_dataset`), then go on, as YOLOv5 does.

    Returns:
        dict with the YAML's keys plus normalised ``path`` (str, absolute), ``train``/``val``/``test`` (absolute str
        or list of str, ``test`` may be None), ``names`` (list[str]), ``nc`` (int) and ``yaml_file`` (str or None).

    Raises:
        FileNotFoundError: the YAML or the val images are missing (and were not, or could not be, downloaded: the
            message says what failed, naming the URL and the folder; a ``download:`` that is code is refused).
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
        _fetch_missing(cfg.get("download"), missing, root, where, autodownload)
    return out


_URL_SCHEMES = ("http://", "https://")


def dataset_urls(entry: Any) -> list[str]:
    """The URLs of a dataset YAML's ``download:`` entry: one URL, or a list of them.

    Raises:
        ValueError: the entry is anything else, e.g. YOLOv5's ``bash data/scripts/get_coco.sh`` or a Python snippet;
            the message says what it is. Such entries are never run: a dataset YAML is a data file from anywhere.
    """
    items = entry if isinstance(entry, (list, tuple)) else [entry]
    urls = [u.strip() for u in items if isinstance(u, str)]
    if items and len(urls) == len(items) and all(u.startswith(_URL_SCHEMES) and not any(c.isspace() for c in u)
                                                 for u in urls):
        return urls
    text = str(entry).strip()
    first = text.splitlines()[0] if text else ""
    if not isinstance(entry, str):
        raise ValueError(f"its download: entry is not a URL or a list of URLs ({text[:80]!r})")
    if text.startswith("bash "):
        what = f"a shell command ({first!r})"
    else:  # YOLOv5 would exec() it
        lines = len(text.splitlines())
        what = f"a Python snippet ({lines} line{'s' * (lines != 1)}, starting {first[:60]!r})"
    raise ValueError(f"its download: entry is {what}, which is never run (a dataset YAML is not trusted to run code)")


def download_dataset(entry: str | list[str], dest: str | Path | None = None, timeout: float = 30.0) -> Path:
    """Fetch a dataset YAML's ``download:`` URL(s) into ``dest`` (default: the datasets directory) and unpack the
    archives there, with a progress bar. Returns ``dest``.

    Raises:
        ValueError: the entry is code or no URL (see :func:`dataset_urls`); nothing is run.
        utils.download.DownloadError: a download or unpack failed; the message names the URL, the folder and what
            failed (HTTP status, DNS failure, refused connection, timeout, bad archive).
    """
    return download_archives(dataset_urls(entry), datasets_dir() if dest is None else Path(dest), timeout)


def _fetch_missing(entry: Any, missing: list[str], root: Path, where: str, autodownload: bool) -> None:
    """Download the dataset when its val images are missing and the YAML says where from, as YOLOv5 does; else, or
    when that fails, raise FileNotFoundError saying what is missing, where it was looked for and what failed."""
    dest = datasets_dir()
    found = (f"{where}: val images not found at {', '.join(missing)} (dataset path {root}; "
             f"YOLO_DATASETS_DIR={os.environ.get('YOLO_DATASETS_DIR', '<unset>')}, datasets dir {dest})")
    by_hand = f"download the dataset by hand and unpack it into {dest}, or set YOLO_DATASETS_DIR to where it is"
    if entry is None or entry == "" or entry == []:
        raise FileNotFoundError(f"{found}.")
    try:
        urls = dataset_urls(entry)
    except ValueError as e:
        raise FileNotFoundError(f"{found}; {e}: {by_hand}") from None
    if not autodownload:
        raise FileNotFoundError(f"{found}; not downloading {', '.join(urls)} (autodownload is off): {by_hand}.")
    LOGGER.warning("%s: dataset not found (missing %s); downloading it into %s", where, ", ".join(missing), dest)
    try:
        download_archives(urls, dest)
    except DownloadError as e:
        raise FileNotFoundError(f"{found}; {e}. Check the URL and your connection, or {by_hand}.") from None
    still = [p for p in missing if not Path(p).exists()]
    if still:
        raise FileNotFoundError(f"{where}: downloaded {', '.join(urls)} into {dest}, but the val images are still "
                                f"missing at {', '.join(still)}: the archive does not unpack to the YAML's dataset "
                                f"path {root}; fix 'path' in the YAML or move the unpacked folder there.")
