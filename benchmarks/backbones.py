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

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.benchmark import LatencyOptions, run as time_models  # noqa: E402
from utils.cli import run_script  # noqa: E402
from utils.options import above, at_least, imgsz_opt, in_range, not_a_file, opt, parse_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("models/yolov5n.yaml", "models/yolov5s.yaml", "models/MobileNetv2.yaml", "models/MobileNetv3_large.yaml",
           "models/MobileNetv3_small.yaml", "models/ShuffleNet.yaml", "models/hub/yolov5s-ghost.yaml")


def _configs_exist(cfgs: list[str]) -> str | None:
    missing = [c for c in cfgs if not (ROOT / c).is_file()]
    return f"names no such config: {', '.join(missing)}" if missing else None


@dataclass
class BackboneOptions:
    """benchmarks/backbones.py's options: each field declares its flags, help text and range check once."""

    cfg: list[str] = opt(list(CONFIGS), "--cfg", nargs="+", type=str, help="model configs", check=_configs_exist)
    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml")
    imgsz: int = imgsz_opt(320, "training, validation and pruning image size")
    epochs: int = opt(3, "--epochs", help="epochs from scratch", check=at_least(1))
    batch_size: int = opt(16, "--batch-size", help="batch size", check=at_least(1))
    optimizer: str = opt("AdamW", "--optimizer", help="optimizer for both training stages")
    sparsity_rate: float = opt(0.01, "--sparsity_rate", help="S of the 1-epoch sparsity stage", check=above(0))
    percent: float = opt(0.3, "--percent", help="prune.py --percent", check=in_range(0, 1))
    tol: float = opt(1e-4, "--tol", help="max abs difference allowed between pruned and masked", check=at_least(0))
    latency_imgsz: list[int] = opt([320, 640], "--latency-imgsz", nargs="+", type=int, help="latency sizes (0: none)",
                                   check=at_least(0))
    repeats: int = opt(30, "--repeats", help="timed forward passes per latency cell", check=at_least(1))
    threads: int = opt(1, "--threads", help="CPU threads of both runtimes when timing",
                       check=at_least(0, "0: each runtime's default"))
    project: str = opt("runs/backbones", "--project", help="run dirs go under this folder", check=not_a_file)
    json: str = opt("", "--json", help="also write the rows to this JSON file")


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


def parse_opt(argv: list[str] | None = None) -> BackboneOptions:
    """Parse the command line into BackboneOptions (its flags are declared there)."""
    return parse_options(BackboneOptions, argv, "backbones.py", __doc__)


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse flags, run every config, time them, print the table."""
    opt = parse_opt(argv)
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
