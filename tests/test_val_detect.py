"""End-to-end tests of ``val.py`` and ``detect.py`` with the official yolov5n.pt on coco128 and the demo images.

The 640-pixel validation on all of coco128 val2017 runs once (~35 s on 2 cores); every other check runs at 256 or
320 pixels on a copy of 8 val images in ``tmp_path``, so the whole file stays near two minutes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import detect
import val
from engine.val.coco import coco80_to_91
from engine.detect.predictor import DetectOptions
from engine.detect.predictor import run as detect_run
from engine.val.validator import CONF_THRES, IOU_THRES, ValOptions, val_loader
from engine.val.validator import run as val_run
from utils.data import create_dataloader

REPO = Path(__file__).resolve().parents[1]
COCO128_YAML = REPO / "data" / "coco128.yaml"
MINI_IMAGES = 8


# ----------------------------------------------------------------------------------------------------------- helpers
def _label_rows(label_dir: Path) -> np.ndarray:
    """All rows ``cls x y w h`` of the ``.txt`` files in ``label_dir``."""
    rows = [np.loadtxt(f, ndmin=2) for f in sorted(label_dir.glob("*.txt")) if f.stat().st_size]
    return np.concatenate(rows, 0) if rows else np.zeros((0, 5))


def make_mini_dataset(root: Path, coco128_dir: Path, n: int = MINI_IMAGES) -> Path:
    """Copy the first ``n`` coco128 val images and their labels to ``root/images/val`` and ``root/labels/val``.

    Returns the dataset YAML (``coco_mini.yaml``: a 'coco' name with 80 classes, so --save-json maps to COCO ids).
    """
    src = coco128_dir / "images" / "val2017"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for im in sorted(src.glob("*.jpg"))[:n]:
        shutil.copy(im, root / "images" / "val" / im.name)
        shutil.copy(coco128_dir / "labels" / "val2017" / f"{im.stem}.txt", root / "labels" / "val" / f"{im.stem}.txt")
    cfg = yaml.safe_load(COCO128_YAML.read_text())
    cfg.update(path=str(root), train="images/val", val="images/val", test=None)
    cfg.pop("download", None)
    file = root / "coco_mini.yaml"
    file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return file


def _val_opts(data: Path, weights: Path, project: Path, **kw) -> ValOptions:
    """Small and fast validation options: 256 px, one batch, no worker processes."""
    base = dict(data=str(data), weights=str(weights), imgsz=256, batch_size=MINI_IMAGES, workers=0,
                project=str(project), name="exp")
    base.update(kw)
    return ValOptions(**base)


def _read_txt(file: Path) -> np.ndarray:
    return np.loadtxt(file, ndmin=2)


def _count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, frame.shape[:2]
    cap.release()
    return n, size


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Label caches of read-only datasets go to the user cache dir: keep them inside this test's tmp_path."""
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path) -> Path:
    """A read-only-by-convention 8-image copy of coco128 val (tests that corrupt data make their own)."""
    return make_mini_dataset(tmp_path_factory.mktemp("mini"), coco128_dir)


@pytest.fixture
def bus_jpg(images_dir: Path) -> Path:
    """The demo image with 4 persons and a bus."""
    path = images_dir / "bus.jpg"
    if not path.is_file():
        pytest.fail(f"demo image not found at {path}")
    return path


