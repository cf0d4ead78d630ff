"""Running a stage graph: skip finished stages, run the rest as subprocesses (N at a time), record every outcome.

A stage whose outputs exist is not run again. A failed stage (non-zero exit, or no outputs) marks the stages that
depend on it as skipped; nothing else stops. ``on_change`` is called after every stage that finishes, so the caller
can rewrite its tables and no finished row is ever lost.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Protocol

from engine.sweep.files import atomic_write_json, read_json
from engine.sweep.stages import Stage
from utils.paths import REPO_ROOT

__all__ = ["Launcher", "SubprocessLauncher", "SweepState", "run_stages", "error_from_log"]

LOGGER = logging.getLogger(__name__)


class Launcher(Protocol):
    """Runs one stage to the end, its output written to ``log``; returns the exit code."""

    def __call__(self, stage: Stage, log: Path) -> int: ...


class SubprocessLauncher:
    """Run ``stage.argv()`` in the repo root, teeing stdout and stderr into the log (and the console with ``echo``).

    Args:
        echo: copy the output to this process's stdout (with several stages at once, only the logs get it).
        cwd: working directory of the stages (the repo root: the scripts' default files are relative to it).
    """

    def __init__(self, echo: bool = True, cwd: Path = REPO_ROOT) -> None:
        self.echo, self.cwd = echo, cwd
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def __call__(self, stage: Stage, log: Path) -> int:
        argv = stage.argv()
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # progress reaches the log as it happens
        with open(log, "ab") as f:
            f.write(f"\n$ {' '.join(argv)}\n".encode())
            f.flush()
            with self._lock:
                if self._stopping:
                    return -2
                proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                self._procs.add(proc)
            try:
                # Raw chunks, not lines: tqdm redraws with '\r', and a line reader would hold progress back.
                while chunk := proc.stdout.read1(65536):
                    f.write(chunk)
                    f.flush()
                    if self.echo:
                        sys.stdout.buffer.write(chunk)
                        sys.stdout.flush()
                return proc.wait()
            finally:
                with self._lock:
                    self._procs.discard(proc)

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate every running stage (and refuse new ones); kill those still alive after ``timeout`` s."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.time() + timeout
        for p in procs:
            try:
                p.wait(max(deadline - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()


class SweepState:
    """Per-stage status (``done``, ``failed``, ``skipped``, ``interrupted``, ``running``) in ``state.json``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.stages: dict[str, dict] = read_json(self.path)

    def status(self, name: str) -> str:
        """The stage's status, ``pending`` when it has none."""
        return self.stages.get(name, {}).get("status", "pending")

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


def run_stages(stages: list[Stage], launch: Launcher, state: SweepState, log_dir: Path, jobs: int = 1,
               on_change: Callable[[], None] | None = None) -> SweepState:
    """Run ``stages`` (in dependency order as listed) with at most ``jobs`` at once.

    Args:
        stages: the graph (see :func:`engine.sweep.stages.plan_stages`).
        launch: runs one stage; a :class:`SubprocessLauncher`, or a fake in tests.
        state: where outcomes are recorded (saved after each change).
        log_dir: each stage's output goes to ``log_dir/<stage name>.log``.
        jobs: stages at the same time.
        on_change: called after each stage that starts or ends (done, failed or skipped).

    Raises:
        KeyboardInterrupt: after stopping the running stages (``launch.stop()`` when it has one) and marking them
            interrupted; finished stages stay recorded.
    """
    by_name = {s.name: s for s in stages}
    todo: list[Stage] = []
    for s in stages:
        if s.is_done():
            if state.status(s.name) != "done":
                state.set(s.name, "done", reused=True)
        else:
            todo.append(s)
    for s in todo:
        if state.status(s.name) != "pending":  # a stage failed or interrupted last time gets a fresh try
            state.set(s.name, "pending")
    if on_change:
        on_change()
    running: dict[Future, tuple[Stage, float]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            while todo or running:
                for s in list(todo):
                    if len(running) >= jobs:
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
                        state.set(s.name, "running")
                        print(f"sweep: running {s.name} (log: {log_dir / (s.name + '.log')})", flush=True)
                        running[pool.submit(launch, s, log_dir / f"{s.name}.log")] = (s, time.time())
                        if on_change:
                            on_change()
                if not running:
                    if todo:  # cannot happen with a graph from plan_stages; guards hand-made ones
                        raise ValueError(f"sweep: stages {[s.name for s in todo]} depend on stages not in the plan")
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    s, t0 = running[fut]
                    _record(s, fut, time.time() - t0, state, log_dir)  # re-raises a launcher's KeyboardInterrupt
                    del running[fut]
                    if on_change:
                        on_change()
        except KeyboardInterrupt:
            stop = getattr(launch, "stop", None)
            if stop is not None:
                stop()
            for fut, (s, _) in running.items():
                fut.cancel()
                state.set(s.name, "interrupted", error="interrupted; resumes on the next run")
            print("sweep: interrupted; finished stages are kept, run the same command again to resume", flush=True)
            raise
    return state


def _record(s: Stage, fut: Future, seconds: float, state: SweepState, log_dir: Path) -> None:
    log = log_dir / f"{s.name}.log"
    try:
        rc = fut.result()
    except Exception as e:  # noqa: BLE001 - a launcher that crashed is one failed stage, not a lost sweep
        state.set(s.name, "failed", returncode=None, error=f"launcher error: {e}", seconds=seconds)
        LOGGER.error(f"sweep: {s.name} could not be run: {e}")
        return
    if rc == 0 and s.is_done():
        state.set(s.name, "done", returncode=0, seconds=seconds)
        print(f"sweep: {s.name} done in {seconds:.0f} s", flush=True)
        return
    if rc == 0:
        missing = ", ".join(str(p.relative_to(s.run_dir)) for p in s.outputs if not p.is_file())
        error = f"exit code 0 but {missing} missing in {s.run_dir}"
    else:
        error = error_from_log(log, rc)
    state.set(s.name, "failed", returncode=rc, error=error, seconds=seconds)
    print(f"sweep: {s.name} FAILED ({error}); see {log}", flush=True)
