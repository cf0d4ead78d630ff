"""Running one stage's command with its output appended to a log file: the one piece every executor shares.

Standard library only, on purpose: the Ray executor ships :func:`run_command` to its workers by value, so a worker
needs nothing of this repository importable to run a stage (only the command's own paths).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from pathlib import Path
from typing import Callable, Mapping, Sequence

__all__ = ["run_command", "run_command_here", "end_process"]


def end_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Terminate ``proc`` (SIGTERM: our scripts stop cleanly on it), and kill it if it is alive after ``timeout`` s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_command(argv: Sequence[str], log: str | Path, cwd: str | Path, env: Mapping[str, str] | None = None,
                note: str = "",
                on_start: Callable[[subprocess.Popen], bool] | None = None,
                on_output: Callable[[bytes], None] | None = None) -> int:
    """Run ``argv`` in ``cwd`` to the end, teeing its stdout and stderr into ``log`` (appended, after a header line
    with the command); returns its exit code.

    Args:
        argv: the command.
        log: the log file (its folder is made).
        cwd: working directory.
        env: variables set on top of this process's environment (e.g. ``CUDA_VISIBLE_DEVICES``); they are also shown
            in the header, so a log says on which device its stage ran.
        note: one more header line (e.g. the node a Ray task ran on).
        on_start: called with the started process; when it returns False the process is ended at once and -2 is
            returned (a launcher that is stopping refuses late starters).
        on_output: called with each raw piece of the output as it comes (a stage's live progress line, see
            :mod:`engine.progress`).

    An exception here (``KeyboardInterrupt`` from Ctrl-C or a cancelled Ray task included) ends the process before it
    propagates: a stage never outlives whoever ran it.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(env or {})
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k != "PYTHONUNBUFFERED")
    with open(log, "ab") as f:
        header = ([f"# {note}"] if note else []) + [f"$ {shown + ' ' if shown else ''}{shlex.join(argv)}"]
        f.write(("\n" + "\n".join(header) + "\n").encode())
        f.flush()
        # Without on_output the command writes straight into the log. Otherwise its output is teed, in raw chunks,
        # not lines: tqdm redraws with '\r', and a line reader would hold progress back.
        tee = on_output is not None
        proc = subprocess.Popen(list(argv), cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                stdout=subprocess.PIPE if tee else f, stderr=subprocess.STDOUT)
        try:
            if on_start is not None and not on_start(proc):
                end_process(proc)
                return -2
            while tee and (chunk := proc.stdout.read1(65536)):
                f.write(chunk)
                f.flush()
                on_output(chunk)
            while True:
                # Polled, not one blocking wait: a cancelled Ray task is interrupted the way _thread.interrupt_main
                # does it, which only lands while Python code runs, never inside a blocking system call.
                try:
                    return proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            end_process(proc)
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def run_command_here(argv: Sequence[str], log: str, cwd: str, env: Mapping[str, str]) -> int:
    """:func:`run_command` with a header naming this host and the GPUs it was given: what a Ray task runs on whichever
    node the cluster picked (Ray narrows ``CUDA_VISIBLE_DEVICES`` to the task's GPUs; the command inherits it)."""
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return run_command(argv, log, cwd, env, note=f"ray task on {socket.gethostname()}, CUDA_VISIBLE_DEVICES={gpus}")
