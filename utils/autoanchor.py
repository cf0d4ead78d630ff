"""AutoAnchor: measure how well the Detect anchors fit a dataset's boxes and re-fit them (k-means + evolution).

Anchor fit is measured with the ratio metric of the loss's target assignment: a box matches an anchor when neither
side ratio exceeds ``thr`` (hyp ``anchor_t``). Anchors live in the Detect ``anchors`` buffer in grid units (pixels /
stride); everything here works in pixels at ``imgsz`` and converts at the edges.
"""

from __future__ import annotations

import logging
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from utils.torch_utils import unwrap

__all__ = ["check_anchor_order", "check_anchors", "kmean_anchors", "anchor_fit"]

LOGGER = logging.getLogger(__name__)
PREFIX = "AutoAnchor: "
BPR_GOOD = 0.98  # below this best possible recall the anchors are re-fitted


class LabelledDataset(Protocol):
    """What AutoAnchor reads from a dataset: original image sizes and normalised labels."""

    shapes: np.ndarray  # (N, 2) original image width, height
    labels: Sequence[np.ndarray]  # N arrays (n, 5): cls, x, y, w, h normalised


def _rng(seed: np.random.Generator | int | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _dataset_wh(dataset: LabelledDataset, imgsz: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Box (w, h) in pixels once each image is resized so its long side is ``imgsz``; random 0.9-1.1 scale if rng."""
    shapes = np.asarray(dataset.shapes, dtype=np.float64).reshape(-1, 2)
    if len(shapes) != len(dataset.labels):
        raise ValueError(f"{PREFIX}dataset has {len(shapes)} shapes but {len(dataset.labels)} label arrays")
    shapes = imgsz * shapes / shapes.max(1, keepdims=True)
    if rng is not None:  # augmentation rescales images, so judge the fit over a band of sizes
        shapes = shapes * rng.uniform(0.9, 1.1, size=(len(shapes), 1))
    parts = [np.asarray(lb, dtype=np.float64).reshape(-1, 5)[:, 3:5] * s for s, lb in zip(shapes, dataset.labels)]
    wh = np.concatenate(parts, 0) if parts else np.zeros((0, 2))
    return wh.astype(np.float32)


def _ratio_metric(anchors: np.ndarray, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per box and anchor the worse side ratio min(r, 1/r) (1 = identical); also the best value per box."""
    r = wh[:, None] / anchors[None]
    x = np.minimum(r, 1.0 / r).min(2)
    return x, x.max(1)


def anchor_fit(anchors: np.ndarray, wh: np.ndarray, thr: float = 4.0) -> tuple[float, float]:
    """Return (best possible recall, anchors above threshold per box) of pixel ``anchors`` (n, 2) for boxes ``wh``."""
    if len(wh) == 0:
        return 0.0, 0.0
    x, best = _ratio_metric(np.asarray(anchors, dtype=np.float32).reshape(-1, 2), wh)
    bpr = float((best > 1.0 / thr).mean())
    aat = float((x > 1.0 / thr).sum(1).mean())
    return bpr, aat


def _pixel_anchors(detect: nn.Module) -> torch.Tensor:
    stride = torch.as_tensor(detect.stride, dtype=detect.anchors.dtype, device=detect.anchors.device)
    return detect.anchors.detach() * stride.view(-1, 1, 1)


@torch.no_grad()
def check_anchor_order(detect: nn.Module) -> bool:
    """Reverse the anchor levels in place when their mean pixel area decreases while the stride increases.

    Args:
        detect: Detect head with ``anchors`` (nl, na, 2) in grid units and ``stride`` (nl,).

    Returns:
        True when the anchors were flipped.
    """
    pixel = _pixel_anchors(detect)
    area = pixel.prod(-1).mean(-1).view(-1)
    da = area[-1] - area[0]
    ds = torch.as_tensor(detect.stride).view(-1)
    ds = ds[-1] - ds[0]
    if da == 0 or torch.sign(da) == torch.sign(ds.to(da)):
        return False
    LOGGER.warning(f"{PREFIX}anchor order disagrees with stride order, reversing the anchor levels")
    stride = torch.as_tensor(detect.stride, dtype=pixel.dtype, device=pixel.device).view(-1, 1, 1)
    detect.anchors[:] = pixel.flip(0) / stride  # grid units belong to the new level's stride
    return True


@torch.no_grad()
def check_anchors(dataset: LabelledDataset, detect: nn.Module, thr: float = 4.0, imgsz: int = 640,
                  rng: np.random.Generator | int | None = 0) -> bool:
    """Check the anchors of ``detect`` against ``dataset`` and re-fit them in place when they fit poorly.

    Args:
        dataset: object with ``shapes`` (N, 2 original w, h) and ``labels`` (N arrays cls xywhn).
        detect: Detect head (a model exposing ``.detect`` or a DDP wrapper also works).
        thr: anchor ratio threshold (hyp ``anchor_t``).
        imgsz: training image size in pixels.
        rng: numpy Generator or seed for the random rescale and the k-means / evolution.

    Returns:
        True when the anchors were replaced.
    """
    detect = unwrap(detect)
    if not hasattr(detect, "anchors") and hasattr(detect, "detect"):
        detect = detect.detect
    rng = _rng(rng)
    wh = _dataset_wh(dataset, imgsz, rng)
    anchors = _pixel_anchors(detect).cpu().numpy().reshape(-1, 2)
    bpr, aat = anchor_fit(anchors, wh, thr)
    line = f"{PREFIX}{aat:.2f} anchors/target, {bpr:.3f} Best Possible Recall (BPR). "
    if bpr > BPR_GOOD:
        print(line + "Current anchors are a good fit to dataset")
        return False
    print(line + "Anchors are a poor fit to dataset, attempting to improve...")
    na = detect.anchors.numel() // 2
    new = kmean_anchors(dataset, n=na, img_size=imgsz, thr=thr, gen=1000, verbose=False, rng=rng)
    new_bpr, _ = anchor_fit(new, wh, thr)
    if new_bpr <= bpr:
        print(f"{PREFIX}Done (original anchors better than new anchors, keeping the original anchors)")
        return False
    stride = torch.as_tensor(detect.stride, dtype=detect.anchors.dtype, device=detect.anchors.device).view(-1, 1, 1)
    pixel = torch.tensor(new, dtype=detect.anchors.dtype, device=detect.anchors.device).view_as(detect.anchors)
    detect.anchors[:] = pixel / stride
    check_anchor_order(detect)
    print(f"{PREFIX}Done: new anchors BPR {new_bpr:.3f} (was {bpr:.3f}); "
          "checkpoints keep them, update the model *.yaml to reuse them from scratch")
    return True


def _summary(k: np.ndarray, wh: np.ndarray, thr: float, img_size: int) -> str:
    """YOLOv5's two AutoAnchor result lines: its ``thr`` is the ratio floor 1/anchor_t, ``metric_all`` the mean ratio
    metric over every (box, anchor) pair / over each box's best anchor, ``past_thr`` the mean over the pairs that match."""
    floor = 1.0 / thr
    x, best = _ratio_metric(k, wh)
    bpr = (best > floor).mean()
    aat = (x > floor).mean() * len(k)
    rows = ", ".join(f"{round(a)},{round(b)}" for a, b in k)
    return (f"{PREFIX}thr={floor:.2f}: {bpr:.4f} best possible recall, {aat:.2f} anchors past thr\n"
            f"{PREFIX}n={len(k)}, img_size={img_size}, metric_all={x.mean():.3f}/{best.mean():.3f}-mean/best, "
            f"past_thr={x[x > floor].mean() if (x > floor).any() else 0.0:.3f}-mean: {rows}")


def kmean_anchors(dataset: LabelledDataset, n: int = 9, img_size: int = 640, thr: float = 4.0, gen: int = 1000,
                  verbose: bool = True, rng: np.random.Generator | int | None = 0) -> np.ndarray:
    """Fit ``n`` anchors (pixels at ``img_size``) to the dataset: k-means on whitened wh, then genetic evolution.

    Args:
        dataset: object with ``shapes`` and ``labels`` (see :func:`check_anchors`).
        n: number of anchors (nl * na).
        img_size: training image size; boxes are measured with the image long side at this size.
        thr: anchor ratio threshold (hyp ``anchor_t``).
        gen: generations of evolution.
        verbose: print the anchors every time the fitness improves.
        rng: numpy Generator or seed; the same seed gives the same anchors.

    Returns:
        float32 array (n, 2) of anchor (w, h) sorted by area, small first.
    """
    rng = _rng(rng)
    inv_thr = 1.0 / thr
    wh0 = _dataset_wh(dataset, img_size)
    tiny = int((wh0 < 3.0).any(1).sum())
    if tiny:
        LOGGER.warning(f"{PREFIX}extremely small objects found: {tiny} of {len(wh0)} labels are under 3 pixels")
    wh = wh0[(wh0 >= 2.0).any(1)]  # boxes too small to learn from would drag anchors toward zero

    def fitness(k: np.ndarray) -> float:
        _, best = _ratio_metric(k, wh)
        return float((best * (best > inv_thr)).mean())

    k = None
    if n <= len(wh):
        sigma = wh.std(0)
        sigma = np.where(sigma > 0, sigma, 1.0)  # identical boxes have no spread to whiten
        from scipy.cluster.vq import kmeans  # scipy loads only when anchors are re-fitted (0.3 s)

        centroids = kmeans(wh / sigma, n, iter=30, rng=rng)[0] * sigma
        if len(centroids) == n:
            k = centroids
    if k is None:
        LOGGER.warning(f"{PREFIX}k-means found fewer than {n} anchors for {len(wh)} boxes, using a random start")
        k = np.sort(rng.random(n * 2)).reshape(n, 2) * img_size
    k = k.astype(np.float32)
    if len(wh) == 0:
        return k[np.argsort(k.prod(1))]

    best_f, mutate_p, sigma = fitness(k), 0.9, 0.1
    desc = f"{PREFIX}Evolving anchors with Genetic Algorithm:"
    pbar = tqdm(range(gen), desc=f"{desc} fitness = {best_f:.4f}", disable=gen == 0)
    for _ in pbar:
        v = np.ones(k.shape)
        while (v == 1).all():  # an all-ones draw would waste a generation
            gate = rng.random(k.shape) < mutate_p
            v = (gate * rng.random() * rng.standard_normal(k.shape) * sigma + 1).clip(0.3, 3.0)
        child = (k * v).clip(min=2.0).astype(np.float32)
        f = fitness(child)
        if f > best_f:
            best_f, k = f, child
            pbar.set_description(f"{desc} fitness = {best_f:.4f}")
            if verbose:
                print(_summary(k[np.argsort(k.prod(1))], wh0, thr, img_size))
    k = k[np.argsort(k.prod(1))]
    print(_summary(k, wh0, thr, img_size))
    return k.astype(np.float32)
