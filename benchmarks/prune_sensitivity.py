"""Is |gamma| telling which channels matter? Mask the same number of channels per layer chosen three ways (lowest
|gamma|, as prune.py does; random; highest |gamma|), and the same total spread evenly (the lowest |gamma| of every
layer, the same share in each), and validate each masked model:
``python benchmarks/prune_sensitivity.py --weights yolov5n.pt --percent 0.01 0.05 --imgsz 320``.

After sparsity training that worked, masking the lowest gammas costs almost nothing and the highest costs a lot.
When the three are close, the gammas carry no ranking yet and any global-threshold prune hurts as much as a random one;
when "even" is much better than "lowest", the global threshold concentrates the cut on a few layers that need them.
Masked channels keep beta (prune.py's default reference, which folds act(beta) into the next layers).

``--importance gamma relative taylor`` compares instead how prune.py's rankings choose the channels (one global
threshold each): for every ranking and percent, the val mAP50-95 of the masked model and the GFLOPs of the pruned one
(``--round``), as a table, and with ``--out`` as ``prune_criteria.{md,json,png}``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.prune.pruner import PruneOptions, channel_scores  # noqa: E402
from engine.sweep.plots import save_figure  # noqa: E402
from engine.val.validator import scorer  # noqa: E402
from models.checkpoint import load_model  # noqa: E402
from models.summary import count_flops  # noqa: E402
from pruning import build_groups, compute_masks, masked_model, prune_model  # noqa: E402
from pruning.importance import IMPORTANCES  # noqa: E402
from pruning.masks import MODES  # noqa: E402
from utils.cli import run_script  # noqa: E402
from utils.data import load_dataset_config  # noqa: E402
from utils.options import at_least, imgsz_opt, in_range, not_a_file, opt, parse_options  # noqa: E402
from utils.plots import new_figure  # noqa: E402

CHOICES = ("lowest", "random", "highest", "even")


@dataclass
class SensitivityOptions:
    """benchmarks/prune_sensitivity.py's options: each field declares its flags, help text and range check once."""

    weights: str = opt("yolov5n.pt", "--weights", help="checkpoint (ours or official)")
    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml")
    percent: list[float] = opt([0.01, 0.05], "--percent", nargs="+", type=float,
                               help="shares of prunable channels to mask", check=in_range(0, 1))
    imgsz: int = imgsz_opt(320, "validation image size")
    batch_size: int = opt(16, "--batch-size", help="validation batch size", check=at_least(1))
    mode: str = opt("normal", "--mode", choices=MODES, help="prune.py --mode")
    seed: int = opt(0, "--seed", help="seed of the random choice")
    workers: int = opt(2, "--workers", help="max dataloader workers", check=at_least(0))
    # rankings to compare (prune.py --importance); empty: the per-layer CHOICES instead
    importance: list[str] = opt([], "--importance", nargs="+", type=str, choices=IMPORTANCES,
                                help="compare these rankings of prune.py (global threshold each) instead of the "
                                     "per-layer choices")
    round: int = opt(8, "--round", help="prune.py --round, for the GFLOPs", check=at_least(1))
    out: str = opt("", "--out", help="with --importance: folder for prune_criteria.{md,json,png}", check=not_a_file)


def reselect(plan, how: str, generator: torch.Generator):  # noqa: ANN001, ANN201
    """``plan`` (pruning.ChannelMasks) with, in every group, the same number of channels removed, chosen ``how``
    (or, for "even", the plan's share of every candidate group's channels, lowest scores first)."""
    masks = {}
    if how == "even":
        share = plan.removed_channels() / sum(k.numel() for k in plan.masks.values())
        for gid in plan.masks:
            s = plan.scores[gid]
            new = torch.ones(s.numel(), dtype=torch.bool)
            new[s.argsort()[:min(round(share * s.numel()), s.numel() - 1)]] = False
            masks[gid] = new
        return replace(plan, masks=masks)
    for gid, keep in plan.masks.items():
        n, width = int((~keep).sum()), keep.numel()
        if how == "lowest":
            masks[gid] = keep
            continue
        order = torch.randperm(width, generator=generator) if how == "random" else \
            plan.scores[gid].argsort(descending=True)
        new = torch.ones(width, dtype=torch.bool)
        new[order[:n]] = False
        masks[gid] = new
    return replace(plan, masks=masks)