# ------------------------------------------------------------------------------------------------ 1. reference mAP
@pytest.mark.slow
def test_val_yolov5n_reproduces_reference_map(tmp_path: Path, coco128_dir: Path, yolov5n_pt: Path) -> None:
    """yolov5n.pt on coco128 val2017 at 640 with the default thresholds: the reference 0.343 mAP50-95 / 0.526 mAP50."""
    res = val_run(ValOptions(data=str(COCO128_YAML), weights=str(yolov5n_pt), imgsz=640, batch_size=16,
                             project=str(tmp_path), name="exp"))
    save_dir = Path(res["save_dir"])
    assert save_dir == tmp_path / "exp"
    assert res["mAP50_95"] == pytest.approx(0.343, abs=0.003)
    assert res["mAP50"] == pytest.approx(0.526, abs=0.003)

    saved = json.loads((save_dir / "results.json").read_text())
    for key in ("precision", "recall", "mAP50", "mAP50_95"):
        assert 0 < saved[key] < 1, key
        assert saved[key] == pytest.approx(res[key])
    assert saved["images"] == 128
    assert saved["instances"] == 898

    # Per-class entries agree with the label files themselves.
    files = [np.loadtxt(f, ndmin=2) for f in sorted((coco128_dir / "labels" / "val2017").glob("*.txt"))]
    instances = Counter(int(c) for rows in files for c in rows[:, 0])
    images = Counter(int(c) for rows in files for c in set(rows[:, 0].tolist()))
    per_class = {c["class"]: c for c in saved["per_class"]}
    assert {c: e["instances"] for c, e in per_class.items()} == dict(instances)
    assert {c: e["images"] for c, e in per_class.items()} == dict(images)
    assert per_class[0]["name"] == "person" and per_class[77]["name"] == "teddy bear"
    assert sum(e["instances"] for e in per_class.values()) == 898
    for e in per_class.values():
        assert 0 <= e["mAP50_95"] <= e["mAP50"] + 1e-9 <= 1 + 1e-9  # equal when every IoU threshold matches
    assert set(saved["speed"]) == {"preprocess", "inference", "nms"}
    assert all(v > 0 for v in saved["speed"].values())
    for plot in ("PR_curve.png", "F1_curve.png", "confusion_matrix.png"):
        assert (save_dir / plot).stat().st_size > 1000, plot


def test_validation_protocol_is_yolov5s(coco128_dir: Path) -> None:
    """The one protocol every caller shares: YOLOv5's thresholds, and rect batches padded by half a stride in file
    order (square letterboxing without pad for static exports)."""
    assert (CONF_THRES, IOU_THRES) == (0.001, 0.6)
    assert (ValOptions().conf_thres, ValOptions().iou_thres) == (CONF_THRES, IOU_THRES)
    images = coco128_dir / "images" / "val2017"
    loader = val_loader(images, 640, 32, 32, nc=80, workers=0)
    reference, _ = create_dataloader(images, 640, 32, 32, rect=True, pad=0.5, workers=0, nc=80)
    assert loader.dataset.rect and not loader.dataset.augment and loader.batch_size == 32
    assert isinstance(loader.sampler, torch.utils.data.SequentialSampler)
    assert loader.dataset.batch_shapes.tolist() == reference.dataset.batch_shapes.tolist()
    square = val_loader(images, 640, 32, 32, nc=80, rect=False, workers=0)
    assert not square.dataset.rect and square.dataset.batch_shapes is None


