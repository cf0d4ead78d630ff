"""End-to-end tests of ``train.py``: learning from scratch, kill -9 and resume, torchrun DDP on CPU, clear errors on bad
inputs, and pretrained transfer to a different number of classes.

Everything trains at 128 pixels on coco128 (8 iterations of 16 images per epoch) or on 8-image copies in ``tmp_path``,
so the file stays near three minutes on 2 busy cores (with one intra-op thread per process: see
``one_torch_thread``). Runs that must be killed or launched by torchrun are subprocesses; the rest call
``train.main`` in this process.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import train
from engine.train.hooks import StepInfo, TrainHook
from engine.train.log import TrainLogger
from engine.train.options import TrainOptions
from engine.train.setup import build_model
from utils.checkpoint import atomic_save, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
COCO128_YAML = REPO / "data" / "coco128.yaml"
N_OUTPUT_TENSORS = 6  # Detect's three 1x1 output convs: weight and bias each


# ----------------------------------------------------------------------------------------------------------- helpers
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _env(datasets_dir: Path, weights_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", YOLO_DATASETS_DIR=str(datasets_dir), OMP_NUM_THREADS="1")
    if weights_dir is not None:
        env["YOLO_WEIGHTS_DIR"] = str(weights_dir)
    env.pop("YOLO_TRACEBACK", None)  # user errors must come out as one line
    return env


def read_results(run: Path) -> list[dict[str, float]]:
    """Rows of ``run/results.csv`` as dicts (column names stripped of the padding)."""
    with open(run / "results.csv", newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    return [dict(zip(header, map(float, r))) for r in rows[1:] if r]


def train_loss(row: dict[str, float]) -> float:
    return row["train/box_loss"] + row["train/obj_loss"] + row["train/cls_loss"]


def make_dataset(root: Path, coco128_dir: Path, n: int = 8, remap=None, names=None) -> Path:
    """Copy ``n`` coco128 train images (labels with classes mapped by ``remap``) into ``root``; returns its YAML."""
    src = coco128_dir / "images" / "train2017"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    picked = [im for im in sorted(src.glob("*.jpg"))
              if (coco128_dir / "labels" / "train2017" / f"{im.stem}.txt").is_file()][:n]
    for im in picked:
        shutil.copy(im, root / "images" / im.name)
        rows = (coco128_dir / "labels" / "train2017" / f"{im.stem}.txt").read_text().split("\n")
        out = []
        for r in filter(str.strip, rows):
            c, *box = r.split()
            out.append(" ".join([str(remap(int(c)) if remap else c), *box]))
        (root / "labels" / f"{im.stem}.txt").write_text("\n".join(out) + "\n")
    cfg = {"path": str(root), "train": "images", "val": "images",
           "names": names if names is not None else yaml.safe_load(COCO128_YAML.read_text())["names"]}
    file = root / "data.yaml"
    file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OutputReader:
    """Collects a subprocess's merged stdout/stderr in a thread (so the pipe never blocks it) for polling."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.chunks: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            self.chunks.append(chunk.decode(errors="replace"))

    @property
    def text(self) -> str:
        return "".join(self.chunks)


