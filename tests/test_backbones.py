"""Lightweight backbones: every config builds, trains and decodes; blocks match their papers; mis-wired configs fail
with errors that name the layer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torchvision
from torch import nn

from models.backbones import (C3Ghost, GhostBottleneck, GhostConv, InvertedResidual, MobileNetV3Block, ShuffleV2Block,
                              SqueezeExcite, channel_shuffle)
from models.checks import detect_strides
from models.builder import ModelConfigError, build_layers
from models.yolo import Model, load_model_config
from tests.test_pruning import randomize_bn

LIGHT_CONFIGS = ["MobileNetv2.yaml", "MobileNetv3_large.yaml", "MobileNetv3_small.yaml", "ShuffleNet.yaml",
                 "yolov5s-ghost.yaml"]
YOLOV5S_PARAMS = 7_235_389  # published yolov5s figure, checked in test_models.py


@pytest.fixture(scope="module")
def models() -> dict[str, Model]:
    """One model per light config (building is the slow part), 80 classes."""
    torch.manual_seed(0)
    return {cfg: Model(cfg) for cfg in LIGHT_CONFIGS}


@pytest.mark.parametrize("imgsz,bs", [(64, 2), (160, 1), (320, 1)])
@pytest.mark.parametrize("cfg", LIGHT_CONFIGS)
def test_forward_backward_and_decode(models: dict[str, Model], cfg: str, imgsz: int, bs: int) -> None:
    model = models[cfg]
    assert [int(s) for s in model.stride] == [8, 16, 32]
    model.train()
    model.zero_grad()
    out = model(torch.rand(bs, 3, imgsz, imgsz))
    assert [tuple(o.shape) for o in out] == [(bs, 3, imgsz // s, imgsz // s, 85) for s in (8, 16, 32)]
    sum(o.float().mean() for o in out).backward()
    first_bn = next(m for m in model.model[0].modules() if isinstance(m, nn.BatchNorm2d))
    assert first_bn.weight.grad is not None and torch.isfinite(first_bn.weight.grad).all()
    assert first_bn.weight.grad.abs().sum() > 0  # gradients reach the stem through the whole backbone
    model.eval()
    with torch.no_grad():
        pred, raw = model(torch.rand(1, 3, imgsz, imgsz))
    assert pred.shape == (1, 3 * sum((imgsz // s) ** 2 for s in (8, 16, 32)), 85)
    assert torch.isfinite(pred).all() and [r.shape[2] for r in raw] == [imgsz // s for s in (8, 16, 32)]


@pytest.mark.parametrize("cfg", LIGHT_CONFIGS)
def test_summary_is_lighter_than_yolov5s(models: dict[str, Model], cfg: str, capsys: pytest.CaptureFixture) -> None:
    info = models[cfg].info()
    line = capsys.readouterr().out
    assert "parameters" in line and "GFLOPs" in line
    assert math.isfinite(info["gflops"]) and info["gflops"] > 0
    assert 0 < info["parameters"] < YOLOV5S_PARAMS
    assert info["gflops"] < 16.4  # yolov5s at 640


@pytest.mark.parametrize("cfg", LIGHT_CONFIGS)
def test_fuse_folds_every_batchnorm(models: dict[str, Model], cfg: str) -> None:
    model = randomize_bn(copy.deepcopy(models[cfg]))  # non-trivial BN so fusion has something to fold
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        before = model(x)[0]
        after = model.fuse()(x)[0]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # every BN sits in a Conv block
    assert torch.allclose(before, after, atol=1e-3)


def _copy_reference(ours: nn.Module, ref: nn.Module) -> None:
    """Give ``ours`` the reference's weights, tensor by tensor in registration order, after randomising the reference's
    BatchNorm affine parameters and statistics (at their defaults a BN is nearly the identity and would hide errors)."""
    so = [v for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked")]
    sr = [(k, v) for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert [v.shape for v in so] == [v.shape for _, v in sr]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for a, (k, b) in zip(so, sr):
            if k.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 1.5 + 0.5)
            elif b.dim() == 1:  # BN weight/bias/mean, SE conv biases
                b.copy_(torch.randn(b.shape, generator=g) * 0.3 + (1.0 if k.endswith("weight") else 0.0))
            a.copy_(b)
    for a, b in zip((m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)),
                    (m for m in ref.modules() if isinstance(m, nn.BatchNorm2d))):
        a.eps = b.eps


def _reference(name: str) -> tuple[nn.Module, int]:
    tv = torchvision.models
    if name == "ShuffleNet.yaml":
        s = tv.shufflenet_v2_x1_0()
        return nn.Sequential(s.conv1, s.maxpool, s.stage2, s.stage3, s.stage4), 18
    ctor, n = {"MobileNetv2.yaml": (tv.mobilenet_v2, 18), "MobileNetv3_large.yaml": (tv.mobilenet_v3_large, 16),
               "MobileNetv3_small.yaml": (tv.mobilenet_v3_small, 12)}[name]
    return ctor().features[:-1], n  # the papers' final 1x1 conv is not part of a detection backbone


@pytest.mark.parametrize("cfg", LIGHT_CONFIGS[:4])
def test_backbone_equals_paper_reference(models: dict[str, Model], cfg: str) -> None:
    """With the same weights, the backbone computes what torchvision's implementation of the same paper computes."""
    ref, n = _reference(cfg)
    ours = copy.deepcopy(nn.Sequential(*models[cfg].model[:n])).eval()
    _copy_reference(ours, ref.eval())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


