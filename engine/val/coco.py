"""COCO-format detection JSON and pycocotools scoring (``val.py --save-json``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from utils.boxes import xyxy2xywh

__all__ = ["coco80_to_91", "detections_to_coco", "score_with_pycocotools", "write_json"]

LOGGER = logging.getLogger(__name__)
_MISSING_COCO_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def coco80_to_91() -> list[int]:
    """COCO category ids (1-90 with gaps) for the 80 contiguous class indices used in training."""
    return [i for i in range(1, 91) if i not in _MISSING_COCO_IDS]


def detections_to_coco(predn: torch.Tensor, path: str | Path, class_map: list[int]) -> list[dict]:
    """Rows of COCO results for one image; ``predn`` holds xyxy boxes in original-image pixels, conf, cls."""
    stem = Path(path).stem
    image_id = int(stem) if stem.isnumeric() else stem
    box = xyxy2xywh(predn[:, :4].clone())
    box[:, :2] -= box[:, 2:] / 2  # centre -> top-left corner
    return [{"image_id": image_id, "category_id": class_map[int(c)], "bbox": [round(float(x), 3) for x in b],
             "score": round(float(s), 5)} for b, s, c in zip(box.tolist(), predn[:, 4].tolist(), predn[:, 5].tolist())]


def score_with_pycocotools(pred_json: Path, anno_json: Path, image_ids: list) -> tuple[float, float] | None:
    """mAP50-95 and mAP50 from pycocotools, or None (with a note) when it cannot run."""
    if not anno_json.is_file():
        LOGGER.info(f"pycocotools: no annotations at {anno_json}; COCO JSON saved to {pred_json} without scoring")
        return None
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        LOGGER.warning("pycocotools is not installed; skipping COCO scoring")
        return None
    anno = COCO(str(anno_json))
    pred = anno.loadRes(str(pred_json))
    ev = COCOeval(anno, pred, "bbox")
    ev.params.imgIds = image_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def write_json(rows: list[dict], path: Path) -> None:
    """Write COCO result rows."""
    path.write_text(json.dumps(rows))
