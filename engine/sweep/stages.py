"""The stage graph of a sweep: base -> sparsity per rate -> prune per (rate, ratio) -> fine-tune per pruned model.

Each stage is an ordinary run of one of our scripts in its own run dir (``<sweep dir>/<kind>/<name>``); it is done
when the files that script writes last exist, which is what lets an interrupted sweep resume.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Union

from engine.prune.options import PruneOptions
from engine.sweep.config import SweepConfig
from engine.train.options import TrainOptions
from engine.val.options import ValOptions
from utils.cli import FlagError
from utils.options import to_argv, with_flags
from utils.paths import REPO_ROOT

__all__ = ["Stage", "SCRIPTS", "plan_stages", "stage_name", "resumable_checkpoint"]

LOGGER = logging.getLogger(__name__)

Options = Union[TrainOptions, PruneOptions, ValOptions]
SCRIPTS = {TrainOptions: "train.py", PruneOptions: "prune.py", ValOptions: "val.py"}  # the script of each options class

# What each script writes last: a run dir holding these files finished (train.py writes results.json after the final
# validation of best.pt; prune.py after validating and saving the pruned model).
_OUTPUTS = {"train.py": ("weights/best.pt", "results.json"), "prune.py": ("pruned_model.pt", "results.json"),
            "val.py": ("results.json",)}


@dataclass
class Stage:
    """One run of the sweep.

    Attributes:
        name: unique id: the run dir's name, the log file's stem and the table row's ``exp_name``.
        kind: base, sparsity, prune or finetune.
        script: train.py, prune.py or val.py (in the repo root).
        args: the script's flags, ``--project/--name/--exist-ok`` included.
        run_dir: where the script writes.
        deps: names of the stages whose outputs this one reads.
        rate: sparsity rate of its branch (None for the base).
        ratio: prune ratio of its branch (None above pruning).
        model: the model file this stage yields (for the base with ``base_epochs: 0``, the weights themselves).
        device: set by an executor that places the stage on one device: ``--device`` for the command (replacing the
            sweep's own); None keeps the args as planned.
        env: environment variables an executor sets for the command (``CUDA_VISIBLE_DEVICES`` of its device slot).
        options: the script's options that ``args`` was rendered from (``--device`` is replaced in them).
    """

    name: str
    kind: str
    script: str
    args: list[str]
    run_dir: Path
    deps: list[str] = field(default_factory=list)
    rate: float | None = None
    ratio: float | None = None
    model: str = ""
    device: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    options: Options | None = None

    @property
    def outputs(self) -> list[Path]:
        """The files whose presence means the stage finished."""
        return [self.run_dir / f for f in _OUTPUTS[self.script]]

    def is_done(self) -> bool:
        """True when every output exists (a finished run; nothing is re-run)."""
        return all(p.is_file() for p in self.outputs)

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command line; a training run interrupted after saving ``last.pt`` is resumed instead of restarted.

        ``--resume`` comes alone: the run continues with the options saved in its checkpoint (its sparsity and
        fine-tuning settings included, from which train.py builds its hooks), and train.py refuses other flags beside
        it. ``--device`` too comes from the checkpoint; on another device slot the run still lands on that slot's GPU,
        because ``env`` narrows ``CUDA_VISIBLE_DEVICES`` to it."""
        script = str(REPO_ROOT / self.script)
        if self.script == "train.py":
            last = resumable_checkpoint(self.run_dir)
            if last is not None:
                return [python, script, "--resume", str(last)]
        args = self.args
        if self.device is not None and self.options is not None:
            args = to_argv(replace(self.options, device=self.device))
        return [python, script, *args]


def resumable_checkpoint(run_dir: Path) -> Path | None:
    """``run_dir/weights/last.pt`` when it holds an unfinished training run (optimizer state, epochs left)."""
    last = run_dir / "weights" / "last.pt"
    if not last.is_file() or (run_dir / "results.json").is_file():
        return None
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable last.pt only means: start the stage over
        LOGGER.warning(f"{last}: cannot be read ({e}); the stage starts over")
        return None
    args = ckpt.get("train_args") or {}
    if ckpt.get("optimizer") is None or int(ckpt.get("epoch", -1)) + 1 >= int(args.get("epochs", 0)):
        return None
    return last


def stage_name(kind: str, rate: float | None = None, ratio: float | None = None) -> str:
    """``base``, ``sparsity_s0.01``, ``prune_s0.01_p0.3``, ``finetune_s0.01_p0.3``."""
    if kind == "base":
        return "base"
    return f"{kind}_s{rate:g}" + (f"_p{ratio:g}" if ratio is not None else "")


def _path_arg(p: str) -> str:
    """A path that exists from the caller's working directory, made absolute (stages run in the repo root);
    anything else is passed on as written (a repo-relative file, or a weights name found in $YOLO_WEIGHTS_DIR)."""
    return str(Path(p).resolve()) if p and Path(p).exists() else p


def plan_stages(cfg: SweepConfig, sweep_dir: str | Path) -> list[Stage]:
    """All stages of the sweep in run order: the base, then each rate's branch depth first (its sparsity run, then
    prune and fine-tune per ratio), so that complete rows appear early.

    Each stage's command is rendered from an options object of its script (:func:`utils.options.to_argv`), with the
    sweep's extra flags for its kind applied and checked here, so a renamed option or a bad extra flag fails when the
    sweep is planned, not when the stage runs.

    Args:
        cfg: the sweep settings.
        sweep_dir: the sweep's folder; stage run dirs go to ``<sweep_dir>/<kind>/<name>``.

    Raises:
        ValueError: extra flags that the stage's script refuses (naming the kind and the flag).
    """
    sweep_dir = Path(sweep_dir).resolve()
    data, weights = _path_arg(cfg.data), _path_arg(cfg.weights)
    common = dict(data=data, imgsz=cfg.imgsz, workers=cfg.workers, device=cfg.device)
    train = dict(common, batch_size=cfg.batch_size)
    val_bs = 2 * cfg.batch_size  # train.py validates at twice the training batch: same padding

    def make(kind: str, options: Options, rate: float | None = None, ratio: float | None = None,
             deps: tuple[str, ...] = (), model: str = "") -> Stage:
        name, script = stage_name(kind, rate, ratio), SCRIPTS[type(options)]
        run_dir = sweep_dir / kind / name
        options = replace(options, project=str(sweep_dir / kind), name=name, exist_ok=True)
        try:
            options = with_flags(options, cfg.extra.get(kind, []), script)
        except FlagError as e:
            raise ValueError(f"sweep setting 'extra.{kind}' ({script}): {e}") from None
        model = model or str(run_dir / ("pruned_model.pt" if script == "prune.py" else "weights/best.pt"))
        return Stage(name, kind, script, to_argv(options), run_dir, list(deps), rate, ratio, model, options=options)

    if cfg.base_epochs > 0:
        base = make("base", TrainOptions(weights=weights, epochs=cfg.base_epochs, **train))
    else:  # the weights are the base model: validate them with the same settings as every other row
        base = make("base", ValOptions(weights=weights, batch_size=val_bs, **common), model=weights)
    stages = [base]
    for rate in cfg.sparsity_rates:
        sparse = make("sparsity", TrainOptions(weights=base.model, epochs=cfg.sparsity_epochs, bn_sparsity=True,
                                               sparsity_rate=rate, sparsity_mode=cfg.mode, **train),
                      rate, deps=(base.name,))
        stages.append(sparse)
        for ratio in cfg.prune_ratios:
            pruned = make("prune", PruneOptions(weights=sparse.model, batch_size=val_bs, percent=ratio, mode=cfg.mode,
                                                round=cfg.round, latency=False, **common),
                          rate, ratio, deps=(sparse.name,))
            tune = make("finetune", TrainOptions(weights=pruned.model, epochs=cfg.finetune_epochs,
                                                 ft_pruned_model=True, hyp=_path_arg(cfg.finetune_hyp), **train),
                        rate, ratio, deps=(pruned.name,))
            stages += [pruned, tune]
    return stages
