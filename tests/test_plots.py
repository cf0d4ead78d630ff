"""Every plotting function writes a readable, non-empty image; the annotator draws."""

import cv2
import numpy as np
import pytest
import torch

from utils.metrics import ConfusionMatrix, ap_per_class
from utils.plots import (Annotator, colors, gaussian_smooth, mosaic_tiles, plot_confusion_matrix, plot_images,
                         plot_labels, plot_results, plot_val_curves, save_one_box)


def _read(path):
    assert path.is_file() and path.stat().st_size > 0, path
    im = cv2.imread(str(path))
    assert im is not None and im.ndim == 3 and im.shape[0] > 10, path
    return im


def test_colors_palette():
    assert colors(0) == (255, 56, 56) and colors(0, bgr=True) == (56, 56, 255)
    assert colors(20) == colors(0) and len({colors(i) for i in range(20)}) == 20


def test_annotator_draws():
    im = np.zeros((120, 160, 3), np.uint8)
    ann = Annotator(im, line_width=2)
    ann.box_label([20, 40, 100, 100], "person 0.91", color=colors(3, bgr=True))
    out = ann.result()
    assert out.shape == im.shape and (out != 0).any()
    assert (out[40, 20:100] != 0).any() and (out[70, 60] == 0).all()  # an outline, not a fill
    assert (out[25:40, 20:60] != 0).any()  # the label tab above the box
    with pytest.raises(ValueError, match="HWC"):
        Annotator(np.zeros((10, 10), np.uint8))


def test_save_one_box(tmp_path):
    im = np.random.default_rng(0).integers(0, 255, (100, 200, 3), dtype=np.uint8)
    crop = save_one_box([50, 20, 90, 60], im, file=tmp_path / "crops" / "a.jpg", gain=1.0, pad=0)
    assert crop.shape == (40, 40, 3) and np.array_equal(crop, im[20:60, 50:90])
    save_one_box(torch.tensor([0, 0, 300, 300]), im, file=tmp_path / "crops" / "a.jpg")
    assert _read(tmp_path / "crops" / "a.jpg").shape == (40, 40, 3)
    assert _read(tmp_path / "crops" / "a2.jpg").shape == (100, 200, 3)  # clipped, not overwritten
    rgb = save_one_box([0, 0, 10, 10], im, save=False, BGR=False, gain=1.0, pad=0)
    assert np.array_equal(rgb, im[:10, :10, ::-1])


def test_metric_curves_and_confusion_matrix(tmp_path):
    rng = np.random.default_rng(1)
    n = 60
    tp = rng.random((n, 10)) < 0.6
    out = ap_per_class(tp, rng.random(n), rng.integers(0, 3, n), rng.integers(0, 3, 40))
    assert out["ap"].shape == (3, 10) and not any(tmp_path.iterdir())  # metrics write no files
    files = plot_val_curves(out, tmp_path, names={0: "cat", 1: "dog", 2: "bird"}, prefix="val_")
    assert files == [tmp_path / f"val_{name}_curve.png" for name in ("PR", "F1", "P", "R")]
    for f in files:
        _read(f)

    cm = ConfusionMatrix(nc=3)
    cm.process_batch(torch.tensor([[0.0, 0, 10, 10, 0.9, 1]]), torch.tensor([[1.0, 0, 0, 10, 10]]))
    assert plot_confusion_matrix(cm.matrix, tmp_path / "confusion_matrix.png", ["cat", "dog", "bird"]) == \
        tmp_path / "confusion_matrix.png"
    _read(tmp_path / "confusion_matrix.png")


