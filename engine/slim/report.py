"""slim.py's result, ready to use: the source and the slimmed model exported (ONNX, OpenVINO), validated on val and
test, timed together per backend, and compared in one table (``report.md``, ``report.json``, ``report.png``).

Every stage is a normal run of export.py or val.py under the slim run's folder (``export/``, ``val/``), skipped when
done; the timing runs in this process, per runtime, source and result interleaved (:mod:`engine.benchmark`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine.benchmark import Timed, time_models
from engine.export.common import imgsz_text
from engine.slim.options import SlimOptions
from engine.stages import StageRunner
from utils.files import atomic_write_json, atomic_write_text
from engine.val.options import ValOptions
from models.checkpoint import load_model
from models.summary import model_facts
from utils.data import load_dataset_config
from utils.options import to_argv

__all__ = ["build_report", "write_report", "format_report", "plot_report", "latencies", "val_stage", "write_outputs", "BACKENDS"]

# report key -> (what load_backend opens for it, the column's name)
BACKENDS = {"ort": (".onnx", "ONNX Runtime"), "openvino": ("_openvino_model", "OpenVINO (f32)"),
            "torch": (".pt", "PyTorch")}


def _stage_files(runner: StageRunner, opt: SlimOptions, which: str, weights: Path) -> Path:
    """Copy ``weights`` to ``export/<which>.pt`` and export it there to ONNX and OpenVINO (one export.py stage)."""
    d = runner.root / "export"
    d.mkdir(parents=True, exist_ok=True)
    pt = d / f"{which}.pt"
    if not pt.exists() or pt.stat().st_mtime < weights.stat().st_mtime:
        shutil.copy2(weights, pt)
        for old in (d / f"{which}.onnx", d / f"{which}_openvino_model"):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    runner.run(f"export_{which}", "export.py", ["--weights", str(pt), "--include", "onnx", "openvino", "--imgsz",
                                               str(opt.imgsz), "--data", opt.data], d / f"{which}.onnx")
    return pt


def val_stage(runner: StageRunner, which: str, split: str, weights: Path, imgsz: int | tuple[int, int],
              opt: SlimOptions) -> dict:
    """val.py on ``weights`` (a checkpoint or an export) at ``imgsz`` on ``split``, as stage ``val_<which>_<split>``
    in ``val/<which>_<split>``: its results.json. A fixed (height, width) is an export's own shape (val.py's
    ``--imgsz 0``: every image letterboxed into it)."""
    d = runner.root / "val" / f"{which}_{split}"
    runner.run(f"val_{which}_{split}", "val.py", to_argv(ValOptions(
        weights=str(weights), data=opt.data, imgsz=imgsz if isinstance(imgsz, int) else 0, task=split,
        workers=opt.workers, device=opt.device, project=str(d.parent), name=d.name, exist_ok=True)), d / "results.json")
    return json.loads((d / "results.json").read_text())


def _scores(runner: StageRunner, opt: SlimOptions, which: str, pt: Path, splits: list[str]) -> dict:
    """val.py on each split: ``{"map50_val", "map50_95_val", ...}``, None for a split the dataset lacks."""
    out: dict = {}
    for split in ("val", "test"):
        res = val_stage(runner, which, split, pt, opt.imgsz, opt) if split in splits else {}
        out[f"map50_{split}"], out[f"map50_95_{split}"] = res.get("mAP50"), res.get("mAP50_95")
    return out


def latencies(models: dict[str, tuple[Path | None, Path, int]], threads: int, repeats: int = 100) -> dict[str, dict]:
    """``{which: {"ort_ms", "ort_p90_ms", "openvino_ms", ..., "torch_ms", ...}}`` at batch 1 with ``threads``: per
    runtime, the models timed interleaved with each other (:func:`engine.benchmark.time_models`, the timer the
    steps' speed checks use). ``models`` maps a name to (checkpoint, ONNX file, input size): the ONNX file runs in
    ONNX Runtime (a bare session on a numpy input) and OpenVINO (which runs a quantized file's QDQ nodes in INT8),
    the checkpoint in PyTorch (None: not timed there, an INT8 model).

    One runtime at a time, as a deployment runs: timed in one session with the other runtimes and through the
    backends' tensor conversions, the main job's result measured 1.48x where its last step had measured 1.63x."""
    out: dict[str, dict] = {which: {} for which in models}
    for rt, key in (("ort", "ort"), ("ov", "openvino"), ("torch", "torch")):
        items = [Timed(which, str(pt if rt == "torch" else onnx), imgsz)
                 for which, (pt, onnx, imgsz) in models.items() if pt is not None or rt != "torch"]
        t = time_models(items, threads=threads, repeats=repeats, rounds=10, warmup=10, runtimes=(rt,))
        for which in models:
            row = t.get(which, {})
            out[which][f"{key}_ms"], out[which][f"{key}_p90_ms"] = row.get(f"{rt}_ms"), row.get(f"{rt}_p90_ms")
    return out


def build_report(runner: StageRunner, opt: SlimOptions, source: Path, final: Path, stopped: str, epochs: int,
                 steps: dict) -> dict:
    """Export, validate and time ``source`` and ``final``; write report.json/.md/.png in the run folder and print the
    table. Returns the report: ``{"source": ROW, "final": ROW, "stopped", "epochs", "budget", "threads", ...}``, each
    ROW with file, params, gflops, imgsz, size_mb, map50/map50_95 on val and test (None without a test split),
    ort_ms, openvino_ms, torch_ms (and their p90) and speedup (ONNX Runtime, over the source)."""
    data = load_dataset_config(opt.data)
    splits = [s for s in ("val", "test") if data.get(s)]
    files = {which: _stage_files(runner, opt, which, w) for which, w in (("source", source), ("final", final))}
    print(f"slim: timing source and result in {', '.join(n for _, n in BACKENDS.values())} (batch 1, {opt.threads} "
          "thread(s), interleaved)", flush=True)
    times = latencies({w: (pt, pt.with_suffix('.onnx'), opt.imgsz) for w, pt in files.items()}, opt.threads)
    rows = {}
    for which, pt in files.items():
        model = load_model(pt, device="cpu")[0]
        rows[which] = {"file": str(source if which == "source" else final), **model_facts(model, opt.imgsz, pt),
                       "imgsz": opt.imgsz,
                       "onnx": str(pt.with_suffix(".onnx")), "openvino": str(pt.with_name(pt.stem + "_openvino_model")),
                       **_scores(runner, opt, which, pt, splits), **times[which]}
    for row in rows.values():
        row["speedup"] = rows["source"]["ort_ms"] / row["ort_ms"]
    report = {"source": rows["source"], "final": rows["final"], "stopped": stopped, "epochs": epochs,
              "budget": steps.get("budget"), "threads": opt.threads, "data": opt.data,
              "distill": opt.distill, "steps": len(steps["rows"])}
    write_report(runner.root, report)
    return report


def write_report(root: Path, report: dict) -> None:
    """report.json, report.md and report.png in ``root``; the table printed. ``report["label"]`` names the result's
    column (default "slimmed")."""
    write_outputs(root, "report", report, f"slim.py: {Path(report['source']['file'])} and its "
                                          f"{report.get('label', 'slimmed')} model", format_report(report),
                  plot_report(report))


def write_outputs(root: Path, stem: str, data: dict, title: str, table: str, fig) -> None:  # noqa: ANN001 - a Figure
    """``<stem>.json`` (``data``), ``<stem>.md`` (``title`` and ``table``) and ``<stem>.png`` (``fig``) in ``root``;
    the table printed."""
    atomic_write_json(root / f"{stem}.json", data)
    atomic_write_text(root / f"{stem}.md", f"# {title}\n\n{table}\n")
    fig.savefig(root / f"{stem}.png", dpi=150)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"\n{table}", flush=True)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_report(report: dict) -> str:
    """The before/after Markdown table, with how the final fine-tune ended under it."""
    s, f = report["source"], report["final"]
    label = report.get("label", "slimmed")
    lines = [f"| | source | {label} | change |", "| --- | ---: | ---: | ---: |"]

    def add(name: str, key: str, spec: str, change: str = "ratio") -> None:
        a, b = s.get(key), f.get(key)
        if change == "ratio" and a and b:
            delta = f"{b / a:.2f}x"
        elif change == "diff" and a is not None and b is not None:
            delta = f"{b - a:+.3f}"
        else:
            delta = ""
        lines.append(f"| {name} | {_fmt(a, spec)} | {_fmt(b, spec)} | {delta} |")

    si, fi = imgsz_text(s["imgsz"]), imgsz_text(f["imgsz"])
    if (si, s.get("precision", "fp32")) != (fi, f.get("precision", "fp32")):
        lines.append(f"| input size (px) | {si} | {fi} | |")
        lines.append(f"| precision | {s.get('precision', 'fp32')} | {f.get('precision', 'fp32')} | |")
    add("parameters", "params", ",")
    add(f"GFLOPs ({'at its input size' if si != fi else si + ' px'})", "gflops", ".3f")
    add("file size (MB)", "size_mb", ".2f")
    for split in ("val", "test"):
        if s.get(f"map50_95_{split}") is not None:
            add(f"mAP50 {split}", f"map50_{split}", ".3f", "diff")
            add(f"mAP50-95 {split}", f"map50_95_{split}", ".3f", "diff")
    int8 = f.get("precision") == "int8"
    for key, (_, name) in BACKENDS.items():
        if int8:  # ONNX Runtime and OpenVINO run the QDQ model's convolutions in INT8: the name's "(f32)" would lie
            name = name.replace(" (f32)", "")
        for k, row_name in ((f"{key}_ms", f"{name} ms"), (f"{key}_p90_ms", f"{name} ms p90")):
            a, b = s.get(k), f.get(k)
            lines.append(f"| {row_name} | {_fmt(a, '.2f')} | {_fmt(b, '.2f')} | "
                         f"{f'{a / b:.2f}x faster' if a and b else ''} |")
    lines.append(f"| speed-up (ONNX Runtime) | 1.00x | {f['speedup']:.2f}x | |")
    return ("\n".join(lines) + f"\n\nBatch 1, {report['threads']} thread(s), source and result timed interleaved per runtime. "
            f"Fine-tuning: {report['epochs']} epochs in all; the final fine-tune {report['stopped']}.\n"
            f"{label.capitalize()} model: {f['file']} (ONNX {f['onnx']}"
            f"{f', OpenVINO ' + f['openvino'] if f.get('openvino') else ''})")


def plot_report(report: dict):  # noqa: ANN201 - a matplotlib Figure
    """Two panels: latency per backend and mAP50-95 per split, source against the result (a runtime that did not run
    the result, PyTorch for an INT8 model, shows no bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, f = report["source"], report["final"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = [n for k, (_, n) in BACKENDS.items() if s.get(f"{k}_ms")]
    keys = [k for k in BACKENDS if s.get(f"{k}_ms")]
    x = range(len(keys))
    ax1.bar([i - 0.2 for i in x], [s[f"{k}_ms"] for k in keys], 0.4, label="source")
    label = report.get("label", "slimmed")
    ax1.bar([i + 0.2 for i in x], [f.get(f"{k}_ms") or 0 for k in keys], 0.4,
            label=f"{label} ({f['speedup']:.2f}x in ORT)")
    ax1.set_xticks(list(x), names)
    ax1.set_ylabel(f"ms per image (batch 1, {report['threads']} thread(s))")
    ax1.legend()
    splits = [sp for sp in ("val", "test") if s.get(f"map50_95_{sp}") is not None]
    y = range(len(splits))
    ax2.bar([i - 0.2 for i in y], [s[f"map50_95_{sp}"] for sp in splits], 0.4, label="source")
    ax2.bar([i + 0.2 for i in y], [f[f"map50_95_{sp}"] for sp in splits], 0.4, label=label)
    ax2.set_xticks(list(y), splits)
    ax2.set_ylabel("mAP50-95")
    ax2.legend()
    fig.suptitle(f"{Path(s['file']).name}: {s['gflops']:.2f} GFLOPs at {imgsz_text(s['imgsz'])} px -> "
                 f"{f['gflops']:.2f} at {imgsz_text(f['imgsz'])} px ({f.get('precision', 'fp32')})")
    fig.tight_layout()
    return fig
