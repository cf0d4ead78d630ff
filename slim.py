"""Iterative slimming: prune towards a budget in K steps, BN-recalibrated and briefly fine-tuned between steps:
``python slim.py --weights runs/train/sparsity/weights/best.pt --data data/aquarium.yaml --target-gflops 0.6
--steps 3 --ft-epochs 2``.

Each step is a normal prune.py / train.py run in ``<project>/<name>/step<k>_*`` (logs in ``logs/``); the same command
resumes an interrupted run. ``--max-map-drop D`` stops before the step whose val mAP50-95 falls more than D below the
source model's, and keeps the last step that did not. Writes ``steps.md`` and ``steps.json``.
"""

from __future__ import annotations

import argparse

from engine.slimming.iterative import SlimOptions, run
from pruning.importance import IMPORTANCES
from pruning.masks import MODES
from utils.cli import check_common_flags, run_script


def parse_opt(argv: list[str] | None = None) -> SlimOptions:
    """Parse slim.py's command line into SlimOptions."""
    d = SlimOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=str, required=True, help="checkpoint to slim (sparsity-trained, ours or official)")
    p.add_argument("--data", type=str, default=d.data, help="dataset.yaml (BN recalibration, fine-tuning, val)")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=d.imgsz, help="train, val and GFLOPs image size")
    p.add_argument("--target-gflops", type=float, default=d.target_gflops, help="final budget: GFLOPs at --imgsz")
    p.add_argument("--target-params", type=int, default=d.target_params, help="final budget: parameters")
    p.add_argument("--steps", type=int, default=d.steps, help="prune steps (K)")
    p.add_argument("--ft-epochs", type=int, default=d.ft_epochs, help="fine-tuning epochs after each step (0: none)")
    p.add_argument("--final-ft-epochs", type=int, default=d.final_ft_epochs,
                   help="fine-tuning epochs after the last step (0: --ft-epochs)")
    p.add_argument("--ft-hyp", type=str, default=d.ft_hyp, help="hyperparameters of the fine-tuning runs")
    p.add_argument("--max-map-drop", type=float, default=d.max_map_drop,
                   help="stop before a step whose val mAP50-95 is more than this below the source's (0: off)")
    p.add_argument("--importance", choices=IMPORTANCES, default=d.importance, help="prune.py --importance")
    p.add_argument("--mode", choices=MODES, default=d.mode, help="prune.py --mode")
    p.add_argument("--round", type=int, default=d.round, help="prune.py --round")
    p.add_argument("--bn-recal-images", type=int, default=d.bn_recal_images, help="prune.py --bn-recal-images")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training and validation batch size")
    p.add_argument("--workers", type=int, default=d.workers, help="dataloader workers per run")
    p.add_argument("--project", default=d.project, help="save to project/name")
    p.add_argument("--name", default=d.name, help="save to project/name (the same name resumes)")
    a = p.parse_args(argv)
    check_common_flags(p, a)
    if bool(a.target_gflops) == bool(a.target_params) or a.target_gflops < 0 or a.target_params < 0:
        p.error("give one budget: --target-gflops G or --target-params N (> 0)")
    if a.steps < 1 or a.ft_epochs < 0 or a.final_ft_epochs < 0 or a.round < 1 or a.bn_recal_images < 1:
        p.error("--steps, --round and --bn-recal-images must be >= 1 and --ft-epochs, --final-ft-epochs >= 0")
    if not 0 <= a.max_map_drop < 1:
        p.error(f"--max-map-drop must be in [0, 1), got {a.max_map_drop}")
    return SlimOptions(**vars(a))


def main(argv: list[str] | None = None) -> dict:
    """Entry point: parse flags and slim."""
    return run(parse_opt(argv))


if __name__ == "__main__":
    run_script(main)
