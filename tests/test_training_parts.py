"""Training building blocks: loss and target assignment, AutoAnchor, EMA, optimizer groups, LR schedule, warmup."""

from __future__ import annotations

import io
import logging
import math
import pickle
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from models.yolo import Model
from utils.autoanchor import anchor_fit, check_anchor_order, check_anchors, kmean_anchors
from utils.ema import ModelEMA
from utils.loss import ComputeLoss, FocalLoss
from utils.optim import EarlyStopping, build_lr_lambda, build_optimizer, warmup_step
from utils.torch_utils import unwrap

HYP = {"box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0, "anchor_t": 4.0, "fl_gamma": 0.0,
       "lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 5e-4,
       "warmup_momentum": 0.8, "warmup_bias_lr": 0.1}
# Pixel anchors of models/yolov5n.yaml, level by level.
YAML_ANCHORS = torch.tensor([[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
                            dtype=torch.float32).view(3, 3, 2)


def make_model(nc: int = 3) -> Model:
    torch.manual_seed(0)
    return Model("models/yolov5n.yaml", nc=nc).train()


def pixel_anchors(model: Model) -> torch.Tensor:
    return model.detect.anchors * model.detect.stride.view(-1, 1, 1)


def batch(bs: int = 2, size: int = 64):
    torch.manual_seed(1)
    imgs = torch.rand(bs, 3, size, size)
    targets = torch.tensor([[0, 0, 0.30, 0.40, 0.25, 0.30],
                            [0, 2, 0.70, 0.60, 0.40, 0.20],
                            [1, 1, 0.50, 0.50, 0.60, 0.70]])
    return imgs, targets


# ---------------------------------------------------------------------------------------------------- loss


def test_loss_finite_positive_and_consistent():
    model = make_model()
    imgs, targets = batch()
    loss, items = ComputeLoss(model.detect, HYP)(model(imgs), targets)
    assert loss.shape == (1,) and items.shape == (3,)
    assert torch.isfinite(loss).all() and loss.item() > 0
    assert (items > 0).all()  # box, obj and cls all contribute with 3 classes and matched targets
    assert not items.requires_grad and loss.requires_grad
    assert loss.item() == pytest.approx(items.sum().item() * imgs.shape[0], rel=1e-6)


def test_loss_accepts_model_and_rejects_bad_input():
    model = make_model()
    imgs, targets = batch()
    preds = model(imgs)
    a = ComputeLoss(model, HYP)(preds, targets)[1]  # a model exposing .detect is unwrapped
    b = ComputeLoss(model.detect, HYP, device="cpu")(preds, targets)[1]
    assert torch.equal(a, b)
    with pytest.raises(KeyError, match="anchor_t"):
        ComputeLoss(model.detect, {k: v for k, v in HYP.items() if k != "anchor_t"})
    with pytest.raises(ValueError, match="expected 3 prediction levels, got 2"):
        ComputeLoss(model.detect, HYP)(preds[:2], targets)
    with pytest.raises(TypeError, match="not a Detect head"):
        ComputeLoss(nn.Conv2d(3, 3, 1), HYP)


def test_loss_drops_when_overfitting_one_batch():
    model = make_model()
    imgs, targets = batch()
    compute = ComputeLoss(model.detect, HYP)
    opt = build_optimizer(model, "Adam", lr=0.01, momentum=0.9, decay=0.0)
    losses = []
    for _ in range(8):
        loss, _ = compute(model(imgs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses


def test_unmatched_targets_give_zero_box_and_cls_loss():
    model = make_model()
    imgs, _ = batch()
    preds = model(imgs)
    compute = ComputeLoss(model.detect, HYP)
    # 0.5 x 0.005 of a 64 px image is 32 x 0.32 px: the w/h ratio to every anchor exceeds anchor_t on some side.
    far = torch.tensor([[0, 1, 0.5, 0.5, 0.5, 0.005]])
    for targets in (far, torch.zeros((0, 6))):
        loss, (lbox, lobj, lcls) = compute(preds, targets)
        assert lbox.item() == 0.0 and lcls.item() == 0.0
        assert lobj.item() > 0 and torch.isfinite(loss).all()


def test_build_targets_neighbour_cells():
    model = make_model()
    compute = ComputeLoss(model.detect, dict(HYP, anchor_t=1.5))  # tight: a 10x13 px box matches P3 anchor 0 only
    preds = [torch.zeros(1, 3, 256 // s, 256 // s, 8) for s in (8, 16, 32)]
    w, h = 10 / 256, 13 / 256

    def assign(gx: float, gy: float):
        targets = torch.tensor([[0, 2, gx / 32, gy / 32, w, h]])  # P3 grid is 32 x 32 at 256 px
        return compute.build_targets(preds, targets)

    tcls, tbox, indices, anch = assign(5.25, 7.75)  # x in the left half, y in the lower half of cell (5, 7)
    assert [len(i[0]) for i in indices] == [3, 0, 0]
    b, a, gj, gi = indices[0]
    assert a.tolist() == [0, 0, 0] and b.tolist() == [0, 0, 0] and tcls[0].tolist() == [2, 2, 2]
    assert list(zip(gi.tolist(), gj.tolist())) == [(5, 7), (4, 7), (5, 8)]  # own cell, left, below
    assert torch.allclose(tbox[0][:, :2], torch.tensor([[0.25, 0.75], [1.25, 0.75], [0.25, -0.25]]))
    assert torch.allclose(tbox[0][:, 2:], torch.tensor([10 / 8, 13 / 8]).expand(3, 2))
    assert torch.allclose(anch[0], torch.tensor([1.25, 1.625]).expand(3, 2))

    assert [len(i[0]) for i in assign(5.5, 7.5)[2]] == [1, 0, 0]  # exact cell centre: no neighbour qualifies
    assert [len(i[0]) for i in assign(0.25, 0.25)[2]] == [1, 0, 0]  # no neighbour off the image's top-left
    _, _, ind, _ = assign(31.25, 31.25)  # bottom-right cell, upper-left quarter: left and up
    assert list(zip(ind[0][3].tolist(), ind[0][2].tolist())) == [(31, 31), (30, 31), (31, 30)]
    assert [len(i[0]) for i in assign(31.75, 31.75)[2]] == [1, 0, 0]  # right/down would leave the grid


def test_focal_loss_label_smoothing_and_autobalance():
    model = make_model()
    imgs, targets = batch()
    preds = model(imgs)
    plain = ComputeLoss(model.detect, HYP)(preds, targets)[1]
    focal = ComputeLoss(model.detect, dict(HYP, fl_gamma=1.5))
    assert isinstance(focal.bce_cls, FocalLoss) and isinstance(focal.bce_obj, FocalLoss)
    f_items = focal(preds, targets)[1]
    assert torch.isfinite(f_items).all() and f_items[1] < plain[1] and f_items[2] < plain[2]
    assert f_items[0] == pytest.approx(plain[0].item())  # the box term does not depend on the BCE flavour

    smooth = ComputeLoss(model.detect, dict(HYP, label_smoothing=0.1))
    assert (smooth.cp, smooth.cn) == pytest.approx((0.95, 0.05))
    assert smooth(preds, targets)[1][2] != plain[2]

    auto = ComputeLoss(model.detect, HYP, autobalance=True)
    assert auto.ssi == 1  # stride 16
    auto(preds, targets)
    assert auto.balance[1] == 1.0 and auto.balance != [4.0, 1.0, 0.4]


# ---------------------------------------------------------------------------------------------------- anchors


class SyntheticDataset:
    """Square 640 px images whose boxes have the given pixel (w, h), 4 boxes per image."""

    def __init__(self, wh: np.ndarray, seed: int = 0):
        rng = np.random.default_rng(seed)
        wh = np.asarray(wh, dtype=np.float64)
        wh = wh * rng.uniform(0.95, 1.05, size=wh.shape)
        n = len(wh) // 4
        self.shapes = np.full((n, 2), 640.0)
        self.labels = [np.column_stack([np.zeros(4), np.full((4, 2), 0.5), wh[4 * i:4 * i + 4] / 640])
                       for i in range(n)]


def test_check_anchor_order_flips_reversed_levels():
    model = make_model()
    det = model.detect
    assert not check_anchor_order(det)
    assert torch.allclose(pixel_anchors(model), YAML_ANCHORS)
    det.anchors[:] = YAML_ANCHORS.flip(0) / det.stride.view(-1, 1, 1)  # big anchors on the stride-8 level
    assert check_anchor_order(det)
    assert torch.allclose(pixel_anchors(model), YAML_ANCHORS)


def test_check_anchors_good_fit_keeps_anchors(capsys):
    model = make_model()
    before = model.detect.anchors.clone()
    data = SyntheticDataset(np.repeat(YAML_ANCHORS.view(-1, 2).numpy(), 12, axis=0))
    assert check_anchors(data, model.detect, thr=4.0, imgsz=640) is False
    assert torch.equal(model.detect.anchors, before)
    out = capsys.readouterr().out
    m = re.search(r"AutoAnchor: (\d+\.\d\d) anchors/target, (\d\.\d{3}) Best Possible Recall \(BPR\)\. "
                  r"Current anchors are a good fit to dataset", out)
    assert m, out
    assert float(m.group(2)) > 0.98 and 1.0 <= float(m.group(1)) <= 9.0


def test_check_anchors_refits_poor_anchors(capsys):
    model = make_model()
    wh = np.array([[400.0, 20.0], [20.0, 400.0]] * 40)  # 20:1 boxes, no yolov5 anchor within a ratio of 4
    data = SyntheticDataset(wh)
    old_pixel = pixel_anchors(model).view(-1, 2).numpy().copy()
    measured = np.concatenate([lb[:, 3:5] * 640 for lb in data.labels])
    old_bpr = anchor_fit(old_pixel, measured)[0]
    assert old_bpr < 0.98
    assert check_anchors(data, model.detect, thr=4.0, imgsz=640) is True
    new_pixel = pixel_anchors(model).view(-1, 2).numpy()
    new_bpr = anchor_fit(new_pixel, measured)[0]
    assert new_bpr > old_bpr and new_bpr > 0.98
    areas = pixel_anchors(model).prod(-1).mean(-1)
    assert (areas[1:] >= areas[:-1]).all()  # levels still ordered like the strides
    assert "poor fit" in capsys.readouterr().out


def test_kmean_anchors_sorted_and_deterministic():
    rng = np.random.default_rng(3)
    wh = np.exp(rng.uniform(np.log(8), np.log(400), size=(200, 2)))
    data = SyntheticDataset(wh)
    k1 = kmean_anchors(data, n=9, img_size=640, gen=200, verbose=False, rng=7)
    k2 = kmean_anchors(data, n=9, img_size=640, gen=200, verbose=False, rng=np.random.default_rng(7))
    assert k1.shape == (9, 2) and k1.dtype == np.float32
    assert np.all(np.diff(k1.prod(1)) >= 0)
    assert np.array_equal(k1, k2)
    assert (k1 >= 2.0).all() and (k1 < 640 * 1.2).all()


def test_anchor_summary_reads_like_yolov5s():
    """The result lines carry YOLOv5's quantities: thr as the ratio floor 1/anchor_t, metric_all as the plain means
    of the ratio metric over all pairs and over each box's best anchor (a box at exactly the floor does not match)."""
    from utils.autoanchor import _summary

    text = _summary(np.array([[10.0, 10.0]]), np.array([[10.0, 10.0], [40.0, 10.0]], np.float32), 4.0, 320)
    assert "thr=0.25: 0.5000 best possible recall, 0.50 anchors past thr" in text
    assert "metric_all=0.625/0.625-mean/best, past_thr=1.000-mean: 10,10" in text


def test_kmean_anchors_random_start_when_too_few_boxes(caplog):
    data = SyntheticDataset(np.array([[30.0, 40.0]] * 4))
    with caplog.at_level(logging.WARNING, logger="utils.autoanchor"):
        k = kmean_anchors(data, n=9, img_size=640, gen=50, verbose=False)
    assert k.shape == (9, 2) and "random start" in caplog.text


# ---------------------------------------------------------------------------------------------------- EMA


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.SiLU(), nn.Conv2d(4, 2, 1))


def test_ema_decay_formula_and_updates():
    net = small_net()
    ema = ModelEMA(net, decay=0.9, tau=10)
    assert ema.decay(0) == 0.0
    assert ema.decay(10) == pytest.approx(0.9 * (1 - math.exp(-1)))
    assert not ema.ema.training and not any(p.requires_grad for p in ema.ema.parameters())

    start = ema.ema[0].weight.clone()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    ema.update(net)
    d = ema.decay(1)
    assert torch.allclose(ema.ema[0].weight, d * start + (1 - d) * 1.0)
    dist = [(ema.ema[0].weight - 1).abs().max().item()]
    for _ in range(5):
        ema.update(net)
        dist.append((ema.ema[0].weight - 1).abs().max().item())
    assert all(b < a for a, b in zip(dist, dist[1:]))
    assert ema.updates == 6
    assert ema.ema[1].num_batches_tracked.item() == 0  # integer buffers are not averaged


def test_unwrap_takes_the_model_out_of_wrappers_only():
    """One helper for DataParallel/DDP: the inner model, the model itself otherwise, even one that owns a child
    called ``module`` (a duck-typed check would hand back that child)."""
    net = small_net()
    assert unwrap(nn.DataParallel(net)) is net and unwrap(net) is net
    holder = nn.Sequential()
    holder.module = net
    assert unwrap(holder) is holder


def test_ema_state_dict_roundtrip_unwrap_and_attrs():
    net = small_net()
    net.names, net.nc = ["a", "b"], 2
    ema = ModelEMA(nn.DataParallel(net), updates=5)
    assert isinstance(ema.ema, nn.Sequential)
    ema.update(nn.DataParallel(net))
    ema.update_attr(net, include=("names", "nc"))
    assert ema.ema.names == ["a", "b"] and ema.ema.nc == 2 and not ema.ema.training

    buf = io.BytesIO()
    torch.save(ema.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    other = ModelEMA(small_net())
    other.load_state_dict(state)
    assert other.updates == 6
    assert all(torch.equal(a, b) for a, b in zip(other.ema.state_dict().values(), ema.ema.state_dict().values()))

    slim = nn.Sequential(nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3), nn.SiLU(), nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(4, 3, 3, 3\)"):
        ema.update(slim)


# ---------------------------------------------------------------------------------------------------- optimizer


def test_optimizer_groups_and_decay():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1),
                        nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4, 2),
                        nn.LayerNorm(2))
    opt = build_optimizer(net, "SGD", lr=0.01, momentum=0.9, decay=5e-4)
    g0, g1, g2 = (grp["params"] for grp in opt.param_groups)
    assert [id(p) for p in g0] == [id(net[1].bias), id(net[2].bias), id(net[3].bias), id(net[5].bias),
                                   id(net[6].bias)]  # YOLOv5's order: x/lr0 in results.csv is the bias lr
    assert [id(p) for p in g1] == [id(net[0].weight), id(net[2].weight), id(net[5].weight)]
    assert [id(p) for p in g2] == [id(net[1].weight), id(net[3].weight), id(net[6].weight)]
    assert [grp["weight_decay"] for grp in opt.param_groups] == [0.0, 5e-4, 0.0]
    assert opt.param_groups[0]["nesterov"] is True and opt.param_groups[0]["momentum"] == 0.9

    model = make_model()
    opt = build_optimizer(model, "AdamW", lr=0.001, momentum=0.937, decay=5e-4)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    sizes = [len(grp["params"]) for grp in opt.param_groups]
    assert sizes[2] == n_bn and sum(sizes) == len(list(model.parameters()))
    assert opt.param_groups[0]["betas"] == (0.937, 0.999)
    assert isinstance(build_optimizer(model, "rmsprop"), torch.optim.RMSprop)
    assert isinstance(build_optimizer(model, "Adam"), torch.optim.Adam)


def test_unknown_optimizer_names_choices():
    with pytest.raises(ValueError, match=r"optimizer 'Lion' is not supported; choose one of "
                                         r"\['SGD', 'Adam', 'AdamW', 'RMSProp'\]"):
        build_optimizer(small_net(), "Lion")


def test_lr_lambdas():
    lin, cos = build_lr_lambda(100, 0.01), build_lr_lambda(100, 0.01, cos=True)
    assert lin(0) == pytest.approx(1.0) and lin(100) == pytest.approx(0.01)
    assert lin(50) == pytest.approx(0.505)
    assert cos(0) == pytest.approx(1.0) and cos(100) == pytest.approx(0.01) and cos(50) == pytest.approx(0.505)
    assert cos(25) > lin(25)  # cosine stays high longer at the start
    assert pickle.loads(pickle.dumps(lin))(100) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="epochs must be positive"):
        build_lr_lambda(0, 0.01)


def test_warmup_step():
    model = make_model()
    opt = build_optimizer(model, "SGD", lr=0.01, momentum=0.937, decay=5e-4)
    with pytest.raises(KeyError, match="initial_lr"):
        warmup_step(opt, 0, 100, 0, build_lr_lambda(10, 0.01), HYP)
    lf = build_lr_lambda(10, 0.01)
    torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lf)
    assert warmup_step(opt, 0, 100, 0, lf, HYP)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.0, 0.0])
    assert all(g["momentum"] == pytest.approx(0.8) for g in opt.param_groups)
    assert warmup_step(opt, 50, 100, 0, lf, HYP)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.055, 0.005, 0.005])
    assert opt.param_groups[1]["momentum"] == pytest.approx((0.8 + 0.937) / 2)
    assert warmup_step(opt, 100, 100, 0, lf, HYP)  # the last warmup iteration sets the final values
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.01, 0.01])
    assert all(g["momentum"] == pytest.approx(0.937) for g in opt.param_groups)
    opt.param_groups[0]["lr"] = 0.02
    assert not warmup_step(opt, 101, 100, 0, lf, HYP)
    assert opt.param_groups[0]["lr"] == 0.02  # untouched after warmup


def test_early_stopping(caplog):
    stopper = EarlyStopping(patience=3)
    fitness = [0.1, 0.2, 0.15, 0.1, 0.19]
    with caplog.at_level(logging.INFO, logger="utils.optim"):
        stops = [stopper(e, f) for e, f in enumerate(fitness)]
    assert stops == [False, False, False, False, True]
    assert stopper.best_epoch == 1 and stopper.best_fitness == 0.2
    assert "no improvement in the last 3 epochs" in caplog.text
    never = EarlyStopping(patience=0)
    assert not any(never(e, 0.0 if e else 1.0) for e in range(50))
