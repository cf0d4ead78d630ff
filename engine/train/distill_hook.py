"""Knowledge distillation while training (``train.py --teacher PATH --kd-weight W``), as a training hook."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from engine.train.hooks import StepInfo, TrainHook
from models.checkpoint import load_model
from models.summary import count_params
from utils.torch_utils import unwrap

__all__ = ["DistillHook", "distillation_loss"]

LOGGER = logging.getLogger(__name__)


def distillation_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], box: bool = True,
                      conf_thres: float = 0.5) -> torch.Tensor:
    """Per-image distillation loss between raw head outputs (lists of (bs, na, ny, nx, 5 + nc) logits).

    Objectness and class logits follow the teacher's probabilities (BCE with soft targets; class terms weighted by the
    teacher's objectness); boxes (sigmoid xywh) follow the teacher's with an L2 loss where the teacher is confident.
    """
    bce = nn.BCEWithLogitsLoss(reduction="none")
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher):
        s, t = s.float(), t.float()
        t_obj = t[..., 4].sigmoid()
        total = total + bce(s[..., 4], t_obj).mean()
        if s.shape[-1] > 5:
            cls = bce(s[..., 5:], t[..., 5:].sigmoid()).mean(-1)
            total = total + (cls * t_obj).sum() / t_obj.sum().clamp(min=1.0)
        if box:
            m = t_obj > conf_thres
            if m.any():
                total = total + ((s[..., :4].sigmoid() - t[..., :4].sigmoid())[m] ** 2).sum(-1).mean()
    return total


class DistillHook(TrainHook):
    """Adds ``weight * distillation_loss * batch_size`` to the detection loss (which is also scaled by batch size).

    The teacher runs in eval mode without gradients on the student's (augmented) batch. It must have the student's
    classes and head layout; boxes are distilled only when the anchors match too.
    """

    def __init__(self, teacher: str, weight: float = 1.0) -> None:
        self.path, self.weight = teacher, weight
        self.teacher: nn.Module | None = None
        self.box = True

    def before_train(self, step: StepInfo) -> dict[str, Any]:
        """Load the teacher on the student's device and check that it fits the student."""
        self.teacher, _ = load_model(self.path, device=step.device)
        self.teacher.eval().requires_grad_(False)
        student = unwrap(step.model)
        check_teacher(self.teacher, student, self.path)
        self.box = torch.allclose(self.teacher.detect.anchors.cpu(), student.detect.anchors.cpu(), atol=1e-3)
        if not self.box:
            LOGGER.warning(f"--teacher {self.path}: anchors differ from the student's, distilling objectness and "
                           "classes only")
        LOGGER.info(f"Distillation: teacher {self.path} ({count_params(self.teacher):,} "
                    f"parameters), weight {self.weight}")
        return {}

    def extra_loss(self, step: StepInfo, imgs: torch.Tensor, preds: list[torch.Tensor],
                   targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, t_raw = self.teacher(imgs)
        return self.weight * distillation_loss(preds, t_raw, box=self.box) * imgs.shape[0]


def check_teacher(teacher: nn.Module, student: nn.Module, path: str) -> None:
    """Refuse a teacher whose classes or head layout differ from the student's (before any training starts)."""
    if list(teacher.names) != list(student.names):
        raise ValueError(f"--teacher {path} has {len(teacher.names)} classes ({', '.join(teacher.names[:3])}...) but "
                         f"the student has {len(student.names)} ({', '.join(student.names[:3])}...); the teacher "
                         "must be trained on the same classes")
    t, s = teacher.detect, student.detect
    if (t.nl, t.na) != (s.nl, s.na):
        raise ValueError(f"--teacher {path}: head has {t.nl} levels x {t.na} anchors, the student {s.nl} x {s.na}")
