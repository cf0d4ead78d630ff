"""Live progress of multi-stage commands (slim.py, sweep.py, the slimming study): what every stage runner shows.

A stage is one run of our scripts with its whole output in a log file. While it runs, :class:`StageProgress` reads
that output as it comes (raw chunks: tqdm redraws with ``\\r``) and keeps one line for the stage: epoch k/N and batch
k/N of train.py's bar, the last validation's mAP50-95, the elapsed time and an ETA. On a terminal the line is redrawn
in place; elsewhere (notebooks, CI logs, ``nohup``) it is printed as a few plain lines per stage: when the stage first
shows progress, at every tenth of its epochs, and once a minute for stages without epochs. :class:`Plan` prints the
stages and their epochs at the start, a time estimate from the first measured training batch, and each stage's time
at the end; :func:`print_log_tail` shows the end of a failed stage's log.

Standard library only: the sweep's launchers use it beside :mod:`engine.command`.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

__all__ = ["StageProgress", "Plan", "PlannedStage", "print_log_tail", "log_tail", "clock"]

# train.py's bar description: 'epoch/last_epoch  GPU_mem  box obj cls  instances  size' (epochs count from 0).
_EPOCH = re.compile(r"^\s*(\d+)/(\d+)\s+[\d.]+[GM]?\s")
# tqdm's right part: ': 36%|###5      | 10/28 [00:08<00:14,  1.28it/s]'.
_BAR = re.compile(r"^(?P<desc>.*?):\s+\d+%\|.*?\|\s*(?P<n>\d+)/(?P<total>\d+)\s+\[")
# val.py's summary row: 'all  images  instances  P  R  mAP50  mAP50-95'.
_ALL = re.compile(r"^\s*all\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours and cursor moves (tqdm's, colorstr's)
# Batches timed (by our clock, from the first one seen) before the time estimate: the very first batches pay for
# start-up (workers, caches, allocator) and, timed alone, made the main job's estimate twice too long.
RATE_BATCHES = 5
PLAIN_EVERY = 60.0  # seconds between plain lines of a stage without epochs
LIVE_EVERY = 0.5  # seconds between redraws of a live line


def clock(seconds: float | None) -> str:
    """``3725`` -> ``'1:02:05'``, ``65`` -> ``'1:05'``; None -> ``'?'``."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class StageProgress:
    """Follows one stage's output and shows it as one line (see the module's docstring).

    Args:
        prefix: the command's name, starting every line (``slim``, ``sweep``).
        stage: the stage's name.
        out: where lines go (default: sys.stdout at each write).
        live: redraw one line in place (default: when ``out`` is a terminal).
        on_rate: called once, with (seconds per batch, batches per epoch), when ``RATE_BATCHES`` training batches
            have been timed.
        now: the clock (tests pass their own).
    """

    def __init__(self, prefix: str, stage: str, out: TextIO | None = None, live: bool | None = None,
                 on_rate: Callable[[float, int], None] | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.prefix, self.stage, self._out, self.on_rate, self.now = prefix, stage, out, on_rate, now
        self.live = self.out.isatty() if live is None else live
        self.epoch: int | None = None  # the epoch running now, from 0
        self.epochs: int | None = None
        self.batch = self.batches = 0  # of the epoch running now
        self.bar = ""  # another bar (validation, BN recalibration): 'what k/N'
        self.map50_95: float | None = None  # the last validation's
        self.text = ""  # the last line that was neither
        self.started = now()
        self._anchor: tuple[float, float] | None = None  # (time, fraction done) when the first batch was seen
        self._pending = ""
        self._shown = False  # a live line is on screen
        self._last_plain, self._plain_tenth, self._drawn = None, -1, 0.0
        self._rate_told = on_rate is None

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    # --- reading ---------------------------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Take the next raw piece of the stage's output."""
        text = self._pending + chunk.decode(errors="replace")
        parts = re.split(r"[\r\n]", text)
        self._pending = parts.pop()
        changed = False
        for line in parts:
            changed |= self._read(line)
        if self._pending and _BAR.match(self._pending):  # a bar being drawn: read it without waiting for its end
            changed |= self._read(self._pending)
        if changed:
            self._show()

    def _read(self, line: str) -> bool:
        line = _ANSI.sub("", line).rstrip()
        if not line.strip():
            return False
        if m := _ALL.match(line):
            self.map50_95, self.bar = float(m.group(2)), ""
            return True
        m = _BAR.match(line)
        if m and (e := _EPOCH.match(m.group("desc"))):
            self.epoch, self.epochs = int(e.group(1)), int(e.group(2)) + 1
            self.batch, self.batches, self.bar = int(m.group("n")), int(m.group("total")), ""
            if self._anchor is None and self.batch:
                self._anchor = (self.now(), self.fraction() or 0.0)
            done = ((self.fraction() or 0.0) - self._anchor[1]) * self.epochs * self.batches if self._anchor else 0
            if not self._rate_told and done >= RATE_BATCHES - 1e-6:
                self._rate_told = True
                self._clear()  # the estimate gets a line of its own, not the end of the live one
                self.on_rate((self.now() - self._anchor[0]) / done, self.batches)
            return True
        if m:
            desc = m.group("desc").strip()
            what = "validating" if "mAP50" in desc else (desc.split(":")[0].strip()[:30] or "working")
            self.bar = f"{what} {m.group('n')}/{m.group('total')}"
            return True
        if _EPOCH.match(line) or line.lstrip().startswith(("Epoch", "Class")):
            return False
        self.text = " ".join(line.split())[:80]
        return True

    # --- state -----------------------------------------------------------------------------------------------------
    def fraction(self) -> float | None:
        """The share of the stage's epochs done (None for a stage without epochs)."""
        if not self.epochs:
            return None
        return min((self.epoch + (self.batch / self.batches if self.batches else 0.0)) / self.epochs, 1.0)

    def eta(self) -> float | None:
        """Seconds left, from the pace since the first batch was seen (None before there is a pace)."""
        f = self.fraction()
        if f is None or self._anchor is None or f <= self._anchor[1] + 1e-6:
            return None
        t0, f0 = self._anchor
        return (self.now() - t0) / (f - f0) * (1.0 - f)

    def line(self) -> str:
        """The stage's progress as one line."""
        parts = [f"{self.prefix}: {self.stage}"]
        if self.epochs:
            parts.append(f"epoch {self.epoch + 1}/{self.epochs}" +
                         (f" batch {self.batch}/{self.batches}" if self.batches and not self.bar else ""))
        if self.bar:
            parts.append(self.bar)
        if self.map50_95 is not None:
            parts.append(f"val mAP50-95 {self.map50_95:.4f}")
        if not self.epochs and not self.bar and self.text:
            parts.append(self.text)
        eta = self.eta()
        parts.append(f"{clock(self.now() - self.started)} elapsed" + (f", ETA {clock(eta)}" if eta is not None else ""))
        return "  ".join(parts)

    # --- showing ---------------------------------------------------------------------------------------------------
    def _show(self) -> None:
        t = self.now()
        if self.live:
            if t - self._drawn >= LIVE_EVERY or not self._shown:
                width = shutil.get_terminal_size((120, 24)).columns - 1
                self.out.write("\r" + self.line()[:width] + "\x1b[K")
                self.out.flush()
                self._drawn, self._shown = t, True
            return
        f = self.fraction()
        tenth = int(f * 10 + 1e-9) if f is not None else -1
        if (self._last_plain is None or (f is not None and tenth > self._plain_tenth)
                or (f is None and t - self._last_plain >= PLAIN_EVERY)):
            print(self.line(), file=self.out, flush=True)
            self._last_plain, self._plain_tenth = t, max(tenth, self._plain_tenth)

    def _clear(self) -> None:
        """Erase a live line from the screen (it is drawn again on the next change)."""
        if self.live and self._shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._shown = False

    def close(self) -> float:
        """End the stage's line (a live one is cleared for the runner's own last line); returns the seconds it ran."""
        self._clear()
        return self.now() - self.started


def log_tail(log: Path, n: int = 10) -> list[str]:
    """The last ``n`` non-empty lines of ``log`` (tqdm's redraws read as lines of their own; only the last kept)."""
    if not log.is_file():
        return []
    lines = [ln.rstrip() for ln in log.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
    kept: list[str] = []
    for ln in lines:  # a bar's redraws: keep the last state of each run of them
        bar = _BAR.match(ln)
        if kept and bar and (prev := _BAR.match(kept[-1])) and prev.group("desc")[:12] == bar.group("desc")[:12]:
            kept[-1] = ln
        else:
            kept.append(ln)
    return kept[-n:]


def print_log_tail(prefix: str, stage: str, log: Path, n: int = 10, out: TextIO | None = None) -> None:
    """Show the end of a failed stage's log and its path (the one ERROR line comes after, from the caller)."""
    out = out or sys.stdout
    tail = log_tail(log, n)
    print(f"{prefix}: {stage} failed; the last {len(tail)} lines of {log}:", file=out)
    for ln in tail:
        print(f"    {ln[:200]}", file=out)
    out.flush()


@dataclass
class PlannedStage:
    """A stage of a plan: its name and, for a training stage, its epochs (at most: early stopping may end it)."""

    name: str
    epochs: int = 0


@dataclass
class Plan:
    """The stages of a multi-stage command: shown at the start, estimated once a first batch is measured, timed at the
    end. Thread-safe: the sweep's parallel stages report to one plan."""

    prefix: str
    stages: list[PlannedStage]
    out: TextIO | None = None
    times: dict[str, float | None] = field(default_factory=dict)  # name -> seconds (None: done by an earlier run)
    estimated: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def show(self) -> None:
        """Print the plan: each stage with its epochs, and how the time will be estimated."""
        epochs = sum(s.epochs for s in self.stages)
        names = ", ".join(f"{s.name} ({s.epochs} epochs)" if s.epochs else s.name for s in self.stages)
        self._print(f"{self.prefix}: plan: {len(self.stages)} stages, {epochs} training epochs: {names}")
        self._print(f"{self.prefix}: a time estimate follows the first measured training batch")

    def rate(self, stage: str) -> Callable[[float, int], None] | None:
        """The ``on_rate`` callback for ``stage``'s progress: None once an estimate was given."""
        return None if self.estimated else (lambda per, nb: self.estimate(per, nb, stage))

    def estimate(self, seconds_per_batch: float, batches: int, stage: str) -> None:
        """Print, once, the rough time the training epochs left will take at the pace measured in ``stage``."""
        with self._lock:
            if self.estimated:
                return
            self.estimated = True
            left = sum(s.epochs for s in self.stages if s.name not in self.times)
            epoch_s = seconds_per_batch * batches * 1.15  # + ~15% for the epoch's validation and saving
            self._print(f"{self.prefix}: estimate: about {left * epoch_s / 60:.0f} min for the {left} training epochs left "
                        f"({seconds_per_batch:.2f} s per batch x {batches} batches per epoch, measured in {stage}), "
                        f"plus the pruning, export and validation stages")

    def record(self, stage: str, seconds: float | None) -> None:
        """Note a finished stage (``None``: it was done by an earlier run of the same command)."""
        with self._lock:
            self.times[stage] = seconds

    def summary(self) -> None:
        """Print each stage's time and the total."""
        if not self.times:
            return
        width = max(len(s) for s in self.times)
        lines = [f"{name:<{width}}  {clock(s) if s is not None else 'done before'}" for name, s in self.times.items()]
        total = sum(s for s in self.times.values() if s is not None)
        self._print(f"{self.prefix}: time per stage\n" + "\n".join(f"    {ln}" for ln in lines) +
                    f"\n    {'total':<{width}}  {clock(total)}")
