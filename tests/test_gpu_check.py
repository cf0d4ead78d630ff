"""scripts/gpu_check.sh, the GPU paths our users run, checked here with --device cpu on a tiny split of coco128: one
line per check, exit 0 when all pass; on a GPU the same script runs with --device 0."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_every_check_on_the_cpu(tmp_path: Path, coco128_dir: Path, yolov5n_pt: Path) -> None:
    train = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:16]
    val = sorted((coco128_dir / "images" / "val2017").glob("*.jpg"))[:8]
    for name, files in (("train", train), ("val", val)):
        (tmp_path / f"{name}.txt").write_text("".join(f"{f}\n" for f in files))
    names = {i: str(i) for i in range(80)}
    (tmp_path / "tiny.yaml").write_text(json.dumps({"path": str(tmp_path), "train": "train.txt", "val": "val.txt",
                                                    "names": names}))
    env = {**os.environ, "DATA": str(tmp_path / "tiny.yaml"), "IMGSZ": "64", "OUT": str(tmp_path / "out")}
    p = subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu"], capture_output=True, text=True, cwd=REPO,
                       env=env, timeout=600)
    lines = p.stdout.splitlines()
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    checks = [ln.split()[1] for ln in lines if ln.startswith("PASS")]
    assert checks == ["device", "train_amp", "val_half", "prune", "slim_step", "export_half", "export_onnx"], lines
    assert "SKIP  torchrun_nccl: needs two GPUs (found 0)" in lines
    assert lines[-1] == "gpu_check: all checks passed on --device cpu"
    assert "AMP: off" in (tmp_path / "out" / "train_amp.log").read_text()


def test_gpu_check_refuses_an_unknown_argument() -> None:
    p = subprocess.run(["bash", "scripts/gpu_check.sh", "--devcie", "0"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2 and p.stderr.strip() == ("ERROR: unknown argument --devcie (usage: bash "
                                                      "scripts/gpu_check.sh [--device 0|cpu])")
