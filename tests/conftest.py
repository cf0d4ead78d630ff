"""Shared fixtures. Data and weights come from settings (YOLO_DATASETS_DIR, YOLO_WEIGHTS_DIR): tests that need them
fail, not skip, when they are missing, so CI cannot go green without having checked them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _setting(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"environment variable {name} is not set; .ci/run sets it to the folder under ../shared")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{name}={value} is not a directory")
    return path


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
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
def weights_dir() -> Path:
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
def images_dir() -> Path:
    """Demo images (bus.jpg, zidane.jpg): ``$YOLO_IMAGES_DIR``."""
    return _setting("YOLO_IMAGES_DIR")
