"""slim.py: prune towards a budget in K steps, each BN-recalibrated and optionally fine-tuned a few epochs, stopping
early when an accuracy guard would be broken.

The last step's fine-tune can be longer (``final_ft_epochs``): the steps before it only need to hand on a model that
has recovered, the last one is the model the user keeps, and it is what a one-shot prune is compared with.

Step k prunes the previous step's model to ``G0 * (G / G0) ** (k / K)`` GFLOPs (or parameters), so every step removes
the same share of what is left. Each step is a normal run of prune.py (``--target-gflops``) and train.py
(``--ft_pruned_model``) in ``<project>/<name>/step<k>_{prune,ft}``, skipped when its outputs exist: the same command
resumes. ``steps.md`` and ``steps.json`` hold the per-step table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.prune_options import PruneOptions
from engine.slimming.stages import StageRunner
from engine.sweep.files import atomic_write_json, atomic_write_text
from engine.train_options import TrainOptions
from utils.options import to_argv

__all__ = ["SlimOptions", "run", "step_targets", "format_steps"]


@dataclass
class SlimOptions:
    """slim.py's options."""

    weights: str = ""
    data: str = "data/aquarium.yaml"
    imgsz: int = 320
    target_gflops: float = 0.0  # at --imgsz
    target_params: int = 0
    steps: int = 3
    ft_epochs: int = 2  # fine-tuning epochs after each step (0: BN recalibration only)
    final_ft_epochs: int = 0  # fine-tuning epochs after the last step (0: ft_epochs): the model the user keeps
    ft_hyp: str = "hyp.finetune_prune.yaml"  # no warmup, low lr: a short warmup-led fine-tune undid a trained model
    max_map_drop: float = 0.0  # > 0: stop before the step whose val mAP50-95 falls more than this below the source's
    importance: str = "relative"
    mode: str = "normal"
    round: int = 8
    bn_recal_images: int = 256
    batch_size: int = 16
    workers: int = 2
    project: str = "runs/slim"
    name: str = "exp"


def step_targets(start: float, target: float, steps: int) -> list[float]:
    """The budget after each of ``steps`` steps from ``start`` to ``target``: a geometric ramp, the last equal to
    ``target``."""
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    return [start * (target / start) ** (k / steps) for k in range(1, steps)] + [target]


def format_steps(rows: list[dict], source_map: float, what: str) -> str:
    """The per-step Markdown table."""
    lines = [f"| step | target {what} | {what} | parameters | mAP50-95 pruned | recalibrated | fine-tuned | "
             "vs source |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ft = f"{r['map_ft']:.4f}" if r.get("map_ft") is not None else "-"
        guard = " (guard)" if r["broke"] else ""
        lines.append(f"| {r['step']} | {r['target']:.4g} | {r['value']:.4g} | {r['params']:,} | "
                     f"{r['map_pruned']:.4f} | {r['map_recal']:.4f} | {ft} | {r['map'] - source_map:+.4f}{guard} |")
    return "\n".join(lines)


def _measure(file: Path, imgsz: int, gflops: bool) -> tuple[float, int]:
    from models.summary import count_flops
    from utils.checkpoint import load_model

    m = load_model(file, device="cpu")[0]
    params = sum(p.numel() for p in m.parameters())
    return (count_flops(m, imgsz) if gflops else float(params)), params


def run(opt: SlimOptions) -> dict:
    """Slim ``opt.weights`` in ``opt.steps`` steps; returns ``{"rows", "source_map50_95", "final", ...}``."""
    from utils.checkpoint import resolve_weights

    if bool(opt.target_gflops) == bool(opt.target_params):
        raise ValueError("give one of --target-gflops and --target-params")
    gflops = bool(opt.target_gflops)
    what = f"GFLOPs at {opt.imgsz} px" if gflops else "parameters"
    source = resolve_weights(opt.weights)  # a bad source is refused before anything is written
    start, _ = _measure(source, opt.imgsz, gflops)
    root = Path(opt.project) / opt.name
    root.mkdir(parents=True, exist_ok=True)
    settings = root / "settings.json"
    if settings.exists() and json.loads(settings.read_text()) != asdict(opt):
        raise ValueError(f"{root} holds a slim.py run with other settings ({settings}); give another --name to start "
                         "a new one, or the same flags to resume it")
    atomic_write_json(settings, asdict(opt))
    runner = StageRunner(root, prefix="slim")
    targets = step_targets(start, opt.target_gflops or float(opt.target_params), opt.steps)
    common = dict(data=opt.data, imgsz=opt.imgsz, batch_size=opt.batch_size, workers=opt.workers)
    rows: list[dict] = []
    current, final, source_map = source, source, None
    for k, target in enumerate(targets, 1):
        d = runner.root / f"step{k}_prune"
        budget = dict(target_gflops=float(f"{target:.6g}")) if gflops else dict(target_params=int(target))
        runner.run(f"step{k}_prune", "prune.py", to_argv(PruneOptions(
            weights=str(current), **budget, mode=opt.mode, round=opt.round, importance=opt.importance,
            bn_recal_images=opt.bn_recal_images, latency=False, **common, project=str(root), name=d.name,
            exist_ok=True)), d / "results.json")
        res = json.loads((d / "results.json").read_text())
        source_map = res["original"]["mAP50_95"] if source_map is None else source_map
        value, params = _measure(d / "pruned_model.pt", opt.imgsz, gflops)
        row = {"step": k, "target": target, "value": value, "params": params, "percent": res["percent"],
               "map_pruned": res["pruned"]["mAP50_95"], "map_recal": res[res["saved"]]["mAP50_95"], "map_ft": None,
               "model": str(d / "pruned_model.pt")}
        epochs = opt.final_ft_epochs if k == len(targets) and opt.final_ft_epochs else opt.ft_epochs
        if epochs:
            best = runner.train(f"step{k}_ft", to_argv(TrainOptions(
                weights=str(d / "pruned_model.pt"), ft_pruned_model=True, hyp=opt.ft_hyp, epochs=epochs, noval=True,
                **common)), after=d / "pruned_model.pt")
            row["map_ft"] = json.loads((best.parent.parent / "results.json").read_text())["mAP50_95"]
            row["model"] = str(best)
        row["map"] = row["map_ft"] if row["map_ft"] is not None else row["map_recal"]
        row["broke"] = bool(opt.max_map_drop) and row["map"] < source_map - opt.max_map_drop
        rows.append(row)
        print(f"slim: step {k}/{opt.steps}: {value:.4g} {what} (target {target:.4g}), val mAP50-95 {row['map']:.4f} "
              f"(source {source_map:.4f})", flush=True)
        if row["broke"]:
            print(f"slim: step {k} falls more than --max-map-drop {opt.max_map_drop:g} below the source's mAP50-95; "
                  f"stopping with step {k - 1}'s model ({final})", flush=True)
            break
        current = final = Path(row["model"])
    out = {"settings": asdict(opt), "what": what, "source": str(source), "source_value": start,
           "source_map50_95": source_map, "rows": rows, "final": str(final),
           "stopped_early": bool(rows and rows[-1]["broke"])}
    atomic_write_json(root / "steps.json", out)
    table = format_steps(rows, source_map, what)
    atomic_write_text(root / "steps.md", f"# slim.py: {opt.steps} steps to {targets[-1]:.4g} {what}\n\n"
                                         f"Source {source} ({start:.4g} {what}, val mAP50-95 {source_map:.4f}).\n\n"
                                         f"{table}\n\nFinal model: {final}\n")
    print(f"\n{table}\n\nFinal model: {final}\nResults saved to {root}")
    return out