# ------------------------------------------------------------------------------------------ 2. val.py options
def _write_coco_annotations(root: Path) -> None:
    """``root/annotations/instances_val.json`` from the YOLO labels, as pycocotools expects (COCO 91-ids)."""
    ids91 = coco80_to_91()
    images, annotations = [], []
    for im in sorted((root / "images" / "val").glob("*.jpg")):
        h, w = cv2.imread(str(im)).shape[:2]
        images.append({"id": int(im.stem), "file_name": im.name, "height": h, "width": w})
        for c, x, y, bw, bh in _read_txt(root / "labels" / "val" / f"{im.stem}.txt"):
            box = [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]
            annotations.append({"id": len(annotations) + 1, "image_id": int(im.stem), "category_id": ids91[int(c)],
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": i, "name": str(i)} for i in ids91]}))


def test_val_save_txt_json_and_verbose(tmp_path: Path, coco128_dir: Path, yolov5n_pt: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    """--save-txt --save-conf rows, --save-json COCO rows (scored by pycocotools) and --verbose rows agree."""
    data = make_mini_dataset(tmp_path / "mini", coco128_dir)
    root = data.parent
    _write_coco_annotations(root)
    res = val.main(["--data", str(data), "--weights", str(yolov5n_pt), "--imgsz", "256", "--batch-size", "8",
                    "--workers", "0", "--project", str(tmp_path / "runs"), "--save-txt", "--save-conf",
                    "--save-json", "--verbose"])
    save_dir = Path(res["save_dir"])
    labels = _label_rows(root / "labels" / "val")
    assert res["images"] == MINI_IMAGES and res["instances"] == len(labels)
    assert res["mAP50_95"] > 0.05  # a working detector, even at 256 px

    # --verbose: one table row per class present in the labels.
    lines = capsys.readouterr().out.splitlines()
    assert {c["class"] for c in res["per_class"]} == set(labels[:, 0].astype(int).tolist())
    for c in res["per_class"]:
        prefix = f"{c['name']:>22}{c['images']:>11}{c['instances']:>11}"
        assert any(line.startswith(prefix) for line in lines), f"no table row for {c['name']!r}"

    # --save-txt --save-conf: normalised 'cls x y w h conf' rows, one file per image with detections.
    txts = sorted((save_dir / "labels").glob("*.txt"))
    assert txts and {t.stem for t in txts} <= {p.stem for p in (root / "images" / "val").glob("*.jpg")}
    txt_rows = {t.stem: _read_txt(t) for t in txts}
    for rows in txt_rows.values():
        assert rows.shape[1] == 6
        assert np.all(rows[:, 0] == rows[:, 0].round()) and rows[:, 0].min() >= 0 and rows[:, 0].max() < 80
        assert rows[:, 1:5].min() >= 0 and rows[:, 1:5].max() <= 1
        assert rows[:, 5].min() >= 0.001 and rows[:, 5].max() <= 1

    # --save-json: every row is one of the txt rows, with the COCO 91-id and a top-left xywh box in pixels.
    coco = json.loads((save_dir / "yolov5n_predictions.json").read_text())
    assert len(coco) == sum(len(r) for r in txt_rows.values())
    ids91 = coco80_to_91()
    for row in coco:
        assert set(row) == {"image_id", "category_id", "bbox", "score"}
        assert isinstance(row["image_id"], int) and row["category_id"] in ids91
        assert len(row["bbox"]) == 4 and row["bbox"][2] > 0 and row["bbox"][3] > 0
    for stem, rows in txt_rows.items():
        h, w = cv2.imread(str(root / "images" / "val" / f"{stem}.jpg")).shape[:2]
        mine = [r for r in coco if r["image_id"] == int(stem)]
        assert len(mine) == len(rows), stem
        expect = np.column_stack([[ids91[int(c)] for c in rows[:, 0]],
                                  (rows[:, 1] - rows[:, 3] / 2) * w, (rows[:, 2] - rows[:, 4] / 2) * h,
                                  rows[:, 3] * w, rows[:, 4] * h, rows[:, 5]])
        for r in mine:
            g = np.array([r["category_id"], *r["bbox"], r["score"]])
            close = ((expect[:, 0] == g[0]) & np.all(np.abs(expect[:, 1:5] - g[1:5]) < 0.05, 1)
                     & (np.abs(expect[:, 5] - g[5]) < 1e-4))
            assert close.any(), f"{stem}: JSON row {r} has no matching --save-txt row"
    # pycocotools scores the JSON against the annotations: other AP conventions (precision envelope, 100 dets),
    # same boxes, so near our figures (0.269 vs 0.274, 0.425 vs 0.464 here); centre-based boxes score 0.000.
    assert res["coco_mAP50_95"] == pytest.approx(res["mAP50_95"], abs=0.05)
    assert res["coco_mAP50"] == pytest.approx(res["mAP50"], abs=0.08)
    assert json.loads((save_dir / "results.json").read_text())["coco_mAP50_95"] == res["coco_mAP50_95"]


def test_val_task_speed(tmp_path: Path, mini_data: Path, yolov5n_pt: Path) -> None:
    """--task speed validates the val split at conf 0.25 / IoU 0.45 (as YOLOv5) and makes no plots."""
    res = val_run(_val_opts(mini_data, yolov5n_pt, tmp_path, task="speed", save_txt=True, save_conf=True))
    save_dir = Path(res["save_dir"])
    saved = json.loads((save_dir / "results.json").read_text())
    assert saved["images"] == MINI_IMAGES
    assert set(saved["speed"]) == {"preprocess", "inference", "nms"} and saved["speed"]["inference"] > 0
    assert not (save_dir / "PR_curve.png").exists() and not (save_dir / "confusion_matrix.png").exists()
    confs = np.concatenate([_read_txt(f)[:, 5] for f in (save_dir / "labels").glob("*.txt")])
    assert len(confs) and confs.min() >= 0.25


def test_val_writes_the_first_three_batches_labels_and_predictions(tmp_path: Path, mini_data: Path,
                                                                    yolov5n_pt: Path) -> None:
    """val.py draws val_batch{0,1,2}_labels.jpg and _pred.jpg (8 images in batches of 3: the three batches there are);
    noplots draws none of them."""
    res = val.main(["--data", str(mini_data), "--weights", str(yolov5n_pt), "--imgsz", "256", "--batch-size", "3",
                    "--workers", "0", "--project", str(tmp_path), "--name", "plots"])
    save_dir = Path(res["save_dir"])
    files = sorted(save_dir.glob("val_batch*.jpg"))
    assert [f.name for f in files] == [f"val_batch{i}_{k}.jpg" for i in range(3) for k in ("labels", "pred")]
    for f in files:
        assert f.read_bytes()[:3] == b"\xff\xd8\xff" and f.stat().st_size > 10_000, f  # a JPEG with something in it
        im = cv2.imread(str(f))
        # 2 x 2 tiles of rect batches: at most 256 pixels plus the half-stride pad, rounded up to the stride of 32
        assert im is not None and 2 * 256 <= max(im.shape[:2]) <= 2 * (256 + 32) and im.shape[2] == 3, (f, im.shape)
    for i in range(3):  # the same tiles with different boxes on them
        labels, pred = (cv2.imread(str(save_dir / f"val_batch{i}_{k}.jpg")) for k in ("labels", "pred"))
        assert labels.shape == pred.shape and (cv2.absdiff(labels, pred) > 64).any()

    res = val_run(_val_opts(mini_data, yolov5n_pt, tmp_path, name="noplots", batch_size=3, noplots=True))
    save_dir = Path(res["save_dir"])
    assert (save_dir / "results.json").is_file() and not list(save_dir.glob("*.jpg"))
    assert not list(save_dir.glob("*.png"))


def test_val_single_cls(tmp_path: Path, mini_data: Path, yolov5n_pt: Path) -> None:
    res = val_run(_val_opts(mini_data, yolov5n_pt, tmp_path, single_cls=True, save_txt=True))
    n_labels = len(_label_rows(mini_data.parent / "labels" / "val"))
    assert res["images"] == MINI_IMAGES and res["instances"] == n_labels
    assert [(c["class"], c["name"], c["instances"]) for c in res["per_class"]] == [(0, "item", n_labels)]
    assert 0.05 < res["mAP50_95"] <= res["mAP50"] < 1
    classes = np.concatenate([_read_txt(f)[:, 0] for f in (Path(res["save_dir"]) / "labels").glob("*.txt")])
    assert len(classes) and set(classes.tolist()) == {0.0}


# ---------------------------------------------------------------------------------------------- 3. detect.py
def test_detect_bus_default_thresholds(tmp_path: Path, bus_jpg: Path, yolov5n_pt: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    """bus.jpg at 640, conf 0.25: 4 persons and 1 bus; annotated image, labels and crops written."""
    res = detect.main(["--weights", str(yolov5n_pt), "--source", str(bus_jpg), "--project", str(tmp_path),
                       "--save-txt", "--save-conf", "--save-crop"])
    save_dir = Path(res["save_dir"])
    assert "4 persons, 1 bus" in capsys.readouterr().out
    assert len(res["images"]) == 1
    dets = res["images"][0]["detections"]
    assert Counter(d["name"] for d in dets) == {"person": 4, "bus": 1}
    assert all(d["conf"] >= 0.25 for d in dets)
    assert json.loads((save_dir / "results.json").read_text())["images"] == res["images"]

    im0 = cv2.imread(str(bus_jpg))
    out = cv2.imread(str(save_dir / "bus.jpg"))
    assert out is not None and out.shape == im0.shape
    assert (np.abs(out.astype(int) - im0.astype(int)).max(2) > 60).sum() > 5000  # boxes and labels were drawn

    rows = _read_txt(save_dir / "labels" / "bus.txt")
    assert rows.shape == (5, 6)
    h, w = im0.shape[:2]
    boxes = np.array([d["xyxy"] for d in dets])
    expect = np.column_stack([[d["class"] for d in dets], (boxes[:, 0] + boxes[:, 2]) / 2 / w,
                              (boxes[:, 1] + boxes[:, 3]) / 2 / h, (boxes[:, 2] - boxes[:, 0]) / w,
                              (boxes[:, 3] - boxes[:, 1]) / h, [d["conf"] for d in dets]])
    key = np.lexsort(expect[:, :2].T[::-1])
    assert rows[np.lexsort(rows[:, :2].T[::-1])] == pytest.approx(expect[key], abs=1e-3)

    crops = {p.name: sorted((save_dir / "crops" / p.name).glob("*.jpg")) for p in (save_dir / "crops").iterdir()}
    assert {k: len(v) for k, v in crops.items()} == {"person": 4, "bus": 1}
    x1, y1, x2, y2 = boxes[[d["name"] == "bus" for d in dets]][0]
    ch, cw = cv2.imread(str(crops["bus"][0])).shape[:2]
    # The box grown about its centre by gain 1.02 plus 10 px, then clipped to the image.
    half_w, half_h = ((x2 - x1) * 1.02 + 10) / 2, ((y2 - y1) * 1.02 + 10) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert cw == pytest.approx(min(cx + half_w, w) - max(cx - half_w, 0), abs=2)
    assert ch == pytest.approx(min(cy + half_h, h) - max(cy - half_h, 0), abs=2)


def test_detect_nosave_and_class_filter(tmp_path: Path, bus_jpg: Path, yolov5n_pt: Path) -> None:
    res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=str(bus_jpg), project=str(tmp_path),
                                   classes=[0], nosave=True, save_txt=True))
    save_dir = Path(res["save_dir"])
    assert [d["name"] for d in res["images"][0]["detections"]] == ["person"] * 4
    assert not (save_dir / "bus.jpg").exists()
    assert not list(save_dir.glob("*.jpg"))
    rows = _read_txt(save_dir / "labels" / "bus.txt")
    assert rows.shape == (4, 5) and set(rows[:, 0].tolist()) == {0.0}
    assert len(json.loads((save_dir / "results.json").read_text())["images"][0]["detections"]) == 4


def _outside_box_edges(changed: np.ndarray, boxes: list[list[float]], band: int) -> int:
    """Number of changed pixels farther than ``band`` from every box outline."""
    near = np.zeros_like(changed)
    for x1, y1, x2, y2 in (map(int, b) for b in boxes):
        outline = np.zeros_like(changed)
        outline[max(y1 - band, 0):y2 + band + 1, max(x1 - band, 0):x2 + band + 1] = True
        outline[y1 + band + 1:max(y2 - band, y1 + band + 1), x1 + band + 1:max(x2 - band, x1 + band + 1)] = False
        near |= outline  # boxes overlap: one box's interior may hold another's outline
    return int((changed & ~near).sum())


def test_detect_hide_labels_draws_boxes_only(tmp_path: Path, bus_jpg: Path, yolov5n_pt: Path) -> None:
    """A lossless (PNG) source shows exactly what was drawn: with --hide-labels only the box outlines change."""
    src = tmp_path / "bus.png"
    cv2.imwrite(str(src), cv2.imread(str(bus_jpg)))
    im0 = cv2.imread(str(src))
    outside = {}
    for name, hide in (("labels", False), ("hidden", True)):
        res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=str(src), imgsz=320, project=str(tmp_path),
                                       name=name, hide_labels=hide))
        out = cv2.imread(str(Path(res["save_dir"]) / "bus.png"))
        changed = np.any(out != im0, axis=2)
        boxes = [d["xyxy"] for d in res["images"][0]["detections"]]
        assert boxes and changed.sum() > 1000
        outside[name] = _outside_box_edges(changed, boxes, band=3 + 2)  # line width 3, plus anti-aliasing
    assert outside["hidden"] == 0
    assert outside["labels"] > 500  # the label tabs above the boxes


