"""Per-epoch training records: ``results.csv`` rows (YOLOv5 column names), TensorBoard scalars and histograms."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

__all__ = ["TrainLogger", "BASE_COLUMNS"]

LOGGER = logging.getLogger(__name__)

BASE_COLUMNS = ["epoch", "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
                "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss",
                "x/lr0", "x/lr1", "x/lr2"]


def _row_epoch(line: str) -> float:
    """The epoch of a results.csv row; blank or cut-off rows (a kill mid-write) count as infinitely late."""
    try:
        return float(line.split(",")[0])
    except ValueError:
        return float("inf")


class TrainLogger:
    """Writes one ``results.csv`` row and the matching TensorBoard scalars per epoch (rank 0 only).

    Extra columns (e.g. sparsity figures from hooks) are appended after the YOLOv5 ones; the header is fixed by the
    first row, so a resumed run keeps appending to the same file.
    """

    def __init__(self, save_dir: Path, tensorboard: bool = True) -> None:
        self.csv = save_dir / "results.csv"
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(save_dir))
            except ImportError:
                LOGGER.info("TensorBoard not installed: scalars go to results.csv only")

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        """Append a row (``values`` keyed by column name) and write the scalars to TensorBoard."""
        row = {"epoch": epoch, **values}
        if self.csv.exists():
            with open(self.csv) as f:
                header = [h.strip() for h in f.readline().split(",")]
        else:
            header = BASE_COLUMNS + [k for k in row if k not in BASE_COLUMNS]
            self.csv.write_text(",".join(f"{h:>20}" for h in header) + "\n")
        with open(self.csv, "a", newline="") as f:
            csv.writer(f).writerow([f"{row.get(h, float('nan')):>20.5g}" if h != "epoch" else f"{epoch:>20}"
                                    for h in header])
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, epoch)

    def drop_epochs_from(self, epoch: int) -> int:
        """Remove the rows of ``epoch`` and later (a resumed run redoes them); returns how many were removed.

        A run killed after writing an epoch's row but before saving that epoch's checkpoint resumes at that epoch
        again; without this its row would appear twice.
        """
        if not self.csv.exists():
            return 0
        lines = self.csv.read_text().splitlines(keepends=True)
        keep = lines[:1] + [ln for ln in lines[1:] if _row_epoch(ln) < epoch]
        dropped = len(lines) - len(keep)
        if dropped:
            tmp = self.csv.with_name(self.csv.name + ".tmp")
            tmp.write_text("".join(keep))
            tmp.replace(self.csv)  # atomic, like the checkpoints
            LOGGER.info(f"{self.csv}: dropped {dropped} row(s) from epoch {epoch} on, which this run redoes")
        return dropped

    def histogram(self, tag: str, values: np.ndarray, epoch: int) -> None:
        """A TensorBoard histogram (e.g. BN gammas)."""
        if self.tb is not None:
            self.tb.add_histogram(tag, values, epoch)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.tb is not None:
            self.tb.close()
