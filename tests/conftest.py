"""Shared fixtures. Data and weights come from settings (YOLO_DATASETS_DIR, YOLO_WEIGHTS_DIR): tests that need them
fail, not skip, when they are missing, so CI cannot go green without having checked them.

CI's shared folders are read-only, a user's usually are not. So that the suite checks the same behaviour both ways
(caches and exports beside read-only data go elsewhere) and never writes into a user's data, a writable datasets or
weights folder is replaced, for the whole session, by a read-only copy (the settings are pointed at it, so
subprocesses see it too). Tests of the writable case make their own writable copies.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import stat
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# OpenVINO's runtime, once loaded into the pytest process beside ONNX Runtime, made the next fork (a later test's
# subprocess.run) kill the whole suite with SIGSEGV, twice in a row and with no Python traceback. Its tests run in a
# pytest of their own (tests/test_openvino_child.py); YOLO_OPENVINO_CHILD=1 collects them here, as that child does.
OPENVINO_CHILD = "YOLO_OPENVINO_CHILD"
collect_ignore = [] if os.environ.get(OPENVINO_CHILD) else ["test_export_openvino.py"]

READ_ONLY_SETTINGS = ("YOLO_DATASETS_DIR", "YOLO_WEIGHTS_DIR")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: an end-to-end run (training, a sweep, a notebook, real-weight pruning or "
                                       "export) of 8 s or more here; `pytest -m 'not slow'` is the quick loop, CI runs all")
_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def _writable(root: Path) -> bool:
    """Whether any folder or file under ``root`` has a write permission bit."""
    return any(p.lstat().st_mode & _WRITE for p in (root, *root.rglob("*")) if not p.is_symlink())


def _read_only_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    for p in (*dst.rglob("*"), dst):
        if not p.is_symlink():
            p.chmod(p.stat().st_mode & ~_WRITE)
    return dst


@pytest.fixture(scope="session", autouse=True)
def _read_only_shared(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN202 - a generator fixture
    """Point each writable shared setting at a read-only copy of its folder for the session (see the docstring)."""
    copies = []
    with pytest.MonkeyPatch.context() as mp:
        for name in READ_ONLY_SETTINGS:
            src = Path(os.environ.get(name, ""))
            if os.environ.get(name) and src.is_dir() and _writable(src):
                dst = _read_only_copy(src, tmp_path_factory.mktemp("shared-ro") / src.name)
                mp.setenv(name, str(dst))
                copies.append(dst)
        yield
    for d in copies:  # give the write bits back so the temporary folders can be removed
        for p in (d, *d.rglob("*")):
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)


def _setting(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"environment variable {name} is not set; .ci/run sets it to the folder under ../shared")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{name}={value} is not a directory")
    return path


@pytest.fixture(scope="session")
def datasets_dir(_read_only_shared: None) -> Path:
    """The datasets root (``$YOLO_DATASETS_DIR``)."""
    return _setting("YOLO_DATASETS_DIR")


@pytest.fixture(scope="session")
def coco128_dir(datasets_dir: Path) -> Path:
    """The coco128 dataset folder."""
    path = datasets_dir / "coco128"
    if not (path / "images" / "val2017").is_dir():
        pytest.fail(f"coco128 not found at {path} (expected images/val2017 inside)")
    return path


@pytest.fixture(scope="session")
def weights_dir(_read_only_shared: None) -> Path:
    """The weights folder (``$YOLO_WEIGHTS_DIR``)."""
    return _setting("YOLO_WEIGHTS_DIR")


@pytest.fixture(scope="session")
def yolov5n_pt(weights_dir: Path) -> Path:
    """The official pretrained YOLOv5n checkpoint."""
    path = weights_dir / "yolov5n.pt"
    if not path.is_file():
        pytest.fail(f"official weights not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory, coco128_dir: Path) -> Path:
    """coco128 cut to 16 train, 16 val and 8 test images: the study's stages in seconds, with a test split."""
    root = tmp_path_factory.mktemp("tiny")
    train_imgs = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))
    val_imgs = sorted((coco128_dir / "images" / "val2017").glob("*.jpg"))
    for name, files in (("train", train_imgs[:16]), ("val", val_imgs[:16]), ("test", val_imgs[16:24])):
        (root / f"{name}.txt").write_text("\n".join(str(f.resolve()) for f in files) + "\n")
    from utils.data import load_dataset_config

    names = load_dataset_config("data/coco128.yaml")["names"]
    cfg = root / "tiny.yaml"
    cfg.write_text(json.dumps({"path": str(root), "train": "train.txt", "val": "val.txt", "test": "test.txt",
                               "names": dict(enumerate(names))}))
    return cfg


@pytest.fixture(scope="session")
def images_dir() -> Path:
    """Demo images (bus.jpg, zidane.jpg): ``$YOLO_IMAGES_DIR``."""
    return _setting("YOLO_IMAGES_DIR")


@pytest.fixture
def one_torch_thread():  # noqa: ANN201 - a generator fixture
    """Run in-process training or inference with one intra-op thread, restoring the setting afterwards (files that
    train in-process use it for every test: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).

    On 2 cores shared with other jobs, two OpenMP threads spin at every barrier while the other is descheduled:
    measured here, a training step at 320 pixels took 10.9 s with 2 threads and 1.4 s with one.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on a free local port (no outside network in tests); yields the base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join()
