"""Box maths, NMS and detection metrics on hand-computable cases."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.boxes import (
    bbox_iou,
    box_iou,
    clip_boxes,
    scale_boxes,
    xywh2xyxy,
    xywhn2xyxy,
    xyxy2xywh,
    xyxy2xywhn,
)
from engine.val.validator import fitness
from utils.metrics import ConfusionMatrix, ap_per_class, compute_ap, match_predictions, smooth
from utils.nms import non_max_suppression

REPO = Path(__file__).resolve().parents[1]

IOUV = torch.linspace(0.5, 0.95, 10)


# ---------------------------------------------------------------- boxes
def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    iou = box_iou(a, b)
    assert iou.shape == (1, 3)
    assert iou[0].tolist() == pytest.approx([50 / 150, 1.0, 0.0], abs=1e-6)


def test_bbox_iou_variants():
    # two unit squares 1 apart: IoU 0, enclosing box 3 x 1, centre distance 2, same aspect
    a, b = torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[2.0, 0, 3, 1]])
    assert bbox_iou(a, b, xywh=False).item() == pytest.approx(0.0)
    assert bbox_iou(a, b, xywh=False, GIoU=True).item() == pytest.approx(-1 / 3, abs=1e-5)
    assert bbox_iou(a, b, xywh=False, DIoU=True).item() == pytest.approx(-4 / 10, abs=1e-5)
    assert bbox_iou(a, b, xywh=False, CIoU=True).item() == pytest.approx(-4 / 10, abs=1e-5)  # v = 0
    # xywh and xyxy inputs agree elementwise and the result drops the coordinate dimension
    p = torch.tensor([[5.0, 5, 10, 10], [3, 4, 2, 6]])
    t = torch.tensor([[6.0, 5, 8, 12], [3, 4, 2, 6]])
    iou = bbox_iou(p, t, CIoU=True)
    assert iou.shape == (2,)
    assert torch.allclose(iou, bbox_iou(xywh2xyxy(p), xywh2xyxy(t), xywh=False, CIoU=True), atol=1e-6)
    assert iou[1].item() == pytest.approx(1.0, abs=1e-6)


def test_bbox_ciou_backward():
    p = torch.tensor([[5.0, 5, 10, 4]], requires_grad=True)
    loss = (1 - bbox_iou(p, torch.tensor([[6.0, 5, 8, 12]]), CIoU=True)).sum()
    loss.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_xywh_round_trips(kind):
    xyxy = np.array([[10.0, 20, 50, 80], [0, 0, 640, 480]])
    x = torch.tensor(xyxy) if kind == "torch" else xyxy.copy()
    xywh = xyxy2xywh(x)
    assert type(xywh) is type(x)
    assert np.asarray(xywh)[0].tolist() == [30, 50, 40, 60]
    assert np.allclose(np.asarray(xywh2xyxy(xywh)), xyxy)
    n = xyxy2xywhn(x, w=640, h=480)
    assert np.allclose(np.asarray(n)[1], [0.5, 0.5, 1, 1])
    assert np.allclose(np.asarray(xywhn2xyxy(n, w=640, h=480)), xyxy)
    # padding shifts, clip keeps the input intact and stays inside the image
    assert np.allclose(np.asarray(xywhn2xyxy(n, 640, 480, padw=5, padh=7))[0], [15, 27, 55, 87])
    big = x * 2
    clipped = xyxy2xywhn(big, w=640, h=480, clip=True, eps=1e-3)
    assert np.asarray(clipped).max() <= 1.0 and np.asarray(big).max() == 1280


def test_integer_boxes_are_converted_to_float():
    assert xywh2xyxy(np.array([[1, 1, 1, 1]])).tolist() == [[0.5, 0.5, 1.5, 1.5]]


def test_scale_boxes_undoes_letterbox():
    # a 240x320 (h, w) image letterboxed to 640x640: gain 2, 80 px of padding top and bottom
    orig = torch.tensor([[10.0, 20, 100, 200], [0, 0, 320, 240]])
    letterboxed = orig * 2
    letterboxed[:, [1, 3]] += 80
    pred = torch.cat((letterboxed, torch.tensor([[0.9, 1], [0.8, 0]])), 1)
    out = scale_boxes((640, 640), pred[:, :4], (240, 320, 3))  # a view: pred is updated in place
    assert torch.allclose(out, orig) and torch.allclose(pred[:, :4], orig)
    # the recorded letterbox parameters give the same result
    again = letterboxed.clone()
    scale_boxes((640, 640), again, (240, 320), ratio_pad=((2.0, 2.0), (0.0, 80.0)))
    assert torch.allclose(again, orig)
    # boxes reaching into the padding are clipped to the original image
    edge = scale_boxes((640, 640), torch.tensor([[-10.0, 0, 700, 640]]), (240, 320))
    assert edge.tolist() == [[0, 0, 320, 240]]


def test_clip_boxes_numpy():
    b = np.array([[-5.0, -5, 700, 300]])
    assert clip_boxes(b, (200, 640)).tolist() == [[0, 0, 640, 200]]


# ---------------------------------------------------------------- NMS
def _pred(rows, nc):
    """(1, n, 5 + nc) prediction from rows (x, y, w, h, obj, {cls: prob})."""
    out = torch.zeros(1, len(rows), 5 + nc)
    for i, (x, y, w, h, obj, probs) in enumerate(rows):
        out[0, i, :5] = torch.tensor([x, y, w, h, obj])
        for c, p in probs.items():
            out[0, i, 5 + c] = p
    return out


def test_nms_duplicates_same_and_different_class():
    same = _pred([(50, 50, 20, 20, 0.9, {0: 0.9}), (51, 50, 20, 20, 0.8, {0: 0.9})], nc=3)
    out = non_max_suppression(same)
    assert len(out) == 1 and out[0].shape == (1, 6)
    assert out[0][0].tolist() == pytest.approx([40, 40, 60, 60, 0.81, 0])

    diff = _pred([(50, 50, 20, 20, 0.9, {0: 0.9}), (51, 50, 20, 20, 0.8, {2: 0.9})], nc=3)
    out = non_max_suppression(diff)[0]
    assert out.shape == (2, 6) and out[:, 5].tolist() == [0, 2]
    assert out[:, 4].tolist() == pytest.approx([0.81, 0.72])  # sorted by confidence
    assert non_max_suppression(diff, agnostic=True)[0].shape == (1, 6)
    assert non_max_suppression(diff, classes=[2])[0][:, 5].tolist() == [2]
    assert non_max_suppression((diff, None))[0].shape == (2, 6)  # eval-mode (pred, raw) output


def test_nms_thresholds_multi_label_and_max_det():
    pred = _pred([(50, 50, 20, 20, 0.9, {0: 0.9, 1: 0.8}), (200, 200, 10, 10, 0.2, {0: 1.0})], nc=2)
    single = non_max_suppression(pred)[0]
    assert single.shape == (1, 6) and single[0, 5] == 0  # low objectness never becomes a candidate
    multi = non_max_suppression(pred, multi_label=True)[0]
    assert multi.shape == (2, 6) and sorted(multi[:, 5].tolist()) == [0, 1]
    assert multi[:, 4].tolist() == pytest.approx([0.81, 0.72])
    assert non_max_suppression(pred, conf_thres=0.75, multi_label=True)[0].shape == (1, 6)

    # ten disjoint boxes with rising confidence: max_det keeps the best three
    rows = [(30 * i + 10, 10, 10, 10, 0.5 + 0.04 * i, {0: 1.0}) for i in range(10)]
    out = non_max_suppression(_pred(rows, nc=2), max_det=3)[0]
    assert out.shape == (3, 6)
    assert out[:, 4].tolist() == pytest.approx([0.86, 0.82, 0.78])


def test_nms_empty_and_bad_input():
    out = non_max_suppression(torch.zeros(2, 5, 7))
    assert len(out) == 2 and all(o.shape == (0, 6) for o in out)
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(torch.zeros(1, 5, 7), conf_thres=1.5)
    with pytest.raises(ValueError, match="bs, N, 5 \\+ nc"):
        non_max_suppression(torch.zeros(5, 7))


def test_nms_kernel_loads_without_importing_torchvision():
    """The NMS kernel comes from torchvision's compiled library alone (1.5 s less start for every script that
    suppresses boxes): in a fresh process no torchvision module is imported, and the kept indices equal
    torchvision.ops.nms's on overlapping random boxes (imported afterwards, beside the loaded library)."""
    code = """
import sys, torch
from utils.nms import _nms
g = torch.Generator().manual_seed(0)
xy = torch.rand(500, 2, generator=g) * 200
boxes = torch.cat((xy, xy + 10 + torch.rand(500, 2, generator=g) * 60), 1)
scores = torch.rand(500, generator=g)
ours = _nms(boxes, scores, 0.5)
assert not [m for m in sys.modules if m.split('.')[0] == 'torchvision'], 'torchvision was imported'
import torchvision
ref = torchvision.ops.nms(boxes, scores, 0.5)
assert 20 < len(ours) < 500 and torch.equal(ours, ref), (len(ours), len(ref))
print('ok', len(ours))
"""
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stderr[-2000:]