# ------------------------------------------------------------------------------------------- 1. learning from scratch
@pytest.mark.slow
def test_scratch_training_learns(tmp_path, coco128_dir):
    """yolov5n from scratch, 5 epochs on coco128 at 128 pixels: the losses are lower after training than before.

    Not asserted: that box+obj+cls falls *every* epoch. It does not in so short a run, and should not be asked to:
    the objectness target of a matched cell is the IoU of its predicted box, so while the boxes improve the
    objectness loss rises. Measured totals at 128 px with a 24-iteration (3-epoch) warmup: 0.2536, 0.2521, 0.2526,
    0.2536, 0.2517; with YOLOv5's 100-iteration warmup floor, at 160 px, or without warmup the total also rises in
    some epoch, and even the box loss alone can tick up by 0.0002 between two epochs.
    """
    summary = train.main(["--weights", "", "--cfg", "models/yolov5n.yaml", "--data", str(COCO128_YAML),
                          "--imgsz", "128", "--epochs", "5", "--batch-size", "16", "--noval", "--noplots",
                          "--device", "cpu", "--project", str(tmp_path), "--name", "scratch"])
    run = tmp_path / "scratch"
    rows = read_results(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    box = [r["train/box_loss"] for r in rows]
    cls = [r["train/cls_loss"] for r in rows]
    total = [train_loss(r) for r in rows]
    # Measured: box falls 2.7-3.8% from epoch 0 to 4, the total 0.7-1.0%, cls 1.0-1.3%.
    assert box[-1] < 0.985 * box[0] and max(box[2:]) < box[0], f"box loss: {box}"
    assert cls[-1] < cls[0], f"cls loss: {cls}"
    assert total[-1] < total[0], f"total train loss: {total}"
    assert summary["epochs"] == 5 and summary["train_images_per_second"] > 0
    ck = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 4 and ck["optimizer"] is None  # finished: no optimizer state left to resume from
    assert (run / "weights" / "best.pt").is_file() and (run / "results.json").is_file()


# --------------------------------------------------------------------------------------------- 2. kill -9 and resume
@pytest.mark.slow
def test_kill_mid_epoch_then_resume_finishes_the_planned_epochs(tmp_path, datasets_dir, coco128_dir, weights_dir,
                                                                 yolov5n_pt):
    """SIGKILL inside epoch 1 of 3 (32 images, 4 iterations of 8 per epoch), then ``--resume`` the run dir."""
    env = _env(datasets_dir, weights_dir)
    data = make_dataset(tmp_path / "data", coco128_dir, n=32)
    project = tmp_path / "runs"
    run = project / "run"
    cmd = [sys.executable, "train.py", "--weights", str(yolov5n_pt), "--data", str(data), "--imgsz", "128",
           "--epochs", "3", "--batch-size", "8", "--noval", "--noplots", "--device", "cpu", "--noautoanchor",
           "--project", str(project), "--name", "run"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = OutputReader(proc)
    last = run / "weights" / "last.pt"
    # The progress bar shows epoch "1/2" once the first iteration of epoch 1 is done: 3 iterations remain.
    in_epoch1 = re.compile(r"\s1/2\s+0G\s")
    deadline = time.time() + 600  # generous: the machine is shared
    try:
        while not (last.exists() and in_epoch1.search(out.text)):
            assert proc.poll() is None, f"training ended before it could be killed:\n{out.text[-3000:]}"
            assert time.time() < deadline, f"epoch 1 never started:\n{out.text[-3000:]}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    out.thread.join(5)
    assert proc.returncode == -signal.SIGKILL

    ck = torch.load(last, map_location="cpu", weights_only=True)  # complete, and loadable without pickle code
    assert ck["epoch"] in (0, 1) and ck["optimizer"] is not None
    assert [int(r["epoch"]) for r in read_results(run)] == list(range(ck["epoch"] + 1))
    if ck["epoch"] == 0:
        # Simulate the worst moment, a death between epoch 1's results.csv row and its checkpoint: the resumed run
        # redoes epoch 1 and must not leave that row twice.
        with open(run / "results.csv") as f:
            width = len(f.readline().split(","))
        with open(run / "results.csv", "a") as f:
            f.write(",".join(["1"] + ["-1"] * (width - 1)) + "\n")

    res = subprocess.run([sys.executable, "train.py", "--resume", str(run)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert f"at epoch {ck['epoch'] + 1} of 3" in res.stdout + res.stderr
    if ck["epoch"] == 0:
        assert "dropped 1 row(s) from epoch 1 on" in res.stdout + res.stderr
    rows = read_results(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert all(r["train/box_loss"] > 0 for r in rows)  # not the simulated row
    assert [p.name for p in project.iterdir()] == ["run"]  # resumed in place, no new run dir
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["epoch"] == 2 and final["optimizer"] is None
    assert (run / "weights" / "best.pt").is_file()

    again = subprocess.run([sys.executable, "train.py", "--resume", str(run)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    err = again.stderr.strip().splitlines()
    assert err and err[-1].startswith("ERROR:") and "already finished" in err[-1], again.stderr[-2000:]
    assert "Traceback" not in again.stderr


_CHILD_SAVE = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from utils.checkpoint import atomic_save
big = {"epoch": 1, "w": torch.ones(96_000_000)}  # ~380 MB: the write takes long enough to be caught midway
atomic_save(big, sys.argv[2])
"""


def test_atomic_save_killed_mid_write_leaves_old_file(tmp_path):
    target = tmp_path / "last.pt"
    atomic_save({"epoch": 0, "w": torch.zeros(3)}, target)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD_SAVE, str(REPO), str(target)])
    caught = False
    try:
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            tmps = list(tmp_path.glob(".last.pt.*.tmp"))
            if tmps and tmps[0].stat().st_size > 0:  # mid-write
                os.kill(proc.pid, signal.SIGKILL)
                caught = True
                break
            time.sleep(0.001)
    finally:
        proc.kill()
        proc.wait()
    assert caught, "the child finished writing before it could be killed; make its tensor bigger"
    ck = torch.load(target, weights_only=True)
    assert ck["epoch"] == 0 and torch.equal(ck["w"], torch.zeros(3))  # the old file, complete
    leftovers = sorted(tmp_path.glob(".last.pt.*.tmp"))  # a killed writer cannot clean up after itself
    assert len(leftovers) == 1
    leftovers[0].unlink()


def test_atomic_save_error_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "best.pt"
    atomic_save({"epoch": 3}, target)
    with pytest.raises(Exception):
        atomic_save({"epoch": 4, "bad": lambda: 0}, target)  # a lambda cannot be pickled
    assert torch.load(target, weights_only=True) == {"epoch": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_results_rows_of_redone_epochs_are_dropped(tmp_path):
    log = TrainLogger(tmp_path, tensorboard=False)
    for e in range(3):
        log.log_epoch(e, {"train/box_loss": 0.1 + e})
    with open(tmp_path / "results.csv", "a") as f:
        f.write("      ")  # a row cut off by a kill
    assert log.drop_epochs_from(1) == 3
    log.log_epoch(1, {"train/box_loss": 5.0})
    rows = read_results(tmp_path)
    assert [(int(r["epoch"]), r["train/box_loss"]) for r in rows] == [(0, 0.1), (1, 5.0)]
    assert log.drop_epochs_from(2) == 0


# ------------------------------------------------------------------------------------------------ 3. torchrun on CPU
@pytest.mark.slow
def test_torchrun_two_processes_gloo_one_set_of_outputs(tmp_path, datasets_dir, weights_dir, yolov5n_pt):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "train.py", "--device", "cpu", "--weights", str(yolov5n_pt),
           "--data", str(COCO128_YAML), "--imgsz", "128", "--epochs", "1", "--batch-size", "8", "--noval",
           "--noplots", "--noautoanchor", "--project", str(tmp_path), "--name", "ddp"]
    res = subprocess.run(cmd, cwd=REPO, env=_env(datasets_dir, weights_dir), capture_output=True, text=True,
                         timeout=900)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    # Each rank took half of the 128 images (4 per batch: the total batch of 8 split over 2 processes).
    for r in (0, 1):
        assert re.search(rf"DDP: rank {r}/2 epoch 0: 16 iterations, 64 of 128 images", log), log[-4000:]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    run = tmp_path / "ddp"
    assert [int(r["epoch"]) for r in read_results(run)] == [0]
    assert (run / "weights" / "last.pt").is_file() and (run / "weights" / "best.pt").is_file()
    ck = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 0 and not any(k.startswith("module.") for k in ck["model"])  # unwrapped from DDP


# ------------------------------------------------------------------------------------------------ 4. clear errors
def _main_error(argv: list[str], tmp_path: Path) -> str:
    with pytest.raises(ValueError) as e:  # FileNotFoundError is an OSError, handled by the caller where expected
        train.main(argv + ["--project", str(tmp_path / "runs"), "--device", "cpu", "--imgsz", "128"])
    return str(e.value)


def test_unknown_hyperparameter_is_named(tmp_path, datasets_dir):
    hyp = tmp_path / "hyp.bad.yaml"
    hyp.write_text("lr0: 0.01\nmomentun: 0.9\n")
    msg = _main_error(["--weights", "", "--cfg", "models/yolov5n.yaml", "--hyp", str(hyp)], tmp_path)
    assert str(hyp) in msg and "momentun" in msg and "known keys" in msg and "momentum" in msg


@pytest.mark.parametrize("line, message", [("lr0: 0", "'lr0' must be > 0, got 0"),
                                           ("mosaic: 1.5", "'mosaic' must be in [0, 1], got 1.5"),
                                           ("box: -0.05", "'box' must be >= 0, got -0.05")])
def test_out_of_range_hyperparameter_is_named(tmp_path, line, message):
    from utils.hyp import load_hyp

    hyp = tmp_path / "hyp.bad.yaml"
    hyp.write_text(f"lrf: 0.01\n{line}\n")
    with pytest.raises(ValueError, match=re.escape(f"{hyp}: {message}")):
        load_hyp(hyp)


def test_cfg_typo_names_layer_and_known_modules(tmp_path, datasets_dir):
    text = (REPO / "models" / "yolov5n.yaml").read_text()
    bad = re.sub(r"\[-1, 1, Conv, \[128, 3, 2\]\]", "[-1, 1, Cnov, [128, 3, 2]]", text, count=1)
    assert bad != text
    cfg = tmp_path / "yolov5n-typo.yaml"
    cfg.write_text(bad)
    msg = _main_error(["--weights", "", "--cfg", str(cfg)], tmp_path)
    assert "layer 1" in msg and "Cnov" in msg and "known modules" in msg and "C3" in msg and "Conv" in msg


def test_empty_training_set_is_an_error(tmp_path, coco128_dir):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    data = tmp_path / "empty.yaml"
    data.write_text(yaml.safe_dump({"path": str(tmp_path / "empty"), "train": "images",
                                    "val": str(coco128_dir / "images" / "val2017"), "names": ["a", "b"]}))
    with pytest.raises(FileNotFoundError, match=r"No images found in .*empty.images"):
        train.main(["--weights", "", "--cfg", "models/yolov5n.yaml", "--data", str(data), "--imgsz", "128",
                    "--device", "cpu", "--project", str(tmp_path / "runs")])


def test_batch_size_zero_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--batch-size", "0", "--project", str(tmp_path)])
    assert e.value.code == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------- 5. pretrained transfer
def test_pretrained_transfer_to_two_classes(tmp_path, coco128_dir, yolov5n_pt, caplog, capsys):
    """yolov5n.pt trained on two classes: all but the output convs transfer, the model summary at the start counts the
    two-class model's parameters (all of them train), and --noplots draws no batch mosaics."""
    data = make_dataset(tmp_path / "two", coco128_dir, n=8, remap=lambda c: 0 if c == 0 else 1,
                        names=["person", "other"])
    official = load_checkpoint(yolov5n_pt)
    opt = TrainOptions(weights=str(yolov5n_pt), data=str(data))
    model, _ = build_model(opt, 2, ["person", "other"])
    own, src = model.state_dict(), official["model"]
    different = sorted(k for k in own if not (k in src and src[k].shape == own[k].shape
                                              and torch.equal(src[k].float(), own[k])))
    assert len(different) == N_OUTPUT_TENSORS and all(k.startswith(f"model.{len(model.model) - 1}.m.")
                                                      for k in different), different

    caplog.set_level(logging.INFO)
    summary = train.main(["--weights", str(yolov5n_pt), "--data", str(data), "--imgsz", "128", "--epochs", "1",
                          "--batch-size", "8", "--noplots", "--device", "cpu", "--project", str(tmp_path / "runs"),
                          "--name", "ft"])
    m = re.search(r"Transferred (\d+)/(\d+) items", caplog.text)
    assert m, caplog.text[-2000:]
    assert int(m.group(1)) == int(m.group(2)) - N_OUTPUT_TENSORS == len(own) - N_OUTPUT_TENSORS
    out = capsys.readouterr().out
    m = re.search(r"^Model summary: (\d+) layers, (\d+) parameters, (\d+) gradients, ([\d.]+) GFLOPs$", out, re.M)
    assert m, out[:2000]
    n_params = sum(p.numel() for p in model.parameters())  # output convs for 2 classes, not the 80 of yolov5n.pt
    assert int(m.group(1)) == len(list(model.modules())) and int(m.group(2)) == int(m.group(3)) == n_params
    assert 4.0 < float(m.group(4)) < 4.5  # yolov5n is 4.5 GFLOPs at 640 with 80 classes
    run = tmp_path / "runs" / "ft"
    assert not list(run.glob("*_batch*.jpg"))
    assert [int(r["epoch"]) for r in read_results(run)] == [0]
    ck = load_checkpoint(run / "weights" / "best.pt")
    assert ck["nc"] == 2 and ck["names"] == ["person", "other"]
    assert ck["model"][f"model.{len(model.model) - 1}.m.0.weight"].shape[0] == 3 * (5 + 2)
    assert 0.0 <= summary["mAP50_95"] <= summary["mAP50"] <= 1.0


def test_coco_pruned_model_fine_tunes_on_two_classes(tmp_path, coco128_dir, yolov5n_pt):
    """Prune first, train on your data: a model pruned for COCO's 80 classes keeps every pruned layer's weights and gets
    new output convs for the dataset's classes."""
    from pruning import slim_model
    from utils.checkpoint import make_checkpoint

    data = make_dataset(tmp_path / "two", coco128_dir, n=8, remap=lambda c: 0 if c == 0 else 1,
                        names=["person", "other"])
    official = load_checkpoint(yolov5n_pt)
    model = build_model(TrainOptions(weights=str(yolov5n_pt), data=str(data)), 80, official["names"])[0]
    pruned, _ = slim_model(model, 0.2)
    atomic_save(make_checkpoint(pruned, half=True), tmp_path / "pruned.pt")
    src = load_checkpoint(tmp_path / "pruned.pt")
    assert src["nc"] == 80

    opt = TrainOptions(weights=str(tmp_path / "pruned.pt"), data=str(data), ft_pruned_model=True)
    two, _ = build_model(opt, 2, ["person", "other"])
    own = two.state_dict()
    different = sorted(k for k in own if not torch.equal(src["model"][k].float(), own[k]))
    assert different and all(k.startswith(f"model.{len(two.model) - 1}.m.") for k in different), different
    assert own[f"model.{len(two.model) - 1}.m.0.weight"].shape[0] == 3 * (5 + 2)
    assert sum(p.numel() for p in two.parameters()) < sum(p.numel() for p in model.parameters())
    assert two.eval()(torch.zeros(1, 3, 64, 64))[0].shape[-1] == 5 + 2


# ------------------------------------------------------------------------------- 6. the end of training: no second pass
def test_final_results_and_plots_are_the_best_epochs_without_a_second_pass(tmp_path, coco128_dir, yolov5n_pt, capsys):
    """The summary and the PR/confusion plots come from the validation of the epoch that wrote best.pt."""
    data = make_dataset(tmp_path / "d", coco128_dir, n=8)
    summary = train.main(["--weights", str(yolov5n_pt), "--data", str(data), "--imgsz", "128", "--epochs", "2",
                          "--batch-size", "8", "--device", "cpu", "--project", str(tmp_path / "runs"), "--name", "b"])
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "b"
    rows = read_results(run)
    fitness = [0.1 * r["metrics/mAP_0.5"] + 0.9 * r["metrics/mAP_0.5:0.95"] for r in rows]
    best = rows[fitness.index(max(fitness))]  # the first of equals, as training keeps it
    assert max(fitness) > 0
    assert summary["mAP50_95"] == pytest.approx(best["metrics/mAP_0.5:0.95"], abs=1e-4)
    assert summary["mAP50"] == pytest.approx(best["metrics/mAP_0.5"], abs=1e-4)
    assert f"holds epoch {int(best['epoch'])}'s weights" in out and "Validating" not in out
    for f in ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png", "results.png"):
        assert (run / f).stat().st_size > 1000, f
    # One val batch of 8 images drawn once, at the end (as YOLOv5's final validation), from the best epoch's pass.
    assert sorted(f.name for f in run.glob("val_batch*.jpg")) == ["val_batch0_labels.jpg", "val_batch0_pred.jpg"]
    assert all(cv2.imread(str(f)) is not None for f in run.glob("val_batch*.jpg"))


# ------------------------------------------------------------------ 7. the optimizer's schedule follows YOLOv5's rules
class StepRecorder(TrainHook):
    """Records, at every optimizer step, the iteration, epoch, and each group's lr and momentum."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int, list[float], list[float]]] = []

    def before_step(self, step: StepInfo) -> None:
        groups = step.optimizer.param_groups
        self.steps.append((step.ni, step.epoch, [g["lr"] for g in groups], [g["momentum"] for g in groups]))


def yolov5_schedule(iterations: int, nb: int, bs: int, epochs: int) -> list[tuple[int, int, list[float], list[float]]]:
    """YOLOv5's rules with its default hyperparameters, written out from its train.py's description.

    Nominal batch 64: gradients accumulate over ``accumulate`` iterations, which ramps from 1 to 64 / bs over the
    warmup (``max(round(3 * nb), 100)`` iterations, the last one included); an iteration steps when at least
    ``accumulate`` iterations passed since the last step. In the warmup the bias group's lr (group 0) falls from 0.1
    and the others rise from 0 to ``0.01 * lf(epoch)``, the momentum rises from 0.8 to 0.937; otherwise the lr is the
    linear schedule's ``0.01 * lf(epoch)``, ``lf`` falling from 1 to 0.01 over the epochs.
    """
    lr0, nw, last, accumulate = 0.01, max(round(3 * nb), 100), -1, max(round(64 / bs), 1)
    lf = lambda e: (1 - e / epochs) * (1 - 0.01) + 0.01  # noqa: E731 - YOLOv5's linear lambda
    lrs, mom, out = [lr0] * 3, [0.937] * 3, []
    for ni in range(iterations):
        epoch = ni // nb
        if ni % nb == 0:
            lrs = [lr0 * lf(epoch)] * 3  # the scheduler's value at the epoch's start
        if ni <= nw:
            accumulate = max(1, round(float(np.interp(ni, [0, nw], [1, 64 / bs]))))
            lrs = [float(np.interp(ni, [0, nw], [0.1 if j == 0 else 0.0, lr0 * lf(epoch)])) for j in range(3)]
            mom = [float(np.interp(ni, [0, nw], [0.8, 0.937]))] * 3
        if ni - last >= accumulate:
            out.append((ni, epoch, lrs, mom))
            last = ni
    return out


@pytest.mark.slow
def test_optimizer_steps_lrs_and_momentum_follow_yolov5(tmp_path, coco128_dir, yolov5n_pt):
    """14 epochs of 8 batches of 4 images: the ramp of accumulate (1 to 16), the steps it allows, the warmup's end at
    iteration 100 (inside epoch 12) and the lrs and momenta of every step are YOLOv5's; the EMA counts the steps."""
    from engine.train.trainer import Trainer

    data = make_dataset(tmp_path / "d", coco128_dir, n=32)
    epochs, nb, bs = 14, 8, 4
    rec = StepRecorder()
    trainer = Trainer(train.parse_opt(["--weights", str(yolov5n_pt), "--data", str(data), "--imgsz", "64",
                                       "--epochs", str(epochs), "--batch-size", str(bs), "--noval", "--noplots",
                                       "--workers", "0", "--device", "cpu", "--project", str(tmp_path / "runs")]),
                      hooks=[rec])
    trainer.train()
    expected = yolov5_schedule(epochs * nb, nb, bs, epochs)
    assert [s[0] for s in rec.steps] == [e[0] for e in expected]
    assert [s[0] for s in rec.steps][:8] == [0, 1, 2, 3, 5, 7, 9, 12]  # accumulate: 2 from iteration 4, 3 from 11
    for (ni, epoch, lrs, mom), (_, e_epoch, e_lrs, e_mom) in zip(rec.steps, expected):
        assert epoch == e_epoch, ni
        assert lrs == pytest.approx(e_lrs, rel=1e-9, abs=1e-12), ni
        assert mom == pytest.approx(e_mom, rel=1e-9), ni
    assert rec.steps[-1][3] == pytest.approx([0.937] * 3)  # the warmup ends at exactly the hyp's momentum
    assert trainer.ema.updates == len(expected)
