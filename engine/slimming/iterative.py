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
from typing import Collection

from engine.prune_options import PruneOptions
from engine.slimming.stages import StageRunner
from engine.sweep.files import atomic_write_json, atomic_write_text
from engine.train_options import TrainOptions
from pruning.importance import IMPORTANCES
from pruning.masks import MODES
from utils.cli import FlagError
from utils.options import at_least, in_range, not_a_file, opt, to_argv

__all__ = ["SlimOptions", "run", "step_targets", "format_steps"]


@dataclass
class SlimOptions:
    """slim.py's options: each field declares its flag, help text and range check once (:mod:`utils.options`)."""

    weights: str = opt("", "--weights", required=True, help="checkpoint to slim (sparsity-trained, ours or official)")
    data: str = opt("data/aquarium.yaml", "--data", help="dataset.yaml (BN recalibration, fine-tuning, val)")
    imgsz: int = opt(320, "--imgsz", "--img", "--img-size", help="train, val and GFLOPs image size", check=at_least(1))
    target_gflops: float = opt(0.0, "--target-gflops", help="final budget: GFLOPs at --imgsz", check=at_least(0))
    target_params: int = opt(0, "--target-params", help="final budget: parameters", check=at_least(0))
    steps: int = opt(3, "--steps", help="prune steps (K)", check=at_least(1))
    ft_epochs: int = opt(2, "--ft-epochs", help="fine-tuning epochs after each step (0: none)", check=at_least(0))
    final_ft_epochs: int = opt(0, "--final-ft-epochs", help="fine-tuning epochs after the last step (0: --ft-epochs)",
                               check=at_least(0))
    # No warmup and a low lr: a short warmup-led fine-tune undid a trained model (see hyp.finetune_prune.yaml).
    ft_hyp: str = opt("hyp.finetune_prune.yaml", "--ft-hyp", help="hyperparameters of the fine-tuning runs")
    final_ft_hyp: str = opt("", "--final-ft-hyp",
                            help="hyperparameters of the last step's fine-tuning ('': --ft-hyp); a long one recovers "
                                 "more with a warmup and lr0 0.01 (data/hyps/hyp.scratch-low.yaml)")
    max_map_drop: float = opt(0.0, "--max-map-drop", check=in_range(0, 1),
                              help="stop before a step whose val mAP50-95 is more than this below the source's "
                                   "(0: off)")
    importance: str = opt("relative", "--importance", choices=IMPORTANCES, help="prune.py --importance")
    mode: str = opt("normal", "--mode", choices=MODES, help="prune.py --mode")
    round: int = opt(8, "--round", help="prune.py --round", check=at_least(1))
    bn_recal_images: int = opt(256, "--bn-recal-images", help="prune.py --bn-recal-images", check=at_least(1))
    batch_size: int = opt(16, "--batch-size", help="training and validation batch size", check=at_least(1))
    workers: int = opt(2, "--workers", help="dataloader workers per run", check=at_least(0))
    project: str = opt("runs/slim", "--project", help="save to project/name", check=not_a_file)
    name: str = opt("exp", "--name", help="save to project/name (the same name resumes)")

    def validate(self, given: Collection[str] = ()) -> None:
        """Checks across flags: exactly one budget.

        Raises:
            FlagError: naming the flags.
        """
        if bool(self.target_gflops) == bool(self.target_params):
            raise FlagError("give one budget: --target-gflops G or --target-params N (> 0)")


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
        last = k == len(targets)
        epochs = opt.final_ft_epochs if last and opt.final_ft_epochs else opt.ft_epochs
        hyp = opt.final_ft_hyp if last and opt.final_ft_hyp else opt.ft_hyp
        if epochs:
            best = runner.train(f"step{k}_ft", to_argv(TrainOptions(
                weights=str(d / "pruned_model.pt"), ft_pruned_model=True, hyp=hyp, epochs=epochs, noval=True,
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
