"""detect.py sources beyond local files, as YOLOv5 takes them: an http(s) URL of an image or video file (downloaded),
a live stream (RTSP, RTMP, or an HTTP URL that names no media file) and a webcam index (``--source 0``)."""

from __future__ import annotations

import http.client
import logging
import re
import threading
import urllib.error
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from utils.download import describe_failure, download_file, url_file_name

from .files import is_image, is_video
from .letterbox import letterbox

__all__ = ["is_url", "is_stream", "source_name", "fetch_url", "LoadStreams"]

LOGGER = logging.getLogger(__name__)

URL_SCHEMES = ("http://", "https://", "rtsp://", "rtmp://")
STREAM_TIMEOUT = 30.0  # s to open a stream, and to wait for its next frame before calling it ended


def is_url(source: Union[str, Path]) -> bool:
    """True for an http(s), RTSP or RTMP URL."""
    return str(source).lower().startswith(URL_SCHEMES)


def is_stream(source: Union[str, Path]) -> bool:
    """True for a webcam index ('0') or a live stream: any RTSP/RTMP URL, and an http(s) URL whose path does not
    name an image or video file (an IP camera's feed); an http(s) media file is downloaded instead."""
    s = str(source)
    if s.isnumeric():
        return True
    if not is_url(s):
        return False
    name = url_file_name(s)
    return not s.lower().startswith(("http://", "https://")) or not (is_image(name) or is_video(name))


def source_name(path: Union[str, Path]) -> str:
    """A file name for what is saved from ``path``: a local file's own name; for a URL its last path component and
    for a webcam index 'webcam0', with characters that do not belong in a file name replaced."""
    s = str(path)
    if not (s.isnumeric() or is_url(s)):
        return Path(s).name
    name = f"webcam{s}" if s.isnumeric() else url_file_name(s)
    return re.sub(r"[^\w.-]", "_", name).strip("._") or "stream"


def fetch_url(url: str, dest: Path, timeout: float = 30.0) -> Path:
    """Download the image or video file at ``url`` into folder ``dest``, keeping its name.

    Raises:
        FileNotFoundError: the download failed (offline, unreachable, HTTP error); the message names the URL.
    """
    file = Path(dest) / source_name(url)
    LOGGER.info("Downloading %s to %s ...", url, file)
    try:
        return download_file(url, file, timeout)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:  # HTTP error, refused, ...
        raise FileNotFoundError(f"--source {url}: download failed ({describe_failure(e, url, timeout)})") from None


class LoadStreams:
    """Frames of one live source (webcam index or stream URL) for detect.py.

    A background thread reads the source as fast as it delivers and keeps only the newest frame, so detection always
    sees the feed as it is now instead of falling ever further behind when inference is slower than the camera (as
    YOLOv5's stream loader). Each frame is yielded at most once; iteration ends when the source does (or gives no
    frame for ``timeout`` seconds). Yields ``(source, im, im0, None, info)`` like :class:`LoadImages` (no capture is
    shared: the reader thread owns it).

    Raises:
        FileNotFoundError: the source cannot be opened, or gives no first frame; the message names it.
    """

    mode = "video"

    def __init__(self, source: str, img_size: int = 640, stride: int = 32, auto: bool = True, vid_stride: int = 1,
                 timeout: float = STREAM_TIMEOUT) -> None:
        self.source, self.img_size, self.stride, self.auto = source, img_size, stride, auto
        self.vid_stride = max(1, int(vid_stride))
        what = f"webcam {source}" if source.isnumeric() else f"stream {source}"
        if source.isnumeric():  # the index, not a file called '0'
            self.cap = cv2.VideoCapture(int(source))
        else:  # without timeouts an unreachable host or a stalled feed blocks for good
            ms = int(timeout * 1000)
            self.cap = cv2.VideoCapture(source, cv2.CAP_ANY,
                                        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if not self.cap.isOpened():
            raise FileNotFoundError(f"--source {source}: cannot open {what} (unreachable, refused, or no such device)")
        ok, im0 = self.cap.read()
        if not ok:
            self.cap.release()
            raise FileNotFoundError(f"--source {source}: {what} opened but gave no frame")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame = 0
        self._latest: Optional[np.ndarray] = im0
        self._ended = self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"stream {source}")
        self._thread.start()
        LOGGER.info("Reading %s (%dx%d at %.0f fps)", what, im0.shape[1], im0.shape[0], self.fps)

    def _read(self) -> None:
        n = 0
        while not self._stop and self.cap.grab():
            n += 1
            if n % self.vid_stride:
                continue
            ok, im0 = self.cap.retrieve()
            if not ok:
                break
            with self._cond:
                self._latest = im0
                self._cond.notify()
        with self._cond:
            self._ended = True
            self._cond.notify()

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> "LoadStreams":
        return self

    def __next__(self) -> tuple[str, np.ndarray, np.ndarray, None, str]:
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self._ended)
            im0, self._latest = self._latest, None
        if im0 is None:
            LOGGER.info("%s ended after %d frames", self.source, self.frame)
            self.close()
            raise StopIteration
        self.frame += 1
        im = letterbox(im0, self.img_size, stride=self.stride, auto=self.auto)[0]
        im = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
        return self.source, im, im0, None, f"{self.source} (frame {self.frame}): "

    def close(self) -> None:
        """Stop the reader thread and release the source."""
        self._stop = True
        self._thread.join(timeout=STREAM_TIMEOUT)
        if not self._thread.is_alive():  # a capture is not safe to release while another thread reads it
            self.cap.release()
