"""The network-slimming study on one dataset (default aquarium), resumable stage by stage:
``python benchmarks/slimming.py --data data/aquarium.yaml --epochs 20 --ft-epochs 20 --percents 0.5``.

Trains ``base`` (E epochs from the pretrained weights), ``reference`` (E + F epochs: the recipe's compute without
slimming), ``sparsity`` (E epochs, ``--sparsity_rate auto``, targeted at the channels a prune at ``--sparsity-target``
takes), prunes it at each percent (BN-recalibrated), fine-tunes
each pruned model F epochs, exports the best one to ONNX and INT8, validates every model on val and test with
val.py, times them all interleaved in PyTorch and ONNX Runtime, and writes ``<name>.md``, ``<name>.json`` and
``<name>.png`` (mAP50-95 against latency, Pareto front marked). Every stage is a normal run of our scripts in
``<project>/<name>/<stage>`` and is skipped when its outputs exist, so the same command resumes the study.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.slimming.stages import SlimmingOptions  # noqa: E402
from pruning.importance import IMPORTANCES  # noqa: E402
from pruning.masks import MODES  # noqa: E402
from pruning.sparsity import SPARSITY_IMPORTANCES  # noqa: E402
from utils.cli import run_script  # noqa: E402


def parse_opt(argv: list[str] | None = None) -> SlimmingOptions:
    """Parse the command line into SlimmingOptions."""
    d = SlimmingOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=d.data, help="dataset.yaml (val and, when it has one, test split are scored)")
    p.add_argument("--weights", default=d.weights, help="pretrained weights every training starts from")
    p.add_argument("--imgsz", "--img", type=int, default=d.imgsz, help="train, val and latency image size")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs of base and of sparsity training (E)")
    p.add_argument("--ft-epochs", type=int, default=d.ft_epochs, help="fine-tuning epochs per pruned model (F)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training and validation batch size")
    p.add_argument("--workers", type=int, default=d.workers, help="dataloader workers per run")
    p.add_argument("--sparsity-rate", default=d.sparsity_rate, help="train.py --sparsity_rate (a number or 'auto')")
    p.add_argument("--sparsity-target", type=float, default=d.sparsity_target,
                   help="train.py --sparsity_target: the share of prunable channels driven to 0 (0: L1 on all)")
    p.add_argument("--ft-hyp", default=d.ft_hyp, help="hyperparameters of the fine-tuning runs")
    p.add_argument("--mode", choices=MODES, default=d.mode, help="prune.py --mode")
    p.add_argument("--percents", nargs="+", type=float, default=d.percents, help="prune ratios (prune.py --percent)")
    p.add_argument("--round", type=int, default=d.round, help="prune.py --round")
    p.add_argument("--importance", choices=IMPORTANCES, default=d.importance,
                   help="prune.py --importance")
    p.add_argument("--sparsity-importance", choices=SPARSITY_IMPORTANCES, default=d.sparsity_importance,
                   help="train.py --sparsity_importance: which channels targeted sparsity drives to 0")
    p.add_argument("--bn-recal-images", type=int, default=d.bn_recal_images, help="prune.py --bn-recal-images")
    p.add_argument("--baselines", choices=("all", "reference", "none"), default=d.baselines,
                   help="unpruned runs to train: base and reference, only reference, or none (speed-ups are then "
                        "over the sparsity-trained model)")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads of both runtimes when timing")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed runs per model and runtime")
    p.add_argument("--rounds", type=int, default=d.rounds, help="interleaved timing rounds")
    p.add_argument("--max-map-drop", type=float, default=d.max_map_drop,
                   help="export the smallest fine-tuned model whose val mAP50-95 is within this of the reference")
    p.add_argument("--project", default=d.project, help="study folders go under project/name")
    p.add_argument("--name", default=d.name, help="study name (default: the dataset YAML's stem)")
    p.add_argument("--out", default=d.out, help="folder for <name>.md/.json/.png (default: the study folder)")
    a = p.parse_args(argv)
    for flag, v, lo in (("--imgsz", a.imgsz, 32), ("--epochs", a.epochs, 1), ("--ft-epochs", a.ft_epochs, 1),
                        ("--batch-size", a.batch_size, 1), ("--threads", a.threads, 1), ("--repeats", a.repeats, 1),
                        ("--rounds", a.rounds, 1), ("--bn-recal-images", a.bn_recal_images, 1), ("--round", a.round, 1)):
        if v < lo:
            p.error(f"{flag} must be >= {lo}, got {v}")
    if not 0 <= a.sparsity_target < 1:
        p.error(f"--sparsity-target must be in [0, 1), got {a.sparsity_target}")
    if any(not 0 < x < 1 for x in a.percents):
        p.error(f"--percents must each be in (0, 1), got {a.percents}")
    if a.sparsity_rate != "auto":
        try:
            if float(a.sparsity_rate) <= 0:
                raise ValueError
        except ValueError:
            p.error(f"--sparsity-rate must be 'auto' or a number > 0, got '{a.sparsity_rate}'")
    return SlimmingOptions(**vars(a))


def main(argv: list[str] | None = None) -> dict:
    """Parse flags and run (or resume) the study."""
    from engine.slimming.study import run

    return run(parse_opt(argv))


if __name__ == "__main__":
    run_script(main)
