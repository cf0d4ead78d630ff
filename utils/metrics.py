"""Detection metrics with YOLOv5 semantics: matching, AP per class, confusion matrix (fitness, which ranks models,
is part of the validation protocol in ``engine/val/validator.py``). Nothing here writes files: the validator draws the
curves and the matrix with ``utils.plots``.

The algorithms follow the YOLOv5 validation procedure step for step (including its tie handling
and 101-point interpolated AP) so that mAP figures agree with the official ones to 3 decimals.
"""

from __future__ import annotations

import numpy as np
import torch

from utils.boxes import box_iou

__all__ = [
    "smooth",
    "match_predictions",
    "compute_ap",
    "ap_per_class",
    "ConfusionMatrix",
]

# np.trapz was renamed np.trapezoid in numpy 2.0 and later removed
_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box-filter ``y`` with a window of about ``2 * f * len(y)`` samples (odd), edges padded."""
    nf = round(len(y) * f * 2) // 2 + 1  # odd window length
    pad = np.ones(nf // 2)
    padded = np.concatenate((pad * y[0], y, pad * y[-1]), 0)
    return np.convolve(padded, np.ones(nf) / nf, mode="valid")


def _greedy_matches(iou: torch.Tensor, mask: torch.Tensor, resort: bool) -> np.ndarray:
    """Rows ``[label_idx, det_idx, iou]`` of a one-to-one matching among pairs where ``mask`` holds.

    Pairs are ranked by IoU, each detection keeps its best label, then each label keeps one of
    the remaining detections. With ``resort=False`` the second step keeps, for each label, the
    detection with the lowest index (highest confidence), which is what YOLOv5's validation does;
    ``resort=True`` re-ranks by IoU first, as its confusion matrix does.
    """
    li, di = torch.where(mask)
    if li.shape[0] == 0:
        return np.zeros((0, 3))
    matches = torch.cat((torch.stack((li, di), 1), iou[li, di][:, None]), 1).cpu().numpy()
    if li.shape[0] > 1:
        matches = matches[matches[:, 2].argsort()[::-1]]
        matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
        if resort:
            matches = matches[matches[:, 2].argsort()[::-1]]
        matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
    return matches


def match_predictions(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor) -> torch.Tensor:
    """Mark each detection as a true positive or not at each IoU threshold.

    Args:
        detections: ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]``, sorted by confidence descending.
        labels: ``(m, 5)`` ``[cls, x1, y1, x2, y2]`` in the same pixel space.
        iouv: ``(k,)`` IoU thresholds, usually ``torch.linspace(0.5, 0.95, 10)``.

    Returns:
        ``(n, k)`` bool tensor on ``iouv.device``.
    """
    correct = np.zeros((detections.shape[0], iouv.shape[0]), dtype=bool)
    if detections.shape[0] and labels.shape[0]:
        iou = box_iou(labels[:, 1:], detections[:, :4])
        same_class = labels[:, 0:1] == detections[:, 5]
        for k, threshold in enumerate(iouv):
            matches = _greedy_matches(iou, (iou >= threshold) & same_class, resort=False)
            correct[matches[:, 1].astype(int), k] = True
    return torch.tensor(correct, dtype=torch.bool, device=iouv.device)


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Average precision from one recall/precision curve (101-point interpolation, COCO style).

    Returns:
        ``(ap, mpre, mrec)``: the AP and the sentinel-padded precision envelope and recall.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # monotone precision envelope
    x = np.linspace(0, 1, 101)
    ap = float(_trapezoid(np.interp(x, mrec, mpre), x))
    return ap, mpre, mrec


def ap_per_class(
    tp: np.ndarray,
    conf: np.ndarray,
    pred_cls: np.ndarray,
    target_cls: np.ndarray,
    eps: float = 1e-16,
) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and AP for every class that has labels.

    Args:
        tp: ``(n, k)`` bool, true positive per detection at each of ``k`` IoU thresholds.
        conf: ``(n,)`` detection confidences.
        pred_cls: ``(n,)`` detection classes.
        target_cls: ``(m,)`` label classes over the whole dataset.

    Returns:
        Dict with, per present class (``nc`` = number of classes among ``target_cls``):
        ``tp, fp, p, r, f1`` ``(nc,)`` at the confidence maximising the mean smoothed F1,
        ``ap`` ``(nc, k)``, ``unique_classes`` ``(nc,)`` int, and curves ``px`` ``(1000,)``
        (confidence / recall axis), ``p_curve, r_curve, f1_curve`` ``(nc, 1000)`` against
        confidence and ``pr_curve`` ``(nc, 1000)`` precision against recall at IoU column 0
        (``utils.plots.plot_val_curves`` draws them).
    """
    tp, conf, pred_cls, target_cls = (
        x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in (tp, conf, pred_cls, target_cls)
    )
    if tp.ndim == 1:
        tp = tp[:, None]
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]

    unique_classes, nt = np.unique(target_cls, return_counts=True)
    nc, niou = unique_classes.shape[0], tp.shape[1]
    px = np.linspace(0, 1, 1000)
    ap = np.zeros((nc, niou))
    p_curve, r_curve, pr_curve = np.zeros((nc, 1000)), np.zeros((nc, 1000)), np.zeros((nc, 1000))
    for ci, c in enumerate(unique_classes):
        i = pred_cls == c
        n_l, n_p = nt[ci], i.sum()
        if n_p == 0 or n_l == 0:
            continue
        fpc = (1 - tp[i]).cumsum(0)
        tpc = tp[i].cumsum(0)
        recall = tpc / (n_l + eps)
        precision = tpc / (tpc + fpc)
        # curves against confidence; px runs upward, conf downward, hence the negations
        r_curve[ci] = np.interp(-px, -conf[i], recall[:, 0], left=0)
        p_curve[ci] = np.interp(-px, -conf[i], precision[:, 0], left=1)
        for j in range(niou):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if j == 0:
                pr_curve[ci] = np.interp(px, mrec, mpre)

    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    best = int(smooth(f1_curve.mean(0), 0.1).argmax()) if nc else 0
    p, r, f1 = p_curve[:, best], r_curve[:, best], f1_curve[:, best]
    tp_count = (r * nt).round()
    fp_count = (tp_count / (p + eps) - tp_count).round()
    return {
        "tp": tp_count,
        "fp": fp_count,
        "p": p,
        "r": r,
        "f1": f1,
        "ap": ap,
        "unique_classes": unique_classes.astype(int),
        "px": px,
        "p_curve": p_curve,
        "r_curve": r_curve,
        "f1_curve": f1_curve,
        "pr_curve": pr_curve,
    }


