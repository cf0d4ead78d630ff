"""Data pipeline: dataset YAMLs, file discovery, label checks, letterbox, augmentation, datasets and loaders."""

from .augment import (
    DEFAULT_HYP,
    augment_hsv,
    box_candidates,
    flip_lr,
    flip_ud,
    mixup,
    mosaic4,
    random_perspective,
    xywhn2xyxy,
    xyxy2xywhn,
)
from .config import dataset_urls, datasets_dir, download_dataset, load_dataset_config, user_cache_dir
from .dataset import LoadImagesAndLabels, rect_batch_shapes
from .files import IMG_FORMATS, VID_FORMATS, img2label_paths, list_image_files, list_media_files
from .labels import LabelScan, scan_labels, verify_image_label
from .letterbox import letterbox
from .loaders import LoadImages, create_dataloader
from .sources import LoadStreams, fetch_url, is_stream, is_url, source_name

__all__ = [
    "DEFAULT_HYP",
    "IMG_FORMATS",
    "VID_FORMATS",
    "LabelScan",
    "LoadImages",
    "LoadImagesAndLabels",
    "LoadStreams",
    "augment_hsv",
    "box_candidates",
    "create_dataloader",
    "dataset_urls",
    "datasets_dir",
    "download_dataset",
    "fetch_url",
    "flip_lr",
    "flip_ud",
    "img2label_paths",
    "is_stream",
    "is_url",
    "letterbox",
    "list_image_files",
    "list_media_files",
    "load_dataset_config",
    "mixup",
    "mosaic4",
    "random_perspective",
    "rect_batch_shapes",
    "scan_labels",
    "source_name",
    "user_cache_dir",
    "verify_image_label",
    "xywhn2xyxy",
    "xyxy2xywhn",
]
