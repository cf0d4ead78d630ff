"""The input shapes slim.py's search tries besides squares: one fixed rectangle in the data's dominant orientation.

A fixed input is one shape for every image (each letterboxed into it), so a square one spends pixels on padding
whenever the photos are not square. When most training photos share an orientation (aquarium: 337 of 448 portrait,
3:4), a ``320x256`` input keeps those photos at the full 320-px scale for the pixel count of a 288-px square; the
others are letterboxed smaller. Whether that trade pays is the search's to measure, like every other knob.

Sizes are written as :func:`engine.export.common.imgsz_text` spells them: ``320`` or ``320x256`` (height x width).
"""

from __future__ import annotations

import math

import numpy as np

from utils.data.files import img2label_paths, list_image_files
from utils.data.labels import scan_labels

__all__ = ["DOMINANT_SHARE", "Size", "dominant_aspect", "rect_shape", "parse_size", "long_side"]

DOMINANT_SHARE = 0.6  # the share of training photos one orientation needs before a rectangle is tried
Size = int | tuple[int, int]  # a square side, or a fixed (height, width)


def dominant_aspect(train: str | list[str], share: float = DOMINANT_SHARE) -> dict | None:
    """The orientation most training images share, when at least ``share`` of them do: ``{"portrait": bool,
    "ratio": median short/long side of those images, "share": their fraction}``; None when neither orientation has
    ``share`` (square photos count for neither). Image sizes come from the label scan (cached after training)."""
    files = list_image_files(train)
    shapes = scan_labels(files, img2label_paths(files), prefix="slim: ").shapes  # (w, h) per image
    if not len(shapes):
        return None
    w, h = shapes[:, 0].astype(float), shapes[:, 1].astype(float)
    for portrait, mask in ((True, h > w), (False, w > h)):
        if mask.mean() >= share:
            ratio = float(np.median(np.minimum(w, h)[mask] / np.maximum(w, h)[mask]))
            return {"portrait": portrait, "ratio": ratio, "share": float(mask.mean())}
    return None


def rect_shape(side: int, aspect: dict | None, stride: int = 32) -> tuple[int, int] | None:
    """The fixed (height, width) whose long side is ``side`` and whose short side holds ``aspect``'s photos whole
    (rounded up to ``stride``), or None when there is no dominant aspect or the rectangle would be the square."""
    if not aspect:
        return None
    short = math.ceil(side * aspect["ratio"] / stride - 1e-9) * stride
    if short >= side:
        return None
    return (side, short) if aspect["portrait"] else (short, side)


def parse_size(text: str) -> Size:
    """``"320"`` -> 320, ``"320x256"`` -> (320, 256): the inverse of :func:`engine.export.common.imgsz_text`."""
    if "x" in text:
        h, w = text.split("x")
        return int(h), int(w)
    return int(text)


def long_side(size: Size | list[int]) -> int:
    """The training size of an input: a square's side, a rectangle's long side (training letterboxes into squares,
    so a rectangle's photos are trained at the scale they run at)."""
    return size if isinstance(size, int) else max(size)
