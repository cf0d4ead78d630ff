"""Box geometry: format conversions, IoU variants and mapping boxes back through a letterbox.

Every conversion accepts a torch tensor or a numpy array whose last dimension holds the 4 box
coordinates, and returns a new object of the same kind. ``scale_boxes`` and ``clip_boxes`` work in
place (and also return their argument) because callers pass views such as ``pred[:, :4]``.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch

__all__ = [
    "xywh2xyxy",
    "xyxy2xywh",
    "xywhn2xyxy",
    "xyxy2xywhn",
    "box_area",
    "box_iou",
    "bbox_iou",
    "clip_boxes",
    "scale_boxes",
]

Boxes = Union[torch.Tensor, np.ndarray]


def _with_output(x: Boxes | Sequence) -> tuple[Boxes, Boxes]:
    """``x`` as a tensor/array and an empty float container of its shape for the result.

    Integer input gets a float result, since halving widths would otherwise truncate.
    """
    if isinstance(x, torch.Tensor):
        return x, torch.empty_like(x, dtype=x.dtype if x.is_floating_point() else torch.float32)
    x = np.asarray(x)
    return x, np.empty(x.shape, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


def xywh2xyxy(x: Boxes) -> Boxes:
    """Convert ``[x_center, y_center, w, h]`` boxes to ``[x1, y1, x2, y2]`` corners."""
    x, y = _with_output(x)
    half_w, half_h = x[..., 2] / 2, x[..., 3] / 2
    y[..., 0] = x[..., 0] - half_w
    y[..., 1] = x[..., 1] - half_h
    y[..., 2] = x[..., 0] + half_w
    y[..., 3] = x[..., 1] + half_h
    return y


def xyxy2xywh(x: Boxes) -> Boxes:
    """Convert ``[x1, y1, x2, y2]`` corners to ``[x_center, y_center, w, h]`` boxes."""
    x, y = _with_output(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywhn2xyxy(x: Boxes, w: int = 640, h: int = 640, padw: float = 0, padh: float = 0) -> Boxes:
    """Convert normalised ``xywh`` boxes to pixel ``xyxy`` in an image of size ``w x h`` offset by a pad."""
    x, y = _with_output(x)
    y[..., 0] = w * (x[..., 0] - x[..., 2] / 2) + padw
    y[..., 1] = h * (x[..., 1] - x[..., 3] / 2) + padh
    y[..., 2] = w * (x[..., 0] + x[..., 2] / 2) + padw
    y[..., 3] = h * (x[..., 1] + x[..., 3] / 2) + padh
    return y


def xyxy2xywhn(x: Boxes, w: int = 640, h: int = 640, clip: bool = False, eps: float = 0.0) -> Boxes:
    """Convert pixel ``xyxy`` boxes to ``xywh`` normalised by the image size ``w x h``.

    Args:
        clip: first clip the corners to ``[0, w - eps] x [0, h - eps]`` (the input is not modified).
        eps: margin kept from the far edges when clipping, so normalised values stay below 1.
    """
    if clip:
        x = x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
        clip_boxes(x, (h - eps, w - eps))
    x, y = _with_output(x)
    y[..., 0] = ((x[..., 0] + x[..., 2]) / 2) / w
    y[..., 1] = ((x[..., 1] + x[..., 3]) / 2) / h
    y[..., 2] = (x[..., 2] - x[..., 0]) / w
    y[..., 3] = (x[..., 3] - x[..., 1]) / h
    return y


def box_area(box: torch.Tensor) -> torch.Tensor:
    """Area of ``xyxy`` boxes, shape ``(..., 4) -> (...)``."""
    return (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])


def box_iou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU of two sets of ``xyxy`` boxes.

    Args:
        box1: ``(N, 4)`` boxes.
        box2: ``(M, 4)`` boxes.
        eps: added to the union so that degenerate boxes give 0 rather than NaN.

    Returns:
        ``(N, M)`` tensor of IoU values.
    """
    top_left = torch.max(box1[:, None, :2], box2[None, :, :2])
    bottom_right = torch.min(box1[:, None, 2:4], box2[None, :, 2:4])
    inter = (bottom_right - top_left).clamp(0).prod(2)
    return inter / (box_area(box1)[:, None] + box_area(box2)[None, :] - inter + eps)


