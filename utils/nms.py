"""Non-maximum suppression of decoded YOLO predictions (YOLOv5 semantics)."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from utils.boxes import xywh2xyxy

__all__ = ["non_max_suppression"]

LOGGER = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _nms_kernel() -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """torchvision's NMS operator, loaded on first use from torchvision's compiled library alone.

    ``import torchvision`` costs 1.5 s of every script's start (its models, datasets and transforms come with it) for
    one kernel; loading the library that registers ``torch.ops.torchvision.nms`` takes milliseconds, and
    ``torchvision.ops.nms`` calls that same operator. Where the library is not where torchvision keeps it (an
    unusual build), or torchvision is imported already, the plain import is used.
    """
    spec = None if "torchvision" in sys.modules else importlib.util.find_spec("torchvision")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for lib in (Path(folder) / f"{name}{suffix}" for name in ("_C_stable", "_C")
                    for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            if lib.is_file():
                try:
                    torch.ops.load_library(str(lib))
                    return torch.ops.torchvision.nms
                except (OSError, RuntimeError, AttributeError):
                    break  # a library of another torch build: let torchvision's own import decide
    import torchvision

    return torchvision.ops.nms


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """Indices of the boxes NMS keeps, highest score first (torchvision's kernel)."""
    return _nms_kernel()(boxes, scores, iou_thres)


def non_max_suppression(
    prediction: torch.Tensor | Sequence[torch.Tensor],
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    labels: Sequence[torch.Tensor] = (),
    max_det: int = 300,
    max_nms: int = 30000,
    max_wh: int = 7680,
    time_limit: float | None = None,
) -> list[torch.Tensor]:
    """Filter decoded predictions by confidence and suppress overlapping boxes per class.

    Args:
        prediction: ``(bs, N, 5 + nc)`` rows ``[x, y, w, h, obj, cls_prob...]`` in pixels, or a
            tuple/list whose first element is that tensor (an eval-mode model output).
        conf_thres: a candidate needs ``obj > conf_thres``, then ``obj * cls_prob > conf_thres``.
        iou_thres: IoU above which the lower-scoring box of the same class is suppressed.
        classes: keep only these class indices.
        agnostic: suppress across classes instead of within each class.
        multi_label: keep every (box, class) pair above ``conf_thres`` instead of the best class
            only (ignored when there is a single class).
        labels: per image, ``(m, 5)`` ``[cls, x, y, w, h]`` pixel boxes appended as confidence-1
            candidates (YOLOv5 ``--save-hybrid`` autolabelling); empty by default.
        max_det: maximum number of detections kept per image.
        max_nms: maximum number of boxes (highest confidence first) handed to the NMS kernel.
        max_wh: per-class box offset; must exceed the image size so classes never overlap.
        time_limit: seconds after which the remaining images are skipped with a warning;
            ``None`` (default) never skips, which keeps validation results deterministic.

    Returns:
        One ``(n, 6)`` tensor per image: ``[x1, y1, x2, y2, conf, cls]``, sorted by confidence.
    """
    if isinstance(prediction, (list, tuple)):
        prediction = prediction[0]
    if not 0 <= conf_thres <= 1:
        raise ValueError(f"non_max_suppression: conf_thres={conf_thres} must be in [0, 1]")
    if not 0 <= iou_thres <= 1:
        raise ValueError(f"non_max_suppression: iou_thres={iou_thres} must be in [0, 1]")
    if prediction.dim() != 3 or prediction.shape[2] < 6:
        raise ValueError(
            f"non_max_suppression: prediction must be (bs, N, 5 + nc), got {tuple(prediction.shape)}"
        )

    device = prediction.device
    bs, nc = prediction.shape[0], prediction.shape[2] - 5
    multi_label = multi_label and nc > 1
    candidates = prediction[..., 4] > conf_thres
    class_filter = None if classes is None else torch.tensor(classes, device=device)
    output = [torch.zeros((0, 6), device=device) for _ in range(bs)]
    start = time.time()

    for xi, x in enumerate(prediction):
        x = x[candidates[xi]]  # boolean indexing copies, so the caller's tensor is untouched
        if labels and len(labels[xi]):
            lb = labels[xi].to(device)
            extra = torch.zeros((len(lb), nc + 5), device=device, dtype=x.dtype)
            extra[:, :4] = lb[:, 1:5]
            extra[:, 4] = 1.0
            extra[torch.arange(len(lb), device=device), lb[:, 0].long() + 5] = 1.0
            x = torch.cat((x, extra), 0)
        if not x.shape[0]:
            continue

        x[:, 5:] *= x[:, 4:5]  # class confidence = objectness * class probability
        box = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (x[:, 5:] > conf_thres).nonzero(as_tuple=False).T
            x = torch.cat((box[i], x[i, j + 5, None], j[:, None].to(x.dtype)), 1)
        else:
            conf, j = x[:, 5:].max(1, keepdim=True)
            x = torch.cat((box, conf, j.to(x.dtype)), 1)[conf.view(-1) > conf_thres]
        if class_filter is not None:
            x = x[(x[:, 5:6] == class_filter).any(1)]
        if not x.shape[0]:
            continue

        x = x[x[:, 4].argsort(descending=True)[:max_nms]]
        offsets = x[:, 5:6] * (0 if agnostic else max_wh)  # separate classes in coordinate space
        keep = _nms(x[:, :4] + offsets, x[:, 4], iou_thres)[:max_det]
        output[xi] = x[keep]

        if time_limit is not None and time.time() - start > time_limit:
            LOGGER.warning(
                "non_max_suppression: time limit %.3fs exceeded, images %d-%d of the batch left empty",
                time_limit, xi + 1, bs - 1,
            )
            break
    return output
