"""Does prune.py hit a measured latency budget, and does ``--round auto`` pay? Measured, each figure in a fresh process:
``python benchmarks/prune_budgets.py --weights runs/slimming/aquarium/sparsity/weights/best.pt
--data data/aquarium.yaml --imgsz 320 --factors 0.8 0.6 --out docs/slimming``.

1. The unpruned model's batch-1 ONNX Runtime latency (``--threads``, median of ``--repeats`` runs) in a fresh process.
2. For each factor f: ``prune.py --target-latency f x unpruned``, then the result timed again in a fresh process;
   the table gives target, prune.py's prediction and the fresh measurement, and their ratio.
3. ``prune.py --percent P --round auto`` against ``--round 1`` at the same percent, both timed together (interleaved)
   in one fresh process.

Writes ``prune_budgets.{md,json}`` to ``--out``; prune.py's runs go to ``--project``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.paths import REPO_ROOT  # noqa: E402


def fresh_latency(files: list[str], imgsz: int, threads: int, repeats: int) -> dict[str, dict]:
    """ONNX Runtime latency of checkpoints, all timed interleaved in a new Python process (median and p90, ms)."""
    code = ("import json, sys; from engine.slimming.timing import Timed, time_interleaved; "
            f"t = time_interleaved([Timed(f, f, {imgsz}) for f in sys.argv[1:]], threads={threads}, "
            f"repeats={repeats}, rounds=10, runtimes=('ort',)); print('RESULT ' + json.dumps(t))")
    out = subprocess.run([sys.executable, "-c", code, *files], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])


def _prune(args: list[str], name: str, root: Path) -> dict:
    cmd = [sys.executable, "prune.py", *args, "--noval", "--no-bn-recal", "--no-latency", "--project", str(root),
           "--name", name, "--exist-ok"]
    print("$ python " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads((root / name / "results.json").read_text())


def main(argv: list[str] | None = None) -> dict:
    """Run the three measurements; returns what the JSON holds."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="sparsity-trained checkpoint")
    p.add_argument("--data", default="data/aquarium.yaml", help="dataset.yaml (its val split ranks nothing here)")
    p.add_argument("--imgsz", type=int, default=320, help="image size of every latency")
    p.add_argument("--factors", type=float, nargs="+", default=[0.8, 0.6], help="targets as shares of unpruned")
    p.add_argument("--percent", type=float, default=0.5, help="the prune --round auto is compared at")
    p.add_argument("--importance", default="relative", help="prune.py --importance")
    p.add_argument("--round", type=int, default=8, help="prune.py --round for the latency targets")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--repeats", type=int, default=60, help="timed runs per model (>= 50)")
    p.add_argument("--out", default="runs/prune_budgets", help="where prune_budgets.{md,json} go")
    p.add_argument("--project", default="runs/prune_budgets", help="where prune.py's runs go")
    a = p.parse_args(argv)
    out = Path(a.out)
    root = Path(a.project)
    common = ["--weights", a.weights, "--data", a.data, "--imgsz", str(a.imgsz), "--importance", a.importance,
              "--threads", str(a.threads)]
    unpruned = fresh_latency([a.weights], a.imgsz, a.threads, a.repeats)[a.weights]["ort_ms"]
    print(f"unpruned: {unpruned:.2f} ms (ONNX Runtime, {a.threads} thread(s), {a.imgsz} px, fresh process)")
    rows = []
    for f in a.factors:
        target = f * unpruned
        res = _prune([*common, "--target-latency", f"{target:.4f}", "--round", str(a.round)], f"latency_{f:g}", root)
        file = str(root / f"latency_{f:g}" / "pruned_model.pt")
        measured = fresh_latency([file], a.imgsz, a.threads, a.repeats)[file]["ort_ms"]
        b = res["budget"]
        rows.append({"factor": f, "target_ms": target, "percent": res["percent"], "predicted_ms": b["predicted_ms"],
                     "measured_ms": measured, "measured_vs_target": measured / target, "probes": len(b["probes"]),
                     "gflops_640": res["gflops"]["after"]})
        print(f"target {target:.2f} ms: --percent {res['percent']:.4f}, predicted {b['predicted_ms']:.2f} ms, "
              f"measured {measured:.2f} ms ({measured / target - 1:+.1%})", flush=True)
    auto = _prune([*common, "--percent", str(a.percent), "--round", "auto"], "round_auto", root)
    one = _prune([*common, "--percent", str(a.percent), "--round", "1"], "round_1", root)
    files = [str(root / n / "pruned_model.pt") for n in ("round_auto", "round_1")]
    t = fresh_latency(files, a.imgsz, a.threads, a.repeats)
    ra = auto["round_auto"]
    rounding = {"percent": a.percent, "picked": ra["picked"], "candidates": ra["candidates"],
                "auto_ms": t[files[0]]["ort_ms"], "round1_ms": t[files[1]]["ort_ms"],
                "auto_gflops_640": auto["gflops"]["after"], "round1_gflops_640": one["gflops"]["after"]}
    doc = {"weights": a.weights, "imgsz": a.imgsz, "threads": a.threads, "repeats": a.repeats,
           "unpruned_ms": unpruned, "latency_targets": rows, "round_auto": rounding}
    lines = [f"# prune.py budgets, measured ({a.weights}, {a.imgsz} px, ONNX Runtime, {a.threads} thread(s))", "",
             f"Unpruned: {unpruned:.2f} ms (median of {a.repeats} runs in a fresh process).", "",
             "| target | ms | --percent | predicted ms | measured ms (fresh process) | measured / target | probes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['factor']:g} x unpruned | {r['target_ms']:.2f} | {r['percent']:.4f} | {r['predicted_ms']:.2f} | "
              f"{r['measured_ms']:.2f} | {r['measured_vs_target']:.3f} | {r['probes']} |" for r in rows]
    cands = ", ".join(f"{c['round']}: {c['latency_ms']:.2f} ms" for c in ra["candidates"])
    lines += ["", f"`--round auto` at `--percent {a.percent:g}` picked {rounding['picked']} ({cands} in prune.py);"
              f" timed together in a fresh process: auto {rounding['auto_ms']:.2f} ms "
              f"({rounding['auto_gflops_640']:.2f} GFLOPs at 640) vs `--round 1` {rounding['round1_ms']:.2f} ms "
              f"({rounding['round1_gflops_640']:.2f} GFLOPs), {rounding['round1_ms'] / rounding['auto_ms']:.2f}x.", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "prune_budgets.md").write_text("\n".join(lines))
    (out / "prune_budgets.json").write_text(json.dumps(doc, indent=1))
    print("\n".join(lines))
    return doc


if __name__ == "__main__":
    main()
