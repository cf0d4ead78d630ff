"""Pieces the trainer assembles: the model (fresh, pretrained or pruned), frozen layers, and the run to resume."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from engine.train.options import TrainOptions, options_from_dict
from models.yolo import Model
from utils.checkpoint import CheckpointError, load_checkpoint, load_weights, resolve_weights
from models.checkpoint import is_pruned_arch, model_from_checkpoint
from utils import dist
from utils.ema import ModelEMA
from utils.hyp import Hyp
from utils.paths import RunLock, increment_path

__all__ = ["build_model", "freeze_layers", "claim_run_dir", "find_resume_checkpoint", "ResumeState", "resolve_resume",
           "restore_training_state"]

LOGGER = logging.getLogger(__name__)


def build_model(opt: TrainOptions, nc: int, names: list[str]) -> tuple[Model, dict | None]:
    """Build the model to train.

    - no ``--weights``: from ``--cfg``;
    - a pruned checkpoint (or ``--ft_pruned_model``), or no ``--cfg``: the checkpoint's own architecture and all its
      weights (:func:`models.checkpoint.model_from_checkpoint`; a different ``nc`` re-heads it: only the output convs
      start afresh); ``--cfg`` is ignored for pruned checkpoints;
    - ``--cfg`` with an unpruned checkpoint: that architecture, with weights transferred by name and shape.

    Returns (model, checkpoint or None).
    """
    if not opt.weights:
        if not opt.cfg:
            raise ValueError("train.py needs --cfg when --weights '' (training from scratch)")
        return Model(opt.cfg, nc=nc, names=names), None
    path = resolve_weights(opt.weights)
    ckpt = load_checkpoint(path)
    pruned = is_pruned_arch(ckpt["arch"])
    if pruned or opt.ft_pruned_model:
        if opt.cfg:
            LOGGER.warning(f"--cfg {opt.cfg} ignored: fine-tuning keeps the architecture stored in {path}")
        if not opt.ft_pruned_model:
            LOGGER.info(f"{path} is a pruned model: keeping its architecture (add --ft_pruned_model to say so)")
    if pruned or opt.ft_pruned_model or not opt.cfg:
        # Pruned for other classes (e.g. a COCO model pruned before training on the user's data): every pruned layer
        # keeps its weights, the output convs start afresh for the new classes, as for an unpruned checkpoint.
        model = model_from_checkpoint(ckpt, path, "ema", names=names, nc=nc, rehead=True)
        if ckpt.get("nc", nc) == nc:
            n = len(model.state_dict())
            LOGGER.info(f"Transferred {n}/{n} items from {path}" + (" (pruned architecture)" if pruned else ""))
        return model, ckpt
    model = Model(opt.cfg, nc=nc, names=names)
    _transfer(model, ckpt.get("ema") or ckpt["model"], path, exclude=("anchors",))
    return model, ckpt


def _transfer(model: Model, state: dict, path: Path, what: str = "", exclude: tuple[str, ...] = ()) -> None:
    """Load the entries of ``state`` whose name and shape ``model`` shares (skipping names containing ``exclude``)."""
    own = model.state_dict()
    take = {k: v.float() if v.is_floating_point() else v for k, v in state.items()
            if k in own and own[k].shape == v.shape and not any(x in k for x in exclude)}
    model.load_state_dict(take, strict=False)
    LOGGER.info(f"Transferred {len(take)}/{len(own)} items from {path}" + (f" ({what})" if what else ""))


def freeze_layers(model: Model, freeze: list[int]) -> list[str]:
    """Freeze ``model.{i}.`` parameters: ``[10]`` freezes the first 10 layers, ``[0, 1, 2]`` those layers."""
    if not freeze or freeze == [0]:
        return []
    n = len(model.model)
    bad = [x for x in freeze if not 0 <= x <= n] if len(freeze) == 1 else [x for x in freeze if not 0 <= x < n]
    if bad:
        raise ValueError(f"--freeze {' '.join(map(str, freeze))}: the model has layers 0-{n - 1}, so {bad[0]} is out of "
                         f"range (one number N freezes the first N layers, several numbers freeze those layers)")
    prefixes = [f"model.{x}." for x in (range(freeze[0]) if len(freeze) == 1 else freeze)]
    frozen = []
    for k, p in model.named_parameters():
        if any(k.startswith(x) for x in prefixes):
            p.requires_grad_(False)
            frozen.append(k)
    LOGGER.info(f"Frozen {len(frozen)} parameter tensors ({len(prefixes)} layers)")
    return frozen


def claim_run_dir(opt: TrainOptions, save_dir: Path | None, hyp: Hyp, main: bool, resumed: bool) \
        -> tuple[Path, RunLock | None]:
    """The run folder and (rank 0) its lock; rank 0 also records the options and hyperparameters there.

    A new run's folder (``save_dir`` None) is claimed by rank 0 as ``project/name``, ``name2``, ... atomically and
    broadcast to the other ranks; ``opt.save_dir`` is set to it. A new run in an ``--exist-ok`` folder starts a new
    results table; half-written checkpoints a killed run left are removed.
    """
    if save_dir is None:  # rank 0 claims exp, exp2, ... atomically; the other ranks take its choice
        chosen = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True) if main else ""
        save_dir = Path(dist.broadcast_str(str(chosen)))
        opt.save_dir = str(save_dir)
    if not main:
        return save_dir, None
    wdir = save_dir / "weights"
    wdir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(save_dir).acquire()  # two runs never write into one folder
    for tmp in wdir.glob(".*.pt.*.tmp"):  # half-written by atomic_save when a run was killed
        tmp.unlink(missing_ok=True)
        LOGGER.info(f"Removed {tmp}, a checkpoint a stopped run left half-written")
    if not resumed:
        (save_dir / "results.csv").unlink(missing_ok=True)
    (save_dir / "opt.yaml").write_text(json.dumps(asdict(opt), indent=1))
    (save_dir / "hyp.yaml").write_text(json.dumps(hyp.to_dict(), indent=1))
    return save_dir, lock


def find_resume_checkpoint(resume: str, project: str = "runs/train") -> Path:
    """``--resume`` given a run dir, a ``last.pt``, or nothing (the most recent ``last.pt`` under ``project``)."""
    if resume and resume != "True":
        p = Path(resume)
        if p.is_dir():
            p = p / "weights" / "last.pt"
        if not p.is_file():
            raise FileNotFoundError(f"--resume {resume}: no checkpoint found at {p}")
        return p
    runs = sorted(Path(project).glob("*/weights/last.pt"), key=lambda x: x.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"--resume: no last.pt found under {project}/*/weights/")
    return runs[-1]


@dataclass(frozen=True)
class ResumeState:
    """A run to resume, resolved before the trainer starts: its ``last.pt`` and what that holds."""

    path: Path
    ckpt: dict


def resolve_resume(opt: TrainOptions) -> tuple[TrainOptions, ResumeState | None]:
    """The options to train with and the run to resume: ``(opt, None)`` for a new run; with ``--resume``, the resumed
    run's own options (other flags given with ``--resume`` are not used) and its checkpoint.

    Raises:
        FileNotFoundError: no checkpoint where ``--resume`` points.
        ValueError: not a training checkpoint, or a run that already finished.
    """
    if not opt.resume:
        return opt, None
    path = find_resume_checkpoint(opt.resume, opt.project)
    ckpt = load_checkpoint(path)
    if "train_args" not in ckpt or "optimizer" not in ckpt:
        raise ValueError(f"--resume {path}: not a training checkpoint (no options or optimizer state)")
    opt = options_from_dict(ckpt["train_args"], f"--resume {path}")
    start = int(ckpt.get("epoch", -1)) + 1
    run_dir = path.parent.parent
    # Every epoch ran but results.json is missing: the run was stopped while finalising (fp16 rewrite of last.pt and
    # best.pt, final validation, plots); resuming finishes that instead of refusing.
    finalising = start >= opt.epochs and not (run_dir / "results.json").exists()
    if not finalising and (ckpt.get("optimizer") is None or start >= opt.epochs):
        raise ValueError(f"--resume {path}: this run already finished its {opt.epochs} epochs; nothing to resume. "
                         f"Start a new run with --weights {path}")
    opt.resume, opt.weights, opt.save_dir = str(path), str(path), str(run_dir)
    return opt, ResumeState(path, ckpt)


def restore_training_state(resume: ResumeState, optimizer: torch.optim.Optimizer, ema: ModelEMA | None,
                           epochs: int) -> tuple[int, float]:
    """Load the optimizer and EMA state of the run being resumed; returns (first epoch to run, best fitness so far).

    A run stopped while finalising (every epoch ran) has nothing to load: only its finalisation is left to do.

    Raises:
        CheckpointError: the optimizer or EMA state does not fit this model, naming the file and the entry.
    """
    ckpt, path = resume.ckpt, resume.path
    start, best = int(ckpt["epoch"]) + 1, float(ckpt.get("best_fitness") or 0.0)
    if start >= epochs:
        LOGGER.info(f"{path}: all {epochs} epochs ran; finishing the interrupted finalisation")
        return start, best
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: checkpoint entry 'optimizer' does not fit this model's optimizer ({e})") \
            from None
    if ema is not None and ckpt.get("ema"):
        load_weights(ema.ema, ckpt["ema"], path, "ema")
        ema.updates = int(ckpt.get("updates") or 0)
    LOGGER.info(f"Resuming training from {path} at epoch {start} of {epochs}")
    return start, best