# ---------------------------------------------------------------- matching
def test_match_predictions_one_true_match():
    labels = torch.tensor([[0.0, 0, 0, 10, 10]])
    dets = torch.tensor([[0.0, 0, 10, 10, 0.9, 0], [0, 0, 10, 8, 0.8, 0]])  # IoU 1.0 and 0.8
    correct = match_predictions(dets, labels, IOUV)
    assert correct.shape == (2, 10) and correct.dtype == torch.bool
    assert correct[0].all() and not correct[1].any()
    # a class mismatch never matches
    wrong = dets.clone()
    wrong[:, 5] = 1
    assert not match_predictions(wrong, labels, IOUV).any()


def test_match_predictions_follows_yolov5_rule():
    # at a threshold both qualify for, the label goes to the higher-confidence detection
    # (lower index), not the higher-IoU one: this is how YOLOv5 validation counts
    labels = torch.tensor([[0.0, 0, 0, 100, 100]])
    dets = torch.tensor([[0.0, 0, 100, 62, 0.9, 0], [0, 0, 100, 90, 0.8, 0]])  # IoU 0.62 and 0.90
    correct = match_predictions(dets, labels, IOUV)
    assert correct[0].tolist() == [True] * 3 + [False] * 7  # thresholds 0.50-0.60
    assert correct[1].tolist() == [False] * 3 + [True] * 6 + [False]  # 0.65-0.90


