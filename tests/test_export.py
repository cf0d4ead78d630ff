"""Export to ONNX/TorchScript, inference through the backend layer, INT8, latency, and their error messages."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from engine.backends import load_backend
from engine.benchmark import compare_runtimes, format_latency_table, measure_latency, speedup
from engine.export.run import ExportOptions, run as export_run
from engine.export.common import compare_outputs
from engine.export.onnx_export import export_onnx
from engine.detect.predictor import DetectOptions, run as detect_run
from engine.val.validator import ValOptions, run as val_run
from models.yolo import Model
from models.checkpoint import load_model
from utils.data import letterbox
from utils.nms import non_max_suppression

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(REPO / "models")) for p in (REPO / "models").rglob("*.yaml"))
DATA = str(REPO / "data" / "coco128.yaml")


@pytest.fixture(scope="module")
def model(yolov5n_pt: Path) -> torch.nn.Module:
    return load_model(yolov5n_pt)[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, yolov5n_pt: Path) -> dict:
    """export.py run the way a user runs it; the shared weights folder is read-only, so files land in the cwd."""
    import export

    cwd = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        summary = export.main(["--weights", str(yolov5n_pt), "--include", "onnx", "torchscript", "--imgsz", "320",
                               "--dynamic"])
    return {"dir": cwd, "summary": summary, "onnx": cwd / "yolov5n.onnx", "torchscript": cwd / "yolov5n.torchscript"}


def test_export_writes_next_to_writable_weights(yolov5n_pt: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "cwd").mkdir()
    weights = tmp_path / "w" / "yolov5n.pt"
    weights.write_bytes(yolov5n_pt.read_bytes())
    monkeypatch.chdir(tmp_path / "cwd")
    summary = export_run(ExportOptions(weights=str(weights), include=["onnx"], imgsz=[64]))
    assert summary["exports"][0]["file"] == str(tmp_path / "w" / "yolov5n.onnx")
    assert not any((tmp_path / "cwd").iterdir())


def _image(path: Path, size: int) -> torch.Tensor:
    im = letterbox(cv2.imread(str(path)), size, auto=False)[0]
    return torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)[::-1])).float()[None] / 255


def _reference(model: torch.nn.Module, im: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(im)[0]


def test_export_script_writes_checked_files_with_metadata(exported: dict, model: torch.nn.Module,
                                                          images_dir: Path) -> None:
    assert exported["onnx"].is_file() and exported["torchscript"].is_file()
    assert (exported["dir"] / "yolov5n_export.json").is_file()
    for res in exported["summary"]["exports"]:
        assert res["check"]["ok"], res
        assert res["check"]["max_abs_scores"] < 1e-4
    props = {p.key: p.value for p in onnx.load(str(exported["onnx"])).metadata_props}
    assert json.loads(props["stride"]) == 32 and json.loads(props["names"]) == model.names
    x = _image(images_dir / "bus.jpg", 320)
    for fmt in ("onnx", "torchscript"):
        backend = load_backend(exported[fmt], "cpu")
        assert (backend.format, backend.stride, backend.names, backend.dynamic) == (fmt, 32, model.names, True)
        pred, raw = backend(x)
        assert raw is None and pred.dtype == torch.float32
        diff = compare_outputs(pred, _reference(model, x))
        assert diff["ok"] and diff["max_abs_scores"] < 1e-4 and diff["max_rel_boxes"] < 1e-4, diff


def test_dynamic_onnx_runs_at_two_sizes(exported: dict, model: torch.nn.Module) -> None:
    # (export.py probes the TorchScript trace at a second shape itself: its metadata says dynamic, tested above)
    backend = load_backend(exported["onnx"], "cpu")
    for shape in ((1, 3, 320, 320), (2, 3, 256, 416)):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
        pred = backend(x)[0]
        n = 3 * sum((shape[2] // s) * (shape[3] // s) for s in (8, 16, 32))
        assert pred.shape == (shape[0], n, 85)
        assert compare_outputs(pred, _reference(model, x))["ok"]


def test_simplify_with_onnxslim_keeps_outputs_with_fewer_nodes(yolov5n_pt: Path, model: torch.nn.Module,
                                                               tmp_path: Path, images_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import export

    monkeypatch.chdir(tmp_path)
    summary = export.main(["--weights", str(yolov5n_pt), "--include", "onnx", "--imgsz", "160", "--simplify"])
    res = summary["exports"][0]
    assert res["check"]["ok"] and res["notes"][0].startswith("simplified with onnxslim"), res
    slim = onnx.load(res["file"])
    onnx.checker.check_model(slim)
    plain = export_onnx(model, tmp_path / "plain.onnx", imgsz=160, check=False)
    assert len(slim.graph.node) <= len(onnx.load(plain["file"]).graph.node)
    x = _image(images_dir / "bus.jpg", 160)
    backend = load_backend(res["file"], "cpu")
    assert (backend.stride, backend.names) == (32, model.names)  # metadata survives simplification
    assert compare_outputs(backend(x)[0], _reference(model, x))["ok"]
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # as if not installed: refused before any work
    with pytest.raises(ValueError, match="--simplify needs onnxslim, which is not installed: pip install"):
        export.main(["--weights", str(yolov5n_pt), "--include", "onnx", "--imgsz", "160", "--simplify"])


def test_static_onnx_fixed_shape_pads_batches(tmp_path: Path, model: torch.nn.Module,
                                              caplog: pytest.LogCaptureFixture) -> None:
    res = export_onnx(model, tmp_path / "static.onnx", imgsz=160, batch_size=2)
    assert res["check"]["ok"] and res["metadata"]["dynamic"] is False
    backend = load_backend(tmp_path / "static.onnx", "cpu")
    assert (backend.dynamic, backend.imgsz, backend.batch) == (False, (160, 160), 2)
    with caplog.at_level(logging.WARNING):
        assert backend.input_size(320) == 160
    assert "fixed input of 160x160" in caplog.text
    x = torch.rand(3, 3, 160, 160)  # 3 images through a batch-2 model: one full batch, one padded
    assert compare_outputs(backend(x)[0], _reference(model, x))["ok"]
    with pytest.raises(ValueError, match="takes 160x160 inputs"):
        backend(torch.rand(1, 3, 192, 160))


@pytest.mark.slow
def test_val_onnx_matches_pt(exported: dict, yolov5n_pt: Path, tmp_path: Path) -> None:
    common = dict(data=DATA, imgsz=320, batch_size=32, workers=2, project=str(tmp_path), device="cpu")
    pt = val_run(ValOptions(weights=str(yolov5n_pt), **common))
    ox = val_run(ValOptions(weights=str(exported["onnx"]), **common))
    assert pt["rect"] and ox["rect"] and ox["backend"] == "onnx"
    assert pt["mAP50_95"] > 0.2
    assert abs(pt["mAP50_95"] - ox["mAP50_95"]) <= 0.002, (pt["mAP50_95"], ox["mAP50_95"])


def test_val_letterboxes_into_a_static_non_square_export(tmp_path: Path, model: torch.nn.Module) -> None:
    """A static 320x256 (h x w) export validates with every image letterboxed into that shape (wide photos scaled to
    its width): its mAP is the PyTorch model's on the same fixed-shape batches, and no worse than that shape allows."""
    from engine.val.validator import scorer, val_loader
    from utils.data import load_dataset_config

    export_onnx(model, tmp_path / "rect.onnx", imgsz=(320, 256), check=False)
    ox = val_run(ValOptions(weights=str(tmp_path / "rect.onnx"), data=DATA, batch_size=32, workers=2,
                            project=str(tmp_path), device="cpu"))
    assert ox["rect"] is False and tuple(ox["imgsz"]) == (320, 256)
    data = load_dataset_config(DATA)
    imgs = next(iter(val_loader(data["val"], (320, 256), 32, 32, nc=data["nc"], rect=False, workers=0)))[0]
    assert tuple(imgs.shape[2:]) == (320, 256)
    pt = scorer(data, (320, 256), 32, data["names"], batch_size=32, workers=2, rect=False)(model)
    assert pt["mAP50_95"] > 0.15  # boxes mapped back through the non-square letterbox (a wrong mapping scores ~0)
    assert abs(pt["mAP50_95"] - ox["mAP50_95"]) <= 0.002, (pt["mAP50_95"], ox["mAP50_95"])
    with pytest.raises(ValueError, match="fixed"):
        val_loader(data["val"], (320, 256), 32, 32, rect=True, workers=0)


