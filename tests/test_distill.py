"""Distillation (output- and feature-level): the loss is zero for a student equal to its teacher and positive
otherwise, the feature loss falls while a student trains on it; a teacher with other classes is refused before
training."""

from __future__ import annotations

from pathlib import Path

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


def _neck(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    from engine.train.feature_distill import neck_features

    with neck_features(model) as maps:
        model(x)
    return maps.maps


def test_feature_distillation_is_zero_for_the_teacher_itself(yolov5n_pt: Path) -> None:
    """The projectors start as the least-squares fit, so a student equal to its teacher (the trained yolov5n) starts
    at (almost) 0 on new images, and another network (an untrained one) does not."""
    from engine.train.feature_distill import FeatureDistiller
    from models.checkpoint import load_model

    torch.manual_seed(0)
    teacher = load_model(yolov5n_pt)[0].eval()
    other = Model("yolov5n.yaml", nc=80).eval()
    x, y = torch.rand(8, 3, 256, 256), torch.rand(8, 3, 256, 256) ** 2  # fitted on x, scored on another batch
    with torch.no_grad():
        t, ty = _neck(teacher, x), _neck(teacher, y)
        same = FeatureDistiller([m.shape[1] for m in t], [m.shape[1] for m in t])
        same.fit(t, t)
        assert float(same(ty, ty)) < 1e-4
        s = _neck(other, x)
        different = FeatureDistiller([m.shape[1] for m in s], [m.shape[1] for m in t])
        different.fit(s, t)
        assert float(different(_neck(other, y), ty)) > 0.05


def test_feature_distillation_loss_falls_while_the_student_trains() -> None:
    """A narrower student (yolov5n's neck at width 0.125) and its projectors trained on the loss alone, on new batches
    each step: the loss at the end is well below the one at the start."""
    from engine.train.feature_distill import FeatureDistiller

    torch.manual_seed(0)
    teacher = Model("yolov5n.yaml", nc=3, names=["a", "b", "c"]).eval()
    student = Model({**teacher.yaml, "width_multiple": 0.125}, nc=3, names=["a", "b", "c"]).train()
    batches = [torch.rand(4, 3, 96, 96) for _ in range(40)]
    with torch.no_grad():
        t0 = _neck(teacher, batches[0])
    distiller = FeatureDistiller([m.shape[1] for m in _neck(student, batches[0])], [m.shape[1] for m in t0])
    opt = torch.optim.Adam([*student.parameters(), *distiller.parameters()], lr=1e-3)
    losses = []
    for x in batches:
        with torch.no_grad():
            t = _neck(teacher, x)
        loss = distiller(_neck(student, x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