# ---------------------------------------------------------------- AP
def test_smooth_box_filter():
    y = np.zeros(1000)
    y[500:] = 1.0
    s = smooth(y, 0.1)  # window 101
    assert s.shape == (1000,)
    assert s[449] == 0 and s[550] == pytest.approx(1.0) and s[500] == pytest.approx(51 / 101)


def test_compute_ap_hand_values():
    # perfect detector: the 101-point curve is 1 up to recall 0.99 and 0 at 1.0 -> 0.99 + 0.005
    ap, mpre, mrec = compute_ap(np.array([1.0]), np.array([1.0]))
    assert ap == pytest.approx(0.995)
    assert mrec.tolist() == [0, 1, 1] and mpre.tolist() == [1, 1, 0]
    # recall 0.5 at precision 1 only: 1 up to 0.5 then a linear fall to 0 -> 0.5 + 0.25
    assert compute_ap(np.array([0.5]), np.array([1.0]))[0] == pytest.approx(0.75)
    # the precision envelope removes the dip: TP, FP, TP over 2 labels
    ap, mpre, _ = compute_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert mpre.tolist() == pytest.approx([1, 1, 2 / 3, 2 / 3, 0])
    # 1 on [0, 0.5), 2/3 on [0.5, 0.99], 0 at 1: 0.49 + 0.01 * 5/6 + 0.49 * 2/3 + 0.01 / 3
    assert ap == pytest.approx(0.49 + 0.01 * 5 / 6 + 0.49 * 2 / 3 + 0.01 / 3)


