"""The sweep's table: one row per stage, from the stages' own ``results.json`` files, the sweep's measurements and
each stage's status; written as ``results.csv`` and ``results.md`` (atomically)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any


from utils.files import atomic_write_text, read_json
from engine.sweep.runner import SweepState
from engine.sweep.stages import Stage
from utils.yaml_io import read_yaml

__all__ = ["COLUMNS", "CSV_COLUMNS", "build_rows", "format_markdown", "write_tables"]

# (row key, Markdown header, format): the columns users compare runs by.
COLUMNS: list[tuple[str, str, str]] = [
    ("exp_name", "exp_name", "{}"),
    ("status", "status", "{}"),
    ("precision", "P", "{:.3f}"),
    ("recall", "R", "{:.3f}"),
    ("mAP50", "mAP50", "{:.3f}"),
    ("mAP50_95", "mAP50-95", "{:.3f}"),
    ("sparsity_rate", "sparsity rate", "{:g}"),
    ("prune_ratio", "prune ratio", "{:g}"),
    ("gamma_threshold", "gamma threshold", "{:.4f}"),
    ("gamma_lt_0_01", "gamma<0.01", "{:.1%}"),
    ("params", "parameters", "{:,}"),
    ("size_mb", "model size (MB)", "{:.2f}"),
    ("gflops", "GFLOPs (640)", "{:.2f}"),
    ("latency_ms", "CPU latency (ms)", "{:.1f}"),
    ("speedup", "speed-up", "{:.2f}x"),
    ("train_seconds", "training time (s)", "{:.0f}"),
    ("epochs", "epochs", "{}"),
]
CSV_COLUMNS = [c[0] for c in COLUMNS] + ["stage", "resumed", "latency_iqr_ms", "run_dir", "log", "error"]
_METRICS = ("precision", "recall", "mAP50", "mAP50_95")


def _metrics_of(stage: Stage) -> dict[str, Any]:
    """Accuracy and training figures a finished stage wrote into its results.json."""
    res = read_json(stage.run_dir / "results.json")
    if stage.script == "prune.py":
        out = {k: res["pruned"][k] for k in _METRICS if k in res.get("pruned", {})}  # absent with --noval
        out["gamma_threshold"] = res.get("threshold")
        return out
    out = {k: res.get(k) for k in _METRICS}
    if stage.script == "train.py":
        out.update(train_seconds=res.get("train_seconds"), epochs=_epochs(stage.run_dir, res.get("epochs")),
                   resumed=_resumed(stage.run_dir))
    return out


def _epochs(run_dir: Path, reported: int | None) -> int | None:
    """Epochs trained: the distinct epochs in the run's per-epoch results.csv (results.json counts only the epochs of
    the last process when a run was resumed; an earlier failed attempt in the same dir may have left rows too)."""
    f = run_dir / "results.csv"
    if not f.is_file():
        return reported
    seen = set()
    for line in f.read_text().splitlines()[1:]:
        try:
            seen.add(int(float(line.split(",")[0])))
        except ValueError:  # a row cut off by a kill
            continue
    return max(len(seen), reported or 0)


def _resumed(run_dir: Path) -> bool:
    """Whether the last process of a training run resumed it (train.py records ``resume`` in opt.yaml)."""
    f = run_dir / "opt.yaml"
    if not f.is_file():
        return False
    opt = read_yaml(f, "run options") or {}  # JSON, which YAML reads too
    return bool(opt.get("resume")) if isinstance(opt, dict) else False


def build_rows(stages: list[Stage], state: SweepState, measured: dict[str, dict], log_dir: Path) -> list[dict]:
    """One row per stage, in plan order.

    Args:
        stages: the sweep's stages.
        state: their statuses (a stage with outputs on disk counts as done whatever the state says, unless it is
            running).
        measured: per stage name, the sweep's own figures (params, gflops, size_mb, latency_ms, ...).
        log_dir: where the stage logs are.
    """
    by_name = {s.name: s for s in stages}
    rows = []
    for s in stages:
        done = state.finished(s)
        entry = state.stages.get(s.name, {})
        row: dict[str, Any] = {"exp_name": s.name, "stage": s.kind, "status": "done" if done else state.status(s.name),
                               "sparsity_rate": s.rate, "prune_ratio": s.ratio, "run_dir": str(s.run_dir),
                               "log": str(log_dir / f"{s.name}.log"), "error": "" if done else entry.get("error", "")}
        if done:
            row.update(_metrics_of(s))
            m = measured.get(s.name, {})
            row.update({k: m.get(k) for k in ("params", "gflops", "size_mb", "latency_ms", "latency_iqr_ms",
                                               "gamma_lt_0_01")})
        source = by_name.get(s.deps[0]) if s.kind == "finetune" and s.deps else None
        if source is not None and state.finished(source):  # the threshold its model was cut at
            row["gamma_threshold"] = _metrics_of(source).get("gamma_threshold")
        rows.append(row)
    base = next((r for r in rows if r["stage"] == "base"), None)
    ref = base.get("latency_ms") if base else None
    for r in rows:
        lat = r.get("latency_ms")
        r["speedup"] = ref / lat if ref and lat else None
    return rows


def _cell(value: Any, fmt: str) -> str:
    if value is None or value == "":
        return ""
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def format_markdown(rows: list[dict], title: str = "", notes: list[str] | None = None) -> str:
    """A Markdown table of :data:`COLUMNS`; failed and skipped stages are listed below it with their reasons."""
    lines = [f"# {title}", ""] if title else []
    lines += [f"- {n}" for n in notes or []] + ([""] if notes else [])
    lines.append("| " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    lines.append("|" + "|".join(" --- " if k in ("exp_name", "status") else " ---: " for k, _, _ in COLUMNS) + "|")
    for r in rows:
        cells = [_cell(r.get(k), f).replace("|", "/") for k, _, f in COLUMNS]
        if r.get("resumed"):
            i = [k for k, _, _ in COLUMNS].index("train_seconds")
            cells[i] += " (resumed)"
        lines.append("| " + " | ".join(cells) + " |")
    problems = [r for r in rows if r["status"] not in ("done", "pending", "running")]
    if problems:
        lines += ["", "Stages that did not finish:", ""]
        lines += [f"- `{r['exp_name']}` {r['status']}: {r['error'] or 'no reason recorded'} (log: `{r['log']}`)"
                  for r in problems]
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], out_dir: str | Path, title: str = "", notes: list[str] | None = None) -> list[Path]:
    """Write ``results.csv`` (every column, raw values) and ``results.md``; each atomically."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in CSV_COLUMNS})
    return [atomic_write_text(out_dir / "results.csv", buf.getvalue()),
            atomic_write_text(out_dir / "results.md", format_markdown(rows, title, notes))]
