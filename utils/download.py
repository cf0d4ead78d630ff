"""Downloads: one file (with a progress bar), and archives unpacked into a folder (a dataset's ``download:`` URLs).

A failure says what failed, in words a user can act on: a DNS lookup (offline, or a wrong host), a refused connection,
an HTTP status, a timeout, a connection cut short, an archive that is not one. Nothing downloaded is ever run.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import socket
import ssl
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Sequence

__all__ = ["DownloadError", "download_file", "download_archives", "describe_failure", "url_file_name"]

LOGGER = logging.getLogger(__name__)

_SKIP = {"__MACOSX", ".DS_Store"}  # what archives made on a Mac carry beside the data (YOLOv5 skips them too)


class DownloadError(OSError):
    """A download or unpack failed; the message names the URL, the folder and what failed."""


def url_file_name(url: str) -> str:
    """The last component of a URL's path, without query or fragment ('' when the path ends in '/')."""
    return urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)


def describe_failure(e: BaseException, url: str, timeout: float | None = None) -> str:
    """What failed, in words: ``HTTP 404 Not Found``, ``connection refused by host:port``, ``DNS lookup of host
    failed (...)``, ``timed out``, ``not a zip archive``... for an exception raised by :func:`download_file` or by
    unpacking what it fetched."""
    parts = urllib.parse.urlparse(url)
    host = parts.hostname or url
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number
        port = "?"
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}".rstrip()
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, socket.gaierror):
        return f"DNS lookup of {host} failed ({reason.strerror or reason}): offline, or no such host"
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused by {host}:{port} (nothing listens there)"
    if isinstance(reason, ConnectionResetError):
        return f"connection reset by {host}:{port}"
    if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError
        within = f" within {timeout:g} s" if timeout else ""
        return f"timed out: no answer from {host}:{port}{within}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS/SSL error talking to {host} ({reason.reason or reason})"
    if isinstance(reason, http.client.IncompleteRead):
        return (f"connection closed early: got {len(reason.partial)} bytes, "
                f"{reason.expected} more were announced" if reason.expected is not None else
                f"connection closed early after {len(reason.partial)} bytes")
    if isinstance(reason, http.client.HTTPException):
        return f"bad HTTP answer from {host}:{port} ({type(reason).__name__}: {reason})"
    if isinstance(reason, (zipfile.BadZipFile, tarfile.TarError)):
        return f"bad archive: {reason}"
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"network unreachable for {host}:{port} (offline?)"
    if isinstance(reason, OSError) and reason.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if isinstance(reason, ValueError):
        return f"not a URL that can be downloaded ({reason})"
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    return text or type(reason).__name__


def download_file(url: str, file: str | Path, timeout: float = 30.0, progress: bool = False) -> Path:
    """Download ``url`` to ``file`` (its folder must exist) and return the path; ``progress`` shows a bar on stderr.

    Raises:
        urllib.error.URLError, OSError, ValueError, http.client.HTTPException: unreachable, refused, HTTP error,
            timed out, cut short, or not a URL urllib can open; :func:`describe_failure` says which, and callers say
            what the download was for.
    """
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as r, open(file, "wb") as f:
        length = r.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=url_file_name(url) or url,
                  disable=not progress, file=sys.stderr, leave=False) as bar:
            got = 0
            while chunk := r.read(1 << 16):
                f.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got < total:  # a server that closed the connection early without an error
        raise ConnectionError(f"connection closed early: got {got} of the {total} bytes announced")
    return Path(file)


def _check_members(names: Sequence[str], dest: Path, what: str) -> None:
    """Refuse archive members that would land outside ``dest`` (absolute paths, ``..``)."""
    dest = dest.resolve()
    for member in names:
        target = (dest / member).resolve()
        if target != dest and dest not in target.parents:
            raise zipfile.BadZipFile(f"{what}: member {member!r} points outside the folder it unpacks into; refused")


def _unpack(file: Path, dest: Path) -> bool:
    """Unpack a zip or tar archive into ``dest``; False (nothing done) for a file that is neither and does not claim
    to be one by its name."""
    name = file.name.lower()
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as zf:
            _check_members(zf.namelist(), dest, file.name)
            zf.extractall(dest)
        return True
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")) or (
            not name.endswith(".zip") and tarfile.is_tarfile(file)):
        with tarfile.open(file) as tf:
            _check_members(tf.getnames(), dest, file.name)
            tf.extractall(dest, filter="data")  # no links out, no devices, no set-uid bits
        return True
    if name.endswith(".zip"):
        head = file.read_bytes()[:60].decode("utf-8", "replace").strip()
        raise zipfile.BadZipFile(f"{file.name} ({file.stat().st_size} bytes) is not a zip archive"
                                 + (f" (it begins {head!r})" if head else ""))
    return False


def _merge(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into ``dst`` (folders merged, files replaced): an unpacked dataset joins what is there."""
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        if child.name in _SKIP:
            continue
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            _merge(child, target)
        else:
            os.replace(child, target)


def download_archives(urls: Sequence[str], dest: str | Path, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download each URL into folder ``dest`` and unpack it there (zip, tar, tar.gz); other files are kept as they
    are. Each file is fetched and unpacked in a temporary folder inside ``dest`` first, so a failure leaves no
    half-unpacked data behind. Returns ``dest``.

    Raises:
        DownloadError: ``dest`` cannot be written, or a download or unpack failed; the message names the URL, the
            folder and what failed (see :func:`describe_failure`).
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        if not os.access(dest, os.W_OK):
            raise PermissionError(errno.EACCES, "permission denied")
    except OSError as e:
        raise DownloadError(f"cannot write into {dest} ({e.strerror or e}): set YOLO_DATASETS_DIR to a folder you "
                            "can write") from None
    for url in urls:
        t0 = time.monotonic()
        LOGGER.info("Downloading %s into %s ...", url, dest)
        with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
            file = Path(tmp) / (url_file_name(url) or "download")
            try:
                download_file(url, file, timeout, progress=progress)
                unpacked = Path(tmp) / "unpacked"
                if _unpack(file, unpacked):
                    _merge(unpacked, dest)
                else:
                    os.replace(file, dest / file.name)
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException, zipfile.BadZipFile,
                    tarfile.TarError) as e:
                raise DownloadError(f"downloading {url} into {dest} failed: {describe_failure(e, url, timeout)}") \
                    from e
        LOGGER.info("Downloaded and unpacked %s into %s (%.1f s)", file.name, dest, time.monotonic() - t0)
    return dest
