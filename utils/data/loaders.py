"""DataLoader construction for training/validation and an image/video source iterator for inference."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from .dataset import LoadImagesAndLabels
from .files import IMG_FORMATS, VID_FORMATS, is_image, list_media_files
from .letterbox import letterbox
from .sources import fetch_url, is_stream, is_url

__all__ = ["create_dataloader", "LoadImages"]

LOGGER = logging.getLogger(__name__)

Source = Union[str, Path, Sequence[Union[str, Path]]]


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@contextlib.contextmanager
def _rank_zero_first(rank: int) -> Iterator[None]:
    """Let rank 0 build the dataset (and write its caches) before the other ranks read them."""
    distributed = rank != -1 and dist.is_available() and dist.is_initialized()
    if distributed and rank != 0:
        dist.barrier()
    yield
    if distributed and rank == 0:
        dist.barrier()


def create_dataloader(
    path: Source,
    imgsz: Union[int, tuple[int, int]],
    batch_size: int,
    stride: int,
    single_cls: bool = False,
    hyp: Optional[dict] = None,
    augment: bool = False,
    cache: Optional[str] = None,
    pad: float = 0.0,
    rect: bool = False,
    rank: int = -1,
    workers: int = 8,
    prefix: str = "",
    shuffle: bool = False,
    seed: int = 0,
    nc: Optional[int] = None,
) -> tuple[DataLoader, LoadImagesAndLabels]:
    """Build a :class:`LoadImagesAndLabels` and a DataLoader over it.

    ``batch_size`` is per process. With ``rank != -1`` torch.distributed must be initialised; a DistributedSampler
    (seeded with ``seed``) splits the data, and callers should call ``loader.sampler.set_epoch(epoch)``.
    Rect batches are never shuffled (they are grouped by aspect ratio).
    """
    if rect and shuffle:
        LOGGER.warning("%srect batches are incompatible with shuffle; using shuffle=False", prefix)
        shuffle = False
    if rank != -1 and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"create_dataloader(rank={rank}) needs torch.distributed initialised (use rank=-1 "
                           "for a single process)")
    with _rank_zero_first(rank):
        dataset = LoadImagesAndLabels(
            path, imgsz, batch_size, augment=augment, hyp=hyp, rect=rect, cache_images=cache or None,
            single_cls=single_cls, stride=int(stride), pad=pad, prefix=prefix, nc=nc,
        )
    batch_size = min(batch_size, len(dataset))
    nw = min((os.cpu_count() or 1) // max(_world_size(), 1), batch_size if batch_size > 1 else 0, workers)
    sampler = None if rank == -1 else DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    generator = torch.Generator()
    generator.manual_seed(6148914691236517205 + seed + max(rank, 0))  # distinct worker seeds per rank
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        num_workers=nw,
        sampler=sampler,
        pin_memory=torch.cuda.is_available(),
        collate_fn=LoadImagesAndLabels.collate_fn,
        generator=generator,
    )
    return loader, dataset


class LoadImages:
    """Iterate images, then videos (frame by frame), from a file, folder, glob or ``.txt`` list (detect.py source),
    or an http(s) URL of an image or video file, read from a temporary download (live streams: ``LoadStreams``).

    Yields ``(path, im, im0, vid_cap, info)``: ``path`` the file as named by the source (the URL for a download),
    ``im`` the letterboxed CHW RGB uint8 array, ``im0`` the original BGR image, ``vid_cap`` the open
    ``cv2.VideoCapture`` for videos (None for images) and ``info`` a progress prefix. ``close()`` removes a download.
    """

    def __init__(self, source: Source, img_size: int = 640, stride: int = 32, auto: bool = True,
                 vid_stride: int = 1) -> None:
        self.cap: Optional[cv2.VideoCapture] = None
        self._download: Optional[tempfile.TemporaryDirectory] = None
        self.shown: dict[str, str] = {}  # local file -> the name its source gave it
        if isinstance(source, str) and is_url(source) and not is_stream(source):
            self._download = tempfile.TemporaryDirectory(prefix="yolo-source-")
            try:
                local = str(fetch_url(source, Path(self._download.name)))  # FileNotFoundError names the URL
            except FileNotFoundError:
                self.close()
                raise
            images, videos = ([local], []) if is_image(local) else ([], [local])
            self.shown[local] = source
        else:
            images, videos = list_media_files(source)  # FileNotFoundError names a missing source
        self.files = images + videos
        self.video_flag = [False] * len(images) + [True] * len(videos)
        self.nf = len(self.files)
        if not self.nf:
            raise FileNotFoundError(f"No images or videos found in {source}. Supported images: "
                                    f"{', '.join(IMG_FORMATS)}; videos: {', '.join(VID_FORMATS)}")
        self.img_size, self.stride, self.auto, self.vid_stride = img_size, stride, auto, max(1, int(vid_stride))
        self.mode = "video" if self.video_flag[0] else "image"
        self.frame = self.frames = 0
        self.count = 0
        self.skipped: list[tuple[str, str]] = []  # (file as named by the source, why) for inputs that gave nothing

    def __len__(self) -> int:
        return self.nf

    def __iter__(self) -> "LoadImages":
        self.count = 0
        self._release()
        return self

    def _release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def close(self) -> None:
        """Release an open video and remove a downloaded source."""
        self._release()
        if self._download is not None:
            self._download.cleanup()
            self._download = None

    def _open_video(self, path: str) -> None:
        self.cap = cv2.VideoCapture(path)
        self.frame = 0
        self.frames = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) / self.vid_stride)

    def _next_frame(self, path: str) -> Optional[np.ndarray]:
        if self.cap is None:
            self._open_video(path)
            if not self.cap.isOpened():
                LOGGER.warning("Cannot open video %s, skipped", self.shown.get(path, path))
                self.skipped.append((self.shown.get(path, path), "video cannot be opened"))
                return None
        ok = True
        for _ in range(self.vid_stride):  # skip vid_stride - 1 frames cheaply
            ok = self.cap.grab()
        if not ok:
            return None
        ok, im0 = self.cap.retrieve()
        return im0 if ok else None

    def __next__(self) -> tuple[str, np.ndarray, np.ndarray, Optional[cv2.VideoCapture], str]:
        while self.count < self.nf:
            path = self.files[self.count]
            shown = self.shown.get(path, path)
            if self.video_flag[self.count]:
                self.mode = "video"
                im0 = self._next_frame(path)
                if im0 is None:  # end of this video (or unreadable): next file
                    if self.frame == 0 and self.cap is not None and self.cap.isOpened():
                        LOGGER.warning("Video %s has no readable frame, skipped", shown)
                        self.skipped.append((shown, "no readable frame"))
                    self._release()
                    self.count += 1
                    self.frame = 0
                    continue
                self.frame += 1
                info = f"video {self.count + 1}/{self.nf} (frame {self.frame}/{self.frames}) {shown}: "
            else:
                self.mode = "image"
                self.count += 1
                im0 = cv2.imread(path)
                if im0 is None:
                    LOGGER.warning("Image unreadable (corrupt?), skipped: %s", path)
                    self.skipped.append((shown, "image unreadable (empty or corrupt)"))
                    continue
                info = f"image {self.count}/{self.nf} {shown}: "
            im = letterbox(im0, self.img_size, stride=self.stride, auto=self.auto)[0]
            im = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
            return shown, im, im0, self.cap, info
        self._release()
        raise StopIteration
