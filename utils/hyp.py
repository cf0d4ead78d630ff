"""Typed hyperparameters (the keys of YOLOv5's ``data/hyps/*.yaml``), loaded from YAML with strict key checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from utils.paths import REPO_ROOT
from utils.yaml_io import read_yaml

__all__ = ["Hyp", "load_hyp", "find_hyp"]

_POSITIVE = ("lr0", "lrf")  # a zero learning rate trains nothing
_AT_MOST_1 = ("momentum", "warmup_momentum", "flipud", "fliplr", "mosaic", "mixup", "copy_paste", "label_smoothing",
              "hsv_h", "hsv_s", "hsv_v")  # probabilities, momenta and HSV gains


@dataclass
class Hyp:
    """Training hyperparameters; defaults are those of ``hyp.scratch-low.yaml``."""

    lr0: float = 0.01
    lrf: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 0.0005
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    box: float = 0.05
    cls: float = 0.5
    cls_pw: float = 1.0
    obj: float = 1.0
    obj_pw: float = 1.0
    iou_t: float = 0.2
    anchor_t: float = 4.0
    fl_gamma: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    mixup: float = 0.0
    copy_paste: float = 0.0
    label_smoothing: float = 0.0

    def to_dict(self) -> dict:
        """Plain dict (for the loss, the dataset and checkpoints)."""
        return asdict(self)

    def scaled(self, nl: int, nc: int, imgsz: int) -> dict:
        """The dict with YOLOv5's loss gains for the model and data: box and cls per 3 detection layers, cls per 80
        classes, obj per image area at 640 px."""
        d = self.to_dict()
        d["box"] *= 3 / nl
        d["cls"] *= nc / 80 * 3 / nl
        d["obj"] *= (imgsz / 640) ** 2 * 3 / nl
        return d


def find_hyp(path: str | Path) -> Path:
    """Resolve a hyp file given as a path or as a name under ``data/hyps`` or the repo root."""
    p = Path(path)
    for c in (p, REPO_ROOT / p, REPO_ROOT / "data" / "hyps" / p.name, REPO_ROOT / p.name):
        if c.is_file():
            return c
    raise FileNotFoundError(f"--hyp {path}: file not found (also looked in data/hyps/ and the repo root)")


def load_hyp(path: str | Path | dict | None) -> Hyp:
    """Load hyperparameters from a YAML file (or dict); unknown keys and non-numeric values are errors.

    Raises:
        ValueError: naming the file, the key and the known keys.
    """
    if path is None:
        return Hyp()
    src = "hyp dict"
    if isinstance(path, dict):
        d = dict(path)
    else:
        f = find_hyp(path)
        src = str(f)
        d = read_yaml(f, "hyperparameter YAML") or {}
        if not isinstance(d, dict):
            raise ValueError(f"{src}: expected a mapping of hyperparameters")
    known = {f.name for f in fields(Hyp)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{src}: unknown hyperparameter(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{src}: '{k}' must be a number, got {v!r}")
        if v < 0 or (k in _POSITIVE and v == 0) or (k in _AT_MOST_1 and v > 1):
            bound = "> 0" if k in _POSITIVE else "in [0, 1]" if k in _AT_MOST_1 else ">= 0"
            raise ValueError(f"{src}: '{k}' must be {bound}, got {v!r}")
    return Hyp(**{k: float(v) for k, v in d.items()})
