"""Every model config and every registered block builds and runs; published parameter counts; registry errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.builder import ModelConfigError, build_layers
from models.registry import get_module, list_modules, register_module
from models.yolo import Model, load_model_config
from tests.test_pruning import randomize_bn

CONFIGS = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "models").rglob("*.yaml"))


@pytest.mark.parametrize("cfg", CONFIGS)
def test_config_builds_and_runs(cfg: str) -> None:
    model = Model(cfg, nc=3)
    assert [int(s) for s in model.stride] == [8, 16, 32]
    model.train()
    out = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in out] == [(2, 3, 64 // s, 64 // s, 8) for s in (8, 16, 32)]
    sum(o.sum() for o in out).backward()
    model.eval()
    with torch.no_grad():
        pred, raw = model(torch.rand(1, 3, 96, 64))
    assert pred.shape == (1, 3 * (12 * 8 + 6 * 4 + 3 * 2), 8)


@pytest.mark.parametrize("cfg,params", [("yolov5n.yaml", 1.87e6), ("yolov5s.yaml", 7.23e6)])
def test_published_parameter_counts(cfg: str, params: float) -> None:
    n = sum(p.numel() for p in Model(cfg).parameters())
    assert abs(n - params) / params < 0.01


def test_summary_reports_gflops(capsys: pytest.CaptureFixture) -> None:
    info = Model("yolov5n.yaml").info(verbose=True)
    assert round(info["gflops"], 1) == 4.5
    assert "SPPF" in capsys.readouterr().out


def test_fuse_keeps_outputs() -> None:
    model = randomize_bn(Model("yolov5n.yaml"))  # non-trivial BN so fusion has something to fold
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        before = model(x)[0]
        after = model.fuse()(x)[0]
    assert torch.allclose(before, after, atol=1e-3)


def test_unknown_module_names_layer_and_lists_known() -> None:
    cfg = load_model_config("yolov5n.yaml")
    cfg["backbone"][2][2] = "C3x_typo"
    with pytest.raises(ModelConfigError, match=r"layer 2: unknown module 'C3x_typo'.*C3"):
        Model(cfg)


def test_bad_from_index_names_layer() -> None:
    cfg = load_model_config("yolov5n.yaml")
    cfg["head"][2][0] = [-1, 30]
    with pytest.raises(ModelConfigError, match="layer 12"):
        Model(cfg)


def test_registry_refuses_duplicates() -> None:
    assert "C3" in list_modules() and get_module("Conv").kind == "conv"
    with pytest.raises(ValueError, match="registered twice"):
        register_module("Conv")(torch.nn.Identity)


def test_missing_config_file() -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        Model("nope.yaml")


# One small YAML row per registered module, as a model config writes it: (from, number, args), read by a layer whose
# input is a (2, 8, 16, 16) map. A newly registered block fails test_registered_block_trains until it has a row here.
BLOCK_ROWS = {
    "Bottleneck": (-1, 1, [8]),  # c1 == c2: the residual add
    "C3": (-1, 2, [16]),
    "C3Ghost": (-1, 2, [16]),
    "Concat": ([-1, 0], 1, [1]),
    "Conv": (-1, 1, [16, 3, 2]),
    "ConvBNAct": (-1, 1, [16, 3, 2, "hswish"]),
    "DWConv": (-1, 1, [16, 3, 1]),
    "Detect": ([-1], 1, ["nc", "anchors"]),
    "Focus": (-1, 1, [16, 3]),
    "GhostBottleneck": (-1, 1, [16, 3, 2]),  # stride 2: depthwise shortcut
    "GhostConv": (-1, 1, [16, 3, 2]),
    "InvertedResidual": (-1, 1, [8, 1, 6]),  # residual
    "MobileNetV3Block": (-1, 1, [16, 3, 24, True, "hswish", 2]),  # with squeeze-excite
    "SPP": (-1, 1, [16, [3, 5]]),
    "SPPF": (-1, 1, [16, 3]),
    "ShuffleV2Block": (-1, 1, [16, 1]),
    "nn.Identity": (-1, 1, []),
    "nn.MaxPool2d": (-1, 1, [3, 2, 1]),
    "nn.Upsample": (-1, 1, ["None", 2, "nearest"]),
}


@pytest.mark.parametrize("name", list_modules())
def test_registered_block_trains(name: str) -> None:
    """Each registered module, built alone through the builder from a YAML row, runs forward and backward."""
    assert name in BLOCK_ROWS, f"registered module '{name}' has no example row in BLOCK_ROWS"
    f, n, args = BLOCK_ROWS[name]
    # Layer 0 (an identity) gives the block an 8-wide input at a normal (not first) position in the layer list.
    cfg = {"nc": 2, "anchors": [[10, 13, 16, 30]], "backbone": [[-1, 1, "nn.Identity", []], [f, n, name, args]]}
    layers, _, infos = build_layers(cfg, ch=8)
    block = layers[1].train()
    torch.manual_seed(0)
    x = torch.rand(2, 8, 16, 16, requires_grad=True)
    out = block(x if f == -1 else [x for _ in f])
    outs = out if isinstance(out, list) else [out]
    if get_module(name).kind == "head":
        assert [tuple(o.shape) for o in outs] == [(2, 2, 16, 16, 7)]  # (bs, anchors, ny, nx, 5 + nc)
    else:
        assert outs[0].shape[:2] == (2, infos[1].c2)  # the width the builder declared for the next layer
        assert outs[0].shape[2:] in ((8, 8), (16, 16), (32, 32))  # stride 2, 1 or an upsample
    assert all(torch.isfinite(o).all() for o in outs)
    # A fixed random projection, not a plain sum: a BatchNorm's per-channel sum does not depend on its input.
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    params = dict(block.named_parameters())
    assert bool(params) == (get_module(name).kind not in ("concat", "identity"))
    no_grad = [k for k, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert not no_grad, f"{name}: no (finite, non-zero) gradient reached {no_grad}"


def test_keyword_args_in_a_row_are_refused() -> None:
    """Rows take positional args; the old hidden-width keywords are gone (pruned widths go in ``channels``)."""
    cfg = load_model_config("yolov5n.yaml")
    cfg["backbone"][2][3] = [128, {"hidden": 16}]
    with pytest.raises(ModelConfigError, match=r"layer 2 \(C3\): args .* hold a dict.*'channels'"):
        Model(cfg)
