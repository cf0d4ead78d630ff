"""``LoadImagesAndLabels``: the detection dataset for training and validation (YOLOv5 behaviour)."""

from __future__ import annotations

import logging
import math
import os
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import (
    DEFAULT_HYP,
    augment_hsv,
    flip_lr,
    flip_ud,
    mixup,
    mosaic4,
    random_perspective,
    xywhn2xyxy,
    xyxy2xywhn,
)
from .cache import image_npy_path, is_writable_dir
from .files import IMG_FORMATS, img2label_paths, list_image_files
from .labels import scan_labels
from .letterbox import letterbox

__all__ = ["LoadImagesAndLabels", "rect_batch_shapes"]

LOGGER = logging.getLogger(__name__)

PathSource = Union[str, Path, Sequence[Union[str, Path]]]


def rect_batch_shapes(
    wh: np.ndarray, batch_size: int, img_size: int, stride: int, pad: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rectangular batches (YOLOv5): sort by aspect ratio h/w and give each batch one (h, w) network shape.

    Returns:
        (order, batch index per sorted image, batch_shapes (nb, 2) as (h, w), multiples of ``stride``).
    """
    ar = wh[:, 1] / wh[:, 0]
    order = ar.argsort()
    ar = ar[order]
    bi = np.floor(np.arange(len(wh)) / batch_size).astype(int)
    nb = int(bi[-1]) + 1 if len(bi) else 0
    shapes = [[1, 1]] * nb
    for i in range(nb):
        ari = ar[bi == i]
        mini, maxi = ari.min(), ari.max()
        if maxi < 1:  # all wide: full width, height follows the tallest
            shapes[i] = [maxi, 1]
        elif mini > 1:  # all tall: full height, width follows the widest
            shapes[i] = [1, 1 / mini]
    batch_shapes = np.ceil(np.array(shapes) * img_size / stride + pad).astype(int) * stride
    return order, bi, batch_shapes


def _available_memory() -> int:
    """Bytes of RAM available for new allocations (Linux MemAvailable, else free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class LoadImagesAndLabels(Dataset):
    """Images and YOLO-format labels, letterboxed (validation) or mosaic-augmented (training).

    Args:
        path: directory, glob, ``.txt`` list, single image, or a list of these.
        img_size: network input size (long side), or one fixed (h, w) shape every image is letterboxed into (static
            non-square exports; not with ``augment`` or ``rect``).
        batch_size: used to group images into rectangular batches when ``rect``.
        augment: apply training augmentations (``hyp`` keys as in hyp.scratch-low.yaml).
        hyp: augmentation hyperparameters; missing keys take YOLOv5's scratch-low values.
        rect: rectangular batches sorted by aspect ratio (validation); disables mosaic.
        cache_images: 'ram' (decoded and resized in memory), 'disk' (``.npy`` files) or None.
        single_cls: treat all classes as class 0.
        stride: the model's max stride (batch shapes are multiples of it).
        pad: extra padding in strides for rect batch shapes (val.py uses 0.5).
        prefix: text put before log messages.
        nc: number of classes; label rows with class ids >= nc are dropped.
    """

    def __init__(
        self,
        path: PathSource,
        img_size: Union[int, tuple[int, int]] = 640,
        batch_size: int = 16,
        augment: bool = False,
        hyp: Optional[dict] = None,
        rect: bool = False,
        cache_images: Optional[str] = None,
        single_cls: bool = False,
        stride: int = 32,
        pad: float = 0.0,
        prefix: str = "",
        nc: Optional[int] = None,
    ) -> None:
        if cache_images not in (None, False, "ram", "disk"):
            raise ValueError(f"cache_images must be 'ram', 'disk' or None, got {cache_images!r}")
        if isinstance(img_size, tuple) and (augment or rect):
            raise ValueError(f"a fixed (h, w) input shape {img_size} is for plain validation: not with augment or rect")
        self.shape = img_size  # what a non-rect image is letterboxed into
        img_size = max(img_size) if isinstance(img_size, tuple) else img_size
        self.img_size, self.augment, self.rect, self.stride = img_size, augment, rect, stride
        self.hyp = {**DEFAULT_HYP, **(hyp or {})} if augment else dict(hyp or {})
        self.mosaic = augment and not rect  # rect batches need each image's own aspect ratio
        self.mosaic_border = (-img_size // 2, -img_size // 2)
        self.prefix = prefix
        if augment and self.hyp.get("copy_paste", 0) > 0:
            LOGGER.warning("%scopy_paste=%s needs segment labels, which are not supported; ignored",
                           prefix, self.hyp["copy_paste"])

        im_files = list_image_files(path)
        if not im_files:
            raise FileNotFoundError(f"{prefix}No images found in {path} (supported suffixes: {', '.join(IMG_FORMATS)})")
        scan = scan_labels(im_files, img2label_paths(im_files), nc=nc, prefix=prefix)
        if not scan.im_files:
            raise FileNotFoundError(f"{prefix}No readable images in {path}: all {len(im_files)} were corrupt")
        if scan.nf == 0:
            if augment:
                raise ValueError(f"{prefix}No labels found for the images in {path}; cannot train")
            LOGGER.warning("%sNo labels found for the images in %s", prefix, path)

        self.im_files: list[str] = scan.im_files
        self.label_files: list[str] = scan.label_files
        self.labels: list[np.ndarray] = scan.labels
        self.shapes: np.ndarray = scan.shapes.astype(np.int64)  # (N, 2) original w, h
        if single_cls:
            for lb in self.labels:
                lb[:, 0] = 0

        n = len(self.im_files)
        self.batch = np.floor(np.arange(n) / batch_size).astype(int)
        self.batch_shapes: Optional[np.ndarray] = None  # (nb, 2) network (h, w) per batch when rect
        if rect:
            order, self.batch, self.batch_shapes = rect_batch_shapes(self.shapes, batch_size, img_size, stride, pad)
            self.im_files = [self.im_files[i] for i in order]
            self.label_files = [self.label_files[i] for i in order]
            self.labels = [self.labels[i] for i in order]
            self.shapes = self.shapes[order]
        self.indices = np.arange(n)

        self.ims: list[Optional[np.ndarray]] = [None] * n
        self.im_hw0: list[Optional[tuple[int, int]]] = [None] * n
        self.im_hw: list[Optional[tuple[int, int]]] = [None] * n
        self.npy_files: list[Optional[Path]] = [None] * n
        if cache_images == "ram":
            self._cache_ram()
        elif cache_images == "disk":
            self._cache_disk()

    def __len__(self) -> int:
        return len(self.im_files)

    # ---------------------------------------------------------------- image loading and caching
    def _read(self, i: int) -> np.ndarray:
        npy = self.npy_files[i]
        if npy is not None and npy.is_file():
            return np.load(npy, allow_pickle=False)
        im = cv2.imread(self.im_files[i])
        if im is None:
            raise FileNotFoundError(f"{self.prefix}Image not found or unreadable: {self.im_files[i]}")
        return im

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Image i (BGR) resized so its long side is ``img_size``; returns (im, (h0, w0), (h, w))."""
        if self.ims[i] is not None:
            return self.ims[i], self.im_hw0[i], self.im_hw[i]
        im = self._read(i)
        h0, w0 = im.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            # INTER_AREA for shrinking without augmentation is sharper; YOLOv5's choice, kept for its mAP.
            interp = cv2.INTER_LINEAR if (self.augment or r > 1) else cv2.INTER_AREA
            im = cv2.resize(im, (math.ceil(w0 * r), math.ceil(h0 * r)), interpolation=interp)
        return im, (h0, w0), im.shape[:2]

    def _cache_ram(self) -> None:
        n = len(self)
        sample = np.linspace(0, n - 1, min(n, 30)).astype(int)
        need = sum(self.load_image(int(i))[0].nbytes for i in sample) * n / len(sample)
        avail = _available_memory()
        if need >= 0.8 * avail:
            LOGGER.warning("%sNot caching images in RAM: needs %.1f GB, %.1f GB available (limit 80%%)",
                           self.prefix, need / 1e9, avail / 1e9)
            return
        with ThreadPool(min(8, os.cpu_count() or 1)) as pool:
            for i, (im, hw0, hw) in enumerate(pool.imap(self.load_image, range(n))):
                self.ims[i], self.im_hw0[i], self.im_hw[i] = im, hw0, hw
        LOGGER.info("%sCached %d images in RAM (%.2f GB)", self.prefix, n, sum(x.nbytes for x in self.ims) / 1e9)

    def _cache_disk(self) -> None:
        def save(i: int) -> Optional[Path]:
            f, npy = self.im_files[i], image_npy_path(self.im_files[i])
            if npy.is_file() and npy.stat().st_mtime_ns >= os.stat(f).st_mtime_ns:
                return npy  # up to date
            if not is_writable_dir(npy.parent):
                return None
            im = cv2.imread(f)
            if im is None:
                return None
            tmp = npy.with_name(npy.name + f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:  # write then rename: a crash never leaves a half-written .npy
                np.save(fh, im, allow_pickle=False)
            os.replace(tmp, npy)
            return npy

        with ThreadPool(min(8, os.cpu_count() or 1)) as pool:
            self.npy_files = list(pool.imap(save, range(len(self))))
        missing = sum(p is None for p in self.npy_files)
        if missing:
            LOGGER.warning("%s%d images could not be cached to disk; they are read from the originals",
                           self.prefix, missing)

    # ---------------------------------------------------------------- items
    def _rng(self) -> np.random.Generator:
        # Drawn from torch's RNG so DataLoader worker seeding (per epoch and worker) drives the augmentations.
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,))))

    def _load_mosaic(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = [index] + [int(i) for i in rng.integers(0, len(self), 3)]
        rng.shuffle(idx)
        images = [self.load_image(i)[0] for i in idx]
        img4, labels4 = mosaic4(images, [self.labels[i] for i in idx], self.img_size, rng)
        return self._perspective(img4, labels4, rng, border=self.mosaic_border)

    def _perspective(self, im, labels, rng, border=(0, 0)) -> tuple[np.ndarray, np.ndarray]:
        h = self.hyp
        return random_perspective(im, labels, rng, degrees=h["degrees"], translate=h["translate"],
                                  scale=h["scale"], shear=h["shear"], perspective=h["perspective"], border=border)

    def __getitem__(self, index: int):
        """Returns (image uint8 3xHxW RGB, labels (n, 6) [0, cls, xywhn], image path, shapes or None for mosaics)."""
        index = int(self.indices[index])
        hyp = self.hyp
        rng = self._rng() if self.augment else None
        if self.mosaic and rng.random() < hyp["mosaic"]:
            img, labels = self._load_mosaic(index, rng)
            shapes = None
            if rng.random() < hyp["mixup"]:
                img, labels = mixup(img, labels, *self._load_mosaic(int(rng.integers(0, len(self))), rng), rng)
        else:
            img, (h0, w0), (h, w) = self.load_image(index)
            shape = tuple(self.batch_shapes[self.batch[index]]) if self.rect else self.shape
            img, ratio, pad = letterbox(img, shape, auto=False, scaleup=self.augment)
            shapes = (h0, w0), ((h / h0, w / w0), pad)  # what val needs to map boxes back to the original
            labels = self.labels[index].copy()
            if labels.size:
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, padw=pad[0], padh=pad[1])
            if self.augment:
                img, labels = self._perspective(img, labels, rng)

        nl = len(labels)
        if nl:
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
        if self.augment:
            img = augment_hsv(img, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"], rng)
            if rng.random() < hyp["flipud"]:
                img, labels = flip_ud(img, labels)
            if rng.random() < hyp["fliplr"]:
                img, labels = flip_lr(img, labels)

        labels_out = torch.zeros((nl, 6))
        if nl:
            labels_out[:, 1:] = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        img = np.ascontiguousarray(img.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(img), labels_out, self.im_files[index], shapes

    @staticmethod
    def collate_fn(batch):
        """Stack images; concatenate labels with column 0 set to the image's index in the batch."""
        ims, labels, paths, shapes = zip(*batch)
        for i, lb in enumerate(labels):
            lb[:, 0] = i
        return torch.stack(ims, 0), torch.cat(labels, 0), paths, shapes
