"""The sweep's scheduler: skip finished stages, hand the rest to an executor as their inputs become ready, record
every outcome.

One scheduler for every executor (sequential, parallel device slots, Ray; see :mod:`engine.sweep.executors`). A stage
whose outputs exist is not run again. A stage starts only after every stage it depends on finished; a failed stage
(non-zero exit, or no outputs) marks the stages that depend on it as skipped, and nothing else stops. Each stage's
start and end times (and where it ran) go to ``state.json``. ``on_change`` is called after every stage that starts or
ends, so the caller can rewrite its tables and no finished row is ever lost.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from engine.progress import Plan, clock, print_log_tail
from utils.files import atomic_write_json, read_json
from engine.sweep.stages import Stage

if TYPE_CHECKING:
    from engine.sweep.executors import Executor

__all__ = ["SweepState", "run_stages", "error_from_log"]

LOGGER = logging.getLogger(__name__)


class SweepState:
    """Per-stage status (``done``, ``failed``, ``skipped``, ``interrupted``, ``running``) in ``state.json``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.stages: dict[str, dict] = read_json(self.path)

    def status(self, name: str) -> str:
        """The stage's status, ``pending`` when it has none."""
        return self.stages.get(name, {}).get("status", "pending")

    def finished(self, stage: Stage) -> bool:
        """Whether ``stage``'s outputs are there to read: on disk, and not those of a stage still running, which may be
        writing them (the scripts write results.json in place; the tables are rewritten while other stages run)."""
        return self.status(stage.name) != "running" and stage.is_done()

    def set(self, name: str, status: str, **info: object) -> None:
        """Record ``status`` (and details such as ``error``, ``returncode``, ``seconds``) and save atomically."""
        entry = {"status": status, **info}
        if status == "done" and "seconds" not in info and "seconds" in self.stages.get(name, {}):
            entry["seconds"] = self.stages[name]["seconds"]  # a reused stage keeps the time it took
        self.stages[name] = entry
        atomic_write_json(self.path, self.stages)


def error_from_log(log: Path, returncode: int, limit: int = 300) -> str:
    """A one-line reason for a failed stage: the script's ``ERROR:`` line, else the last line of its output."""
    lines: list[str] = []
    if log.is_file():
        text = log.read_text(errors="replace").replace("\r", "\n")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    reason = errors[-1] if errors else (lines[-1] if lines else "no output")
    reason = reason[:limit] + ("..." if len(reason) > limit else "")
    return f"exit code {returncode}: {reason}"


def run_stages(stages: list[Stage], executor: "Executor", state: SweepState, log_dir: Path,
               on_change: Callable[[], None] | None = None, plan: Plan | None = None) -> SweepState:
    """Run ``stages`` (in dependency order as listed) on ``executor``, at most ``executor.capacity`` at once.

    Ready stages start in plan order. The executor is not closed here (its owner does that).

    Args:
        stages: the graph (see :func:`engine.sweep.stages.plan_stages`).
        executor: starts each stage (see :mod:`engine.sweep.executors`).
        state: where outcomes are recorded (saved after each change), with ``started`` / ``ended`` times (seconds
            since the epoch) and ``where`` the stage ran.
        log_dir: each stage's output goes to ``log_dir/<stage name>.log``.
        on_change: called after each stage that starts or ends (done, failed or skipped).
        plan: where each stage's time is noted (:meth:`engine.progress.Plan.summary` prints them).

    Raises:
        KeyboardInterrupt: after stopping the running stages (``executor.stop()``) and marking them interrupted;
            finished stages stay recorded.
    """
    by_name = {s.name: s for s in stages}
    todo: list[Stage] = []
    plan = plan or Plan("sweep", [])
    for s in stages:
        if s.is_done():
            plan.record(s.name, None)
            if state.status(s.name) != "done":
                state.set(s.name, "done", reused=True)
        else:
            todo.append(s)
    for s in todo:
        if state.status(s.name) != "pending":  # a stage failed or interrupted last time gets a fresh try
            state.set(s.name, "pending")
    if on_change:
        on_change()
    running: dict[Future, tuple[Stage, float, str]] = {}
    try:
        while todo or running:
            for s in list(todo):
                if len(running) >= executor.capacity:
                    break
                dep_states = {d: state.status(d) for d in s.deps if d in by_name}
                blocked = {d: st for d, st in dep_states.items() if st in ("failed", "skipped")}
                if blocked:
                    todo.remove(s)
                    d, st = next(iter(blocked.items()))
                    state.set(s.name, "skipped", error=f"not run: {d} {st}")
                    LOGGER.info(f"sweep: {s.name} skipped ({d} {st})")
                    if on_change:
                        on_change()
                    continue
                if all(st == "done" for st in dep_states.values()):
                    todo.remove(s)
                    started = time.time()
                    fut, where = executor.submit(s, log_dir / f"{s.name}.log")
                    running[fut] = (s, started, where)
                    state.set(s.name, "running", started=started, **({"where": where} if where else {}))
                    print(f"sweep: running {s.name}{' on ' + where if where else ''} "
                          f"(log: {log_dir / (s.name + '.log')})", flush=True)
                    if on_change:
                        on_change()
            if not running:
                if todo:  # cannot happen with a graph from plan_stages; guards hand-made ones
                    raise ValueError(f"sweep: stages {[s.name for s in todo]} depend on stages not in the plan")
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                s, started, where = running[fut]
                _record(s, fut, started, where, state, log_dir, plan)  # re-raises a launcher's KeyboardInterrupt
                del running[fut]
                if on_change:
                    on_change()
    except KeyboardInterrupt:
        executor.stop()
        for fut, (s, _, _) in running.items():
            fut.cancel()
            state.set(s.name, "interrupted", error="interrupted; resumes on the next run")
        print("sweep: interrupted; finished stages are kept, run the same command again to resume", flush=True)
        raise
    return state


def _record(s: Stage, fut: Future, started: float, where: str, state: SweepState, log_dir: Path,
            plan: Plan) -> None:
    log = log_dir / f"{s.name}.log"
    try:
        rc = fut.result()
    except Exception as e:  # noqa: BLE001 - an executor that crashed is one failed stage, not a lost sweep
        ended = time.time()
        state.set(s.name, "failed", returncode=None, error=f"executor error: {e}", seconds=ended - started,
                  started=started, ended=ended, **({"where": where} if where else {}))
        LOGGER.error(f"sweep: {s.name} could not be run: {e}")
        return
    ended = time.time()
    times = {"seconds": ended - started, "started": started, "ended": ended, **({"where": where} if where else {})}
    if rc == 0 and s.is_done():
        state.set(s.name, "done", returncode=0, **times)
        plan.record(s.name, ended - started)
        print(f"sweep: {s.name} done in {clock(ended - started)}", flush=True)
        return
    if rc == 0:
        missing = ", ".join(str(p.relative_to(s.run_dir)) for p in s.outputs if not p.is_file())
        error = f"exit code 0 but {missing} missing in {s.run_dir}"
    else:
        error = error_from_log(log, rc)
    state.set(s.name, "failed", returncode=rc, error=error, **times)
    print_log_tail("sweep", s.name, log)
    print(f"sweep: {s.name} FAILED ({error}); see {log}", flush=True)
