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

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pruning.importance import IMPORTANCES  # noqa: E402
from utils.cli import run_script  # noqa: E402
from utils.options import at_least, imgsz_opt, in_range, not_a_file, opt, parse_options  # noqa: E402
from utils.paths import REPO_ROOT  # noqa: E402


@dataclass
class BudgetOptions:
    """benchmarks/prune_budgets.py's options: each field declares its flags, help text and range check once."""

    weights: str = opt("", "--weights", help="sparsity-trained checkpoint", required=True)
    data: str = opt("data/aquarium.yaml", "--data", help="dataset.yaml (its val split ranks nothing here)")
    imgsz: int = imgsz_opt(320, "image size of every latency")
    factors: list[float] = opt([0.8, 0.6], "--factors", nargs="+", type=float, help="targets as shares of unpruned",
                               check=in_range(0, 1, closed=True, open_lo=True))
    percent: float = opt(0.5, "--percent", help="the prune --round auto is compared at",
                         check=in_range(0, 1, open_lo=True))
    importance: str = opt("relative", "--importance", choices=IMPORTANCES, help="prune.py --importance")
    round: int = opt(8, "--round", help="prune.py --round for the latency targets", check=at_least(1))
    threads: int = opt(1, "--threads", help="ONNX Runtime intra-op threads", check=at_least(1))
    repeats: int = opt(60, "--repeats", help="timed runs per model (>= 50 for a steady median)", check=at_least(1))
    out: str = opt("runs/prune_budgets", "--out", help="where prune_budgets.{md,json} go", check=not_a_file)
    project: str = opt("runs/prune_budgets", "--project", help="where prune.py's runs go", check=not_a_file)


def fresh_latency(files: list[str], imgsz: int, threads: int, repeats: int) -> dict[str, dict]:
    """ONNX Runtime latency of checkpoints, all timed interleaved in a new Python process (median and p90, ms)."""
    code = ("import json, sys; from engine.benchmark import Timed, time_models; "
            f"t = time_models([Timed(f, f, {imgsz}) for f in sys.argv[1:]], threads={threads}, "
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


def parse_opt(argv: list[str] | None = None) -> BudgetOptions:
    """Parse the command line into BudgetOptions (its flags are declared there)."""
    return parse_options(BudgetOptions, argv, "prune_budgets.py", __doc__)


def main(argv: list[str] | None = None) -> dict:
    """Run the three measurements; returns what the JSON holds."""
    a = parse_opt(argv)
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
    run_script(main)
