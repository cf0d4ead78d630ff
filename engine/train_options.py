"""train.py's options as a dataclass (YOLOv5 flag names, plus network-slimming flags)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

__all__ = ["TrainOptions", "options_from_dict"]


@dataclass
class TrainOptions:
    """Everything a training run needs; saved into every checkpoint as ``train_args``."""

    weights: str = "yolov5s.pt"
    cfg: str = ""
    data: str = "data/coco128.yaml"
    hyp: str = "data/hyps/hyp.scratch-low.yaml"
    epochs: int = 100
    batch_size: int = 16
    imgsz: int = 640
    rect: bool = False
    resume: str = ""
    nosave: bool = False
    noval: bool = False
    noautoanchor: bool = False
    noplots: bool = False
    cache: str | None = None
    device: str = ""
    multi_scale: bool = False
    single_cls: bool = False
    optimizer: str = "SGD"
    sync_bn: bool = False
    workers: int = 8
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    cos_lr: bool = False
    label_smoothing: float = 0.0
    patience: int = 100
    freeze: list[int] = field(default_factory=lambda: [0])
    save_period: int = -1
    seed: int = 0
    # network slimming
    bn_sparsity: bool = False
    sparsity_rate: float | str = 0.0  # a number, or "auto" (chosen for the planned run, then stored as the number)
    sparsity_constant: bool = False
    sparsity_mode: str = "normal"
    sparsity_target: float = 0.0  # 0: every prunable gamma; P: only the channels a prune at P would take
    sparsity_round: int = 1  # the --round that prune will use (for sparsity_target)
    sparsity_importance: str = "gamma"  # which channels sparsity_target drives to 0 (gamma, relative, taylor)
    ft_pruned_model: bool = False
    # knowledge distillation
    teacher: str = ""
    kd_weight: float = 1.0
    # filled in by the trainer
    save_dir: str = ""


def options_from_dict(d: dict) -> TrainOptions:
    """Rebuild options saved in a checkpoint, ignoring keys this version does not know."""
    known = {f.name for f in fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in d.items() if k in known})
