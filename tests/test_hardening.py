"""Bad input as a careless or hostile user gives it: one ``ERROR:`` line naming the file (and entry, line or flag),
exit code 2, no traceback, nothing already written changed, and no code from a checkpoint run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.yolo import Model
from utils.checkpoint import CheckpointError, atomic_save, load_checkpoint, make_checkpoint
from utils.yaml_io import read_yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {  # script -> its arguments around a weights file
    "val.py": lambda w: ["--weights", w, "--data", "data/coco128.yaml", "--imgsz", "64"],
    "detect.py": lambda w: ["--weights", w, "--source", os.path.join(os.environ.get("YOLO_IMAGES_DIR", "."), "bus.jpg"),
                            "--imgsz", "64"],
    "export.py": lambda w: ["--weights", w, "--include", "onnx", "--imgsz", "64"],
    "prune.py": lambda w: ["--weights", w, "--data", "data/coco128.yaml", "--percent", "0.1", "--noval"],
    "train.py": lambda w: ["--weights", w, "--data", "data/coco128.yaml", "--epochs", "1", "--imgsz", "64"],
}


class _RunsShell:
    """Pickles as a call to os.system (loading it unsafely would create the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), YOLO_TRACEBACK="")
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_user_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR:")]
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and len(errors) == 1, res.stderr[-2000:]
    for f in fragments:
        assert f in errors[0], errors[0]


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory, yolov5n_pt: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    torch.save({"model": _RunsShell(d / "pwned")}, d / "evil.pt")
    data = bytearray(yolov5n_pt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a tensor record
    (d / "damaged.pt").write_bytes(bytes(data))
    return {"evil": d / "evil.pt", "damaged": d / "damaged.pt"}


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("kind,fragment", [("evil", "system"), ("damaged", "CRC-32")])
def test_refused_and_damaged_checkpoints_are_user_errors(script: str, kind: str, fragment: str, tmp_path: Path,
                                                         bad_checkpoints: dict[str, Path]) -> None:
    f = bad_checkpoints[kind]
    (tmp_path / "work").mkdir()
    before = _snapshot(f.parent)
    res = _run(script, SCRIPTS[script](str(f)), tmp_path / "work")
    _assert_user_error(res, str(f), fragment)
    assert not (f.parent / "pwned").exists()  # nothing ran
    assert _snapshot(f.parent) == before


def _ours(tmp_path: Path, **change: object) -> Path:
    ckpt = make_checkpoint(Model("yolov5n.yaml", nc=2, names=["a", "b"]), epoch=3)
    ckpt.update(change)
    f = tmp_path / "ckpt.pt"
    atomic_save(ckpt, f)
    return f


@pytest.mark.parametrize("entry,value,message", [
    ("names", "a,b", "'names' must be a list"),
    ("names", [1, 2], "must hold class names"),
    ("arch", ["not", "a", "dict"], "'arch' must be a dict"),
    ("epoch", 2.5, "'epoch' must be an integer"),
    ("nc", 5, "'nc' is 5 but 'names' has 2"),
    ("model", {"model.0.conv.weight": "zeros"}, "'model.0.conv.weight' is not one"),
])
def test_checkpoint_entries_are_checked(tmp_path: Path, entry: str, value: object, message: str) -> None:
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(_ours(tmp_path, **{entry: value}))
    assert str(tmp_path / "ckpt.pt") in str(e.value)


def test_weights_that_do_not_fit_the_architecture(tmp_path: Path) -> None:
    wide = make_checkpoint(Model("yolov5s.yaml", nc=2, names=["a", "b"]))["model"]
    f = _ours(tmp_path, model=wide)
    res = _run("val.py", ["--weights", str(f), "--data", "data/coco128.yaml", "--imgsz", "64"], tmp_path)
    _assert_user_error(res, str(f), "entry 'model' does not fit")


@pytest.mark.parametrize("kind,text", [
    ("dataset", "path: x\nnames: [a, b\ntrain: images\n"),
    ("hyp", "lr0: 0.01\n  momentum: 0.9\n"),
    ("model", "nc: 80\nbackbone: [[-1, 1, Conv, [64, 6, 2, 2]]\nhead: []\n"),
    ("sweep", "weights: yolov5n.pt\nprune_ratios: [0.1, 0.2]\n\tbad: tab\n"),
])
def test_malformed_yaml_names_file_line_and_column(tmp_path: Path, kind: str, text: str) -> None:
    f = tmp_path / f"{kind}.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=rf"{f.name}:\d+:\d+: .*not valid YAML") as e:
        read_yaml(f)
    line = int(str(e.value).split(":")[1])
    assert 1 < line <= text.count("\n") + 1


@pytest.mark.parametrize("script,flag,args", [
    ("train.py", "--data", ["--weights", "yolov5n.pt", "--epochs", "1"]),
    ("train.py", "--hyp", ["--weights", "yolov5n.pt", "--data", "data/coco128.yaml", "--epochs", "1"]),
    ("train.py", "--cfg", ["--weights", "", "--data", "data/coco128.yaml", "--epochs", "1"]),
    ("sweep.py", "--config", []),
])
def test_malformed_yaml_is_one_error_line(tmp_path: Path, script: str, flag: str, args: list[str]) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("names: [a, b\nkey: {unclosed\n")
    res = _run(script, [*args, flag, str(f), "--project", str(tmp_path / "runs")], tmp_path)
    _assert_user_error(res, f"{f}:")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
