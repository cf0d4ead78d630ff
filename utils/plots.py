"""Drawing and plotting: box annotation, crops, batch mosaics, metric curves, results and labels.

Figures are built with ``matplotlib.figure.Figure`` and saved directly. That API needs no pyplot
and no backend switch (it renders through Agg for files), so importing or calling these functions
never changes the backend of a notebook or GUI session and never leaks open pyplot figures.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import torch

from utils.boxes import clip_boxes, xywh2xyxy, xyxy2xywh
from utils.metrics import smooth

__all__ = [
    "new_figure",
    "read_results_csv",
    "colors",
    "Annotator",
    "save_one_box",
    "plot_pr_curve",
    "plot_mc_curve",
    "plot_confusion_matrix",
    "plot_val_curves",
    "mosaic_tiles",
    "plot_images",
    "plot_results",
    "plot_labels",
    "plot_label_correlogram",
]

# 20 distinct colours (RGB hex), the palette YOLOv5 users know from its plots
_PALETTE = (
    "FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
    "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7",
)


def colors(i: int, bgr: bool = False) -> tuple[int, int, int]:
    """Colour ``i`` of the 20-colour palette (cycling), as an RGB tuple or BGR when ``bgr``."""
    h = _PALETTE[int(i) % len(_PALETTE)]
    rgb = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    return rgb[::-1] if bgr else rgb


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (9, 6)):
    """A pyplot-free figure and its axes (see the module docstring)."""
    from matplotlib.figure import Figure  # matplotlib is only imported when something is plotted

    fig = Figure(figsize=figsize, tight_layout=True)
    return fig, fig.subplots(nrows, ncols)


def _names_list(names: Mapping[int, str] | Sequence[str] | None, n: int) -> list[str]:
    if not names:
        return [str(i) for i in range(n)]
    d = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    return [str(d.get(i, i)) for i in range(n)]


class Annotator:
    """Draw boxes and labels on an image with OpenCV.

    Args:
        im: ``HWC`` uint8 image (BGR for cv2 pipelines; colours are passed in the same order).
            Drawing happens in place when ``im`` is contiguous; ``result()`` returns the image.
        line_width: box line width; default scales with the image size.
        example: an example label (kept for YOLOv5 API compatibility; cv2 fonts render ASCII only).
    """

    def __init__(self, im: np.ndarray, line_width: int | None = None, example: str = "") -> None:
        if not isinstance(im, np.ndarray) or im.ndim != 3:
            raise ValueError(f"Annotator: expected an HWC numpy image, got {type(im).__name__} "
                             f"{getattr(im, 'shape', '')}")
        self.im = im if im.flags.c_contiguous and im.flags.writeable else np.array(im, order="C")
        self.lw = line_width or max(round(sum(im.shape) / 2 * 0.003), 2)
        self.example = example

    def box_label(self, box: Sequence[float], label: str = "", color: tuple = (128, 128, 128),
                  txt_color: tuple = (255, 255, 255)) -> None:
        """Draw an ``xyxy`` box and, if given, ``label`` on a filled tab above (or inside) it."""
        p1 = (int(box[0]), int(box[1]))
        p2 = (int(box[2]), int(box[3]))
        cv2.rectangle(self.im, p1, p2, color, thickness=self.lw, lineType=cv2.LINE_AA)
        if not label:
            return
        tf = max(self.lw - 1, 1)  # font thickness
        scale = self.lw / 3
        w, h = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, tf)[0]
        outside = p1[1] - h >= 3  # room for the tab above the box?
        tab_end = (p1[0] + w, p1[1] - h - 3 if outside else p1[1] + h + 3)
        cv2.rectangle(self.im, p1, tab_end, color, -1, cv2.LINE_AA)
        org = (p1[0], p1[1] - 2 if outside else p1[1] + h + 2)
        cv2.putText(self.im, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, txt_color, tf, cv2.LINE_AA)

    def rectangle(self, xyxy: Sequence[float], color: tuple = (255, 255, 255), width: int = 1) -> None:
        """Draw an unlabelled rectangle outline."""
        cv2.rectangle(self.im, (int(xyxy[0]), int(xyxy[1])), (int(xyxy[2]), int(xyxy[3])), color, width)

    def text(self, xy: Sequence[float], text: str, txt_color: tuple = (255, 255, 255)) -> None:
        """Write ``text`` with its top-left corner at ``xy``."""
        tf = max(self.lw - 1, 1)
        h = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, self.lw / 3, tf)[0][1]
        cv2.putText(self.im, text, (int(xy[0]), int(xy[1]) + h), cv2.FONT_HERSHEY_SIMPLEX, self.lw / 3,
                    txt_color, tf, cv2.LINE_AA)

    def result(self) -> np.ndarray:
        """The annotated image."""
        return np.asarray(self.im)


def _increment_file(file: Path) -> Path:
    """``file`` if free, else ``stem2``, ``stem3``, ... so crops never overwrite each other."""
    if not file.exists():
        return file
    n = 2
    while (candidate := file.with_name(f"{file.stem}{n}{file.suffix}")).exists():
        n += 1
    return candidate


def save_one_box(xyxy: Sequence[float] | torch.Tensor, im: np.ndarray, file: Path | str = Path("im.jpg"),
                 gain: float = 1.02, pad: int = 10, square: bool = False, BGR: bool = True,
                 save: bool = True) -> np.ndarray:
    """Crop ``xyxy`` from ``im`` (BGR), enlarged by ``gain`` and ``pad`` pixels, optionally squared.

    Writes the crop as a JPEG to ``file`` (an incremented name if it exists) when ``save``.
    Returns the crop, BGR when ``BGR`` else RGB.
    """
    b = xyxy2xywh(torch.as_tensor(xyxy, dtype=torch.float32).view(-1, 4))
    if square:
        b[:, 2:] = b[:, 2:].max(1, keepdim=True)[0]
    b[:, 2:] = b[:, 2:] * gain + pad
    box = clip_boxes(xywh2xyxy(b).long(), im.shape)[0].tolist()
    crop = im[box[1]:box[3], box[0]:box[2]]
    if save:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        out = _increment_file(file.with_suffix(".jpg"))
        if not cv2.imwrite(str(out), crop, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"save_one_box: could not write {out} (crop shape {crop.shape})")
    return crop if BGR else crop[..., ::-1]


def plot_pr_curve(px: np.ndarray, py: np.ndarray, ap: np.ndarray, save_file: Path | str,
                  names: Mapping[int, str] | Sequence[str] = ()) -> Path:
    """Precision-recall curves: ``py`` ``(nc, n)`` precision at recall ``px``; ``ap`` ``(nc, k)``."""
    py = np.asarray(py).reshape(-1, len(px))
    fig, ax = new_figure()
    if 0 < len(names) < 21:
        labels = _names_list(names, len(py))
        for i, y in enumerate(py):
            ax.plot(px, y, linewidth=1, label=f"{labels[i]} {ap[i, 0]:.3f}")
    else:
        ax.plot(px, py.T, linewidth=1, color="grey")
    ax.plot(px, py.mean(0), linewidth=3, color="blue", label=f"all classes {ap[:, 0].mean():.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1), title="Precision-Recall Curve")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    fig.savefig(save_file, dpi=250, bbox_inches="tight")
    return Path(save_file)


def plot_mc_curve(px: np.ndarray, py: np.ndarray, save_file: Path | str,
                  names: Mapping[int, str] | Sequence[str] = (), xlabel: str = "Confidence",
                  ylabel: str = "Metric") -> Path:
    """A metric against confidence per class plus the smoothed class mean (annotated at its peak)."""
    py = np.asarray(py).reshape(-1, len(px))
    fig, ax = new_figure()
    if 0 < len(names) < 21:
        for label, y in zip(_names_list(names, len(py)), py):
            ax.plot(px, y, linewidth=1, label=label)
    else:
        ax.plot(px, py.T, linewidth=1, color="grey")
    y = smooth(py.mean(0), 0.05)
    ax.plot(px, y, linewidth=3, color="blue", label=f"all classes {y.max():.2f} at {px[y.argmax()]:.3f}")
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1), title=f"{ylabel}-Confidence Curve")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    fig.savefig(save_file, dpi=250, bbox_inches="tight")
    return Path(save_file)


def plot_val_curves(r: dict[str, np.ndarray], save_dir: Path | str, names: Mapping[int, str] | Sequence[str] = (),
                    prefix: str = "") -> list[Path]:
    """``{prefix}PR_curve.png``, ``F1_curve.png``, ``P_curve.png`` and ``R_curve.png`` in ``save_dir`` from the
    dict :func:`utils.metrics.ap_per_class` returns (its curves have one row per class present in the labels)."""
    all_names = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    present = {k: all_names.get(int(c), str(int(c))) for k, c in enumerate(r["unique_classes"])}
    save_dir, px = Path(save_dir), r["px"]
    if not len(present):
        return []
    return [plot_pr_curve(px, r["pr_curve"], r["ap"], save_dir / f"{prefix}PR_curve.png", present),
            plot_mc_curve(px, r["f1_curve"], save_dir / f"{prefix}F1_curve.png", present, ylabel="F1"),
            plot_mc_curve(px, r["p_curve"], save_dir / f"{prefix}P_curve.png", present, ylabel="Precision"),
            plot_mc_curve(px, r["r_curve"], save_dir / f"{prefix}R_curve.png", present, ylabel="Recall")]


def plot_confusion_matrix(matrix: np.ndarray, save_file: Path | str, names: Sequence[str] = (),
                          normalize: bool = True) -> Path:
    """Heat map of an ``(nc + 1, nc + 1)`` confusion matrix (rows predicted, columns true)."""
    nc = matrix.shape[0] - 1
    array = matrix / (matrix.sum(0, keepdims=True) + 1e-9) if normalize else matrix.astype(float)
    array = np.where(array < 0.005, np.nan, array)  # hide near-zero cells
    ticks = list(names) + ["background"] if 0 < len(names) == nc and nc < 99 else None
    fig, ax = new_figure(figsize=(12, 9))
    im = ax.imshow(array, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax)
    if nc < 30:  # cell values stay readable
        for (r, c), v in np.ndenumerate(array):
            if not np.isnan(v):
                ax.text(c, r, f"{v:.2f}" if normalize else f"{v:.0f}", ha="center", va="center", fontsize=8)
    if ticks:
        ax.set_xticks(range(nc + 1), ticks, rotation=90, fontsize=8)
        ax.set_yticks(range(nc + 1), ticks, fontsize=8)
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion Matrix")
    fig.savefig(save_file, dpi=250)
    return Path(save_file)


def _tile_scale(n: int, h: int, w: int, max_size: int) -> float:
    """How much :func:`plot_images` shrinks ``n`` images of ``h x w`` to fit its mosaic into ``max_size`` pixels."""
    return max_size / math.ceil(n**0.5) / max(h, w)


def mosaic_tiles(images: torch.Tensor, max_size: int = 1920, max_subplots: int = 16) -> torch.Tensor:
    """The images of a batch that :func:`plot_images` shows, shrunk as it would show them, as uint8 on the CPU.

    What a caller keeps to draw the mosaic later (validation keeps three batches until it knows the best epoch): 16
    images of 640 pixels take 11 MB as 480-pixel tiles instead of 20 MB.

    Args:
        images: ``(bs, 3, h, w)``, uint8 or floats 0-1 or 0-255, on any device.
    """
    x = images[:max_subplots]
    if x.is_floating_point():
        x = (x * 255 if x.numel() and x.max() <= 1 else x).clamp(0, 255).round().to(torch.uint8)
    x = x.cpu()  # resizing uint8 on the CPU: 20 ms for 16 images of 640 pixels, 6x less than in float
    n, _, h, w = x.shape
    scale = _tile_scale(n, h, w, max_size)
    if scale < 1:
        size = (math.ceil(h * scale), math.ceil(w * scale))
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    elif x.data_ptr() == images.data_ptr():
        x = x.clone()  # a slice would keep the caller's whole batch alive
    return x


def plot_images(images: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray,
                paths: Sequence[str] | None = None, fname: Path | str = "images.jpg",
                names: Mapping[int, str] | Sequence[str] | None = None, max_size: int = 1920,
                max_subplots: int = 16, conf_thres: float = 0.25) -> Path:
    """Save a mosaic of a batch with its boxes.

    Args:
        images: ``(bs, 3, h, w)`` RGB, uint8 or floats 0-1 or 0-255.
        targets: ``(n, 6)`` ``[img_idx, cls, x, y, w, h]`` labels or ``(n, 7)`` with a trailing
            confidence (detections; only those above ``conf_thres`` are drawn). Boxes are normalised or pixels.
        paths: image paths, their file names are written on the tiles.
        fname: output image file.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    scaled = np.issubdtype(np.asarray(images).dtype, np.floating)  # uint8 is 0-255 even when an image is black
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().float().numpy()
    images = np.asarray(images, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    targets = targets.reshape(-1, targets.shape[-1] if targets.size else 6)
    bs, _, h, w = images.shape
    bs = min(bs, max_subplots)
    ns = math.ceil(bs**0.5)  # tiles per side
    if scaled and images.size and images[0].max() <= 1:
        images = images * 255

    mosaic = np.full((ns * h, ns * w, 3), 255, dtype=np.uint8)
    for i in range(bs):
        y0, x0 = h * (i // ns), w * (i % ns)
        mosaic[y0:y0 + h, x0:x0 + w] = images[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)
    scale = _tile_scale(bs, h, w, max_size)
    if scale < 1:
        h, w = math.ceil(scale * h), math.ceil(scale * w)
        mosaic = cv2.resize(mosaic, (w * ns, h * ns))

    fs = int((h + w) * ns * 0.01)
    ann = Annotator(mosaic, line_width=max(round(fs / 10), 1))
    has_conf = targets.shape[1] == 7
    for i in range(bs):
        y0, x0 = h * (i // ns), w * (i % ns)
        ann.rectangle((x0, y0, x0 + w, y0 + h), (255, 255, 255), width=2)
        if paths:
            ann.text((x0 + 5, y0 + 5), Path(paths[i]).name[:40], txt_color=(220, 220, 220))
        ti = targets[targets[:, 0] == i]
        if not len(ti):
            continue
        boxes = xywh2xyxy(ti[:, 2:6])
        if boxes.max() <= 1.01:  # normalised coordinates
            boxes[:, [0, 2]] *= w
            boxes[:, [1, 3]] *= h
        elif scale < 1:  # pixel coordinates of the unresized tile
            boxes *= scale
        boxes[:, [0, 2]] += x0
        boxes[:, [1, 3]] += y0
        for j, box in enumerate(boxes.tolist()):
            c = int(ti[j, 1])
            cname = _names_list(names, c + 1)[c] if names else str(c)
            if not has_conf:
                ann.box_label(box, cname, color=colors(c))
            elif ti[j, 6] > conf_thres:
                ann.box_label(box, f"{cname} {ti[j, 6]:.1f}", color=colors(c))
    fname = Path(fname)
    if not cv2.imwrite(str(fname), ann.result()[..., ::-1]):  # mosaic is RGB, cv2 writes BGR
        raise OSError(f"plot_images: could not write {fname}")
    return fname


# results.csv columns in the 2 x 5 grid: training losses and P/R on top, val losses and mAPs below
_RESULT_COLUMNS = (
    "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
    "val/box_loss", "val/obj_loss", "val/cls_loss", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
)
_RESULT_POSITIONS = (1, 2, 3, 4, 5, 8, 9, 10, 6, 7)  # the same columns by position in YOLOv5 files


def read_results_csv(f: Path) -> tuple[list[str], np.ndarray]:
    """Header (names stripped) and float rows of a results.csv."""
    with open(f, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows:
        raise ValueError(f"plot_results: {f} is empty")
    try:
        data = np.array([[float(v) for v in r] for r in rows[1:]], dtype=float).reshape(len(rows) - 1, len(rows[0]))
    except ValueError as e:
        raise ValueError(f"plot_results: {f} has a non-numeric value ({e})") from e
    return [c.strip() for c in rows[0]], data


def gaussian_smooth(y: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """``y`` convolved with a Gaussian of ``sigma`` samples (truncated at 4 sigma), mirrored at the ends."""
    r = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(y, r, mode="symmetric") if len(y) > 1 else np.full(len(y) + 2 * r, y[0] if len(y) else 0.0)
    return np.convolve(pad, k, mode="valid")


def plot_results(csv_file: Path | str = "results.csv", dir: Path | str = "") -> Path:
    """Plot a YOLOv5-style ``results.csv`` into ``results.png`` beside it.

    With ``dir`` set, every ``results*.csv`` in that folder is overlaid into ``dir/results.png``.
    """
    files = sorted(Path(dir).glob("results*.csv")) if dir else [Path(csv_file)]
    save_dir = Path(dir) if dir else Path(csv_file).parent
    if not files:
        raise FileNotFoundError(f"plot_results: no results*.csv in {Path(dir).resolve()}")
    fig, axes = new_figure(2, 5, figsize=(12, 6))
    axes = axes.ravel()
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"plot_results: {f} does not exist")
        header, data = read_results_csv(f)
        if all(c in header for c in _RESULT_COLUMNS):
            idx = [header.index(c) for c in _RESULT_COLUMNS]
        elif data.shape[1] > max(_RESULT_POSITIONS):
            idx = list(_RESULT_POSITIONS)
        else:
            raise ValueError(f"plot_results: {f} lacks the columns {list(_RESULT_COLUMNS)}; found {header}")
        x = data[:, 0]
        for ax, j in zip(axes, idx):
            y = data[:, j]
            ax.plot(x, y, marker=".", label=f.stem, linewidth=2, markersize=8)
            if len(y) > 1:
                ax.plot(x, gaussian_smooth(y, sigma=3), ":", label="smooth", linewidth=2)
            ax.set_title(header[j], fontsize=12)
    axes[1].legend()
    out = save_dir / "results.png"
    fig.savefig(out, dpi=200)
    return out


def plot_labels(labels: np.ndarray | torch.Tensor, names: Mapping[int, str] | Sequence[str] = (),
                save_dir: Path | str = Path("")) -> Path:
    """Dataset label statistics in ``save_dir/labels.jpg``, and ``labels_correlogram.jpg`` beside it.

    Args:
        labels: ``(n, 5)`` rows ``[cls, x, y, w, h]``, normalised.

    The four panels: instances per class, up to 1000 box outlines centred, box centres (x, y),
    and box sizes (width, height) as 2-D histograms.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 5)
    cls, xywh = labels[:, 0].astype(int), labels[:, 1:]
    nc = int(cls.max()) + 1 if len(cls) else 1
    fig, axes = new_figure(2, 2, figsize=(8, 8))
    ax = axes.ravel()

    counts = np.bincount(cls, minlength=nc)
    ax[0].bar(range(nc), counts, color=[np.array(colors(i)) / 255 for i in range(nc)])
    ax[0].set_ylabel("instances")
    if 0 < len(names) < 30:
        ax[0].set_xticks(range(nc), _names_list(names, nc), rotation=90, fontsize=8)
    else:
        ax[0].set_xlabel("classes")

    canvas = np.full((1000, 1000, 3), 255, dtype=np.uint8)
    centred = np.concatenate((np.full((len(xywh), 2), 0.5), xywh[:, 2:]), 1)
    for c, box in zip(cls[:1000], (xywh2xyxy(centred[:1000]) * 1000).astype(int)):
        cv2.rectangle(canvas, tuple(box[:2].tolist()), tuple(box[2:].tolist()), colors(c), 1)
    ax[1].imshow(canvas)
    ax[1].axis("off")

    for a, (i, j, xl, yl) in zip(ax[2:], ((0, 1, "x", "y"), (2, 3, "width", "height"))):
        a.hist2d(xywh[:, i], xywh[:, j], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
        a.set(xlabel=xl, ylabel=yl)
    out = Path(save_dir) / "labels.jpg"
    fig.savefig(out, dpi=200)
    plot_label_correlogram(xywh, Path(save_dir) / "labels_correlogram.jpg")
    return out


def plot_label_correlogram(xywh: np.ndarray, save_file: Path | str) -> Path:
    """YOLOv5's ``labels_correlogram.jpg`` without seaborn: a corner grid of normalised box x, y, width and height,
    each one's histogram on the diagonal and every pair's 2-D histogram below it (where boxes sit and what shapes
    they have, together: e.g. tall boxes near the image edges)."""
    from matplotlib.figure import Figure

    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    names = ("x", "y", "width", "height")
    # Only the 10 panels drawn, and no tight layout: half the time of a full 4 x 4 grid (0.6 s for coco128).
    fig = Figure(figsize=(8, 8))
    fig.subplots_adjust(left=0.08, bottom=0.08, right=0.98, top=0.98, wspace=0.1, hspace=0.1)
    for i in range(4):
        for j in range(i + 1):
            ax = fig.add_subplot(4, 4, 4 * i + j + 1)
            if i == j:
                ax.hist(xywh[:, i], bins=50, range=(0, 1), color=np.array(colors(0)) / 255)
            else:
                ax.hist2d(xywh[:, j], xywh[:, i], bins=50, range=[[0, 1], [0, 1]], cmap="Blues", cmin=1)
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=7)
            if i == 3:
                ax.set_xlabel(names[j])
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
            elif j > 0:
                ax.set_yticklabels([])
    fig.savefig(save_file, dpi=200)
    return Path(save_file)
