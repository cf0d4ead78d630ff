"""Prune a (sparsity-trained) detector by BN gammas:
``python prune.py --weights runs/train/sparsity/weights/best.pt --data data/coco128.yaml --percent 0.3``.

One global |gamma| threshold over all prunable channels; the pruned model is rebuilt from an architecture dict with
explicit channel counts, checked against the masked original, validated, and saved as a checkpoint that loads
everywhere with no extra flags (val.py, detect.py, export.py, train.py --ft_pruned_model).
"""

from __future__ import annotations

from engine.prune.options import PruneOptions
from engine.prune.pruner import run as prune
from utils.cli import Flags, python_api, run_script
from utils.options import parse_options


def parse_opt(argv: Flags = None) -> PruneOptions:
    """Parse prune.py's flags into PruneOptions (declared there): a command line (bad flags exit with the usage line)
    or ``run``'s keyword arguments (bad flags raise FlagError)."""
    return parse_options(PruneOptions, argv, "prune.py", __doc__)


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and prune."""
    return prune(parse_opt(argv))


run = python_api(main, "prune.py",
                 'prune.run(weights="runs/train/sparsity/weights/best.pt", data="data/aquarium.yaml", percent=0.3)')


if __name__ == "__main__":
    run_script(main)
