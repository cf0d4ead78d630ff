"""Train, sparsity-train, prune and time every backbone config on coco128, and print one Markdown table:
``python benchmarks/backbones.py --imgsz 320 --epochs 3``.

Per config, each stage is a normal run of our scripts in its own run dir (``runs/backbones/<config>/...``):

1. ``train.py --cfg CFG --weights '' --epochs E`` from scratch (validated every epoch),
2. ``train.py --weights <1>/last.pt --epochs 1 --bn_sparsity``,
3. ``prune.py --weights <2>/last.pt --percent P --no-fold-beta`` (so that the pruned model must equal its masked
   reference exactly: the max abs difference of the raw head outputs is checked against ``--tol``),

then PyTorch and ONNX Runtime batch-1 latency of every trained model at each ``--latency-imgsz``, one process,
one after another, both runtimes with ``--threads`` threads. A stage whose output exists is not run again, so an
interrupted run resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import run_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("models/yolov5n.yaml", "models/yolov5s.yaml", "models/MobileNetv2.yaml", "models/MobileNetv3_large.yaml",
           "models/MobileNetv3_small.yaml", "models/ShuffleNet.yaml", "models/hub/yolov5s-ghost.yaml")


@dataclass
class BackboneOptions:
    """benchmarks/backbones.py's options."""

    cfg: list[str] = field(default_factory=lambda: list(CONFIGS))
    data: str = "data/coco128.yaml"
    imgsz: int = 320
    epochs: int = 3
    batch_size: int = 16
    optimizer: str = "AdamW"
    sparsity_rate: float = 0.01
    percent: float = 0.3
    tol: float = 1e-4
    latency_imgsz: list[int] = field(default_factory=lambda: [320, 640])
    repeats: int = 30
    threads: int = 1
    project: str = "runs/backbones"
    json: str = ""


def _run(args: list[str], log: Path) -> None:
    """Run one of our scripts, its output teed to ``log``; raise naming the log when it fails."""
    cmd = [sys.executable, *args]
    print("$ " + " ".join(args), flush=True)
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(args[:1])} failed (exit {p.returncode}), see {log}: {tail[0]}")


def _losses(results_csv: Path) -> list[tuple[float, float]]:
    """(total train loss, val mAP50-95) per epoch from a run's results.csv."""
    with open(results_csv) as f:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]
    return [(sum(float(r[f"train/{k}_loss"]) for k in ("box", "obj", "cls")), float(r["metrics/mAP_0.5:0.95"]))
            for r in rows]


def run_config(cfg: str, opt: BackboneOptions) -> dict:
    """The three stages for one config; returns its row (``error`` set when a stage failed)."""
    stem = Path(cfg).stem
    base = ROOT / opt.project / stem
    base.mkdir(parents=True, exist_ok=True)
    common = ["--data", opt.data, "--imgsz", str(opt.imgsz), "--batch-size", str(opt.batch_size), "--workers", "2"]
    row: dict = {"config": cfg}
    try:
        scratch = base / "scratch"
        if not (scratch / "weights" / "last.pt").exists() or not (scratch / "results.json").exists():
            _run(["train.py", "--cfg", cfg, "--weights", "", "--epochs", str(opt.epochs), "--optimizer", opt.optimizer,
                  *common, "--project", str(base), "--name", "scratch", "--exist-ok", "--noplots"],
                 base / "scratch.log")
        per_epoch = _losses(scratch / "results.csv")
        row["loss"] = [round(a, 5) for a, _ in per_epoch]
        row["loss_falls"] = all(b < a for a, b in zip(row["loss"], row["loss"][1:]))
        row["mAP50_95"] = per_epoch[-1][1]
        sparse = base / "sparsity"
        if not (sparse / "results.json").exists():
            _run(["train.py", "--weights", str(scratch / "weights" / "last.pt"), "--epochs", "1", "--noval",
                  "--optimizer", opt.optimizer, "--bn_sparsity", "--sparsity_rate", str(opt.sparsity_rate), *common,
                  "--project", str(base), "--name", "sparsity", "--exist-ok", "--noplots"], base / "sparsity.log")
        pruned = base / "prune"
        if not (pruned / "results.json").exists():
            _run(["prune.py", "--weights", str(sparse / "weights" / "last.pt"), "--percent", str(opt.percent),
                  "--no-fold-beta", *common, "--project", str(base), "--name", "prune", "--exist-ok"],
                 base / "prune.log")
        res = json.loads((pruned / "results.json").read_text())
        row.update(params=res["params"], gflops=res["gflops"], safe_percent=res["safe_percent"],
                   max_abs_diff=res["max_abs_diff_vs_masked"], masked=res["masked"]["mAP50_95"],
                   pruned=res["pruned"]["mAP50_95"], equal=res["max_abs_diff_vs_masked"] <= opt.tol)
        row["weights"] = str(scratch / "weights" / "last.pt")
    except (RuntimeError, FileNotFoundError, KeyError) as e:
        row["error"] = str(e)
    return row


