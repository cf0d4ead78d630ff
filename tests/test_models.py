"""Every registered model config builds and runs; published parameter counts; registry errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.builder import ModelConfigError
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
