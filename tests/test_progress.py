"""Live progress of multi-stage commands: the line each stage shows, the plan, and slim.py's output as a user sees it
when it is not a terminal (a notebook, a CI log, nohup)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.progress import Plan, PlannedStage, StageProgress, log_tail
from engine.stages import StageError, StageRunner
from utils.paths import REPO_ROOT


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _bar(epoch: int, last: int, batch: int, batches: int, rate: str = "1.25it/s") -> str:
    """A train.py bar as tqdm draws it (description, percentage, bar, counts, times)."""
    pct = int(100 * batch / batches)
    return (f"{epoch:>11}/{last:<3}        0G    0.06949    0.04864     0.0243        153        320: {pct:3d}%|"
            f"###       | {batch}/{batches} [00:08<00:15, {rate}]")


def test_a_training_stage_reads_epochs_batches_map_and_eta() -> None:
    now, out = _Clock(), io.StringIO()
    p = StageProgress("slim", "step1_ft", out=out, live=False, now=now)
    p.feed(b"Transferred 349/349 items from x.pt\n")
    p.feed(("\r" + _bar(0, 9, 1, 4)).encode())  # a bar being redrawn, no newline yet
    assert (p.epoch, p.epochs, p.batch, p.batches) == (0, 10, 1, 4)
    now.t += 30
    p.feed(("\r" + _bar(0, 9, 4, 4) + "\n").encode())
    p.feed("                   all        127        909      0.444      0.213      0.221     0.0798\n".encode())
    assert p.map50_95 == pytest.approx(0.0798)
    # 3 of 40 batches took 30 s: 36 batches are left, 360 s
    assert p.fraction() == pytest.approx(0.1) and p.eta() == pytest.approx(360.0)
    line = p.line()
    assert line.startswith("slim: step1_ft  epoch 1/10 batch 4/4  val mAP50-95 0.0798  0:30 elapsed, ETA 6:00")
    now.t += 100
    p.feed(("\r" + _bar(4, 9, 2, 4) + "\r" + _bar(4, 9, 3, 4)).encode())
    assert p.epoch == 4 and p.batch == 3


def test_plain_output_gives_a_few_lines_per_stage() -> None:
    """Not a terminal: one line when the stage first shows something, then one per tenth of its epochs, however many
    bars tqdm draws; a stage without epochs prints at most once a minute."""
    now, out = _Clock(), io.StringIO()
    p = StageProgress("sweep", "finetune", out=out, live=False, now=now)
    for epoch in range(20):
        for b in range(1, 11):
            now.t += 1
            p.feed(("\r" + _bar(epoch, 19, b, 10)).encode())
        p.feed(b"\n                   all        127        909      0.444      0.213      0.221     0.0798\n")
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 12, lines
    assert all(ln.startswith("sweep: finetune  epoch ") for ln in lines) and "\r" not in out.getvalue()
    assert lines[-1].startswith("sweep: finetune  epoch 20/20")
    out2 = io.StringIO()
    q = StageProgress("slim", "step1_prune", out=out2, live=False, now=now)
    for i in range(300):  # five minutes of a BN recalibration bar, a redraw a second
        now.t += 1
        q.feed(f"\rBN recalibration:  {i % 100}%|###  | {i}/300 [00:01<00:02, 11.2img/s]".encode())
    plain = out2.getvalue().splitlines()
    assert 4 <= len(plain) <= 6 and "BN recalibration " in plain[-1] and "ETA" not in plain[-1]


def test_a_terminal_gets_one_line_redrawn_in_place() -> None:
    now, out = _Clock(), io.StringIO()
    p = StageProgress("slim", "step2_ft", out=out, live=True, now=now,
                      on_rate=lambda per, nb: out.write(f"estimate {per:.1f} s x {nb}\n"))
    for b in range(1, 8):
        now.t += 2
        p.feed(("\r" + _bar(0, 1, b, 8)).encode())
    p.close()
    text = out.getvalue()
    # the estimate (told once, five batches after the first) starts a line of its own: the live line is erased first
    assert "\r\x1b[Kestimate 2.0 s x 8\n" in text and text.count("\n") == 1
    assert text.count("\r") >= 5 and text.endswith("\r\x1b[K")
    assert "slim: step2_ft  epoch 1/2 batch 7/8" in text


def test_the_plan_estimates_once_and_times_each_stage() -> None:
    out = io.StringIO()
    plan = Plan("slim", [PlannedStage("step1_prune"), PlannedStage("step1_ft", 2), PlannedStage("step2_ft", 10)],
                out=out)
    plan.show()
    plan.record("step1_prune", 65.0)
    now = _Clock()
    p = StageProgress("slim", "step1_ft", out=io.StringIO(), live=False, on_rate=plan.rate("step1_ft"), now=now)
    for b in range(1, 7):  # the first batch is where the clock starts (its start-up is not counted): 2 s a batch after
        now.t += 9 if b == 1 else 2
        p.feed(("\r" + _bar(0, 1, b, 20)).encode())
    assert plan.estimated and plan.rate("step2_ft") is None  # once only
    plan.record("step1_ft", 90.0)
    plan.record("step2_ft", None)
    plan.summary()
    text = out.getvalue()
    assert "slim: plan: 3 stages, 12 training epochs: step1_prune, step1_ft (2 epochs), step2_ft (10 epochs)" in text
    # 12 epochs x 20 batches x 2 s x 1.15
    assert f"slim: estimate: about {12 * 20 * 2 * 1.15 / 60:.0f} min for the 12 training epochs left" in text
    assert "step1_prune  1:05" in text and "step2_ft     done before" in text and "total        2:35" in text


def test_log_tail_keeps_the_last_state_of_each_bar(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("start\n" + "\r".join(_bar(0, 0, b, 5) for b in range(1, 6)) + "\nERROR: --hyp x.yaml: lr0 < 0\n")
    assert log_tail(log, 10) == ["start", _bar(0, 0, 5, 5), "ERROR: --hyp x.yaml: lr0 < 0"]
    assert log_tail(tmp_path / "missing.log") == []


def test_a_failing_stage_shows_the_end_of_its_log(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runner = StageRunner(tmp_path, prefix="slim")
    with pytest.raises(StageError, match=r"stage val_bad failed \(exit 2\), see .*val_bad.log: ERROR: "):
        runner.run("val_bad", "val.py", ["--weights", str(tmp_path / "missing.pt"), "--data", "data/coco128.yaml"],
                   tmp_path / "val" / "results.json")
    out = capsys.readouterr().out
    assert "slim: val_bad failed; the last" in out and str(tmp_path / "logs" / "val_bad.log") in out
    assert "    ERROR: " in out  # the log's own ERROR line, indented among the last lines


def _read_lines_while_running(cmd: list[str], watch: dict[str, Path], timeout: float = 600) -> tuple[list[str], dict]:
    """Run ``cmd`` with stdout a pipe (not a terminal); for each line, note which ``watch`` files existed when it
    came. Returns the lines and, per line index, the set of watched names whose file existed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines, seen = [], {}
    try:
        for line in proc.stdout:
            seen[len(lines)] = {k for k, f in watch.items() if f.exists()}
            lines.append(line.rstrip("\n"))
        proc.wait()
    finally:
        timer.cancel()
    assert proc.returncode is not None
    return lines, {"seen": seen, "rc": proc.returncode}


