"""Checking (image, label file) pairs and scanning a whole dataset, with a pickle-free cache."""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .cache import label_cache_candidates, load_label_cache, save_label_cache, scan_key

__all__ = ["ImageLabelResult", "LabelScan", "verify_image_label", "scan_labels", "MIN_IMAGE_SIZE", "COORD_TOL"]

LOGGER = logging.getLogger(__name__)

MIN_IMAGE_SIZE = 10  # px; smaller images are treated as corrupt (as YOLOv5)
# Above these an image or label file is skipped before it is read (a 20000x20000 PNG decodes to 1.2 GB; a 10-million-row
# label file took 60 s and 4.8 GB); environment variables raise them.
MAX_PIXELS_ENV, MAX_PIXELS = "YOLO_MAX_IMAGE_PIXELS", 100_000_000
MAX_LABEL_BYTES_ENV, MAX_LABEL_BYTES = "YOLO_MAX_LABEL_BYTES", 16 * 2**20
COORD_TOL = 1e-3  # normalised coordinates slightly outside [0, 1] (float round-off in converters) are clipped


@dataclass
class ImageLabelResult:
    """Outcome of checking one image and its label file."""

    im_file: str
    label_file: str
    shape: Optional[tuple[int, int]]  # (w, h); None when the image is corrupt
    labels: np.ndarray  # (n, 5) float32 cls xywhn
    status: str  # 'found' | 'missing' | 'empty' | 'corrupt'
    msgs: list[str] = field(default_factory=list)


@dataclass
class LabelScan:
    """Verified dataset: only readable images are kept, in the input order."""

    im_files: list[str]
    label_files: list[str]
    labels: list[np.ndarray]
    shapes: np.ndarray  # (N, 2) original (w, h)
    nf: int = 0  # label files found (with at least one valid row)
    nm: int = 0  # label files missing
    ne: int = 0  # label files empty (or with no valid row)
    nc: int = 0  # corrupt images skipped
    msgs: list[str] = field(default_factory=list)
    from_cache: bool = False


def _empty_labels() -> np.ndarray:
    return np.zeros((0, 5), dtype=np.float32)


def _parse_row(parts: list[str], nc: Optional[int]) -> tuple[Optional[list[float]], str]:
    """One label row -> (``[cls, x, y, w, h]``, '') or (None, reason).

    A polygon row ``cls x1 y1 x2 y2 x3 y3 ...`` (three or more points: segment labels, as Roboflow exports them)
    becomes its bounding box, the min/max of its points, as YOLOv5 reads it.
    """
    n = len(parts)
    if n < 5:
        return None, f"expected 5 values 'class x y w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', got {n}"
    if n % 2 == 0:
        return None, f"polygon row with an odd number of coordinates ({n - 1}): expected x y pairs"
    try:
        vals = [float(v) for v in parts]
    except ValueError:
        return None, f"non-numeric value in {' '.join(parts)!r}"
    if not all(math.isfinite(v) for v in vals):
        return None, f"non-finite value in {' '.join(parts)!r}"
    c = vals[0]
    if c < 0 or c != int(c):
        return None, f"class id {parts[0]} is not a non-negative integer"
    if nc is not None and c >= nc:
        return None, f"class id {int(c)} out of range for nc={nc} (valid 0..{nc - 1})"
    bad = [v for v in vals[1:] if v < -COORD_TOL or v > 1 + COORD_TOL]
    if bad:
        return None, f"coordinates must be normalised to [0, 1], got {', '.join(f'{v:g}' for v in bad)}"
    xy = [min(max(v, 0.0), 1.0) for v in vals[1:]]
    if n == 5:
        return [c, *xy], ""
    xs, ys = xy[0::2], xy[1::2]
    return [c, (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)], ""


