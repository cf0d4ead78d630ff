"""Feature-level distillation (``train.py --teacher PATH --distill feature``): the student's neck outputs, the three
feature maps its Detect head reads, are projected by 1x1 convolutions onto the teacher's channels and pulled towards
the teacher's maps with a normalised L2 loss.

Published work on recovering pruned YOLO models matches these neck features rather than the head's outputs (mmyolo,
PaddleDetection, Ultralytics); here the output-level variant (:mod:`engine.train.distill_hook`) lowered a slimmed
model's mAP. The projectors start as the least-squares fit of the teacher's maps from the student's on the first batch,
so a student equal to its teacher starts at a loss of zero, and a slimmed student (whose channels are a subset of the
teacher's) starts close to it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from engine.train.distill_hook import check_teacher
from engine.train.hooks import StepInfo, TrainHook
from models.checkpoint import load_model
from utils.torch_utils import unwrap

__all__ = ["FeatureDistiller", "FeatureDistillHook", "neck_features"]

LOGGER = logging.getLogger(__name__)


class neck_features:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Record the inputs of ``model.detect`` (the neck's output maps) while the context is open: ``.maps`` holds the
    last forward pass's list."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.maps, self.handle = model, [], None

    def _record(self, module: nn.Module, args: tuple) -> None:
        self.maps = list(args[0])

    def __enter__(self) -> neck_features:
        self.handle = self.model.detect.register_forward_pre_hook(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


class FeatureDistiller(nn.Module):
    """1x1-convolution projectors from the student's neck channels to the teacher's, and the distillation loss.

    Args:
        student_channels, teacher_channels: channels of each level's map (P3, P4, P5).
    """

    def __init__(self, student_channels: list[int], teacher_channels: list[int]) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(f"student has {len(student_channels)} neck outputs, teacher {len(teacher_channels)}")
        self.proj = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(student_channels, teacher_channels))
        self.fitted = False

    @torch.no_grad()
    def fit(self, student: list[torch.Tensor], teacher: list[torch.Tensor], ridge: float = 1e-4) -> None:
        """Set each projector to the ridge-regularised least-squares map from the student's features to the
        teacher's, per pixel (the ridge keeps a level with fewer pixels than channels from fitting one batch's
        noise)."""
        for conv, s, t in zip(self.proj, student, teacher):
            x = s.detach().double().permute(0, 2, 3, 1).reshape(-1, s.shape[1])
            y = t.detach().double().permute(0, 2, 3, 1).reshape(-1, t.shape[1])
            x = torch.cat([x, x.new_ones(len(x), 1)], 1)
            gram = x.T @ x
            gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
            w = torch.linalg.solve(gram, x.T @ y)  # (cs + 1, ct)
            conv.weight.copy_(w[:-1].T.reshape_as(conv.weight).to(conv.weight.dtype))
            conv.bias.copy_(w[-1].to(conv.bias.dtype))
        self.fitted = True

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        """Mean over levels of ``||proj(s) - t||^2 / ||t||^2`` (each a mean over the map): scale-free, so one weight
        suits every level and model; fits the projectors on the first call."""
        if not self.fitted:
            self.fit(student, teacher)
        total = student[0].new_zeros((), dtype=torch.float32)
        for conv, s, t in zip(self.proj, student, teacher):
            t = t.detach().float()
            total = total + ((conv(s.float()) - t) ** 2).mean() / (t ** 2).mean().clamp(min=1e-6)
        return total / len(self.proj)


class FeatureDistillHook(TrainHook):
    """Adds ``weight * FeatureDistiller(...) * batch_size`` to the detection loss (which is also scaled by batch size).

    The teacher runs in eval mode without gradients on the student's (augmented) batch. The projectors have their own
    Adam optimizer, stepped with the student's: Adam's steps do not depend on the gradients' scale, so the AMP loss
    scale needs no undoing (a step with non-finite gradients is skipped, as the scaler does). Each process fits its
    own projectors; they are not saved in checkpoints (a resumed run fits them again).
    """

    def __init__(self, teacher: str, weight: float = 0.1, lr: float = 1e-4) -> None:
        self.path, self.weight, self.lr = teacher, weight, lr
        self.teacher: nn.Module | None = None
        self.distiller: FeatureDistiller | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.losses: list[float] = []
        self.student_maps: neck_features | None = None

    def before_train(self, step: StepInfo) -> dict[str, Any]:
        """Load the teacher, check that it fits the student, and size the projectors from one forward pass each."""
        self.teacher, _ = load_model(self.path, device=step.device)
        self.teacher.eval().requires_grad_(False)
        student = unwrap(step.model)
        check_teacher(self.teacher, student, self.path)
        x = torch.zeros(1, 3, 64, 64, device=step.device)
        training = student.training
        with torch.no_grad(), neck_features(student) as s, neck_features(self.teacher) as t:
            student.eval()(x)
            self.teacher(x)
        student.train(training)
        self.distiller = FeatureDistiller([m.shape[1] for m in s.maps], [m.shape[1] for m in t.maps]).to(step.device)
        self.optimizer = torch.optim.Adam(self.distiller.parameters(), lr=self.lr)
        # records the maps the student's Detect layer reads in each training forward pass (removed in after_train; the
        # EMA copy was made before, so it carries no hook)
        self.student_maps = neck_features(student).__enter__()
        LOGGER.info(f"Feature distillation: teacher {self.path}, neck channels {[m.shape[1] for m in s.maps]} -> "
                    f"{[m.shape[1] for m in t.maps]}, weight {self.weight}")
        return {}

    def extra_loss(self, step: StepInfo, imgs: torch.Tensor, preds: list[torch.Tensor],
                   targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), neck_features(self.teacher) as t:
            self.teacher(imgs)
        loss = self.distiller(self.student_maps.maps, t.maps)
        self.losses.append(float(loss.detach()))
        return self.weight * loss * imgs.shape[0]

    def before_step(self, step: StepInfo) -> None:
        grads = [p.grad for p in self.distiller.parameters() if p.grad is not None]
        if grads and all(torch.isfinite(g).all() for g in grads):
            self.optimizer.step()
        self.optimizer.zero_grad()

    def after_epoch(self, step: StepInfo) -> dict[str, float]:
        """The epoch's mean distillation loss (unweighted) for results.csv."""
        mean = sum(self.losses) / len(self.losses) if self.losses else float("nan")
        self.losses = []
        return {"distill_loss": mean}

    def after_train(self, step: StepInfo) -> None:
        if self.student_maps is not None:
            self.student_maps.__exit__()
