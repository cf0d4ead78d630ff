"""OpenVINO IR: export.py --include openvino (FP32 and --half), the OpenVINO backend in val.py and detect.py."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from engine.backends import load_backend
from engine.export.run import ExportOptions, run as export_run
from engine.export.common import compare_outputs
from engine.detect.predictor import DetectOptions, run as detect_run
from engine.val.validator import ValOptions, run as val_run
from models.checkpoint import load_model

REPO = Path(__file__).resolve().parents[1]
VAL_IMAGES = 32  # a few coco128 images: enough boxes for a stable mAP, cheap at 320 px


@pytest.fixture(scope="module")
def ov_dir(tmp_path_factory: pytest.TempPathFactory, yolov5n_pt: Path) -> Path:
    """export.py run the way a user runs it (dynamic shapes, so val.py can use rectangular batches as for the .pt)."""
    import export

    cwd = tmp_path_factory.mktemp("export-ov")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        summary = export.main(["--weights", str(yolov5n_pt), "--include", "openvino", "--imgsz", "320", "--dynamic"])
    res = summary["exports"][0]
    assert res["format"] == "openvino" and res["check"]["ok"], res
    assert res["check"]["max_abs_scores"] < 1e-4
    return Path(res["file"])


@pytest.fixture(scope="module")
def few_images_data(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path) -> Path:
    """coco128 with only its first ``VAL_IMAGES`` val images (an image list: labels are found beside them)."""
    root = tmp_path_factory.mktemp("few")
    images = sorted((coco128_dir / "images" / "val2017").glob("*.jpg"))[:VAL_IMAGES]
    (root / "val.txt").write_text("\n".join(map(str, images)) + "\n")
    names = yaml.safe_load((REPO / "data" / "coco128.yaml").read_text())["names"]
    data = root / "few.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "val.txt", "val": "val.txt", "names": names}))
    return data


def test_openvino_folder_layout_and_metadata(ov_dir: Path, yolov5n_pt: Path) -> None:
    assert ov_dir.name == "yolov5n_openvino_model"
    assert sorted(f.name for f in ov_dir.iterdir()) == ["yolov5n.bin", "yolov5n.xml", "yolov5n.yaml"]
    meta = yaml.safe_load((ov_dir / "yolov5n.yaml").read_text())
    model = load_model(yolov5n_pt)[0]
    assert (meta["stride"], meta["names"], meta["half"], meta["dynamic"]) == (32, model.names, False, True)
    for weights in (ov_dir, ov_dir / "yolov5n.xml"):  # the folder, as YOLOv5 prints it, or the .xml
        backend = load_backend(weights, "cpu")
        assert (backend.format, backend.stride, backend.names, backend.dynamic) == ("openvino", 32, model.names, True)
    x = torch.rand(2, 3, 256, 416, generator=torch.Generator().manual_seed(1))  # another batch and shape
    with torch.no_grad():
        ref = model.eval()(x)[0]
    assert compare_outputs(backend(x)[0], ref)["ok"]


def test_val_openvino_matches_pt(ov_dir: Path, yolov5n_pt: Path, few_images_data: Path, tmp_path: Path) -> None:
    common = dict(data=str(few_images_data), imgsz=320, batch_size=16, workers=0, project=str(tmp_path),
                  device="cpu", noplots=True)
    pt = val_run(ValOptions(weights=str(yolov5n_pt), **common))
    ov = val_run(ValOptions(weights=str(ov_dir), **common))
    assert pt["rect"] and ov["rect"] and ov["backend"] == "openvino"
    assert pt["mAP50_95"] > 0.2
    assert abs(pt["mAP50_95"] - ov["mAP50_95"]) <= 0.002, (pt["mAP50_95"], ov["mAP50_95"])


def test_detect_openvino_finds_same_objects(ov_dir: Path, yolov5n_pt: Path, images_dir: Path, tmp_path: Path) -> None:
    runs = [detect_run(DetectOptions(weights=str(w), source=str(images_dir / "bus.jpg"), imgsz=320, device="cpu",
                                     project=str(tmp_path), nosave=True)) for w in (yolov5n_pt, ov_dir / "yolov5n.xml")]
    dets = [r["images"][0]["detections"] for r in runs]
    assert len(dets[0]) >= 4 and {d["name"] for d in dets[0]} >= {"bus", "person"}
    assert sorted(d["class"] for d in dets[0]) == sorted(d["class"] for d in dets[1])
    for a, b in zip(sorted(dets[0], key=lambda d: d["xyxy"]), sorted(dets[1], key=lambda d: d["xyxy"])):
        assert np.abs(np.subtract(a["xyxy"], b["xyxy"])).max() <= 1.0 and abs(a["conf"] - b["conf"]) < 1e-3


def test_half_compresses_openvino_and_is_refused_for_onnx_on_cpu(yolov5n_pt: Path, tmp_path: Path) -> None:
    fp16 = export_run(ExportOptions(weights=str(yolov5n_pt), include=["openvino"], imgsz=[64], batch_size=2,
                                    half=True, output_dir=str(tmp_path)))["exports"][0]
    assert fp16["check"]["ok"] and fp16["metadata"]["half"] is True, fp16
    # judged with the tolerance of the precision OpenVINO chose: bf16 on CPUs with bf16 units, f16 or f32 elsewhere
    has_bf16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text() or "amx_bf16" in Path("/proc/cpuinfo").read_text()
    assert fp16["check"]["precision"] == "bf16" if has_bf16 else fp16["check"]["precision"] in ("f16", "f32")
    weights = Path(fp16["file"]) / "yolov5n.bin"
    assert weights.stat().st_size < 0.6 * 1_867_405 * 4  # float16: about half the float32 weights
    backend = load_backend(fp16["file"], "cpu")
    assert (backend.fp16, backend.dynamic, backend.imgsz, backend.batch) == (True, False, (64, 64), 2)
    assert backend(torch.rand(3, 3, 64, 64))[0].shape == (3, 252, 85)  # a static batch of 2: padded and split
    with pytest.raises(ValueError, match="--half exports float16 onnx only on a CUDA device .*--include openvino"):
        export_run(ExportOptions(weights=str(yolov5n_pt), include=["onnx", "openvino"], half=True))
    from engine.export.run import _check_options  # no GPU here: the option check alone, as a CUDA device sees it

    opt = ExportOptions(include=["onnx", "openvino"], half=True)
    assert _check_options(opt, torch.device("cuda")) == ["onnx", "openvino"]


def test_yolov5_style_metadata_and_clear_errors(ov_dir: Path, tmp_path: Path, yolov5n_pt: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = tmp_path / "best_openvino_model"  # YOLOv5 writes only stride and a names dict beside the IR
    theirs.mkdir()
    for f in ("yolov5n.xml", "yolov5n.bin"):
        shutil.copy(ov_dir / f, theirs / f.replace("yolov5n", "best"))
    (theirs / "best.yaml").write_text(yaml.safe_dump({"stride": 32, "names": {0: "person", 1: "bicycle"}}))
    backend = load_backend(theirs, "cpu")
    assert (backend.stride, backend.names) == (32, ["person", "bicycle"])
    shutil.copy(theirs / "best.xml", theirs / "other.xml")
    with pytest.raises(ValueError, match="holds 2 OpenVINO models .*pass the .xml file"):
        load_backend(theirs, "cpu")
    (tmp_path / "empty_openvino_model").mkdir()
    with pytest.raises(FileNotFoundError, match="no OpenVINO model"):
        load_backend(tmp_path / "empty_openvino_model", "cpu")
    (tmp_path / "bad.xml").write_text("<net>")
    with pytest.raises(ValueError, match="bad.xml: not a usable OpenVINO model"):
        load_backend(tmp_path / "bad.xml", "cpu")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(ValueError, match="--include openvino needs openvino, which is not installed"):
        export_run(ExportOptions(weights=str(yolov5n_pt), include=["openvino"], output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="need the openvino package"):
        load_backend(ov_dir, "cpu")


def test_latency_script_times_openvino(ov_dir: Path, yolov5n_pt: Path, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("latency_script", REPO / "benchmarks" / "latency.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows = script.main(["--weights", str(yolov5n_pt), str(ov_dir), "--openvino", "--imgsz", "64", "--batch-size", "1",
                        "--warmup", "1", "--repeats", "2"])
    assert [(r["model"], r["runtime"]) for r in rows] == [("yolov5n.pt", "pytorch"),
                                                          ("yolov5n_openvino_model", "openvino (f32)"),
                                                          ("yolov5n_openvino_model", "openvino (f32)")]
    assert all(r["median_ms"] > 0 for r in rows) and "openvino" in capsys.readouterr().out
