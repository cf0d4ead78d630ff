"""YOLOv5 (v6) training loss: CIoU box regression, objectness and class BCE over three (or more) levels.

The loss works on the Detect head only (anchors, strides, class count); it knows nothing of the Model class, so the
same code trains plain, pruned and lightweight-backbone detectors.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from utils.boxes import bbox_iou
from utils.torch_utils import unwrap

__all__ = ["ComputeLoss", "FocalLoss", "smooth_bce"]

# Objectness weight per level, small strides first: fine levels see many more negatives per image.
_BALANCE = {3: [4.0, 1.0, 0.4]}
_BALANCE_DEFAULT = [4.0, 1.0, 0.25, 0.06, 0.02]
_REQUIRED_HYP = ("box", "obj", "cls", "cls_pw", "obj_pw", "anchor_t")

# Neighbour cells that also predict a target: self, left, up, right, down (x, y order), scaled by the 0.5 offset.
_NEIGHBOURS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))
_OFFSET = 0.5


def smooth_bce(eps: float = 0.0) -> tuple[float, float]:
    """Return (positive, negative) BCE targets for label smoothing ``eps``: (1 - eps/2, eps/2)."""
    return 1.0 - 0.5 * eps, 0.5 * eps


class FocalLoss(nn.Module):
    """Focal loss wrapped around an ``nn.BCEWithLogitsLoss`` (keeps its pos_weight and reduction).

    Args:
        loss_fcn: the BCE-with-logits criterion to modulate; its reduction is applied after modulation.
        gamma: focusing exponent on (1 - p_t).
        alpha: weight of the positive class (1 - alpha for negatives).
    """

    def __init__(self, loss_fcn: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25):
        super().__init__()
        self.loss_fcn = loss_fcn
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"  # modulation needs the element-wise loss

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fcn(pred, true)
        prob = pred.sigmoid()
        p_t = true * prob + (1 - true) * (1 - prob)
        alpha_factor = true * self.alpha + (1 - true) * (1 - self.alpha)
        loss = loss * alpha_factor * (1.0 - p_t) ** self.gamma
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


def _unwrap_detect(detect: nn.Module) -> nn.Module:
    """Accept the Detect head itself, a DDP/DataParallel wrapper, or anything exposing ``.detect``."""
    detect = unwrap(detect)
    if not hasattr(detect, "anchors") and hasattr(detect, "detect"):
        detect = detect.detect
    for attr in ("nc", "nl", "na", "anchors", "stride"):
        if not hasattr(detect, attr):
            raise TypeError(f"ComputeLoss: {type(detect).__name__} is not a Detect head (no attribute '{attr}')")
    return detect


class ComputeLoss:
    """YOLOv5 loss. ``loss(preds, targets) -> (total * batch_size, [box, obj, cls] detached)``.

    Args:
        detect: the Detect head (attributes nc, nl, na, anchors (nl, na, 2) in grid units, stride). A model exposing
            ``.detect`` or a DDP wrapper is unwrapped.
        hyp: hyperparameters; needs box, obj, cls, cls_pw, obj_pw, anchor_t and optionally fl_gamma,
            label_smoothing. The box/obj/cls gains are used as given (the trainer scales them for nl, nc, imgsz).
        autobalance: adapt the per-level objectness balance during training (stride-16 level fixed at 1).
        device: device of the criteria; defaults to the head's device and follows the predictions' device.
    """

    sort_obj_iou = False  # objectness target of a cell hit twice is the last written IoU, not the highest
    gr = 1.0  # objectness target = gr * IoU + (1 - gr)

    def __init__(self, detect: nn.Module, hyp: dict, autobalance: bool = False,
                 device: torch.device | str | None = None):
        self.detect = _unwrap_detect(detect)
        missing = [k for k in _REQUIRED_HYP if k not in hyp]
        if missing:
            raise KeyError(f"ComputeLoss: hyperparameters are missing {missing} (see data/hyps/*.yaml)")
        self.hyp = hyp
        if device is None:
            buf = next(iter(self.detect.buffers()), None)
            device = buf.device if buf is not None else torch.device("cpu")
        self.device = torch.device(device)

        self.bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([float(hyp["cls_pw"])], device=self.device))
        self.bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([float(hyp["obj_pw"])], device=self.device))
        gamma = float(hyp.get("fl_gamma", 0.0))
        if gamma > 0:
            self.bce_cls, self.bce_obj = FocalLoss(self.bce_cls, gamma), FocalLoss(self.bce_obj, gamma)
        self.cp, self.cn = smooth_bce(float(hyp.get("label_smoothing", 0.0)))

        self.nc, self.nl, self.na = int(self.detect.nc), int(self.detect.nl), int(self.detect.na)
        self.balance = list(_BALANCE.get(self.nl, _BALANCE_DEFAULT[: self.nl]))
        strides = [float(s) for s in torch.as_tensor(self.detect.stride).view(-1)]
        self.autobalance = autobalance
        self.ssi = strides.index(16.0) if autobalance and 16.0 in strides else 0

    @property
    def anchors(self) -> torch.Tensor:
        """Current anchors (nl, na, 2) in grid units; read live so AutoAnchor changes are seen."""
        return self.detect.anchors.detach().float()

    def _to(self, device: torch.device) -> None:
        if device != self.device:
            self.bce_cls.to(device)
            self.bce_obj.to(device)
            self.device = device

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the loss.

        Args:
            preds: nl raw tensors (bs, na, ny, nx, no) from the training-mode forward.
            targets: (n, 6) rows [image_index, cls, x, y, w, h], xywh normalised to the network input.

        Returns:
            (total loss * bs as a shape-(1,) tensor, detached tensor [box, obj, cls]).
        """
        if len(preds) != self.nl:
            raise ValueError(f"ComputeLoss: expected {self.nl} prediction levels, got {len(preds)}")
        device = preds[0].device
        self._to(device)
        targets = targets.to(device=device, dtype=torch.float32)
        lcls = torch.zeros(1, device=device)
        lbox = torch.zeros(1, device=device)
        lobj = torch.zeros(1, device=device)
        tcls, tbox, indices, anch = self.build_targets(preds, targets)

        for i, pi in enumerate(preds):
            pi = pi.float()  # AMP may hand in half precision; BCE and IoU want float32
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=device)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anch[i]
                pbox = torch.cat((pxy, pwh), 1)
                iou = bbox_iou(pbox, tbox[i], xywh=True, CIoU=True).view(-1)
                lbox = lbox + (1.0 - iou).mean()

                iou = iou.detach().clamp(0).to(tobj.dtype)
                if self.sort_obj_iou:
                    order = iou.argsort()
                    b, a, gj, gi, iou = b[order], a[order], gj[order], gi[order], iou[order]
                if self.gr < 1:
                    iou = (1.0 - self.gr) + self.gr * iou
                tobj[b, a, gj, gi] = iou

                if self.nc > 1:  # a single class is fully described by objectness
                    t = torch.full_like(pcls, self.cn)
                    t[torch.arange(n, device=device), tcls[i]] = self.cp
                    lcls = lcls + self.bce_cls(pcls, t)

            obji = self.bce_obj(pi[..., 4], tobj)
            lobj = lobj + obji * self.balance[i]
            if self.autobalance:
                self.balance[i] = self.balance[i] * 0.9999 + 0.0001 / max(obji.detach().item(), 1e-12)

        if self.autobalance:
            ref = self.balance[self.ssi]
            self.balance = [x / ref for x in self.balance]
        lbox = lbox * self.hyp["box"]
        lobj = lobj * self.hyp["obj"]
        lcls = lcls * self.hyp["cls"]
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor):
        """Assign targets to anchors and grid cells, per level.

        Returns four lists of length nl: class ids (m,), target boxes (m, 4) as xy offset within the cell (range
        -0.5..1.5) and wh in grid units, indices (image, anchor, grid_y, grid_x), and the matched anchors (m, 2).
        """
        device = targets.device
        nt = targets.shape[0]
        anchors_all = self.anchors.to(device)
        anchor_t = float(self.hyp["anchor_t"])
        # One copy of every target per anchor, anchor index appended as column 6: (na, nt, 7).
        ai = torch.arange(self.na, device=device, dtype=torch.float32).view(self.na, 1).expand(self.na, nt)
        tga = torch.cat((targets.unsqueeze(0).expand(self.na, nt, 6), ai.unsqueeze(-1)), 2)
        offsets_all = torch.tensor(_NEIGHBOURS, device=device, dtype=torch.float32) * _OFFSET

        tcls, tbox, indices, anch = [], [], [], []
        for i, p in enumerate(preds):
            ny, nx = p.shape[2], p.shape[3]
            anchors = anchors_all[i]
            scale = torch.tensor([1, 1, nx, ny, nx, ny, 1], device=device, dtype=torch.float32)
            t = tga * scale  # xywh in grid units of this level
            if nt:
                ratio = t[..., 4:6] / anchors[:, None]
                keep = torch.max(ratio, 1.0 / ratio).max(2).values < anchor_t
                t = t[keep]  # (m, 7)
                gxy = t[:, 2:4]
                gxi = torch.tensor([nx, ny], device=device, dtype=torch.float32) - gxy
                left, up = ((gxy % 1 < _OFFSET) & (gxy > 1)).T
                right, down = ((gxi % 1 < _OFFSET) & (gxi > 1)).T
                use = torch.stack((torch.ones_like(left), left, up, right, down))  # (5, m)
                t = t.unsqueeze(0).expand(5, -1, -1)[use]
                offsets = (torch.zeros_like(gxy).unsqueeze(0) + offsets_all[:, None])[use]
            else:
                t = tga[0]
                offsets = torch.zeros((0, 2), device=device)

            b, c = t[:, 0].long(), t[:, 1].long()
            gxy, gwh, a = t[:, 2:4], t[:, 4:6], t[:, 6].long()
            # Clamp before taking the in-cell offset so the box is relative to the cell that predicts it.
            gij = (gxy - offsets).long()
            gi = gij[:, 0].clamp(0, nx - 1)
            gj = gij[:, 1].clamp(0, ny - 1)
            gij = torch.stack((gi, gj), 1)
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - gij, gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