@pytest.mark.parametrize("suffix,fourcc", [("mp4", "mp4v"), ("avi", "MJPG")])
def test_detect_video_keeps_every_frame(tmp_path: Path, bus_jpg: Path, yolov5n_pt: Path, suffix: str,
                                        fourcc: str) -> None:
    """An N-frame video comes back as an N-frame annotated video (.mp4), with per-frame labels and results."""
    n_frames, size = 6, (320, 240)
    frame = cv2.resize(cv2.imread(str(bus_jpg)), size)
    video = tmp_path / f"clip.{suffix}"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    for _ in range(n_frames):
        writer.write(frame)
    writer.release()
    assert _count_frames(video)[0] == n_frames

    res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=str(video), imgsz=320, project=str(tmp_path),
                                   save_txt=True))
    save_dir = Path(res["save_dir"])
    assert [r["frame"] for r in res["images"]] == list(range(1, n_frames + 1))
    assert all(r["detections"] for r in res["images"])
    out = save_dir / "clip.mp4"
    assert out.is_file()
    assert _count_frames(out) == (n_frames, size[::-1])
    assert sorted(p.name for p in (save_dir / "labels").glob("*.txt")) == sorted(
        f"clip_{i}.txt" for i in range(1, n_frames + 1))


def test_detect_txt_list_and_glob_sources(tmp_path: Path, images_dir: Path, yolov5n_pt: Path) -> None:
    demo = sorted(str(p) for p in images_dir.glob("*.jpg"))
    assert len(demo) >= 2
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(demo[:2]) + "\n")
    for name, source, expected in (("list", listing, demo[:2]), ("glob", images_dir / "*.jpg", demo)):
        res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=str(source), imgsz=320, project=str(tmp_path),
                                       name=name))
        save_dir = Path(res["save_dir"])
        assert sorted(r["path"] for r in res["images"]) == expected, name
        assert sorted(p.name for p in save_dir.glob("*.jpg")) == sorted(Path(p).name for p in expected)
        assert json.loads((save_dir / "results.json").read_text())["images"] == res["images"]
        assert any(r["detections"] for r in res["images"])