def test_detect_onnx_finds_same_objects(exported: dict, yolov5n_pt: Path, images_dir: Path, tmp_path: Path) -> None:
    runs = [detect_run(DetectOptions(weights=str(w), source=str(images_dir / "bus.jpg"), imgsz=320, device="cpu",
                                     project=str(tmp_path), nosave=True)) for w in (yolov5n_pt, exported["onnx"])]
    dets = [r["images"][0]["detections"] for r in runs]
    assert len(dets[0]) >= 4 and {d["name"] for d in dets[0]} >= {"bus", "person"}
    assert sorted(d["class"] for d in dets[0]) == sorted(d["class"] for d in dets[1])
    for a, b in zip(sorted(dets[0], key=lambda d: d["xyxy"]), sorted(dets[1], key=lambda d: d["xyxy"])):
        assert np.abs(np.subtract(a["xyxy"], b["xyxy"])).max() <= 1.0 and abs(a["conf"] - b["conf"]) < 1e-3


def test_onnx_without_metadata_warns_and_validates_square(tmp_path: Path, model: torch.nn.Module,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    export_onnx(model, tmp_path / "bare.onnx", imgsz=160, check=False)
    proto = onnx.load(str(tmp_path / "bare.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with caplog.at_level(logging.WARNING):
        res = val_run(ValOptions(weights=str(tmp_path / "bare.onnx"), data=DATA, imgsz=320, batch_size=32, workers=2,
                                 conf_thres=0.1, project=str(tmp_path), device="cpu"))  # fewer boxes: faster NMS
    assert "carries no metadata of ours" in caplog.text and "no class names in the file" in caplog.text
    assert "fixed input of 160x160" in caplog.text
    assert (res["rect"], res["imgsz"]) == (False, 160)  # static export: square letterboxing at its own size
    assert res["mAP50_95"] > 0.05 and res["per_class"][0]["name"] == "person"


def test_int8_quantization_keeps_detections(yolov5n_pt: Path, tmp_path: Path, images_dir: Path) -> None:
    from engine.export.int8 import calibration_images

    images = calibration_images(DATA, n=8)
    assert len(images) == 8 and all("train2017" in f for f in images)  # calibration never sees val images
    summary = export_run(ExportOptions(weights=str(yolov5n_pt), include=["onnx"], imgsz=[320], dynamic=True,
                                       int8=True, data=DATA, int8_images=8, int8_method="minmax",
                                       int8_report=False, output_dir=str(tmp_path)))
    res = summary["int8"]["export"]
    assert res["file"] == str(tmp_path / "yolov5n_int8.onnx") and res["images"] == 8
    assert res["excluded_convs"] == 3 and res["quantized_convs"] > 50
    proto = onnx.load(res["file"])
    assert sum(n.op_type == "QuantizeLinear" for n in proto.graph.node) > 50
    backend = load_backend(res["file"], "cpu")
    assert backend.metadata["int8"] is True and backend.stride == 32 and len(backend.names) == 80
    det = non_max_suppression(backend(_image(images_dir / "bus.jpg", 320))[0], 0.25, 0.45)[0]
    assert {backend.names[int(c)] for c in det[:, 5]} >= {"bus", "person"}


@pytest.mark.slow
@pytest.mark.parametrize("cfg", CONFIGS)
def test_every_config_exports_to_onnx(cfg: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = Model(cfg, nc=3)
    res = export_onnx(m, tmp_path / "m.onnx", imgsz=64)
    assert res["check"]["ok"] and res["check"]["max_abs"] < 1e-3, res["check"]
    assert res["metadata"]["nc"] == 3 and res["metadata"]["names"] == ["class0", "class1", "class2"]
    assert m.detect.export is False and m.training  # the caller's model is not changed


def test_val_and_detect_use_the_size_an_export_was_made_at(yolov5n_pt: Path, tmp_path: Path, tiny_data: Path,
                                                          images_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without --imgsz, val.py and detect.py run an export at the size it was made at (dynamic: from its metadata;
    static: its input), and say nothing about it; a .pt keeps YOLOv5's 640; an --imgsz given still rules."""
    onnx_files = {}
    for name, size, dynamic in (("dyn", 96, True), ("static", 64, False)):
        (tmp_path / name).mkdir()
        pt = Path(shutil.copy(yolov5n_pt, tmp_path / name / "yolov5n.pt"))
        export_run(ExportOptions(weights=str(pt), include=["onnx"], imgsz=[size], dynamic=dynamic))
        onnx_files[name] = str(pt.with_suffix(".onnx"))
    common = dict(data=str(tiny_data), project=str(tmp_path / "val"), workers=0)
    assert val_run(ValOptions(weights=onnx_files["dyn"], **common))["imgsz"] == 96
    assert val_run(ValOptions(weights=onnx_files["dyn"], imgsz=128, **common))["imgsz"] == 128
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert detect_run(DetectOptions(weights=onnx_files["static"], source=str(images_dir / "bus.jpg"),
                                        project=str(tmp_path / "det")))["imgsz"] == 64
    assert "fixed input" not in caplog.text
    assert detect_run(DetectOptions(weights=str(yolov5n_pt), source=str(images_dir / "bus.jpg"), project=str(tmp_path / "det"),
                                    nosave=True))["imgsz"] == 640


def test_bad_inputs_give_clear_errors(tmp_path: Path, yolov5n_pt: Path) -> None:
    with pytest.raises(ValueError, match="unknown format.*engine.*valid formats: torchscript, onnx"):
        export_run(ExportOptions(weights=str(yolov5n_pt), include=["onnx", "engine"]))
    with pytest.raises(ValueError, match="--half export needs a CUDA device"):
        export_onnx(Model("yolov5n.yaml"), tmp_path / "h.onnx", imgsz=64, half=True)
    with pytest.raises(ValueError, match="add onnx to --include"):
        export_run(ExportOptions(weights=str(yolov5n_pt), include=["torchscript"], int8=True))
    fake = tmp_path / "notes.pt"
    fake.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt: not a PyTorch checkpoint"):
        export_run(ExportOptions(weights=str(fake), include=["onnx"], output_dir=str(tmp_path)))
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="bad.onnx: not a usable ONNX model"):
        load_backend(bad_onnx, "cpu")
    bad_ts = tmp_path / "bad.torchscript"
    bad_ts.write_text("x")
    with pytest.raises(ValueError, match="bad.torchscript: not a TorchScript model"):
        load_backend(bad_ts, "cpu")
    with pytest.raises(ValueError, match=r"unsupported model format '\.tflite'.*\.onnx \(onnx\)"):
        load_backend(tmp_path / "model.tflite", "cpu")


def test_latency_library_and_script(exported: dict, capsys: pytest.CaptureFixture) -> None:
    m = Model("yolov5n.yaml")
    r = measure_latency(m, imgsz=64, batch_size=2, warmup=1, repeats=5)
    assert r["runtime"] == "pytorch" and r["batch_size"] == 2 and r["repeats"] == 5
    assert r["min_ms"] <= r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]
    assert r["per_image_ms"] == pytest.approx(r["median_ms"] / 2) and m.training
    rows = compare_runtimes(m, imgsz=64, batch_sizes=(1, 2), warmup=1, repeats=3)
    assert [(x["runtime"], x["batch_size"]) for x in rows] == [("pytorch", 1), ("pytorch", 2), ("onnxruntime", 1),
                                                              ("onnxruntime", 2)]
    assert all(s["speedup"] == pytest.approx(1.0) for s in speedup(rows, rows)) and len(speedup(rows, rows)) == 4
    assert "onnxruntime" in format_latency_table(rows)
    spec = importlib.util.spec_from_file_location("latency_script", REPO / "benchmarks" / "latency.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.main(["--weights", str(exported["onnx"]), "--imgsz", "64", "--batch-size", "1", "2", "--warmup", "1",
                       "--repeats", "2"])
    assert [(x["runtime"], x["batch_size"]) for x in out] == [("onnxruntime", 1), ("onnxruntime", 2)]
    assert "median ms" in capsys.readouterr().out


def test_pruned_checkpoint_exports_and_matches(yolov5n_pt: Path, tmp_path: Path) -> None:
    from pruning import slim_model
    from utils.checkpoint import atomic_save, make_checkpoint

    model, _ = load_model(yolov5n_pt)
    pruned, report = slim_model(model, 0.25)
    assert report.params_after < report.params_before
    atomic_save(make_checkpoint(pruned, half=True), tmp_path / "pruned.pt")
    reloaded, _ = load_model(tmp_path / "pruned.pt")  # from the checkpoint alone, as export.py sees it
    res = export_onnx(reloaded, tmp_path / "pruned.onnx", imgsz=160)
    assert res["check"]["max_abs"] < 1e-3, res["check"]
    backend = load_backend(tmp_path / "pruned.onnx")
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        ref = reloaded.eval()(x)[0]
    assert float((backend(x)[0] - ref).abs().max()) < 1e-3
