"""Letterbox resize: scale an image to fit a target shape keeping its aspect ratio, then pad.

The arithmetic (rounding of the unpadded size, halved padding, the -0.1/+0.1 split of odd padding) follows YOLOv5
exactly, because validation boxes are mapped back with these numbers and official mAP must reproduce.
"""

from __future__ import annotations

from typing import Sequence, Union

import cv2
import numpy as np

__all__ = ["letterbox"]


def letterbox(
    im: np.ndarray,
    new_shape: Union[int, Sequence[int]] = 640,
    color: Sequence[int] = (114, 114, 114),
    auto: bool = True,
    scale_fill: bool = False,
    scaleup: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize and pad ``im`` (HWC) to ``new_shape`` (int or (h, w)).

    Args:
        im: image array, HWC (or HW).
        new_shape: target size; an int means square.
        color: padding value.
        auto: pad only up to the next multiple of ``stride`` (minimum rectangle) instead of the full target.
        scale_fill: stretch to the target with no padding (aspect ratio not kept).
        scaleup: allow enlarging; if False images are only shrunk (better val mAP, as YOLOv5).
        stride: the model's max stride, used when ``auto``.

    Returns:
        (image, (ratio_w, ratio_h), (dw, dh)) where dw/dh is the padding on each side (may be x.5).
    """
    h0, w0 = im.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    new_h, new_w = int(new_shape[0]), int(new_shape[1])

    r = min(new_h / h0, new_w / w0)
    if not scaleup:
        r = min(r, 1.0)
    ratio = (r, r)
    unpad_w, unpad_h = int(round(w0 * r)), int(round(h0 * r))
    dw, dh = new_w - unpad_w, new_h - unpad_h
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scale_fill:
        dw, dh = 0.0, 0.0
        unpad_w, unpad_h = new_w, new_h
        ratio = (new_w / w0, new_h / h0)
    dw /= 2
    dh /= 2

    if (w0, h0) != (unpad_w, unpad_h):
        im = cv2.resize(im, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    # The +-0.1 sends an odd pixel of padding to the bottom/right side.
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=tuple(color))
    return im, ratio, (float(dw), float(dh))
