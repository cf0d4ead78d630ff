"""Stages of slim.py, the slimming study and the main job: each a normal run of one of our scripts in its own folder,
skipped when its outputs exist (so the same command resumes), its output in ``<root>/logs/<stage>.log`` and shown as
one live progress line (:mod:`engine.progress`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping

from engine.command import run_command
from engine.progress import Plan, PlannedStage, StageProgress, clock, log_tail, print_log_tail
from utils.paths import REPO_ROOT

__all__ = ["StageRunner", "StageError", "ratio_tag", "run_stage"]


def run_stage(prefix: str, stage: str, argv: list[str], log: Path, *, cwd: Path = REPO_ROOT,
              env: Mapping[str, str] | None = None, live: bool | None = None, plan: Plan | None = None,
              on_start: Callable[[subprocess.Popen], bool] | None = None) -> tuple[int, float]:
    """Run one stage's command to the end: its output appended to ``log`` and followed by one progress line
    (:class:`engine.progress.StageProgress`; ``plan`` hears the first measured batch's pace). Every multi-stage
    command runs its stages through here (slim.py, the study and the main job by :class:`StageRunner`, sweep.py by
    its launcher); returns (exit code, seconds)."""
    progress = StageProgress(prefix, stage, live=live, on_rate=plan.rate(stage) if plan else None)
    try:
        rc = run_command(argv, log, cwd, env, on_start=on_start, on_output=progress.feed)
    finally:
        seconds = progress.close()
    return rc, seconds


class StageError(RuntimeError, ValueError):
    """A stage's script failed: the message names the stage, its log and the log's last line (the script's own ERROR
    line, usually), so a command made of stages ends with one ERROR line too (a ValueError to ``run_script``)."""


def ratio_tag(p: float) -> str:
    """``0.5`` -> ``'0.5'``: the ratio as it appears in stage and row names."""
    return f"{p:g}"


class StageRunner:
    """Runs the study's scripts as subprocesses in the repo root, each logged to ``<dir>/logs/<stage>.log``, with one
    live progress line per stage (:mod:`engine.progress`) and each stage's time in ``plan``.

    Args:
        root: the run folder.
        prefix: starts every progress line (the script's name).
        plan: the stages expected, shown now; :meth:`summary` prints their times at the end.
    """

    def __init__(self, root: Path, prefix: str = "slimming", plan: list[PlannedStage] | None = None) -> None:
        self.root = root
        self.prefix = prefix
        self.plan = Plan(prefix, plan or [])
        (root / "logs").mkdir(parents=True, exist_ok=True)
        if plan:
            self.plan.show()

    def run(self, stage: str, script: str, args: list[str], done: Path) -> Path:
        """Run ``script args`` unless ``done`` exists; return ``done``.

        Raises:
            StageError: the script failed or did not write ``done``, naming the log and its last line; the log's last
                lines are printed first.
        """
        if done.exists():
            print(f"{self.prefix}: {stage}: done ({done})", flush=True)
            self.plan.record(stage, None)
            return done
        log = self.root / "logs" / f"{stage}.log"
        print(f"{self.prefix}: {stage}: $ python {script} {' '.join(args)}  (log: {log})", flush=True)
        rc, seconds = run_stage(self.prefix, stage, [sys.executable, script, *args], log, plan=self.plan)
        if rc or not done.exists():
            print_log_tail(self.prefix, stage, log)
            lines = log_tail(log, 1)
            raise StageError(f"stage {stage} failed (exit {rc}), see {log}: {lines[-1] if lines else '(no output)'}")
        self.plan.record(stage, seconds)
        print(f"{self.prefix}: {stage}: done in {clock(seconds)}", flush=True)
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