# -- blocks in isolation ---------------------------------------------------------------------------------------------
def test_inverted_residual() -> None:
    x = torch.rand(2, 24, 16, 16)
    block = InvertedResidual(24, 24, 1, 6).eval()
    assert block.add and block.dw.conv.groups == 144 and block.expand.conv.out_channels == 144
    assert isinstance(block.dw.act, nn.ReLU6) and isinstance(block.project.act, nn.Identity)  # linear bottleneck
    nn.init.zeros_(block.project.bn.weight)
    with torch.no_grad():
        assert torch.equal(block(x), x)  # projection outputs 0 (beta = 0): only the residual is left
    down = InvertedResidual(24, 32, 2, 6)
    assert not down.add and down(x).shape == (2, 32, 8, 8)
    assert isinstance(InvertedResidual(32, 16, 1, 1).expand, nn.Identity)


def test_mobilenetv3_block_and_squeeze_excite() -> None:
    block = MobileNetV3Block(40, 40, 5, 120, True, "hswish", 1)
    assert block.add and block.dw.conv.kernel_size == (5, 5) and isinstance(block.dw.act, nn.Hardswish)
    assert block.se.fc1.out_channels == 32  # make_divisible(120 / 4, 8)
    assert MobileNetV3Block(24, 40, 5, 72, True, "relu", 2).se.fc1.out_channels == 24  # 18 -> 24
    assert isinstance(MobileNetV3Block(16, 16, 3, 16, False, "relu", 1).expand, nn.Identity)  # exp == in
    x = torch.rand(2, 40, 16, 16)
    assert block(x).shape == x.shape and MobileNetV3Block(40, 80, 3, 240, False, "hswish", 2)(x).shape == (2, 80, 8, 8)
    se = SqueezeExcite(16)
    assert se.fc1.out_channels == 8 and isinstance(se.act, nn.ReLU) and isinstance(se.gate, nn.Hardsigmoid)
    nn.init.zeros_(se.fc2.weight)
    nn.init.zeros_(se.fc2.bias)
    y = torch.rand(1, 16, 4, 4)
    assert torch.allclose(se(y), 0.5 * y)  # hard-sigmoid(0) = 0.5
    with pytest.raises(ValueError, match="unknown activation 'relu7'"):
        MobileNetV3Block(16, 16, 3, 16, False, "relu7")


def test_channel_shuffle_is_a_permutation() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1).expand(2, 8, 3, 3)
    y = channel_shuffle(x, 2)
    assert y[0, :, 0, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]  # the two halves interleaved
    assert torch.equal(channel_shuffle(y, 4), x)  # the inverse of g groups is c / g groups
    z = torch.rand(1, 4, 2, 2)
    assert torch.equal(channel_shuffle(channel_shuffle(z, 2), 2), z)  # for 4 channels, 2 groups is its own inverse
    assert not torch.equal(channel_shuffle(channel_shuffle(x, 2), 2), x)  # ... but not in general
    with pytest.raises(ValueError, match="7 channels"):
        channel_shuffle(torch.rand(1, 7, 2, 2), 2)