def bbox_iou(
    box1: torch.Tensor,
    box2: torch.Tensor,
    xywh: bool = True,
    GIoU: bool = False,
    DIoU: bool = False,
    CIoU: bool = False,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Elementwise IoU (or GIoU / DIoU / CIoU) of boxes that broadcast against each other.

    Args:
        box1, box2: ``(..., 4)`` boxes, ``xywh`` if ``xywh`` else ``xyxy``.
        GIoU, DIoU, CIoU: return the generalised, distance or complete IoU instead (CIoU wins).
        eps: numerical guard for unions, heights and the enclosing diagonal.

    Returns:
        Tensor of the broadcast shape without the last dimension, e.g. ``(n, 4), (n, 4) -> (n,)``.
        In CIoU the trade-off weight ``alpha`` carries no gradient, as in the YOLOv5 loss.
    """
    if xywh:
        x1, y1, w1, h1 = box1.unbind(-1)
        x2, y2, w2, h2 = box2.unbind(-1)
        b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
        b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    else:
        b1_x1, b1_y1, b1_x2, b1_y2 = box1.unbind(-1)
        b2_x1, b2_y1, b2_x2, b2_y2 = box2.unbind(-1)
        w1, h1 = b1_x2 - b1_x1, (b1_y2 - b1_y1).clamp(eps)
        w2, h2 = b2_x2 - b2_x1, (b2_y2 - b2_y1).clamp(eps)

    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * (
        torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not (GIoU or DIoU or CIoU):
        return iou

    # smallest box enclosing both
    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    if CIoU or DIoU:
        c2 = cw**2 + ch**2 + eps  # squared diagonal of the enclosing box
        rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
        if CIoU:
            v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
            with torch.no_grad():  # alpha is a weight, not a term to optimise
                alpha = v / (v - iou + (1 + eps))
            return iou - (rho2 / c2 + v * alpha)
        return iou - rho2 / c2
    c_area = cw * ch + eps
    return iou - (c_area - union) / c_area


def clip_boxes(boxes: Boxes, shape: Sequence[float]) -> Boxes:
    """Clip ``xyxy`` boxes in place to an image of ``shape = (height, width, ...)``; returns ``boxes``."""
    h, w = shape[0], shape[1]
    if isinstance(boxes, torch.Tensor):
        boxes[..., 0].clamp_(0, w)
        boxes[..., 1].clamp_(0, h)
        boxes[..., 2].clamp_(0, w)
        boxes[..., 3].clamp_(0, h)
    else:
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, w)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, h)
    return boxes


def scale_boxes(
    img1_shape: Sequence[int],
    boxes: Boxes,
    img0_shape: Sequence[int],
    ratio_pad: Sequence | None = None,
) -> Boxes:
    """Map ``xyxy`` boxes from a letterboxed image back to the original image, in place.

    Args:
        img1_shape: ``(h, w)`` of the letterboxed (network input) image.
        boxes: ``(n, >=4)`` boxes in ``img1`` pixels; columns 0-3 are modified in place.
        img0_shape: ``(h, w, ...)`` of the original image; the result is clipped to it.
        ratio_pad: ``((gain_h, gain_w), (pad_w, pad_h))`` as recorded by the letterbox; when
            ``None`` both are recomputed from the two shapes (centred padding).

    Returns:
        ``boxes`` itself, now in ``img0`` pixels.
    """
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        pad_w = (img1_shape[1] - img0_shape[1] * gain) / 2
        pad_h = (img1_shape[0] - img0_shape[0] * gain) / 2
    else:
        gain = ratio_pad[0][0]
        pad_w, pad_h = ratio_pad[1][0], ratio_pad[1][1]
    boxes[..., 0] -= pad_w
    boxes[..., 2] -= pad_w
    boxes[..., 1] -= pad_h
    boxes[..., 3] -= pad_h
    boxes[..., :4] /= gain
    clip_boxes(boxes, img0_shape)
    return boxes
