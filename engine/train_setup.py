"""Pieces the trainer assembles: the model (fresh, pretrained, pruned or resumed), and resume bookkeeping."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.train_options import TrainOptions, options_from_dict
from models.yolo import Model
from utils.checkpoint import load_checkpoint, load_weights, resolve_weights

__all__ = ["is_pruned_arch", "arch_for_classes", "build_model", "find_resume_checkpoint", "options_for_resume",
           "freeze_layers", "load_resume_state"]

LOGGER = logging.getLogger(__name__)


def is_pruned_arch(arch: dict) -> bool:
    """True when an architecture dict carries explicit (pruned) channel counts."""
    return bool(arch.get("channels"))


def build_model(opt: TrainOptions, nc: int, names: list[str]) -> tuple[Model, dict | None]:
    """Build the model to train.

    - no ``--weights``: from ``--cfg``;
    - a pruned checkpoint (or ``--ft_pruned_model``): its own architecture, all weights (``--cfg`` is ignored);
    - any other checkpoint: ``--cfg`` if given, else the checkpoint's architecture, with weights transferred by name and
      shape (a different ``nc`` keeps everything but the output convs).

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
        arch = ckpt["arch"]
        entry = "ema" if ckpt.get("ema") else "model"
        state = ckpt[entry]
        if ckpt.get("nc", nc) == nc:
            model = Model(arch, nc=nc, names=names)
            load_weights(model, state, path, entry)
            LOGGER.info(f"Transferred {len(state)}/{len(model.state_dict())} items from {path} (pruned architecture)")
            return model, ckpt
        # Pruned for other classes (e.g. a COCO model pruned before training on the user's data): every pruned layer
        # keeps its weights, the output convs start afresh for the new classes, as for an unpruned checkpoint.
        model = Model(arch_for_classes(arch, nc), nc=nc, names=names)
        _transfer(model, state, path, f"pruned architecture, {ckpt.get('nc')} -> {nc} classes")
        return model, ckpt
    model = Model(opt.cfg or ckpt["arch"], nc=nc, names=names)
    _transfer(model, ckpt.get("ema") or ckpt["model"], path, exclude=("anchors",) if opt.cfg else ())
    return model, ckpt


def arch_for_classes(arch: dict, nc: int) -> dict:
    """A pruned architecture dict re-headed for ``nc`` classes: the Detect output convs get ``na * (nc + 5)`` outputs."""
    old_nc = arch["nc"]
    detect = len(arch["backbone"]) + len(arch["head"]) - 1
    channels = dict(arch["channels"])
    for name, shape in channels.items():
        if name.startswith(f"model.{detect}.m."):
            channels[name] = [shape[0], shape[1] // (old_nc + 5) * (nc + 5), *shape[2:]]
    return {**arch, "nc": nc, "channels": channels}


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


def options_for_resume(resume: str, project: str = "runs/train") -> tuple[TrainOptions, dict, Path]:
    """Options, checkpoint and path of the run to resume; a finished run (all epochs and ``results.json``) is an
    error, one stopped while finalising is resumed to finish it."""
    path = find_resume_checkpoint(resume, project)
    ckpt = load_checkpoint(path)
    if "train_args" not in ckpt or "optimizer" not in ckpt:
        raise ValueError(f"--resume {path}: not a training checkpoint (no options or optimizer state)")
    opt = options_from_dict(ckpt["train_args"])
    start = int(ckpt.get("epoch", -1)) + 1
    run_dir = path.parent.parent
    # Every epoch ran but results.json is missing: the run was stopped while finalising (fp16 rewrite of last.pt and
    # best.pt, final validation, plots); resuming finishes that instead of refusing.
    finalising = start >= opt.epochs and not (run_dir / "results.json").exists()
    if not finalising and (ckpt.get("optimizer") is None or start >= opt.epochs):
        raise ValueError(f"--resume {path}: this run already finished its {opt.epochs} epochs; nothing to resume. "
                         f"Start a new run with --weights {path}")
    opt.resume, opt.weights, opt.save_dir = str(path), str(path), str(path.parent.parent)
    return opt, ckpt, path


def load_resume_state(model: Model, ckpt: dict, path: str | Path = "checkpoint") -> None:
    """Load the raw (non-EMA) weights of a training checkpoint into ``model``.

    Raises:
        CheckpointError: they do not fit the model (see :func:`utils.checkpoint.load_weights`).
    """
    load_weights(model, ckpt["model"], path, "model")