def test_ap_per_class_perfect_and_false_positive():
    target_cls = np.array([0, 0, 1])
    perfect = ap_per_class(np.ones((3, 10), bool), np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), target_cls)
    assert perfect["unique_classes"].tolist() == [0, 1]
    assert perfect["ap"] == pytest.approx(np.full((2, 10), 0.995))
    assert perfect["p"].tolist() == pytest.approx([1, 1]) and perfect["r"].tolist() == pytest.approx([1, 1])
    assert perfect["tp"].tolist() == [2, 1] and perfect["fp"].tolist() == [0, 0]

    # a confident false positive of class 0 lowers its AP
    tp = np.array([[False] * 10, [True] * 10, [True] * 10, [True] * 10])
    worse = ap_per_class(tp, np.array([0.95, 0.9, 0.8, 0.7]), np.array([0, 0, 0, 1]), target_cls)
    assert worse["ap"][0, 0] < 0.9 and worse["ap"][1, 0] == pytest.approx(0.995)
    assert worse["ap"].mean() < perfect["ap"].mean()


def test_ap_per_class_mean_precision_recall_by_hand():
    # class 0: 2 labels, one TP at 0.9 -> P 1, R 0.5 for thresholds <= 0.9
    # class 1: 1 label, TP at 0.95 and FP at 0.9 -> P 0.5, R 1 for thresholds <= 0.9
    # mean F1 is flat (2/3) on [0, 0.9] and lower above, so the first index (conf 0) is chosen
    tp = np.array([[True] * 10, [True] * 10, [False] * 10])
    conf = np.array([0.9, 0.95, 0.9])
    out = ap_per_class(tp, conf, np.array([0, 1, 1]), np.array([0, 0, 1]))
    assert out["p"].tolist() == pytest.approx([1.0, 0.5])
    assert out["r"].tolist() == pytest.approx([0.5, 1.0])
    assert out["p"].mean() == pytest.approx(0.75) and out["r"].mean() == pytest.approx(0.75)
    assert out["f1"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert out["tp"].tolist() == [1, 1] and out["fp"].tolist() == [0, 1]
    assert out["ap"][:, 0].tolist() == pytest.approx([0.75, 0.995])
    assert out["p_curve"].shape == out["pr_curve"].shape == (2, 1000)


def test_ap_per_class_class_without_predictions():
    out = ap_per_class(np.ones((1, 10), bool), np.array([0.9]), np.array([0]), np.array([0, 3]))
    assert out["unique_classes"].tolist() == [0, 3]
    assert out["ap"][1].tolist() == [0.0] * 10 and out["tp"].tolist() == [1, 0]


def test_fitness_weights():
    """0.1 * mAP50 + 0.9 * mAP50-95; precision, recall and anything else in the dict do not count."""
    assert fitness({"precision": 0.3, "recall": 0.4, "mAP50": 0.5, "mAP50_95": 0.2, "loss": 9.0}) == \
        pytest.approx(0.05 + 0.18)


# ---------------------------------------------------------------- confusion matrix
def test_confusion_matrix_counts():
    cm = ConfusionMatrix(nc=2)
    labels = torch.tensor([[0.0, 0, 0, 10, 10], [1, 20, 20, 30, 30]])
    dets = torch.tensor([
        [0.0, 0, 10, 10, 0.9, 0],  # correct class 0
        [20, 20, 30, 30, 0.8, 0],  # label 1 predicted as 0
        [50, 50, 60, 60, 0.7, 1],  # nothing there: background predicted as 1
        [0, 0, 10, 10, 0.1, 1],  # below conf 0.25: ignored
    ])
    cm.process_batch(dets, labels)
    cm.process_batch(None, torch.tensor([1.0]))  # an image whose label was missed
    expected = np.zeros((3, 3))
    expected[0, 0] = expected[0, 1] = expected[1, 2] = expected[2, 1] = 1
    assert cm.matrix.tolist() == expected.tolist()
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [1, 0] and fp.tolist() == [1, 1]


def test_confusion_matrix_unmatched_detections_without_any_match():
    cm = ConfusionMatrix(nc=2)
    cm.process_batch(torch.tensor([[50.0, 50, 60, 60, 0.9, 1]]), torch.tensor([[0.0, 0, 0, 10, 10]]))
    assert cm.matrix[2, 0] == 1 and cm.matrix[1, 2] == 1
    with pytest.raises(ValueError, match="nc=0"):
        ConfusionMatrix(nc=0)
