"""Executors: where and how a sweep's stages run. The scheduler (:func:`engine.sweep.runner.run_stages`) decides what
may start and records every outcome; an executor only starts what it is handed, at most ``capacity`` at once, and
returns a future of each stage's exit code.

- :class:`LocalExecutor`: subprocesses on this machine, one per slot. One slot is the sequential sweep; ``--jobs N``
  gives N slots on the sweep's device; ``--devices 0,1,2,3`` gives a slot per device, and each stage on a slot gets
  ``--device <d>`` and ``CUDA_VISIBLE_DEVICES`` narrowed to that GPU.
- :class:`engine.sweep.ray_executor.RayExecutor` (``--backend ray``): the same commands as Ray tasks on any node of a
  Ray cluster, each asking for the CPUs and GPUs a stage needs.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from engine.command import end_process
from engine.progress import Plan
from engine.stages import run_stage
from engine.sweep.stages import Stage
from utils.paths import REPO_ROOT

__all__ = ["Executor", "LocalExecutor", "Launcher", "SubprocessLauncher", "slot_env",
           "check_cuda_slots"]


class Executor(ABC):
    """Starts stages; the scheduler never hands it more than ``capacity`` at once.

    Use as a context manager (or call :meth:`close`) so that threads, or a Ray instance it started, are released.
    """

    capacity: int = 1

    @abstractmethod
    def submit(self, stage: Stage, log: Path) -> tuple[Future, str]:
        """Start ``stage`` with its output going to ``log``.

        Returns:
            (a future of the command's exit code, a short description of where it runs, e.g. ``device 1``).
        """

    def stop(self) -> None:
        """End every running stage and refuse new ones (Ctrl-C, SIGTERM)."""

    def close(self) -> None:
        """Release the executor's resources (after the stages ended)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Launcher(Protocol):
    """Runs one stage to the end, its output written to ``log``; returns the exit code."""

    def __call__(self, stage: Stage, log: Path) -> int: ...


class SubprocessLauncher:
    """Run ``stage.argv()`` (with ``stage.env``) in the repo root, its output teed into the log and read by a progress
    line for the stage (:class:`engine.progress.StageProgress`).

    Args:
        live: redraw the progress line in place (default: when stdout is a terminal); with several stages at once
            pass False, each then prints a few plain lines.
        plan: the sweep's plan, told the first measured training batch's pace (for its time estimate).
        cwd: working directory of the stages (the repo root: the scripts' default files are relative to it).
    """

    def __init__(self, live: bool | None = None, plan: Plan | None = None, cwd: Path = REPO_ROOT) -> None:
        self.live, self.plan, self.cwd = live, plan, cwd
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def __call__(self, stage: Stage, log: Path) -> int:
        mine: list[subprocess.Popen] = []

        def started(proc: subprocess.Popen) -> bool:
            with self._lock:
                if self._stopping:
                    return False
                self._procs.add(proc)
                mine.append(proc)
                return True

        try:
            return run_stage("sweep", stage.name, stage.argv(), log, cwd=self.cwd, env=stage.env, live=self.live,
                             plan=self.plan, on_start=started)[0]
        finally:
            with self._lock:
                self._procs.difference_update(mine)

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
            end_process(p, max(deadline - time.time(), 0.1))


def slot_env(device: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` for a stage on the GPU slot ``device`` (nothing for ``cpu``, ``mps`` or no device).

    A stage then sees only its GPU, so no library can allocate on a neighbour's, and a resumed training run (whose
    ``--device`` comes from its checkpoint) still lands on the slot's GPU. Slot ids count the GPUs this process sees:
    when ``CUDA_VISIBLE_DEVICES`` is already set (``4,5,6,7``), slot ``1`` is GPU ``5``.

    Raises:
        ValueError: ``device`` is beyond the GPUs that ``CUDA_VISIBLE_DEVICES`` lists.
    """
    if device is None or not device.isdigit():
        return {}
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return {"CUDA_VISIBLE_DEVICES": device}
    ids = [x.strip() for x in visible.split(",") if x.strip()]
    if int(device) >= len(ids):
        raise ValueError(f"--devices: GPU {device} is not among the {len(ids)} that CUDA_VISIBLE_DEVICES={visible} "
                         f"shows; slot ids count those GPUs from 0")
    return {"CUDA_VISIBLE_DEVICES": ids[int(device)]}


def check_cuda_slots(devices: Sequence[str]) -> None:
    """Refuse up front GPU slots this machine does not have (instead of one failed stage per slot).

    Raises:
        ValueError: naming the slots and how many GPUs CUDA sees.
    """
    gpus = sorted({int(d) for d in devices if d.isdigit()})
    if not gpus:
        return
    for d in gpus:
        slot_env(str(d))  # ids beyond CUDA_VISIBLE_DEVICES
    import torch

    n = torch.cuda.device_count()
    if gpus[-1] >= n:
        raise ValueError(f"--devices {','.join(devices)}: CUDA sees {n} GPU(s) here (ids 0-{n - 1})"
                         if n else f"--devices {','.join(devices)}: CUDA sees no GPU here; use --devices cpu,cpu to "
                         "run stages side by side on the CPU")


class LocalExecutor(Executor):
    """Stages as subprocesses of this machine, one per free slot.

    Args:
        launcher: runs one stage to the end (a :class:`~engine.sweep.runner.SubprocessLauncher`, or a fake in tests).
        slots: one entry per stage that may run at once: a device (``0``, ``cpu``, ``mps``) that the stage is placed
            on, or None to run the stage as planned (the sweep's own ``--device``). ``[None]`` is the sequential
            sweep.
        environ: the environment slot ids are resolved against (default: this process's).
    """

    def __init__(self, launcher: Launcher, slots: Sequence[str | None] = (None,),
                 environ: Mapping[str, str] | None = None) -> None:
        if not slots:
            raise ValueError("LocalExecutor needs at least one slot")
        self.launcher, self.slots = launcher, list(slots)
        self.capacity = len(self.slots)
        self._env = [slot_env(d, environ) for d in self.slots]  # errors now, before any stage starts
        self._free = list(range(self.capacity))
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="sweep-stage")

    def submit(self, stage: Stage, log: Path) -> tuple[Future, str]:
        with self._lock:
            if not self._free:  # the scheduler respects capacity; this guards hand-made callers
                raise RuntimeError(f"LocalExecutor: all {self.capacity} slots are busy")
            slot = min(self._free)  # the lowest free slot: a sequential sweep always uses slot 0
            self._free.remove(slot)
        device = self.slots[slot]
        placed = stage if device is None else replace(stage, device=device, env={**stage.env, **self._env[slot]})

        def run() -> int:
            try:
                return self.launcher(placed, log)
            finally:  # freed before the future completes, so the scheduler can reuse the slot at once
                with self._lock:
                    self._free.append(slot)

        return self._pool.submit(run), (f"device {device}" if device is not None else "")

    def stop(self) -> None:
        stop = getattr(self.launcher, "stop", None)
        if stop is not None:
            stop()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
