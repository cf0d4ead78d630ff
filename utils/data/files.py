"""Finding image/video files and mapping images to their label files (YOLOv5 layout)."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, Sequence, Union

__all__ = [
    "IMG_FORMATS",
    "VID_FORMATS",
    "is_image",
    "is_video",
    "list_image_files",
    "list_media_files",
    "img2label_paths",
]

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")
VID_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv", "webm")

PathLike = Union[str, Path]
Source = Union[PathLike, Sequence[PathLike]]


def _suffix(p: str) -> str:
    return os.path.splitext(p)[1][1:].lower()


def is_image(p: PathLike) -> bool:
    """True if the file name has a supported image suffix."""
    return _suffix(str(p)) in IMG_FORMATS


def is_video(p: PathLike) -> bool:
    """True if the file name has a supported video suffix."""
    return _suffix(str(p)) in VID_FORMATS


def _walk(d: str, recursive: bool) -> Iterable[str]:
    """Files in a directory; hidden entries are skipped like glob's ``*.*`` does. Links to folders are followed, each
    real folder once."""
    if not recursive:
        for name in os.listdir(d):
            full = os.path.join(d, name)
            if not name.startswith(".") and os.path.isfile(full):
                yield full
        return
    seen: set[str] = set()  # real folders visited: a link back up (images/train/loop -> .) is walked once, not forever
    for root, dirs, files in os.walk(d, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield os.path.join(root, name)


def _read_list(txt: Path) -> list[str]:
    """Entries of a ``.txt`` list of images; relative entries are relative to the list's folder."""
    out = []
    with open(txt, encoding="utf-8") as f:
        for line in f:
            entry = line.strip()
            if entry:
                p = Path(entry).expanduser()
                out.append(str(p if p.is_absolute() else txt.parent / p))
    return out


def _expand(src: PathLike, recursive: bool) -> list[str]:
    """All candidate files named by one source: directory, glob pattern, ``.txt`` list or single file."""
    s = os.path.expanduser(str(src))
    if any(c in s for c in "*?["):
        return [f for f in glob.glob(s, recursive=True) if os.path.isfile(f)]
    p = Path(s)
    if p.is_dir():
        return list(_walk(s, recursive))
    if p.is_file():
        return _read_list(p) if p.suffix.lower() == ".txt" else [s]
    raise FileNotFoundError(f"{src} does not exist (expected an image/video file, a directory, a glob or a .txt list)")


def _collect(source: Source, recursive: bool) -> list[str]:
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    files: list[str] = []
    for src in sources:
        files.extend(_expand(src, recursive))
    # Absolute paths keep results valid if the working directory changes (e.g. in DataLoader workers).
    return sorted({os.path.abspath(f) for f in files})


def list_image_files(source: Source) -> list[str]:
    """Sorted absolute image paths from a directory (recursive), glob, single file, ``.txt`` list, or a list of these.

    Raises:
        FileNotFoundError: a named source does not exist.
    """
    return [f for f in _collect(source, recursive=True) if is_image(f)]


def list_media_files(source: Source, recursive: bool = False) -> tuple[list[str], list[str]]:
    """(images, videos) named by ``source``; directories are not searched recursively by default (as detect.py)."""
    files = _collect(source, recursive=recursive)
    return [f for f in files if is_image(f)], [f for f in files if is_video(f)]


def img2label_paths(im_files: Iterable[PathLike]) -> list[str]:
    """Label path of each image: last ``/images/`` component -> ``/labels/``, suffix -> ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    out = []
    for f in map(str, im_files):
        if sa in f:
            head, tail = f.rsplit(sa, 1)
            f = head + sb + tail
        out.append(os.path.splitext(f)[0] + ".txt")
    return out