def compare_importance(opt: SensitivityOptions, model: torch.nn.Module, groups: list, val) -> list[dict]:  # noqa: ANN001
    """For each ranking and percent: val mAP50-95 of the masked model, GFLOPs of the pruned one (at ``--imgsz``)."""
    full = count_flops(model, opt.imgsz)
    rows = [{"importance": "none", "percent": 0.0, "gflops": full, "mAP50_95": val(model)}]
    for imp in opt.importance:
        scores = channel_scores(PruneOptions(weights=opt.weights, data=opt.data, imgsz=opt.imgsz, importance=imp,
                                             batch_size=opt.batch_size, workers=opt.workers), model, groups,
                                torch.device("cpu"))
        for pc in opt.percent:
            try:
                plan = compute_masks(model, groups, pc, mode=opt.mode, round_to=opt.round, scores=scores)
            except ValueError as e:  # above this ranking's safe maximum: a layer would be emptied
                rows.append({"importance": imp, "percent": pc, "gflops": None, "mAP50_95": None, "refused": str(e)})
                continue
            gf = count_flops(prune_model(model, plan, fold_beta=True, verify=False)[0], opt.imgsz)
            rows.append({"importance": imp, "percent": pc, "gflops": gf,
                         "mAP50_95": val(masked_model(model, plan, keep_beta=True))})
            print(f"{imp} {pc:g}: {gf:.3f} GFLOPs ({gf / full:.0%}), mAP50-95 {rows[-1]['mAP50_95']:.4f}", flush=True)
    lines = [f"{opt.weights}: val mAP50-95 on {opt.data} at {opt.imgsz} px after masking the share of prunable "
             f"channels each ranking puts lowest (one global threshold, kept counts in multiples of {opt.round}; "
             f"masked channels keep beta), GFLOPs of the pruned model (unpruned {full:.3f}, mAP50-95 "
             f"{rows[0]['mAP50_95']:.4f})", "",
             "| percent | " + " | ".join(opt.importance) + " |", "| --- |" + " --- |" * len(opt.importance)]
    for pc in opt.percent:
        cells = []
        for imp in opt.importance:
            r = next(r for r in rows if r["importance"] == imp and r["percent"] == pc)
            cells.append("refused (a layer would be emptied)" if r["mAP50_95"] is None else
                         f"{r['mAP50_95']:.3f} at {r['gflops'] / full:.0%} GFLOPs")
        lines.append(f"| {pc:g} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))
    if opt.out:
        _save(opt, rows, lines, full)
    return rows


def _save(opt: SensitivityOptions, rows: list[dict], lines: list[str], full: float) -> None:
    import json

    out = Path(opt.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prune_criteria.md").write_text("\n".join(lines) + "\n")
    (out / "prune_criteria.json").write_text(json.dumps({"settings": {k: getattr(opt, k) for k in (
        "weights", "data", "imgsz", "mode", "round", "percent", "importance")}, "rows": rows}, indent=1))
    fig, ax = new_figure(figsize=(8, 5.5))
    for imp in opt.importance:
        pts = [(r["gflops"] / full, r["mAP50_95"]) for r in rows if r["importance"] == imp and r["gflops"]]
        ax.plot([1.0] + [x for x, _ in pts], [rows[0]["mAP50_95"]] + [y for _, y in pts], "o-", label=imp)
    ax.set_xlabel("GFLOPs of the pruned model / unpruned")
    ax.set_ylabel("val mAP50-95 after masking (no fine-tuning)")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(title="--importance")
    ax.set_title("Which channels can go? One global threshold per ranking")
    save_figure(fig, out / "prune_criteria.png")


def run(opt: SensitivityOptions) -> list[dict]:
    """Validate the model masked each way at each percent; print and return the rows."""
    model, _ = load_model(opt.weights, device="cpu")
    model.float().eval()
    data = load_dataset_config(opt.data)
    score = scorer(data, opt.imgsz, int(model.stride.max()), model.names, batch_size=opt.batch_size,
                   workers=opt.workers)

    def val(m: torch.nn.Module) -> float:
        return score(m)["mAP50_95"]

    groups = build_groups(model)
    if opt.importance:
        return compare_importance(opt, model, groups, val)
    rows = [{"percent": 0.0, "choice": "none", "mAP50_95": val(model)}]
    g = torch.Generator().manual_seed(opt.seed)
    for pc in opt.percent:
        plan = compute_masks(model, groups, pc, mode=opt.mode)
        for how in CHOICES:
            rows.append({"percent": pc, "choice": how,
                         "mAP50_95": val(masked_model(model, reselect(plan, how, g), keep_beta=True))})
    print(f"\n{opt.weights}: mAP50-95 on {opt.data} at {opt.imgsz} px, channels masked per layer as prune.py would")
    print("| percent | " + " | ".join(CHOICES) + " |\n| --- |" + " --- |" * len(CHOICES))
    print(f"| 0 (unmasked) | {rows[0]['mAP50_95']:.4f} |" + " |" * (len(CHOICES) - 1))
    for pc in opt.percent:
        cells = [f"{r['mAP50_95']:.4f}" for r in rows if r["percent"] == pc]
        print(f"| {pc:g} | " + " | ".join(cells) + " |")
    return rows


def parse_opt(argv: list[str] | None = None) -> SensitivityOptions:
    """Parse the command line into SensitivityOptions (its flags are declared there)."""
    return parse_options(SensitivityOptions, argv, "prune_sensitivity.py", __doc__)


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse flags and run."""
    return run(parse_opt(argv))


if __name__ == "__main__":
    run_script(main)
