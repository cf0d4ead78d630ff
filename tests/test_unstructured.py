"""val.py --prune: global unstructured magnitude pruning reaches the asked sparsity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import val
from models.yolo import Model
from pruning.unstructured import conv_sparsity, prune_unstructured


def test_prune_unstructured_reaches_share() -> None:
    model = Model("yolov5n.yaml").eval()
    s = prune_unstructured(model, 0.3)
    assert s == pytest.approx(0.3, abs=0.01) and conv_sparsity(model) == s
    assert not any(hasattr(m, "weight_orig") for m in model.modules())  # made permanent
    with pytest.raises(ValueError, match="--prune"):
        prune_unstructured(model, 1.5)


def test_val_prune_reports_sparsity(yolov5n_pt: Path, coco128_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    res = val.main(["--weights", str(yolov5n_pt), "--imgsz", "160", "--batch-size", "64", "--prune", "0.3",
                    "--project", str(tmp_path)])
    assert "30.0% of conv weights are now zero" in capsys.readouterr().out
    assert 0 < res["mAP50_95"] < 0.25