def test_shufflenet_units() -> None:
    x = torch.rand(2, 116, 8, 8)
    unit = ShuffleV2Block(116, 116, 1).eval()
    assert not hasattr(unit, "branch1") and unit.branch2[0].conv.in_channels == 58
    assert unit(x).shape == x.shape
    down = ShuffleV2Block(116, 232, 2)
    assert down(x).shape == (2, 232, 4, 4) and down.branch1[0].conv.groups == 116
    with torch.no_grad():  # stride 1 passes the first half through: it lands on the even channels after the shuffle
        assert torch.equal(unit(x)[:, 0::2], x[:, :58])
    with pytest.raises(ValueError, match="even"):
        ShuffleV2Block(116, 117, 2)


def test_blocks_read_widths_at_run_time() -> None:
    """Swap convs for narrower ones, as a pruner does; forwards must follow the tensors, not constructor widths."""
    unit = ShuffleV2Block(116, 116, 1)
    unit.branch2[0].conv = nn.Conv2d(50, 40, 1, bias=False)  # branch now reads 50 channels, 40 inside
    unit.branch2[0].bn = nn.BatchNorm2d(40)
    unit.branch2[1].conv, unit.branch2[1].bn = nn.Conv2d(40, 40, 3, 1, 1, groups=40, bias=False), nn.BatchNorm2d(40)
    unit.branch2[2].conv = nn.Conv2d(40, 58, 1, bias=False)
    assert unit(torch.rand(1, 116, 8, 8)).shape == (1, 124, 8, 8)  # 66 passed through + 58 from the branch
    block = MobileNetV3Block(40, 40, 5, 120, True, "hswish", 1)
    block.se.fc1, block.se.fc2 = nn.Conv2d(120, 8, 1), nn.Conv2d(8, 120, 1)  # a slimmer squeeze-excite
    assert block(torch.rand(1, 40, 8, 8)).shape == (1, 40, 8, 8)


def test_pruned_hidden_widths_rebuild_through_channel_overrides() -> None:
    """The team's pruned-architecture format (per-leaf ``channels``) rebuilds slimmer ShuffleNet/SE blocks that run."""
    cfg = load_model_config("ShuffleNet.yaml")
    cfg["channels"] = {"model.3.branch2.0.conv": [58, 40, 1], "model.3.branch2.0.bn": [40],
                       "model.3.branch2.1.conv": [40, 40, 40], "model.3.branch2.1.bn": [40],
                       "model.3.branch2.2.conv": [40, 58, 1]}
    model = Model(cfg)
    assert model.model[3].branch2[1].conv.groups == 40
    assert [o.shape[2] for o in model(torch.rand(1, 3, 64, 64))] == [8, 4, 2]
    cfg = load_model_config("MobileNetv3_small.yaml")
    cfg["channels"] = {"model.4.se.fc1": [96, 16, 1], "model.4.se.fc2": [16, 96, 1]}
    assert Model(cfg).model[4].se.fc1.out_channels == 16


def test_ghost_blocks() -> None:
    x = torch.rand(2, 32, 16, 16)
    g = GhostConv(32, 64, 3, 2)
    y = g(x)
    assert y.shape == (2, 64, 8, 8) and g.cv2.conv.groups == 32 and g.cv2.conv.kernel_size == (5, 5)
    assert torch.equal(y[:, :32], g.cv1(x))  # primary maps first, cheap maps second
    b = GhostBottleneck(32, 32).eval()
    assert isinstance(b.shortcut, nn.Identity) and isinstance(b.conv[2].cv1.act, nn.Identity)
    nn.init.zeros_(b.conv[2].cv1.bn.weight)
    nn.init.zeros_(b.conv[2].cv2.bn.weight)
    with torch.no_grad():
        assert torch.equal(b(x), x)
    b2 = GhostBottleneck(32, 64, 3, 2)
    assert b2(x).shape == (2, 64, 8, 8) and b2.shortcut[0].conv.groups == 32
    c = C3Ghost(32, 64, 2)
    assert c(x).shape == (2, 64, 16, 16) and all(isinstance(m, GhostBottleneck) for m in c.m)
    assert c.m[0].conv[0].cv1.conv.out_channels == 8  # C3 width 32, GhostBottleneck hidden 16, primary half 8
    with pytest.raises(ValueError, match="even"):
        GhostConv(32, 33)