def _read_labels(lb_file: str, nc: Optional[int], msgs: list[str]) -> tuple[np.ndarray, int]:
    """Valid rows of a label file (duplicates removed) and the number of non-blank rows seen."""
    with open(lb_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    rows, seen = [], 0
    for ln, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        seen += 1
        vals, why = _parse_row(parts, nc)
        if vals is None:
            msgs.append(f"{lb_file}:{ln}: {why}; row dropped")
        else:
            rows.append(vals)
    if not rows:
        return _empty_labels(), seen
    lb = np.asarray(rows, dtype=np.float32)
    _, first = np.unique(lb, axis=0, return_index=True)
    if len(first) < len(lb):
        msgs.append(f"{lb_file}: {len(lb) - len(first)} duplicate label rows removed")
        lb = lb[np.sort(first)]  # keep the file's order
    return lb, seen


def _limit(env: str, default: int) -> int:
    value = os.environ.get(env, "")
    return int(value) if value.strip().isdigit() else default


def _too_large(im_file: str, label_file: str) -> str | None:
    """Why the pair must be skipped before reading it (an image above the pixel limit by its header, a label file above
    the size limit), or None."""
    from PIL import Image

    limit = _limit(MAX_PIXELS_ENV, MAX_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(im_file) as im:  # reads the header only
                size = f"{im.size[0]}x{im.size[1]} = {im.size[0] * im.size[1]:,} pixels"
                pixels = im.size[0] * im.size[1]
    except Image.DecompressionBombError as e:  # PIL's own limit (2x 89 MP) refuses to open it; its message has the size
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = int(found.group(1)) if found else limit + 1
        size = f"{pixels:,} pixels"
    except Exception:  # noqa: BLE001 - unreadable headers are cv2's to judge (and report as corrupt) below
        pixels, size = 0, ""
    if pixels > limit:
        return (f"{im_file}: image of {size} is above the limit of {limit:,}, skipped (raise it with "
                f"{MAX_PIXELS_ENV}=N)")
    size = os.path.getsize(label_file) if os.path.isfile(label_file) else 0
    max_bytes = _limit(MAX_LABEL_BYTES_ENV, MAX_LABEL_BYTES)
    if size > max_bytes:
        return (f"{label_file}: label file of {size:,} bytes is above the limit of {max_bytes:,}, image skipped (raise "
                f"it with {MAX_LABEL_BYTES_ENV}=N)")
    return None


def verify_image_label(im_file: str, label_file: str, nc: Optional[int] = None) -> ImageLabelResult:
    """Check one image (readable by cv2, at least 10x10 px) and its label rows.

    Bad rows are dropped with a message naming the file and line; an unreadable image (or label file) makes the pair
    'corrupt'. Nothing is logged here (this runs in worker threads); the messages are returned.
    """
    msgs: list[str] = []
    too_big = _too_large(im_file, label_file)
    if too_big:
        msgs.append(too_big)
        return ImageLabelResult(im_file, label_file, None, _empty_labels(), "corrupt", msgs)
    # A full decode catches files whose header is fine but whose data is not.
    im = cv2.imread(im_file, cv2.IMREAD_COLOR)
    if im is None:
        msgs.append(f"{im_file}: image missing or unreadable (corrupt), skipped")
        return ImageLabelResult(im_file, label_file, None, _empty_labels(), "corrupt", msgs)
    h, w = im.shape[:2]
    if h < MIN_IMAGE_SIZE or w < MIN_IMAGE_SIZE:
        msgs.append(f"{im_file}: image size {w}x{h} is below {MIN_IMAGE_SIZE} px, skipped")
        return ImageLabelResult(im_file, label_file, None, _empty_labels(), "corrupt", msgs)
    if os.path.splitext(im_file)[1].lower() in (".jpg", ".jpeg"):
        with open(im_file, "rb") as f:
            f.seek(-2, os.SEEK_END)
            if f.read() != b"\xff\xd9":
                msgs.append(f"{im_file}: JPEG has no end marker (truncated?), using the decodable part")

    if not os.path.isfile(label_file):
        return ImageLabelResult(im_file, label_file, (w, h), _empty_labels(), "missing", msgs)
    try:
        lb, _ = _read_labels(label_file, nc, msgs)
    except (OSError, UnicodeDecodeError) as e:
        msgs.append(f"{label_file}: label file unreadable ({e}), image skipped")
        return ImageLabelResult(im_file, label_file, None, _empty_labels(), "corrupt", msgs)
    return ImageLabelResult(im_file, label_file, (w, h), lb, "found" if len(lb) else "empty", msgs)


def _verify_all(im_files: Sequence[str], label_files: Sequence[str], nc: Optional[int], workers: int) -> LabelScan:
    scan = LabelScan([], [], [], np.zeros((0, 2), dtype=np.int64))
    shapes = []
    args = list(zip(im_files, label_files))
    with ThreadPool(max(1, workers)) as pool:  # cv2 decoding releases the GIL, threads are enough
        for r in pool.imap(lambda a: verify_image_label(a[0], a[1], nc), args, chunksize=8):
            scan.msgs.extend(r.msgs)
            if r.status == "corrupt":
                scan.nc += 1
                continue
            scan.nf += r.status == "found"
            scan.nm += r.status == "missing"
            scan.ne += r.status == "empty"
            scan.im_files.append(r.im_file)
            scan.label_files.append(r.label_file)
            scan.labels.append(r.labels)
            shapes.append(r.shape)
    scan.shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    return scan


def _to_arrays(scan: LabelScan) -> dict:
    """Plain (pickle-free) arrays for the cache: labels are concatenated, with a per-image row count."""
    counts = np.array([len(lb) for lb in scan.labels], dtype=np.int64)
    labels = np.concatenate(scan.labels, 0) if scan.labels else _empty_labels()
    return {
        "im_files": np.array(scan.im_files, dtype=str),
        "label_files": np.array(scan.label_files, dtype=str),
        "shapes": scan.shapes.astype(np.int64),
        "counts": counts,
        "labels": labels.astype(np.float32),
        "stats": np.array([scan.nf, scan.nm, scan.ne, scan.nc], dtype=np.int64),
        "msgs": np.array(scan.msgs, dtype=str),
    }


def _from_arrays(a: dict) -> LabelScan:
    bounds = np.cumsum(a["counts"])[:-1] if len(a["counts"]) else []
    labels = [x.reshape(-1, 5).astype(np.float32) for x in np.split(a["labels"], bounds)] if len(a["counts"]) else []
    nf, nm, ne, nc = (int(x) for x in a["stats"])
    return LabelScan(
        [str(x) for x in a["im_files"]], [str(x) for x in a["label_files"]], labels,
        a["shapes"].reshape(-1, 2).astype(np.int64), nf, nm, ne, nc, [str(m) for m in a["msgs"]], from_cache=True,
    )


def scan_labels(
    im_files: Sequence[str],
    label_files: Sequence[str],
    nc: Optional[int] = None,
    prefix: str = "",
    workers: Optional[int] = None,
    use_cache: bool = True,
) -> LabelScan:
    """Verify every (image, label) pair, using/refreshing the label cache, and log a one-line summary.

    The cache is ``<labels dir>.cache`` when that location is writable, else a file under the user cache dir keyed
    by a hash of the labels dir. It is ignored when the file list, sizes, mtimes, ``nc`` or the cache version differ.
    """
    label_dir = Path(label_files[0]).parent if label_files else Path(".")
    key = scan_key(im_files, label_files, nc)
    candidates = label_cache_candidates(label_dir) if use_cache else []
    cached = load_label_cache(candidates, key) if candidates else None
    if cached is not None:
        scan = _from_arrays(cached)
    else:
        n = workers if workers is not None else min(8, os.cpu_count() or 1)
        scan = _verify_all(im_files, label_files, nc, n)
        if candidates:
            save_label_cache(candidates, key, _to_arrays(scan), prefix)
    for m in scan.msgs:
        LOGGER.warning("%s%s", prefix, m)
    LOGGER.info(
        "%sScanning %s... %d found, %d missing, %d empty, %d corrupt%s",
        prefix, label_dir, scan.nf, scan.nm, scan.ne, scan.nc, " (from cache)" if scan.from_cache else "",
    )
    return scan