@pytest.mark.parametrize("with_conf", [False, True])
def test_plot_images(tmp_path, with_conf):
    images = torch.rand(5, 3, 64, 96)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.6], [3, 0, 0.2, 0.3, 0.1, 0.2], [4, 5, 0.7, 0.7, 0.3, 0.3]])
    if with_conf:
        targets = torch.cat((targets, torch.tensor([[0.9], [0.1], [0.5]])), 1)
    f = plot_images(images, targets, paths=[f"im{i}.jpg" for i in range(5)], fname=tmp_path / "batch.jpg",
                    names=["a", "b", "c", "d", "e", "f"])
    im = _read(f)
    assert im.shape == (3 * 64, 3 * 96, 3)  # 5 images -> a 3 x 3 grid
    assert (im[2 * 64:, 2 * 96:] > 250).all()  # unused tiles stay white
    big = plot_images(torch.rand(2, 3, 640, 640) * 255, targets[:, :6], fname=tmp_path / "big.jpg", max_size=320)
    assert _read(big).shape[:2] == (320, 320)


def test_mosaic_tiles_draw_as_the_batch_does(tmp_path):
    """Tiles kept from a batch (uint8, shrunk to the mosaic's tile) give the mosaic of the batch itself."""
    images = torch.rand(16, 3, 160, 120)
    tiles = mosaic_tiles(images, max_size=320)
    assert tiles.dtype == torch.uint8 and tiles.shape == (16, 3, 80, 60)  # 4 x 4 tiles of at most 80 pixels
    batch = (images * 255).to(torch.uint8)
    kept = mosaic_tiles(batch[:2])
    assert kept.shape == (2, 3, 160, 120) and torch.equal(kept, batch[:2])  # small enough already: kept as they are
    assert kept.untyped_storage().nbytes() == kept.numel()  # a copy of those two, not a view of the whole batch
    boxes = torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.6], [5, 0, 0.2, 0.3, 0.1, 0.2]])
    a = _read(plot_images(images, boxes, fname=tmp_path / "a.jpg", max_size=320))
    b = _read(plot_images(tiles, boxes, fname=tmp_path / "b.jpg", max_size=320))
    assert a.shape == b.shape == (320, 240, 3) and np.abs(a.astype(int) - b.astype(int)).mean() < 12
    black = plot_images(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), boxes[:0], fname=tmp_path / "black.jpg")
    assert _read(black)[16, 16].max() < 30  # uint8 zeros stay black (not taken for 0-1 floats and scaled)


def test_plot_results(tmp_path):
    cols = ["epoch", "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision",
            "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss",
            "val/cls_loss", "x/lr0", "x/lr1", "x/lr2"]
    rows = [[e] + [round(1 / (e + 1) + 0.01 * j, 4) for j in range(1, len(cols))] for e in range(8)]
    csv = tmp_path / "results.csv"
    # YOLOv5 pads its headers with spaces
    csv.write_text("\n".join([",".join(f"{c:>20s}" for c in cols)] + [",".join(map(str, r)) for r in rows]))
    assert plot_results(csv) == tmp_path / "results.png"
    _read(tmp_path / "results.png")
    bad = tmp_path / "bad" / "results.csv"
    bad.parent.mkdir()
    bad.write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        plot_results(bad)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plot_results(tmp_path / "missing.csv")


def test_plot_results_refuses_non_numeric_rows(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text("epoch,train/box_loss\n0,abc\n")
    with pytest.raises(ValueError, match="non-numeric"):
        plot_results(f)


@pytest.mark.parametrize("n", [2, 3, 7, 40])
def test_gaussian_smooth_matches_scipy(n):
    from scipy.ndimage import gaussian_filter1d

    y = np.random.default_rng(n).random(n)
    assert np.allclose(gaussian_smooth(y, 3), gaussian_filter1d(y, 3), atol=1e-12)


def test_plot_labels(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.concatenate((rng.integers(0, 4, (200, 1)), rng.random((200, 2)), rng.random((200, 2)) * 0.3), 1)
    f = plot_labels(labels, names=["a", "b", "c", "d"], save_dir=tmp_path)
    assert f == tmp_path / "labels.jpg"
    _read(f)
    corr = _read(tmp_path / "labels_correlogram.jpg")  # beside it, as YOLOv5's
    assert corr.shape == (1600, 1600, 3)
    assert (corr[:400, -400:] > 250).all()  # a corner grid: nothing above the diagonal