def _latencies(rows: list[dict], opt: BackboneOptions) -> None:
    """Add ``latency["<runtime> <imgsz>"]`` (ms, batch 1, median) to every row that has weights."""
    from engine.benchmark import LatencyOptions
    from engine.benchmark import run as time_models

    have = [r for r in rows if "weights" in r]
    if not have:
        return
    timed = time_models(LatencyOptions(weights=[r["weights"] for r in have], imgsz=opt.latency_imgsz, batch_size=[1],
                                       warmup=5, repeats=opt.repeats, onnx=True, threads=opt.threads))
    n = 2 * len(opt.latency_imgsz)  # rows come back per model: PyTorch then its ONNX export, each at every size
    for i, r in enumerate(have):
        r["latency"] = {f"{t['runtime']} {t['imgsz'][0]}": t.get("median_ms") for t in timed[i * n:(i + 1) * n]}


def format_table(rows: list[dict], opt: BackboneOptions) -> str:
    """One Markdown row per config."""
    lat_cols = [f"{rt} {s}" for rt in ("pytorch", "onnxruntime") for s in opt.latency_imgsz]
    head = ["config", "params", "GFLOPs 640", *[f"{c} ms" for c in lat_cols],
            f"train loss ({opt.epochs} ep)", "mAP50-95", "safe max", f"pruned {opt.percent:.0%}: params / GFLOPs",
            "max diff vs masked", "mAP masked / pruned"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        if "error" in r:
            out.append(f"| `{r['config']}` | " + " | ".join(["-"] * (len(head) - 2)) + f" | {r['error']} |")
            continue
        lat = r.get("latency", {})
        cells = [f"`{r['config']}`", f"{r['params']['before']:,}", f"{r['gflops']['before']:.1f}",
                 *[f"{lat[c]:.1f}" if lat.get(c) else "-" for c in lat_cols],
                 " > ".join(f"{x:.4f}" for x in r["loss"]) + ("" if r["loss_falls"] else " (not falling)"),
                 f"{r['mAP50_95']:.3g}", f"{r['safe_percent']:.3f}",
                 f"{r['params']['after']:,} / {r['gflops']['after']:.1f}",
                 f"{r['max_abs_diff']:.1e}" + ("" if r["equal"] else " (> tol)"),
                 f"{r['masked']:.3g} / {r['pruned']:.3g}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse flags, run every config, time them, print the table."""
    d = BackboneOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", nargs="+", default=d.cfg, help="model configs")
    p.add_argument("--data", default=d.data, help="dataset.yaml")
    p.add_argument("--imgsz", type=int, default=d.imgsz, help="training, validation and pruning image size")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs from scratch")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size")
    p.add_argument("--optimizer", default=d.optimizer, help="optimizer for both training stages")
    p.add_argument("--sparsity_rate", type=float, default=d.sparsity_rate, help="S of the 1-epoch sparsity stage")
    p.add_argument("--percent", type=float, default=d.percent, help="prune.py --percent")
    p.add_argument("--tol", type=float, default=d.tol, help="max abs difference allowed between pruned and masked")
    p.add_argument("--latency-imgsz", nargs="+", type=int, default=d.latency_imgsz, help="latency sizes (0: none)")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed forward passes per latency cell")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads of both runtimes when timing")
    p.add_argument("--project", default=d.project, help="run dirs go under this folder")
    p.add_argument("--json", default=d.json, help="also write the rows to this JSON file")
    opt = BackboneOptions(**vars(p.parse_args(argv)))
    missing = [c for c in opt.cfg if not (ROOT / c).is_file()]
    if missing:
        p.error(f"--cfg: no such config {', '.join(missing)}")
    rows = []
    for cfg in opt.cfg:
        rows.append(run_config(cfg, opt))
        print(f"{cfg}: {json.dumps({k: v for k, v in rows[-1].items() if k not in ('params', 'gflops')})}", flush=True)
    if opt.latency_imgsz != [0]:
        opt.latency_imgsz = [s for s in opt.latency_imgsz if s > 0]
        _latencies(rows, opt)
    print(format_table(rows, opt))
    if opt.json:
        Path(opt.json).write_text(json.dumps({"options": vars(opt), "rows": rows}, indent=1))
        print(f"Results saved to {opt.json}")
    return rows


if __name__ == "__main__":
    run_script(main)