# ----------------------------------------------------------------------------------------------- 4. bad inputs
def test_missing_weights_named(tmp_path: Path, mini_data: Path, bus_jpg: Path) -> None:
    missing = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        val_run(_val_opts(mini_data, missing, tmp_path))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        detect_run(DetectOptions(weights=str(missing), source=str(bus_jpg), project=str(tmp_path)))


def test_detect_missing_source_named(tmp_path: Path, yolov5n_pt: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no_such_image.jpg"):
        detect_run(DetectOptions(weights=str(yolov5n_pt), source=str(tmp_path / "no_such_image.jpg"),
                                 project=str(tmp_path)))


def test_missing_dataset_names_path_and_setting(tmp_path: Path, yolov5n_pt: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("YOLO_DATASETS_DIR", str(root))
    cfg = yaml.safe_load(COCO128_YAML.read_text())
    cfg["path"] = "no_such_dataset"
    cfg.pop("download")  # no outside network in tests (downloads: tests/test_dataset_download.py)
    data = tmp_path / "gone.yaml"
    data.write_text(yaml.safe_dump(cfg))
    with pytest.raises(FileNotFoundError) as e:
        val_run(_val_opts(data, yolov5n_pt, tmp_path / "runs"))
    msg = str(e.value)
    assert str(root / "no_such_dataset" / "images" / "val2017") in msg
    assert f"YOLO_DATASETS_DIR={root}" in msg


def test_val_goes_on_past_bad_images_and_label_rows(tmp_path: Path, coco128_dir: Path, yolov5n_pt: Path,
                                                    caplog: pytest.LogCaptureFixture,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A garbage .jpg, a 4-value row, out-of-range coordinates and class 90 (nc 80): each is skipped with a
    warning naming the file (and line), and the good images and rows are validated."""
    data = make_mini_dataset(tmp_path / "mini", coco128_dir)
    root = data.parent
    labels = sorted((root / "labels" / "val").glob("*.txt"))
    good = len(_label_rows(root / "labels" / "val"))
    bad = {labels[0]: "0 0.5 0.5 0.2", labels[1]: "1 1.5 0.5 0.2 0.2", labels[2]: "90 0.5 0.5 0.1 0.1"}
    for file, row in bad.items():
        file.write_text(file.read_text().rstrip("\n") + "\n" + row + "\n")
    garbage = root / "images" / "val" / "000000999999.jpg"
    garbage.write_bytes(b"this is not a JPEG" * 100)
    (root / "labels" / "val" / "000000999999.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    caplog.set_level(logging.WARNING)
    res = val_run(_val_opts(data, yolov5n_pt, tmp_path / "runs"))
    assert res["images"] == MINI_IMAGES  # the good ones
    assert res["instances"] == good  # the good rows of the edited files are kept
    assert res["mAP50_95"] > 0.05
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(garbage) in w for w in warnings), "no warning names the unreadable image"
    for file in bad:
        line = len(file.read_text().splitlines())
        assert any(f"{file}:{line}" in w for w in warnings), f"no warning names {file}:{line}"
    assert any("90" in w and "nc=80" in w for w in warnings)
    # Not --verbose and 80 classes: the table has the 'all' row only.
    out = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["all", str(MINI_IMAGES), str(good)] for line in out)
    assert not any(line.startswith(f"{'person':>22}") for line in out)


def test_detect_skips_unreadable_image(tmp_path: Path, bus_jpg: Path, yolov5n_pt: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(bus_jpg, folder / "bus.jpg")
    (folder / "broken.jpg").write_bytes(b"\x00garbage" * 50)
    caplog.set_level(logging.WARNING)
    res = detect_run(DetectOptions(weights=str(yolov5n_pt), source=str(folder), imgsz=320, project=str(tmp_path)))
    assert [Path(r["path"]).name for r in res["images"]] == ["bus.jpg"]
    assert any("broken.jpg" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_cli_missing_weights_one_line_error(tmp_path: Path, coco128_dir: Path) -> None:
    """``python val.py --weights missing.pt``: exit status 2 and one 'ERROR:' line naming the file, no traceback."""
    env = {**os.environ, "YOLO_TRACEBACK": ""}
    proc = subprocess.run([sys.executable, str(REPO / "val.py"), "--weights", "missing.pt", "--data",
                           str(COCO128_YAML), "--project", str(tmp_path / "runs")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ERROR:") and "missing.pt" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_default_data_resolves_from_any_directory(tmp_path: Path, coco128_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """val.py's default --data (data/coco128.yaml) must not depend on the working directory."""
    from utils.data import load_dataset_config

    monkeypatch.chdir(tmp_path)
    opt = val.parse_opt(["--weights", "yolov5n.pt"])
    cfg = load_dataset_config(opt.data)
    assert Path(cfg["yaml_file"]) == COCO128_YAML.resolve()