class ConfusionMatrix:
    """Detection confusion matrix; rows are predicted classes, columns true classes.

    Index ``nc`` is background: column ``nc`` counts false positives (a detection matching no
    label), row ``nc`` missed labels.
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45) -> None:
        if nc < 1:
            raise ValueError(f"ConfusionMatrix: nc={nc} must be at least 1")
        self.nc = nc
        self.conf = conf
        self.iou_thres = iou_thres
        self.matrix = np.zeros((nc + 1, nc + 1))

    def process_batch(self, detections: torch.Tensor | None, labels: torch.Tensor) -> None:
        """Accumulate one image.

        Args:
            detections: ``(n, 6)`` ``[x1, y1, x2, y2, conf, cls]`` or ``None`` when there are none.
            labels: ``(m, 5)`` ``[cls, x1, y1, x2, y2]``; with ``detections=None`` a ``(m,)``
                tensor of classes is accepted too.
        """
        if detections is None or detections.shape[0] == 0:
            gt = labels[:, 0] if labels.dim() == 2 else labels
            for gc in gt.int().tolist():
                self.matrix[self.nc, gc] += 1  # missed label
            return

        detections = detections[detections[:, 4] > self.conf]
        gt_classes = labels[:, 0].int().tolist()
        det_classes = detections[:, 5].int().tolist()
        iou = box_iou(labels[:, 1:], detections[:, :4])
        matches = _greedy_matches(iou, iou > self.iou_thres, resort=True)
        m_label, m_det = matches[:, 0].astype(int), matches[:, 1].astype(int)

        for li, gc in enumerate(gt_classes):
            hit = m_det[m_label == li]
            if hit.shape[0] == 1:
                self.matrix[det_classes[hit[0]], gc] += 1
            else:
                self.matrix[self.nc, gc] += 1  # missed label
        for di, dc in enumerate(det_classes):
            if not (m_det == di).any():
                self.matrix[dc, self.nc] += 1  # detection of background

    def tp_fp(self) -> tuple[np.ndarray, np.ndarray]:
        """True and false positives per class (background excluded)."""
        tp = self.matrix.diagonal()
        fp = self.matrix.sum(1) - tp
        return tp[:-1], fp[:-1]
