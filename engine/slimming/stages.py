"""The slimming study's stages: each a normal run of train.py, prune.py, export.py or val.py in its own folder,
skipped when its outputs exist, so the same command resumes an interrupted study.

Stage folders under ``<project>/<name>/``: ``base``, ``reference``, ``sparsity`` (train.py runs), ``prune_<p>``
(prune.py), ``finetune_<p>`` (train.py ``--ft_pruned_model``), ``export`` (export.py of the chosen fine-tuned model)
and ``val/<row>_<split>`` (val.py); ``logs/<stage>.log`` holds each stage's output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from utils.paths import REPO_ROOT

__all__ = ["SlimmingOptions", "StageRunner", "ratio_tag"]


@dataclass
class SlimmingOptions:
    """benchmarks/slimming.py's options."""

    data: str = "data/aquarium.yaml"
    weights: str = "yolov5n.pt"
    imgsz: int = 320
    epochs: int = 20  # base and sparsity training
    ft_epochs: int = 20  # fine-tuning each pruned model; reference trains epochs + ft_epochs
    batch_size: int = 16
    workers: int = 2
    sparsity_rate: str = "auto"
    # Targeted sparsity: drive to 0 the channels a prune at this share takes (0: L1 on every prunable gamma). Plain L1
    # on aquarium shrank every gamma alike (safe maximum 0.296 after 20 epochs, pruned mAP 0).
    # 60% of the prunable channels by Taylor importance: the share whose pruned yolov5n has >= 35% fewer GFLOPs
    # (Taylor takes the cheap channels first: 30% of them are only 17% of the GFLOPs).
    sparsity_target: float = 0.6
    mode: str = "normal"
    percents: list[float] = field(default_factory=lambda: [0.6])
    # Kept channel counts in multiples of 8: ONNX Runtime's CPU kernels work in blocks of 8 channels; measured on
    # aquarium at 320 px, the same 50% prune ran 1.33x faster than the unpruned model with --round 1 and 1.63x with 8.
    round: int = 8
    # prune.py's ranking after targeted sparsity: the targeted gammas end near 0, lowest in their layer; relative |gamma|
    # takes them first without plain |gamma|'s refusal (on yolov5n.pt a 28% plain-|gamma| prune would empty
    # model.17.m.0.cv1, in the P3 neck where aquarium's small fish are found).
    importance: str = "relative"
    # Which channels targeted sparsity drives to 0: by Taylor, the loss's own estimate of what each costs (masking 30%
    # of the 40-epoch aquarium model's channels kept mAP50-95 0.175 of 0.296 by Taylor, 0.000 by relative |gamma|).
    sparsity_importance: str = "taylor"
    ft_hyp: str = "data/hyps/hyp.scratch-low.yaml"  # the reference's hyperparameters: fine-tuning continues its recipe
    bn_recal_images: int = 256
    baselines: str = "all"  # "all": base and reference; "reference" (the main job, to fit its time budget); "none"
    threads: int = 1
    repeats: int = 50
    rounds: int = 10
    max_map_drop: float = 0.01  # the fine-tuned model chosen for export: the smallest within this of reference
    project: str = "runs/slimming"
    name: str = ""
    out: str = ""  # where the table, JSON and plot go (default: the study folder)


def ratio_tag(p: float) -> str:
    """``0.5`` -> ``'0.5'``: the ratio as it appears in stage and row names."""
    return f"{p:g}"


class StageRunner:
    """Runs the study's scripts as subprocesses in the repo root, each logged to ``<dir>/logs/<stage>.log``."""

    def __init__(self, root: Path, prefix: str = "slimming") -> None:
        self.root = root
        self.prefix = prefix  # starts every progress line (the script's name)
        (root / "logs").mkdir(parents=True, exist_ok=True)

    def run(self, stage: str, script: str, args: list[str], done: Path) -> Path:
        """Run ``script args`` unless ``done`` exists; return ``done``.

        Raises:
            RuntimeError: the script failed or did not write ``done``, naming the log and its last line.
        """
        if done.exists():
            print(f"{self.prefix}: {stage}: done ({done})", flush=True)
            return done
        log = self.root / "logs" / f"{stage}.log"
        cmd = [sys.executable, script, *args]
        print(f"{self.prefix}: {stage}: $ python {script} {' '.join(args)}  (log: {log})", flush=True)
        with open(log, "ab") as f:
            f.write(f"\n$ python {script} {' '.join(args)}\n".encode())
            f.flush()
            p = subprocess.run(cmd, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT)
        if p.returncode or not done.exists():
            lines = [ln for ln in log.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
            raise RuntimeError(f"stage {stage} failed (exit {p.returncode}), see {log}: "
                               f"{lines[-1] if lines else '(no output)'}")
        return done

    def train(self, stage: str, args: list[str], after: Path | None = None) -> Path:
        """A train.py stage in ``<root>/<stage>``; an interrupted one continues from its ``last.pt``. A finished one
        older than its input ``after`` (the pruned model was made again since) is moved to ``<stage>.old`` and
        trained again."""
        d = self.root / stage
        done = d / "results.json"
        if after is not None and done.exists() and done.stat().st_mtime < after.stat().st_mtime:
            old = d.with_name(f"{stage}.old")
            if old.exists():
                shutil.rmtree(old)
            d.rename(old)
            print(f"{self.prefix}: {stage}: its input {after} is newer; the old run is kept as {old}", flush=True)
        last = d / "weights" / "last.pt"
        if not done.exists() and last.exists():
            return self.run(stage, "train.py", ["--resume", str(last)], done).parent / "weights" / "best.pt"
        return self.run(stage, "train.py", [*args, "--project", str(self.root), "--name", stage, "--exist-ok"],
                        done).parent / "weights" / "best.pt"
