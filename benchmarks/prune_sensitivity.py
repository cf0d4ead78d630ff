"""Is |gamma| telling which channels matter? Mask the same number of channels per layer chosen three ways (lowest
|gamma|, as prune.py does; random; highest |gamma|), and the same total spread evenly (the lowest |gamma| of every
layer, the same share in each), and validate each masked model:
``python benchmarks/prune_sensitivity.py --weights yolov5n.pt --percent 0.01 0.05 --imgsz 320``.

After sparsity training that worked, masking the lowest gammas costs almost nothing and the highest costs a lot.
When the three are close, the gammas carry no ranking yet and any global-threshold prune hurts as much as a random one;
when "even" is much better than "lowest", the global threshold concentrates the cut on a few layers that need them.
Masked channels keep beta (prune.py's default reference, which folds act(beta) into the next layers).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import run_script  # noqa: E402

CHOICES = ("lowest", "random", "highest", "even")


@dataclass
class SensitivityOptions:
    """benchmarks/prune_sensitivity.py's options."""

    weights: str = "yolov5n.pt"
    data: str = "data/coco128.yaml"
    percent: list[float] = field(default_factory=lambda: [0.01, 0.05])
    imgsz: int = 320
    batch_size: int = 16
    mode: str = "normal"
    seed: int = 0
    workers: int = 2


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


def run(opt: SensitivityOptions) -> list[dict]:
    """Validate the model masked each way at each percent; print and return the rows."""
    from engine.validator import evaluate
    from pruning import build_groups, compute_masks, masked_model
    from utils.checkpoint import load_model
    from utils.data import create_dataloader, load_dataset_config

    model, _ = load_model(opt.weights, device="cpu")
    model.float().eval()
    data = load_dataset_config(opt.data)
    loader, _ = create_dataloader(data["val"], opt.imgsz, opt.batch_size, int(model.stride.max()), pad=0.5, rect=True,
                                  workers=opt.workers, prefix="val: ", nc=data["nc"])

    def val(m: torch.nn.Module) -> float:
        return evaluate(m.eval(), loader, model.names)["mAP50_95"]

    groups = build_groups(model)
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


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse flags and run."""
    d = SensitivityOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=d.weights, help="checkpoint (ours or official)")
    p.add_argument("--data", default=d.data, help="dataset.yaml")
    p.add_argument("--percent", nargs="+", type=float, default=d.percent, help="shares of prunable channels to mask")
    p.add_argument("--imgsz", type=int, default=d.imgsz, help="validation image size")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="validation batch size")
    p.add_argument("--mode", choices=("normal", "shortcut"), default=d.mode, help="prune.py --mode")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the random choice")
    p.add_argument("--workers", type=int, default=d.workers, help="max dataloader workers")
    a = p.parse_args(argv)
    if not all(0 <= x < 1 for x in a.percent):
        p.error(f"--percent values must be in [0, 1), got {a.percent}")
    return run(SensitivityOptions(**vars(a)))


if __name__ == "__main__":
    run_script(main)
