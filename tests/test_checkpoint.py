"""Checkpoints: the official file loads through the allow-list, ours round-trips with weights_only, writes are atomic,
and hostile pickles are refused without running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from models.yolo import Model
from utils.checkpoint import CheckpointError, UnsafeCheckpointError, atomic_save, load_checkpoint, make_checkpoint, resolve_weights
from models.checkpoint import load_model


class _RunsShell:
    """Pickles as a call to os.system: loading it unsafely would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


def test_official_checkpoint_loads(yolov5n_pt: Path) -> None:
    model, ckpt = load_model(yolov5n_pt)
    assert ckpt["names"][0] == "person" and len(ckpt["names"]) == 80
    assert sum(p.numel() for p in model.parameters()) == 1867405 + 4752  # 1,872,157 with the BN layers
    assert model.detect.anchors.shape == (3, 3, 2)
    with torch.no_grad():
        pred, _ = model(torch.zeros(1, 3, 320, 320))
    assert pred.shape == (1, 6300, 85)


def test_our_format_roundtrips_with_weights_only(tmp_path: Path) -> None:
    model = Model("yolov5n.yaml", nc=3, names=["a", "b", "c"])
    ckpt = make_checkpoint(model, epoch=4, best_fitness=0.5, train_args={"imgsz": 320, "save_dir": tmp_path})
    atomic_save(ckpt, tmp_path / "last.pt")
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    assert raw["epoch"] == 4 and raw["train_args"]["save_dir"] == str(tmp_path)
    loaded, _ = load_model(tmp_path / "last.pt")
    assert loaded.names == ["a", "b", "c"]
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    atomic_save({"x": torch.ones(2)}, target)
    with pytest.raises(Exception):
        atomic_save({"bad": lambda: 0}, target)  # lambdas cannot be pickled: the write fails midway
    assert torch.equal(torch.load(target, weights_only=True)["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_checkpoint_calling_os_system_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _RunsShell(marker)}, evil)
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system|nt.system"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_unexpected_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"model": _RunsShell}, path)  # a class reference that is not on the allow-list
    with pytest.raises(UnsafeCheckpointError, match="_RunsShell"):
        load_checkpoint(path)


def test_non_checkpoint_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "notes.pt"
    junk.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt: not a PyTorch checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(FileNotFoundError, match="missing_weights.pt"):
        resolve_weights(tmp_path / "missing_weights.pt")
    torch.save({"just": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a YOLO checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_atomic_text_files_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """slim.py's report.md/json were 0600 (mkstemp's mode): unreadable to anyone else on a shared machine."""
    import os

    from utils.files import atomic_write_json

    before = os.umask(0o022)
    try:
        f = atomic_write_json(tmp_path / "report.json", {"a": 1})
    finally:
        os.umask(before)
    assert f.stat().st_mode & 0o777 == 0o644
