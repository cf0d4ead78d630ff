"""Data pipeline: dataset YAMLs, file lists, label checks and caches, letterbox, rect batches, augmentation, loaders."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils.data import (
    LoadImages,
    LoadImagesAndLabels,
    create_dataloader,
    img2label_paths,
    letterbox,
    list_image_files,
    load_dataset_config,
    mosaic4,
    random_perspective,
    scan_labels,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Label/image caches of read-only datasets go to a per-test folder, never to ~/.cache or the dataset."""
    d = tmp_path / "user-cache"
    monkeypatch.setenv("YOLO_CACHE_DIR", str(d))
    return d


def _write_image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), im)
    return path


def _tree_snapshot(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


# ------------------------------------------------------------------------------------------------ dataset YAML
def test_yaml_relative_path_resolves_under_datasets_dir(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    (root / "toy" / "images" / "val").mkdir(parents=True)
    monkeypatch.setenv("YOLO_DATASETS_DIR", str(root))
    yml = tmp_path / "toy.yaml"
    yml.write_text("path: toy\ntrain: [images/train, /abs/elsewhere]\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    cfg = load_dataset_config(yml)
    assert cfg["path"] == str((root / "toy").resolve())
    assert cfg["val"] == str((root / "toy" / "images" / "val").resolve())
    assert cfg["train"] == [str((root / "toy" / "images" / "train").resolve()), "/abs/elsewhere"]
    assert cfg["test"] is None
    assert cfg["names"] == ["cat", "dog"] and cfg["nc"] == 2
    assert cfg["yaml_file"] == str(yml.resolve())


def test_yaml_missing_val_names_path_setting_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_DATASETS_DIR", str(tmp_path / "nowhere"))
    yml = tmp_path / "gone.yaml"
    yml.write_text("path: gone\ntrain: images/train\nval: images/val\nnames: [a]\n"
                   "download: https://example.com/gone.zip\n")
    with pytest.raises(FileNotFoundError) as e:
        load_dataset_config(yml, autodownload=False)  # downloads: tests/test_dataset_download.py (local server)
    msg = str(e.value)
    assert str(yml) in msg
    assert str(tmp_path / "nowhere" / "gone" / "images" / "val") in msg
    assert "YOLO_DATASETS_DIR=" + str(tmp_path / "nowhere") in msg
    assert "not downloading https://example.com/gone.zip (autodownload is off)" in msg


def test_yaml_errors_name_file_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_DATASETS_DIR", str(tmp_path))
    (tmp_path / "images").mkdir()
    no_names = tmp_path / "no_names.yaml"
    no_names.write_text("path: .\ntrain: images\nval: images\n")
    with pytest.raises(ValueError, match="no_names.yaml.*'names'"):
        load_dataset_config(no_names)
    bad_nc = tmp_path / "bad_nc.yaml"
    bad_nc.write_text("path: .\ntrain: images\nval: images\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(ValueError, match="bad_nc.yaml.*'nc' is 3.*2 entries"):
        load_dataset_config(bad_nc)
    with pytest.raises(FileNotFoundError, match="missing_file.yaml"):
        load_dataset_config(tmp_path / "missing_file.yaml")


def test_coco128_yaml(coco128_dir):
    cfg = load_dataset_config(REPO / "data" / "coco128.yaml")
    assert Path(cfg["path"]) == coco128_dir.resolve()
    assert Path(cfg["val"]) == (coco128_dir / "images" / "val2017").resolve()
    assert cfg["nc"] == 80 and cfg["names"][0] == "person" and cfg["names"][79] == "toothbrush"
    assert load_dataset_config("coco128.yaml")["yaml_file"] == cfg["yaml_file"]  # found under <repo>/data/


# ------------------------------------------------------------------------------------------------ files
def test_a_symlink_loop_in_an_image_folder_is_walked_once(tmp_path: Path) -> None:
    """images/train/loop -> . (and a link to a sibling folder) made train.py walk forever while its memory grew
    (issue 31, item 1): links are followed, each real folder once, so each image is listed once."""
    import subprocess
    import sys

    train = tmp_path / "images" / "train"
    a = _write_image(train / "a.jpg")
    b = _write_image(tmp_path / "images" / "more" / "b.jpg")
    os.symlink(".", train / "loop")
    os.symlink(tmp_path / "images" / "more", train / "more")
    os.symlink(train, tmp_path / "images" / "more" / "back")
    assert list_image_files(train) == [str(a), str(train / "more" / "b.jpg")]
    code = "import sys; from utils.data import list_image_files; print(len(list_image_files(sys.argv[1])))"
    p = subprocess.run([sys.executable, "-c", code, str(train)], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0 and p.stdout.strip() == "2"
    assert b.exists()


def test_file_sources_and_label_paths(tmp_path):
    a = _write_image(tmp_path / "ds" / "images" / "a.jpg")
    b = _write_image(tmp_path / "ds" / "images" / "sub" / "b.png")
    (tmp_path / "ds" / "images" / "notes.md").write_text("x")
    lst = tmp_path / "ds" / "list.txt"
    lst.write_text("images/a.jpg\n./images/sub/b.png\n\n")
    assert list_image_files(tmp_path / "ds" / "images") == [str(a), str(b)]  # recursive, non-images ignored
    assert list_image_files(lst) == [str(a), str(b)]  # relative entries are relative to the list's folder
    assert list_image_files(str(tmp_path / "ds" / "images" / "*.jpg")) == [str(a)]
    assert list_image_files([a, b]) == [str(a), str(b)]
    with pytest.raises(FileNotFoundError, match="nope"):
        list_image_files(tmp_path / "nope")
    assert img2label_paths(["/d/images/x/images/im.1.jpg", "/d/other/im.png"]) == [
        "/d/images/x/labels/im.1.txt", "/d/other/im.txt"]


# ------------------------------------------------------------------------------------------------ coco128 scan
@pytest.mark.parametrize("split,n_images,n_boxes", [("val2017", 128, 898), ("train2017", 128, 929)])
def test_coco128_scan_counts_and_cache(coco128_dir, _user_cache, split, n_images, n_boxes, caplog):
    # train2017 has 941 label rows, but 12 of them sit in two label files whose images are absent
    # (000000000656, 000000000659) and two images have no label file: 929 boxes belong to the 128 images.
    before = _tree_snapshot(coco128_dir)
    ims = list_image_files(coco128_dir / "images" / split)
    with caplog.at_level(logging.INFO):
        scan = scan_labels(ims, img2label_paths(ims), nc=80)
    assert len(scan.im_files) == n_images and sum(len(x) for x in scan.labels) == n_boxes
    assert scan.nc == 0 and scan.nf + scan.nm + scan.ne == n_images
    assert f"Scanning {coco128_dir / 'labels' / split}... {scan.nf} found, {scan.nm} missing" in caplog.text
    assert scan.shapes.shape == (n_images, 2) and (scan.shapes >= 10).all()
    # The dataset is read-only: the cache goes to the user cache dir, as a pickle-free archive.
    caches = list((_user_cache / "labels").glob(f"{split}-*.cache"))
    assert len(caches) == 1
    with np.load(caches[0], allow_pickle=False) as z:
        assert int(z["labels"].shape[0]) == n_boxes
    again = scan_labels(ims, img2label_paths(ims), nc=80)
    assert again.from_cache and all(np.array_equal(x, y) for x, y in zip(scan.labels, again.labels))
    assert _tree_snapshot(coco128_dir) == before  # nothing written into the dataset


def test_label_cache_is_refreshed_when_stale(tmp_path, _user_cache):
    im = _write_image(tmp_path / "images" / "a.jpg")
    lb = tmp_path / "labels" / "a.txt"
    lb.parent.mkdir()
    lb.write_text("0 0.5 0.5 0.2 0.2\n")
    first = scan_labels([str(im)], img2label_paths([im]), nc=2)
    assert (tmp_path / "labels.cache").is_file()  # writable dataset: cache next to the labels dir
    lb.write_text("1 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n")
    os.utime(lb, ns=(lb.stat().st_atime_ns, lb.stat().st_mtime_ns + 10**9))
    second = scan_labels([str(im)], img2label_paths([im]), nc=2)
    assert not second.from_cache and len(first.labels[0]) == 1 and len(second.labels[0]) == 2
    assert scan_labels([str(im)], img2label_paths([im]), nc=2).from_cache


# ------------------------------------------------------------------------------------------------ label checks
def test_corrupt_image_is_skipped_with_warning(tmp_path, caplog):
    good = _write_image(tmp_path / "images" / "good.jpg")
    bad = tmp_path / "images" / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg at all" * 10)
    tiny = _write_image(tmp_path / "images" / "tiny.png", w=8, h=8)
    (tmp_path / "labels").mkdir()
    for p in (good, bad, tiny):
        (tmp_path / "labels" / (p.stem + ".txt")).write_text("0 0.5 0.5 0.5 0.5\n")
    with caplog.at_level(logging.WARNING):
        ds = LoadImagesAndLabels(tmp_path / "images", img_size=64)
    assert ds.im_files == [str(good)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(bad) in m and "corrupt" in m for m in warnings)
    assert any(str(tiny) in m and "below 10 px" in m for m in warnings)


def test_malformed_label_rows_dropped_with_file_and_line(tmp_path, caplog):
    im = _write_image(tmp_path / "images" / "x.jpg")
    lb = tmp_path / "labels" / "x.txt"
    lb.parent.mkdir()
    lb.write_text("0 0.5 0.5 0.2 0.2\n"
                  "1 0.5 0.5 0.2\n"  # 4 values
                  "90 0.5 0.5 0.2 0.2\n"  # class out of range for nc=80
                  "3 1.7 0.5 0.2 0.2\n"  # not normalised
                  "2 0.25 0.25 0.1 0.1\n"
                  "2 0.25 0.25 0.1 0.1\n")  # duplicate
    with caplog.at_level(logging.WARNING):
        scan = scan_labels([str(im)], img2label_paths([im]), nc=80)
    np.testing.assert_allclose(scan.labels[0], [[0, 0.5, 0.5, 0.2, 0.2], [2, 0.25, 0.25, 0.1, 0.1]])
    text = caplog.text
    assert f"{lb}:2: expected 5 values" in text
    assert f"{lb}:3: class id 90 out of range for nc=80" in text
    assert f"{lb}:4: coordinates must be normalised to [0, 1], got 1.7" in text
    assert f"{lb}: 1 duplicate label rows removed" in text


def test_polygon_label_rows_become_their_boxes(tmp_path, caplog):
    """Segment rows (Roboflow's export) mixed with box rows: each polygon loads as the min/max box of its points;
    rows with an odd number of coordinates are dropped with one message naming file and line."""
    im = _write_image(tmp_path / "images" / "x.jpg")
    lb = tmp_path / "labels" / "x.txt"
    lb.parent.mkdir()
    lb.write_text("0 0.5 0.5 0.2 0.2\n"
                  "1 0.1 0.2 0.4 0.25 0.3 0.6 0.15 0.5\n"  # quadrilateral: x 0.1..0.4, y 0.2..0.6
                  "2 0.6 0.6 0.9 0.7 0.7 0.95\n"  # triangle: x 0.6..0.9, y 0.6..0.95
                  "3 0.1 0.1 0.2 0.2 0.3\n"  # 5 coordinates
                  "4 0.1 0.1 0.2 0.2 0.3 0.3 0.4\n"  # 7 coordinates
                  "5 0.1 0.2 0.3\n")  # too short for either
    with caplog.at_level(logging.WARNING):
        ds = LoadImagesAndLabels(tmp_path / "images", img_size=64, nc=80)
    np.testing.assert_allclose(ds.labels[0], [[0, 0.5, 0.5, 0.2, 0.2],
                                              [1, 0.25, 0.4, 0.3, 0.4],
                                              [2, 0.75, 0.775, 0.3, 0.35]], atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{lb}:4: polygon row with an odd number of coordinates (5): expected x y pairs; row dropped" in warnings
    assert f"{lb}:5: polygon row with an odd number of coordinates (7): expected x y pairs; row dropped" in warnings
    assert any(m.startswith(f"{lb}:6: expected 5 values 'class x y w h' or a polygon") for m in warnings)
    assert len(warnings) == 3


# ------------------------------------------------------------------------------------------------ letterbox / rect
def test_letterbox_shapes_and_padding():
    im = np.zeros((480, 640, 3), np.uint8)
    out, ratio, (dw, dh) = letterbox(im, 640)  # auto: only pad to a multiple of 32
    assert out.shape == (480, 640, 3) and ratio == (1.0, 1.0) and (dw, dh) == (0.0, 0.0)
    out, ratio, (dw, dh) = letterbox(im, 640, auto=False)
    assert out.shape == (640, 640, 3) and (dw, dh) == (0.0, 80.0) and out[0, 0, 0] == 114
    out, ratio, (dw, dh) = letterbox(np.zeros((315, 640, 3), np.uint8), (448, 672), auto=False, scaleup=False)
    assert out.shape == (448, 672, 3) and ratio == (1.0, 1.0) and (dw, dh) == (16.0, 66.5)
    assert (out[:66, 20] == 114).all() and (out[66:381, 20] == 0).all() and (out[381:, 20] == 114).all()
    out, ratio, _ = letterbox(np.zeros((100, 50, 3), np.uint8), 320, auto=True)  # upscale 3.2x, pad to /32
    assert out.shape == (320, 160, 3) and ratio == (3.2, 3.2)
    out, ratio, _ = letterbox(np.zeros((100, 50, 3), np.uint8), 320, auto=False, scale_fill=True)
    assert out.shape == (320, 320, 3) and ratio == (6.4, 3.2)


def test_rect_batches_val(coco128_dir):
    ds = LoadImagesAndLabels(coco128_dir / "images" / "val2017", img_size=640, batch_size=32, rect=True, pad=0.5,
                             nc=80)
    assert ds.batch_shapes.shape == (4, 2) and (ds.batch_shapes % 32 == 0).all()
    assert (ds.batch_shapes <= 640 + 32).all()
    ar = ds.shapes[:, 1] / ds.shapes[:, 0]
    assert (np.diff(ar) >= 0).all()  # sorted by aspect ratio h/w
    for i in (0, 40, 127):
        img, labels, path, (hw0, (ratio, pad)) = ds[i]
        assert path == ds.im_files[i] and hw0 == (ds.shapes[i][1], ds.shapes[i][0])
        assert tuple(img.shape) == (3, *ds.batch_shapes[ds.batch[i]]) and img.dtype == torch.uint8
        assert labels.shape == (len(ds.labels[i]), 6) and (labels[:, 2:] >= 0).all() and (labels[:, 2:] <= 1).all()
    loader, _ = create_dataloader(coco128_dir / "images" / "val2017", 640, 32, 32, rect=True, pad=0.5, workers=0)
    ims, targets, paths, shapes = next(iter(loader))
    assert tuple(ims.shape) == (32, 3, *ds.batch_shapes[0]) and len(paths) == 32 and len(shapes) == 32
    assert targets.shape[1] == 6 and set(targets[:, 0].long().tolist()) <= set(range(32))
    assert (targets[:, 0].diff() >= 0).all()


# ------------------------------------------------------------------------------------------------ augmentation
def test_mosaic_and_perspective_shapes_and_boxes():
    rng = np.random.default_rng(0)
    s = 160
    images = [np.full((s, s * 3 // 4, 3), 50 * i, np.uint8) for i in range(4)]
    labels = [np.array([[i, 0.5, 0.5, 0.4, 0.4]], np.float32) for i in range(4)]
    img4, lb4 = mosaic4(images, labels, s, rng)
    assert img4.shape == (2 * s, 2 * s, 3) and lb4.shape == (4, 5)
    assert (lb4[:, 1:] >= 0).all() and (lb4[:, 1:] <= 2 * s).all()
    out, lb = random_perspective(img4, lb4, rng, degrees=10, translate=0.1, scale=0.5, shear=2,
                                 border=(-s // 2, -s // 2))
    assert out.shape == (s, s, 3)
    assert (lb[:, [1, 3]] >= 0).all() and (lb[:, [1, 3]] <= s).all()
    assert (lb[:, [2, 4]] >= 0).all() and (lb[:, [2, 4]] <= s).all()
    assert (lb[:, 3] - lb[:, 1] > 2).all() and (lb[:, 4] - lb[:, 2] > 2).all()


def test_training_items_keep_labels_inside_image(coco128_dir):
    hyp = {"degrees": 5.0, "shear": 2.0, "mixup": 0.5, "flipud": 0.5}
    ds = LoadImagesAndLabels(coco128_dir / "images" / "train2017", img_size=256, augment=True, hyp=hyp, nc=80)
    torch.manual_seed(0)
    n_boxes = 0
    for i in range(8):
        img, labels, _, shapes = ds[i]
        assert tuple(img.shape) == (3, 256, 256) and shapes is None  # mosaic: no mapping back
        xywh = labels[:, 2:]
        assert ((xywh[:, :2] - xywh[:, 2:] / 2) >= -1e-6).all() and ((xywh[:, :2] + xywh[:, 2:] / 2) <= 1 + 1e-6).all()
        assert (xywh[:, 2:] > 0).all() and (labels[:, 1] < 80).all()
        n_boxes += len(labels)
    assert n_boxes > 0
    plain = LoadImagesAndLabels(coco128_dir / "images" / "train2017", img_size=256, augment=True,
                                hyp={"mosaic": 0.0}, nc=80)
    img, labels, _, shapes = plain[3]
    assert tuple(img.shape) == (3, 256, 256) and shapes[0] == (plain.shapes[3][1], plain.shapes[3][0])
    batch = LoadImagesAndLabels.collate_fn([ds[0], ds[1]])
    assert batch[0].shape == (2, 3, 256, 256) and set(batch[1][:, 0].tolist()) <= {0.0, 1.0}


def test_image_caches_give_same_items(coco128_dir, _user_cache, tmp_path):
    src = sorted((coco128_dir / "images" / "val2017").glob("*.jpg"))[:4]
    before = _tree_snapshot(coco128_dir)
    plain = LoadImagesAndLabels(src, img_size=320, nc=80)
    ram = LoadImagesAndLabels(src, img_size=320, nc=80, cache_images="ram")
    disk = LoadImagesAndLabels(src, img_size=320, nc=80, cache_images="disk")
    assert all(im is not None for im in ram.ims)
    assert all(p is not None and p.parent == _user_cache / "images" for p in disk.npy_files)  # dataset read-only
    for i in range(4):
        for other in (ram, disk):
            assert torch.equal(plain[i][0], other[i][0]) and torch.equal(plain[i][1], other[i][1])
    assert _tree_snapshot(coco128_dir) == before
    local = _write_image(tmp_path / "ds" / "images" / "a.jpg")
    assert LoadImagesAndLabels(local, img_size=64, cache_images="disk").npy_files == [local.with_suffix(".npy")]
    with pytest.raises(ValueError, match="cache_images"):
        LoadImagesAndLabels(src, cache_images="gpu")


# ------------------------------------------------------------------------------------------------ loaders
def test_create_dataloader_empty_dir_names_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty")):
        create_dataloader(tmp_path / "empty", 64, 4, 32)


def test_load_images_folder_with_video(tmp_path, caplog):
    a = _write_image(tmp_path / "src" / "a.jpg", 100, 60)
    _write_image(tmp_path / "src" / "b.png", 60, 100, seed=1)
    (tmp_path / "src" / "c.jpg").write_bytes(b"garbage")
    vid = tmp_path / "src" / "v.mp4"
    writer = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for k in range(5):
        writer.write(np.full((64, 96, 3), 40 * k, np.uint8))
    writer.release()

    with caplog.at_level(logging.WARNING):
        items = list(LoadImages(tmp_path / "src", img_size=64, stride=32))
    assert len(items) == 7  # a, b, 5 frames; the corrupt c.jpg is skipped with a warning
    assert "c.jpg" in caplog.text
    path, im, im0, cap, info = items[0]
    assert path == str(a) and cap is None and info == f"image 1/4 {a}: "
    assert im.shape == (3, 64, 64) and im0.shape == (60, 100, 3) and im.flags["C_CONTIGUOUS"]
    assert np.array_equal(im[:, 13:51], letterbox(im0, 64)[0][13:51].transpose(2, 0, 1)[::-1])  # RGB of the BGR
    vpath, vim, vim0, vcap, vinfo = items[4]
    assert vpath == str(vid) and vcap is not None and vim0.shape == (64, 96, 3)
    assert vinfo == f"video 4/4 (frame 3/5) {vid}: "
    with pytest.raises(FileNotFoundError, match="missing_source"):
        LoadImages(tmp_path / "missing_source")


def _png_header(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w x h pixels, with a few bytes of data: nothing is decoded before the check."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def test_huge_images_and_label_files_are_skipped_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """A 20000x20000 PNG (by its header) and a 20 MB label file (sparse) are skipped naming the file, the limit and the
    setting that raises it (issue 31, item 1); raised, they are read (and found broken)."""
    from utils.data.labels import verify_image_label

    big = _png_header(tmp_path / "images" / "big.png", 20000, 20000)
    r = verify_image_label(str(big), str(tmp_path / "labels" / "big.txt"))
    assert r.status == "corrupt" and r.msgs == [
        f"{big}: image of 400,000,000 pixels is above the limit of 100,000,000, skipped (raise it with "
        "YOLO_MAX_IMAGE_PIXELS=N)"]
    monkeypatch.setenv("YOLO_MAX_IMAGE_PIXELS", str(20000 * 20000))
    assert "unreadable" in verify_image_label(str(big), str(tmp_path / "labels" / "big.txt")).msgs[0]
    monkeypatch.setenv("YOLO_MAX_IMAGE_PIXELS", str(100))  # below PIL's own limit: the header's size is named
    assert verify_image_label(str(ok := _write_image(tmp_path / "images" / "ok.jpg")), "none.txt").msgs[0].startswith(
        f"{ok}: image of 64x48 = 3,072 pixels is above the limit of 100, skipped")
    monkeypatch.delenv("YOLO_MAX_IMAGE_PIXELS")
    label = tmp_path / "labels" / "ok.txt"
    label.parent.mkdir(parents=True)
    with open(label, "wb") as f:
        f.truncate(20 * 2**20)  # sparse: 20 MB by its size, nothing on disk
    r = verify_image_label(str(ok), str(label))
    assert r.status == "corrupt" and r.msgs == [
        f"{label}: label file of 20,971,520 bytes is above the limit of 16,777,216, image skipped (raise it with "
        "YOLO_MAX_LABEL_BYTES=N)"]
    monkeypatch.setenv("YOLO_MAX_LABEL_BYTES", str(2**30))
    assert verify_image_label(str(ok), str(label)).msgs != r.msgs
