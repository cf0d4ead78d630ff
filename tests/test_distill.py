"""Distillation: the loss is zero for a student equal to its teacher and positive otherwise; a teacher with other
classes is refused before training."""

from __future__ import annotations

import pytest
import torch

from engine.train.distill_hook import check_teacher, distillation_loss
from models.yolo import Model


def test_distillation_loss_is_minimal_at_the_teacher() -> None:
    torch.manual_seed(0)
    t = [torch.randn(2, 3, 4, 4, 8) * 3 for _ in range(3)]
    s = [x.clone().requires_grad_(True) for x in t]
    at_teacher = distillation_loss(s, t)
    at_teacher.backward()
    assert max(float(x.grad.abs().max()) for x in s) < 1e-6  # soft-target BCE and L2 are stationary at s = t
    assert distillation_loss([x + torch.randn_like(x) for x in t], t) > at_teacher


def test_teacher_with_other_classes_is_refused() -> None:
    student = Model("yolov5n.yaml", nc=3, names=["a", "b", "c"])
    teacher = Model("yolov5n.yaml", nc=2, names=["a", "b"])
    with pytest.raises(ValueError, match="--teacher t.pt has 2 classes.*same classes"):
        check_teacher(teacher, student, "t.pt")
    check_teacher(Model("yolov5s.yaml", nc=3, names=["a", "b", "c"]), student, "s.pt")  # bigger teacher is fine