# -- configs that do not chain fail at build, naming the layer -------------------------------------------------------
def _mobilenetv2() -> dict:
    return load_model_config("MobileNetv2.yaml")


def test_wrong_detect_strides_fail_at_build() -> None:
    cfg = _mobilenetv2()
    cfg["backbone"][0][3] = [32, 3, 1, "relu6"]  # stem at stride 1: every map at half the stride, Detect at 4/8/16
    with pytest.raises(ModelConfigError, match=r"layer 32 \(Detect\) reads layer 25 at stride 4.*needs strides "
                                               r"\[8, 16, 32\]"):
        Model(cfg)
    cfg = _mobilenetv2()
    cfg["head"][-1][0] = [21, 28, 31]  # P4 read twice: strides 16, 16, 32
    with pytest.raises(ModelConfigError, match=r"layer 32 \(Detect\) reads layer 21 at stride 16"):
        Model(cfg)


def test_spatial_mismatch_names_the_concat_layer() -> None:
    cfg = _mobilenetv2()
    cfg["head"][6][0] = [-1, 3]  # concat the stride-8 head map with a stride-4 backbone map
    with pytest.raises(ModelConfigError, match=r"layer 24 \(Concat, from \[-1, 3\]\) cannot run on input shapes "
                                               r"\[\(1, 64, 32, 32\), \(1, 24, 64, 64\)\]"):
        Model(cfg)


def test_width_mismatch_names_the_layer() -> None:
    layers, save, infos = build_layers(_mobilenetv2())
    wrong = InvertedResidual(160, 256)  # declared 320 wide: the head's first Conv expects 320 channels
    wrong.i, wrong.f, wrong.type = 17, -1, "InvertedResidual"
    layers[17] = wrong
    with pytest.raises(ModelConfigError, match=r"layer 17 \(InvertedResidual\) outputs 256 channels but the config "
                                               r"declares 320"):
        detect_strides(layers, save, infos)
    assert detect_strides(*build_layers(_mobilenetv2())) == [8, 16, 32]


def test_unknown_activation_names_the_layer() -> None:
    cfg = _mobilenetv2()
    cfg["backbone"][0][3] = [32, 3, 2, "relu7"]
    with pytest.raises(ModelConfigError, match=r"layer 0 \(ConvBNAct\).*unknown activation 'relu7'"):
        Model(cfg)


def config_with_typo(path, old: str, new: str):  # noqa: ANN001, ANN201
    """models/yolov5n.yaml with its first backbone module named ``old`` renamed ``new``, written to ``path``."""
    import yaml

    d = load_model_config("yolov5n.yaml")
    next(row for row in d["backbone"] if row[2] == old)[2] = new
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.slow
def test_backbone_run_records_a_failed_stage_and_refuses_unknown_configs(tmp_path, coco128_dir, capsys) -> None:
    """benchmarks/backbones.py: a stage that fails becomes the config's table row (naming its log), not a crash."""
    from benchmarks.backbones import BackboneOptions, format_table, main, run_config

    cfg = config_with_typo(tmp_path / "typo.yaml", "Conv", "Cnov")
    opt = BackboneOptions(cfg=[str(cfg)], epochs=1, project=str(tmp_path / "runs"), latency_imgsz=[0])
    row = run_config(str(cfg), opt)
    assert "train.py failed" in row["error"] and "scratch.log" in row["error"]
    assert "Cnov" in (tmp_path / "runs" / "typo" / "scratch.log").read_text()
    assert row["error"] in format_table([row], opt)
    with pytest.raises(SystemExit):
        main(["--cfg", str(tmp_path / "missing.yaml")])
    assert "no such config" in capsys.readouterr().err
