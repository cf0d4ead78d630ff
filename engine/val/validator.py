"""Validation: ``evaluate`` runs a model over a dataloader and returns a dict of metrics (``collect`` then
``summarise``, which the trainer calls apart to draw the best epoch's plots without a second pass); ``run`` is
``val.py``.

This module is the one home of the validation protocol that every caller (val.py, training, pruning, export,
comparisons, benchmarks) shares, so that their mAPs are comparable: the loader recipe (:func:`val_loader`), the
thresholds (:data:`CONF_THRES`, :data:`IOU_THRES`) and the :func:`fitness` that picks best.pt. With plots it also
draws what users look at first, as YOLOv5 does: ``val_batch{0,1,2}_labels.jpg`` and ``val_batch{0,1,2}_pred.jpg``.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np
import torch
from tqdm import tqdm

from engine.backends import Backend, load_backend
from engine.val.coco import coco80_to_91, detections_to_coco, score_with_pycocotools, write_json
from engine.val.options import CONF_THRES, IOU_THRES, ValOptions  # re-exported: defined with val.py's flags
from utils.boxes import clip_boxes, scale_boxes, xywh2xyxy, xyxy2xywh
from utils.data import create_dataloader, load_dataset_config
from utils.metrics import ConfusionMatrix, ap_per_class, match_predictions
from utils.nms import non_max_suppression
from pruning.unstructured import prune_unstructured
from utils.paths import increment_path
from utils.plots import mosaic_tiles, plot_confusion_matrix, plot_images, plot_val_curves
from utils.torch_utils import select_device, time_sync

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = ["CONF_THRES", "IOU_THRES", "PLOT_BATCHES", "PLOT_CONF", "ValOptions", "ValStats", "collect", "evaluate",
           "fitness", "print_results", "run", "scorer", "summarise", "val_loader"]

LOGGER = logging.getLogger(__name__)
HEADER = ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
PLOT_BATCHES = 3  # val_batch0..2_{labels,pred}.jpg
PLOT_CONF = 0.25  # the detections those mosaics show (the mAP's 0.001 would bury the image in boxes)


def fitness(metrics: Mapping[str, float]) -> float:
    """The single figure that ranks epochs (best.pt) and models: ``0.1 * mAP50 + 0.9 * mAP50_95`` of a metrics dict."""
    return 0.1 * metrics["mAP50"] + 0.9 * metrics["mAP50_95"]


def val_loader(path, imgsz: int | tuple[int, int], batch_size: int, stride: int, *,  # noqa: ANN001
               nc: int | None = None, rect: bool = True, single_cls: bool = False, workers: int = 8,
               prefix: str = "val: ") -> DataLoader:
    """The val/test DataLoader of the protocol: no augmentation, no shuffle, and rect batches padded by half a stride
    (``pad=0.5``), or with ``rect=False`` (static exports take one input shape) letterboxing without pad into the
    square ``imgsz`` or the one (h, w) shape it gives.

    Args:
        path: images of the split (a ``data[...]`` entry of a dataset YAML: folder, file list or list of them).
        imgsz: image size in pixels, or a fixed (h, w); batch_size: images per batch; stride: the model's largest
            stride.
        nc: the dataset's class count (labels beyond it are an error); single_cls: one class for all labels.
        workers: most DataLoader workers; prefix: what log lines start with.
    """
    loader, _ = create_dataloader(path, imgsz, batch_size, stride, single_cls=single_cls, pad=0.5 if rect else 0.0,
                                  rect=rect, workers=workers, prefix=prefix, nc=nc)
    return loader


def scorer(data: dict, imgsz: int | tuple[int, int], stride: int, names: list[str] | dict, *, batch_size: int = 16,
           workers: int = 8, device: torch.device | str = "cpu", split: str = "val",
           rect: bool = True) -> Callable[..., dict]:
    """How models do on one split of one dataset: the one "score this model on this data" of prune.py, its accuracy
    guard, export.py, benchmarks/compare.py and the sensitivity study.

    The loader is built once (:func:`val_loader`); the function returned scores a model with :func:`evaluate` and
    returns its dict. A PyTorch model is scored as a copy, in eval mode on ``device`` (the caller's model is left as it
    was); an exported backend as it is. Keyword arguments of the call go to :func:`evaluate` (``plots``,
    ``save_dir``, ...).
    """
    loader = val_loader(data[split], imgsz, batch_size, stride, nc=data["nc"], rect=rect, workers=workers)

    def score(model: torch.nn.Module | Backend, **kwargs) -> dict:
        m = copy.deepcopy(model).to(device).eval() if isinstance(model, torch.nn.Module) else model
        return evaluate(m, loader, names, **kwargs)

    return score


@dataclass
class ValStats:
    """What one validation pass gathered: enough to compute the metrics and draw the plots again without the model.

    Attributes:
        names: class names; nc: number of classes scored (1 with single_cls).
        stats: per image (correct (n, 10) bool, conf (n,), predicted class (n,), target classes (m,)).
        image_classes: target classes of each image; seen: images validated.
        confusion: confusion matrix of the pass; dt: seconds spent in preprocess, inference, NMS.
        loss: summed [box, obj, cls] validation loss and the number of batches (None without ``compute_loss``).
        batches: with ``keep_batches``, the first :data:`PLOT_BATCHES` batches as (images shrunk to mosaic tiles
            (n, 3, h, w) uint8, labels (k, 6) and detections above :data:`PLOT_CONF` (m, 7) with normalised xywh
            boxes, image paths), for the val_batch*.jpg mosaics.
    """

    names: list[str]
    nc: int
    stats: list[tuple] = field(default_factory=list)
    image_classes: list[np.ndarray] = field(default_factory=list)
    seen: int = 0
    confusion: ConfusionMatrix | None = None
    dt: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    loss: tuple[torch.Tensor, int] | None = None
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]] = field(default_factory=list)

    def cpu(self) -> ValStats:
        """The same statistics with their tensors in host memory (to keep them while training goes on)."""
        self.stats = [tuple(t.cpu() for t in row) for row in self.stats]
        return self


def evaluate(model: torch.nn.Module, dataloader, names: list[str], *, plots: bool = False,  # noqa: ANN001
             save_dir: Path | None = None, **kwargs) -> dict:
    """Validate ``model`` (eval mode, returns (decoded, raw)) on ``dataloader`` batches (img, targets, paths, shapes).

    ``model`` is an nn.Module or an ``engine.backends.Backend`` (raw is None for exported files). ``kwargs`` go to
    :func:`collect` (thresholds, ``half``, ``compute_loss``, ``save_txt`` ...); ``plots`` draws the PR/F1/P/R curves,
    the confusion matrix and the first batches' mosaics (``val_batch{i}_labels.jpg``, ``val_batch{i}_pred.jpg``) into
    ``save_dir``.

    Returns a dict: precision, recall, mAP50, mAP50_95, fitness, images, instances, per_class (list of dicts),
    speed (ms per image: preprocess, inference, nms), and loss ([box, obj, cls]) when ``compute_loss`` is given.
    """
    plots = plots and save_dir is not None
    vs = collect(model, dataloader, names, save_dir=save_dir, keep_batches=plots, **kwargs)
    return summarise(vs, plots=plots, save_dir=save_dir)


def collect(model: torch.nn.Module, dataloader, names: list[str], *, conf_thres: float = CONF_THRES,  # noqa: ANN001
            iou_thres: float = IOU_THRES, max_det: int = 300, single_cls: bool = False, half: bool = False,
            compute_loss=None, save_dir: Path | None = None, save_txt: bool = False,  # noqa: ANN001
            save_conf: bool = False, coco_json: list | None = None, class_map: list[int] | None = None,
            desc: str = "", keep_batches: bool = False) -> ValStats:
    """Run ``model`` over ``dataloader`` and gather what :func:`summarise` needs (see :func:`evaluate`).

    ``keep_batches`` keeps the first batches, small, for the val_batch*.jpg mosaics (:attr:`ValStats.batches`): a
    caller that only learns later whether it will plot them (training, at its best epoch) keeps them every pass.
    """
    device = getattr(model, "device", None) or next(model.parameters()).device  # a Backend has no parameters
    half = half and device.type == "cuda"
    model.eval()
    if half:
        model.half()
    iouv = torch.linspace(0.5, 0.95, 10, device=device)
    nc = 1 if single_cls else len(names)
    vs = ValStats(names=list(names), nc=nc, confusion=ConfusionMatrix(nc=nc))
    loss = torch.zeros(3, device=device)
    pbar = tqdm(dataloader, desc=desc or f"{'':>22}{'Images':>11}{'Instances':>11}{'P':>11}{'R':>11}{'mAP50':>11}"
                f"{'mAP50-95':>11}", bar_format="{l_bar}{bar:10}{r_bar}", leave=False)
    with torch.inference_mode():
        for im, targets, paths, shapes in pbar:
            t0 = time_sync()
            im_loaded = im  # uint8, where the loader left it: the cheapest to shrink for the mosaics
            im = im.to(device, non_blocking=True)
            im = (im.half() if half else im.float()) / 255
            targets = targets.to(device)
            nb, _, h, w = im.shape
            t1 = time_sync()
            preds, raw = model(im)
            t2 = time_sync()
            if compute_loss is not None:
                loss += compute_loss([x.float() for x in raw], targets)[1]
            targets[:, 2:] *= torch.tensor((w, h, w, h), device=device)
            preds = non_max_suppression(preds, conf_thres, iou_thres, multi_label=True, agnostic=single_cls,
                                        max_det=max_det)
            t3 = time_sync()
            for i, t in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                vs.dt[i] += t
            for si, pred in enumerate(preds):
                vs.seen += 1
                labels = targets[targets[:, 0] == si, 1:]
                vs.image_classes.append(labels[:, 0].cpu().numpy().astype(int))
                shape, ratio_pad = shapes[si][0], shapes[si][1]
                correct = torch.zeros(pred.shape[0], len(iouv), dtype=torch.bool, device=device)
                if pred.shape[0] == 0:
                    if labels.shape[0]:
                        vs.stats.append((correct, torch.zeros(0, device=device), torch.zeros(0, device=device),
                                         labels[:, 0]))
                        vs.confusion.process_batch(None, labels[:, 0])
                    continue
                if single_cls:
                    pred[:, 5] = 0
                predn = pred.clone()
                scale_boxes(im[si].shape[1:], predn[:, :4], shape, ratio_pad)
                if labels.shape[0]:
                    tbox = xywh2xyxy(labels[:, 1:5])
                    scale_boxes(im[si].shape[1:], tbox, shape, ratio_pad)
                    labelsn = torch.cat((labels[:, 0:1], tbox), 1)
                    correct = match_predictions(predn, labelsn, iouv)
                    vs.confusion.process_batch(predn, labelsn)
                vs.stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))
                if save_txt and save_dir is not None:
                    _save_txt(predn, save_conf, shape, save_dir / "labels" / f"{Path(paths[si]).stem}.txt")
                if coco_json is not None:
                    coco_json.extend(detections_to_coco(predn, paths[si], class_map or list(range(1000))))
            if keep_batches and len(vs.batches) < PLOT_BATCHES:
                vs.batches.append(_batch_for_plots(im_loaded, targets, preds, paths))
    if compute_loss is not None:
        vs.loss = (loss.cpu(), len(dataloader))
    if half:
        model.float()
    return vs


def summarise(vs: ValStats, plots: bool = False, save_dir: Path | None = None) -> dict:
    """The metrics dict of :func:`evaluate` from a pass's :class:`ValStats`; ``plots`` draws the curves, the
    confusion matrix and the mosaics of the batches the pass kept into ``save_dir``."""
    out = _summarise(vs.stats, vs.names, vs.nc, vs.seen, vs.image_classes, plots, save_dir)
    out["speed"] = {k: 1e3 * t / max(vs.seen, 1) for k, t in zip(("preprocess", "inference", "nms"), vs.dt)}
    if vs.loss is not None:
        out["loss"] = (vs.loss[0] / max(vs.loss[1], 1)).tolist()
    if plots and save_dir is not None and vs.confusion is not None:
        plot_confusion_matrix(vs.confusion.matrix, Path(save_dir) / "confusion_matrix.png", list(vs.names))
    if plots and save_dir is not None:
        _plot_batches(vs, save_dir)
    return out


def _batch_for_plots(im: torch.Tensor, targets: torch.Tensor, preds: list[torch.Tensor],
                     paths: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """One :attr:`ValStats.batches` entry from a batch: ``targets`` and ``preds`` (xyxy) in pixels of ``im``."""
    tiles = mosaic_tiles(im)
    n, (h, w) = len(tiles), im.shape[2:]
    gain = torch.tensor((w, h, w, h), device=targets.device, dtype=torch.float32)
    labels = targets[targets[:, 0] < n].float()
    labels[:, 2:] /= gain
    dets = []
    for i, d in enumerate(preds[:n]):
        d = d[d[:, 4] > PLOT_CONF].float()
        xywh = xyxy2xywh(clip_boxes(d[:, :4].clone(), (h, w)) / gain)  # clipped: the mosaic reads <= 1 as normalised
        dets.append(torch.cat((torch.full_like(d[:, :1], i), d[:, 5:6], xywh, d[:, 4:5]), 1))
    dets = torch.cat(dets) if dets else torch.zeros(0, 7)
    return tiles, labels.cpu(), dets.cpu(), list(paths[:n])


def _plot_batches(vs: ValStats, save_dir: Path) -> None:
    """``val_batch{i}_labels.jpg`` (ground truth) and ``val_batch{i}_pred.jpg`` of the batches a pass kept."""
    for i, (tiles, labels, dets, paths) in enumerate(vs.batches):
        plot_images(tiles, labels, paths, save_dir / f"val_batch{i}_labels.jpg", names=vs.names)
        plot_images(tiles, dets, paths, save_dir / f"val_batch{i}_pred.jpg", names=vs.names, conf_thres=PLOT_CONF)


def _save_txt(predn: torch.Tensor, save_conf: bool, shape: tuple, file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    gn = torch.tensor(shape, device=predn.device)[[1, 0, 1, 0]]
    with open(file, "a") as f:
        for *xyxy, conf, cls in predn.tolist():
            xywh = (xyxy2xywh(torch.tensor(xyxy, device=predn.device).view(1, 4)) / gn).view(-1).tolist()
            row = (cls, *xywh, conf) if save_conf else (cls, *xywh)
            f.write(("%g " * len(row)).rstrip() % row + "\n")


def _summarise(stats: list[tuple], names: list[str], nc: int, seen: int, image_classes: list[np.ndarray],
               plots: bool, save_dir: Path | None) -> dict:
    cols = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)] if stats else []
    nt = np.bincount(cols[3].astype(int), minlength=nc) if cols else np.zeros(nc, dtype=int)
    per_image = np.zeros(nc, dtype=int)
    for c in image_classes:
        per_image[np.unique(c)] += 1
    res = {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50_95": 0.0, "images": seen,
           "instances": int(nt.sum()), "per_class": []}
    if cols and cols[0].any():
        r = ap_per_class(*cols)
        if plots and save_dir is not None:
            plot_val_curves(r, save_dir, names)
        ap = r["ap"]
        ap50, apm = ap[:, 0], ap.mean(1)
        res.update(precision=float(r["p"].mean()), recall=float(r["r"].mean()), mAP50=float(ap50.mean()),
                   mAP50_95=float(apm.mean()))
        for i, c in enumerate(r["unique_classes"]):
            c = int(c)
            res["per_class"].append({"class": c, "name": names[c] if c < len(names) else str(c),
                                     "images": int(per_image[c]), "instances": int(nt[c]),
                                     "precision": float(r["p"][i]), "recall": float(r["r"][i]),
                                     "mAP50": float(ap50[i]), "mAP50_95": float(apm[i])})
    res["fitness"] = fitness(res)
    return res


def print_results(res: dict, verbose: bool = False) -> None:
    """The usual table: 'all' and, with ``verbose``, one row per class."""
    print(("%22s" + "%11s" * 6) % HEADER)
    row = "%22s" + "%11i" * 2 + "%11.3g" * 4
    print(row % ("all", res["images"], res["instances"], res["precision"], res["recall"], res["mAP50"],
                 res["mAP50_95"]))
    if res["instances"] == 0:
        LOGGER.warning("no labels found in the validation set: cannot compute metrics without labels")
    if verbose:
        for c in res["per_class"]:
            print(row % (c["name"], c["images"], c["instances"], c["precision"], c["recall"], c["mAP50"],
                         c["mAP50_95"]))
    if "speed" in res:
        s = res["speed"]
        print(f"Speed: {s['preprocess']:.1f}ms pre-process, {s['inference']:.1f}ms inference, {s['nms']:.1f}ms NMS "
              "per image")


def run(opt: ValOptions) -> dict:
    """val.py: load the model and dataset, validate, print and save results (``results.json`` in the run dir)."""
    device = select_device(opt.device, opt.batch_size)
    data = load_dataset_config(opt.data)
    model = load_backend(opt.weights, device=device)
    # Made only once data and weights load, so a failed call leaves no empty run dir behind.
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    if opt.prune:
        if model.format != "pytorch":
            raise ValueError(f"--prune needs a PyTorch checkpoint (.pt), got {opt.weights} ({model.format})")
        prune_unstructured(model.model, opt.prune)
    names = model.names
    if not model.has_names and len(names) in (0, data["nc"]):  # a file without our metadata: take the dataset's
        LOGGER.warning("%s: no class names in the file; using the %d names of %s", opt.weights, data["nc"], opt.data)
        names = data["names"]
    names = ["item"] if opt.single_cls else names
    if not opt.single_cls and len(names) != data["nc"]:
        raise ValueError(f"{opt.weights} has {len(names)} classes but {opt.data} has nc={data['nc']}; "
                         "use matching weights or --single-cls")
    task = opt.task if opt.task in ("train", "val", "test") else "val"
    if data.get(task) is None:
        raise ValueError(f"{opt.data} has no '{task}' split (--task {opt.task})")
    conf, iou = (0.25, 0.45) if opt.task == "speed" else (opt.conf_thres, opt.iou_thres)
    # Static exports accept one input shape: every image letterboxed into the exported (h, w) instead of rect batches.
    imgsz = model.input_size(opt.imgsz)
    rect = model.dynamic
    loader = val_loader(data[task], imgsz, opt.batch_size, model.stride, nc=data["nc"], rect=rect,
                        single_cls=opt.single_cls, workers=opt.workers, prefix=f"{task}: ")
    coco = "coco" in Path(str(opt.data)).stem and len(names) == 80
    json_rows: list[dict] | None = [] if opt.save_json else None
    plots = opt.task != "speed" and not opt.noplots
    res = evaluate(model, loader, names, conf_thres=conf, iou_thres=iou, max_det=opt.max_det,
                   single_cls=opt.single_cls, half=opt.half, save_dir=save_dir, plots=plots,
                   save_txt=opt.save_txt, save_conf=opt.save_conf, coco_json=json_rows,
                   class_map=coco80_to_91() if coco else list(range(1000)))
    print_results(res, verbose=opt.verbose or (len(names) < 50))
    if json_rows is not None:
        pred_json = save_dir / f"{Path(str(opt.weights)).stem}_predictions.json"
        write_json(json_rows, pred_json)
        anno = Path(data["path"]) / "annotations" / f"instances_{Path(str(data[task])).name}.json"
        ids = sorted({r["image_id"] for r in json_rows})
        scored = score_with_pycocotools(pred_json, anno, ids)
        if scored is not None:
            res["coco_mAP50_95"], res["coco_mAP50"] = scored
    res.update(weights=str(opt.weights), data=str(opt.data), imgsz=imgsz, rect=rect, backend=model.format,
               options=asdict(opt))
    (save_dir / "results.json").write_text(json.dumps(res, indent=2))
    print(f"Results saved to {save_dir}")
    res["save_dir"] = str(save_dir)
    return res