def test_slim_shows_each_stage_progress_while_it_runs(tmp_path: Path, tiny_data: Path, yolov5n_pt: Path) -> None:
    """A tiny two-stage slim.py (one prune, one 3-epoch fine-tune), its stdout a pipe: each stage's progress lines come
    before that stage's outputs exist, the plan comes first and the time per stage last; then the same run with a
    fine-tune that fails shows its log's last lines, the log's path and one ERROR line."""
    root = tmp_path / "s"
    cmd = [sys.executable, "slim.py", "--weights", str(yolov5n_pt), "--data", str(tiny_data), "--imgsz", "64",
           "--target-gflops", "0.03", "--steps", "1", "--final-ft-epochs", "3", "--no-export", "--workers", "0",
           "--project", str(tmp_path), "--name", "s"]
    watch = {"step1_prune": root / "step1_prune" / "results.json", "step1_ft": root / "step1_ft" / "results.json"}
    lines, info = _read_lines_while_running(cmd, watch)
    text = "\n".join(lines)
    assert info["rc"] == 0, text
    assert lines[0] == "slim: plan: 2 stages, 3 training epochs: step1_prune, step1_ft (3 epochs)"
    for stage in watch:
        progress = [i for i, ln in enumerate(lines) if ln.startswith(f"slim: {stage}  ")]
        assert progress, f"no progress line for {stage}:\n{text}"
        assert all(stage not in info["seen"][i] for i in progress), f"{stage}'s progress came after it ended"
    ft = [ln for ln in lines if ln.startswith("slim: step1_ft  epoch ")]
    assert any(ln.startswith("slim: step1_ft  epoch 3/3") for ln in ft) and "\r" not in text
    assert "slim: time per stage" in text and lines[-1] == f"Results saved to {root}"
    assert [ln.split()[0] for ln in lines[lines.index("slim: time per stage") + 1:-1]] == \
        ["step1_prune", "step1_ft", "total"]

    bad_hyp = tmp_path / "bad_hyp.yaml"
    bad_hyp.write_text(re.sub(r"(?m)^lr0:.*$", "lr0: -1.0", (REPO_ROOT / "data/hyps/hyp.scratch-low.yaml").read_text()))
    lines, info = _read_lines_while_running([*cmd[:-1], "f", "--final-ft-hyp", str(bad_hyp)], {})
    text = "\n".join(lines)
    assert info["rc"] == 2, text
    log = tmp_path / "f" / "logs" / "step1_ft.log"
    assert "slim: step1_ft failed; the last" in text and str(log) in text
    assert lines[-1].startswith("ERROR: stage step1_ft failed (exit 2), see ") and lines[-1].endswith(f"ERROR: {bad_hyp}: 'lr0' must be > 0, got -1.0")
    assert sum(ln.startswith("ERROR:") for ln in lines) == 1
