"""Training augmentations (YOLOv5 behaviour) as pure functions on numpy arrays.

Each function takes its randomness from an explicit ``numpy.random.Generator`` and returns new arrays, so results
are reproducible per seed and independent of global RNG state. Labels are (n, 5) ``cls, x1, y1, x2, y2`` in pixels
unless stated otherwise.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from utils.boxes import xywhn2xyxy, xyxy2xywhn

__all__ = [
    "DEFAULT_HYP",
    "xywhn2xyxy",
    "xyxy2xywhn",
    "augment_hsv",
    "box_candidates",
    "random_perspective",
    "mosaic4",
    "mixup",
    "flip_lr",
    "flip_ud",
]

# Augmentation values of YOLOv5's data/hyps/hyp.scratch-low.yaml, used for keys a given hyp dict lacks.
DEFAULT_HYP = {
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "degrees": 0.0,
    "translate": 0.1,
    "scale": 0.5,
    "shear": 0.0,
    "perspective": 0.0,
    "flipud": 0.0,
    "fliplr": 0.5,
    "mosaic": 1.0,
    "mixup": 0.0,
    "copy_paste": 0.0,
}


PAD_VALUE = 114


def augment_hsv(im: np.ndarray, hgain: float, sgain: float, vgain: float, rng: np.random.Generator) -> np.ndarray:
    """Random HSV gains applied through lookup tables (BGR uint8 in, new BGR uint8 out)."""
    if not (hgain or sgain or vgain):
        return im
    r = rng.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)  # OpenCV hue range is 0..179 and wraps around
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def box_candidates(
    box1: np.ndarray, box2: np.ndarray, wh_thr: float = 2, ar_thr: float = 100, area_thr: float = 0.1,
    eps: float = 1e-16,
) -> np.ndarray:
    """Mask of boxes worth keeping after a warp: box1 (4, n) before (scaled), box2 (4, n) after."""
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def _warp_matrix(
    in_hw: tuple[int, int], out_hw: tuple[int, int], degrees: float, translate: float, scale: float, shear: float,
    perspective: float, rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """One 3x3 matrix: centre the input, perspective, rotate+scale, shear, translate into the output."""
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -in_hw[1] / 2, -in_hw[0] / 2
    persp = np.eye(3)
    persp[2, 0], persp[2, 1] = rng.uniform(-perspective, perspective, 2)
    rot = np.eye(3)
    angle = rng.uniform(-degrees, degrees)
    s = rng.uniform(1 - scale, 1 + scale)
    rot[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    sh = np.eye(3)
    sh[0, 1], sh[1, 0] = (math.tan(a * math.pi / 180) for a in rng.uniform(-shear, shear, 2))
    tr = np.eye(3)
    tr[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_hw[1]
    tr[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_hw[0]
    return tr @ sh @ rot @ persp @ centre, s


def random_perspective(
    im: np.ndarray,
    targets: np.ndarray,
    rng: np.random.Generator,
    degrees: float = 10,
    translate: float = 0.1,
    scale: float = 0.1,
    shear: float = 10,
    perspective: float = 0.0,
    border: Sequence[int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation/scale/shear/translation/perspective of an image and its (n, 5) cls-xyxy pixel targets.

    The output is the input size plus ``2 * border`` (a mosaic uses border -s/2 to go from 2s to s). Boxes are
    warped by their 4 corners and re-enclosed; boxes that become tiny, thin or mostly cut off are dropped.
    """
    out_h, out_w = im.shape[0] + border[0] * 2, im.shape[1] + border[1] * 2
    M, s = _warp_matrix(im.shape[:2], (out_h, out_w), degrees, translate, scale, shear, perspective, rng)
    if border[0] != 0 or border[1] != 0 or (M != np.eye(3)).any():
        fill = (PAD_VALUE,) * 3
        if perspective:
            im = cv2.warpPerspective(im, M, dsize=(out_w, out_h), borderValue=fill)
        else:  # affine is faster and exact when the last row is [0, 0, 1]
            im = cv2.warpAffine(im, M[:2], dsize=(out_w, out_h), borderValue=fill)

    n = len(targets)
    if not n:
        return im, targets.reshape(0, 5).astype(np.float32)
    corners = np.ones((n * 4, 3))
    # Corners per box: (x1,y1), (x2,y2), (x1,y2), (x2,y1).
    corners[:, :2] = targets[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)
    corners = corners @ M.T
    xy = (corners[:, :2] / corners[:, 2:3] if perspective else corners[:, :2]).reshape(n, 8)
    xs, ys = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    new = np.stack((xs.min(1), ys.min(1), xs.max(1), ys.max(1)), 1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_w)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_h)
    keep = box_candidates(targets[:, 1:5].T * s, new.T, area_thr=0.10)
    out = targets[keep].astype(np.float32)
    out[:, 1:5] = new[keep]
    return im, out


def mosaic4(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], s: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Place 4 images around a random centre of a 2s x 2s canvas (pad 114).

    Args:
        images: 4 HWC images (already resized so the long side is about s).
        labels: 4 arrays (n, 5) cls + normalised xywh, relative to each image.
    Returns:
        (canvas 2s x 2s, labels (n, 5) cls + pixel xyxy on the canvas, clipped to it).
    """
    b = -s // 2  # the mosaic border: the centre stays at least s/2 from the canvas edges
    xc, yc = (int(v) for v in rng.uniform(-b, 2 * s + b, 2))
    canvas = np.full((2 * s, 2 * s, images[0].shape[2]), PAD_VALUE, dtype=np.uint8)
    out = []
    # Tiles meet at the centre: top-left, top-right, bottom-left, bottom-right.
    for (right, below), im, lb in zip(((0, 0), (1, 0), (0, 1), (1, 1)), images, labels):
        h, w = im.shape[:2]
        x0 = xc if right else xc - w  # unclipped tile origin on the canvas
        y0 = yc if below else yc - h
        cx1, cy1 = max(x0, 0), max(y0, 0)
        cx2, cy2 = min(x0 + w, 2 * s), min(y0 + h, 2 * s)
        canvas[cy1:cy2, cx1:cx2] = im[cy1 - y0:cy2 - y0, cx1 - x0:cx2 - x0]
        lb = lb.copy()
        if len(lb):
            lb[:, 1:] = xywhn2xyxy(lb[:, 1:], w, h, x0, y0)
        out.append(lb)
    labels4 = np.concatenate(out, 0).astype(np.float32) if out else np.zeros((0, 5), np.float32)
    labels4[:, 1:] = labels4[:, 1:].clip(0, 2 * s)
    return canvas, labels4


def mixup(
    im: np.ndarray, labels: np.ndarray, im2: np.ndarray, labels2: np.ndarray, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend two same-size images with a Beta(32, 32) ratio and keep both label sets."""
    r = rng.beta(32.0, 32.0)
    blended = (im * r + im2 * (1 - r)).astype(np.uint8)
    return blended, np.concatenate((labels, labels2), 0)


def flip_lr(im: np.ndarray, labels_xywhn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of an image and its (n, 5) cls + normalised xywh labels."""
    lb = labels_xywhn.copy()
    if len(lb):
        lb[:, 1] = 1 - lb[:, 1]
    return np.fliplr(im), lb


def flip_ud(im: np.ndarray, labels_xywhn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertical flip of an image and its (n, 5) cls + normalised xywh labels."""
    lb = labels_xywhn.copy()
    if len(lb):
        lb[:, 2] = 1 - lb[:, 2]
    return np.flipud(im), lb
