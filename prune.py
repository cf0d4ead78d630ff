"""Prune a (sparsity-trained) detector by BN gammas:
``python prune.py --weights runs/train/sparsity/weights/best.pt --data data/coco128.yaml --percent 0.3``.

One global |gamma| threshold over all prunable channels; the pruned model is rebuilt from an architecture dict with
explicit channel counts, checked against the masked original, validated, and saved as a checkpoint that loads
everywhere with no extra flags (val.py, detect.py, export.py, train.py --ft_pruned_model).
"""

from __future__ import annotations

import argparse

from engine.prune_search import LATENCY_BACKENDS
from engine.pruner import PruneOptions, run as prune
from pruning.importance import IMPORTANCES
from utils.cli import Flags, ScriptParser, check_common_flags, python_api, run_script


def _round_arg(v: str) -> int | str:
    if v == "auto":
        return v
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got '{v}'") from None


def parse_opt(argv: Flags = None) -> PruneOptions:
    """Parse prune.py's flags into PruneOptions: a command line (bad flags exit with the usage line) or
    ``run``'s keyword arguments (bad flags raise FlagError)."""
    d = PruneOptions()
    p = ScriptParser(prog="prune.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=str, default=d.weights, help="checkpoint to prune (ours or official)")
    p.add_argument("--data", type=str, default=d.data, help="dataset.yaml for validating before/after")
    p.add_argument("--cfg", type=str, default=d.cfg, help="optional model.yaml, cross-checked against the weights")
    p.add_argument("--percent", type=float, default=d.percent, help="share of prunable channels to remove, [0, 1)")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=d.imgsz, help="validation image size")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="validation batch size")
    p.add_argument("--device", default=d.device, help="cuda device, i.e. 0 or cpu (for validation)")
    p.add_argument("--workers", type=int, default=d.workers, help="max dataloader workers")
    p.add_argument("--mode", choices=("normal", "shortcut"), default=d.mode,
                   help="'normal' leaves residual-coupled channels alone, 'shortcut' prunes them jointly")
    p.add_argument("--importance", choices=IMPORTANCES, default=d.importance,
                   help="rank channels by |gamma| ('gamma'), by |gamma| over its layer's mean ('relative': no layer "
                        "is emptied because its gammas are on a smaller scale), or by the loss's estimate of what "
                        "each costs, (gamma * dL/dgamma)^2 on training batches ('taylor'), or that per multiply-"
                        "accumulate the channel costs at --imgsz ('taylor_flops': the most importance per GFLOP)")
    p.add_argument("--taylor-batches", type=int, default=d.taylor_batches,
                   help="--importance taylor: training batches to sum the gradients over")
    p.add_argument("--target-gflops", type=float, default=d.target_gflops,
                   help="instead of --percent: the smallest prune with at most this many GFLOPs at --imgsz")
    p.add_argument("--target-params", type=int, default=d.target_params,
                   help="instead of --percent: the smallest prune with at most this many parameters")
    p.add_argument("--target-latency", type=float, default=d.target_latency,
                   help="instead of --percent: the smallest prune whose batch-1 latency in ms (measured here, in "
                        "--latency-backend with --threads at --imgsz) is at most this")
    p.add_argument("--latency-backend", choices=tuple(LATENCY_BACKENDS), default=d.latency_backend,
                   help="runtime that --target-latency and --round auto measure")
    p.add_argument("--threads", type=int, default=d.threads, help="intra-op threads for every latency measured")
    p.add_argument("--max-map-drop", type=float, default=d.max_map_drop,
                   help="the largest prune (up to the target's, or the safe maximum) whose BN-recalibrated val "
                        "mAP50-95 stays within this of the original (bisection, one validation per probe)")
    p.add_argument("--round", type=_round_arg, default=d.round,
                   help="round kept channels up to a multiple of this (e.g. 8), or 'auto': of 1, 4, 8 and 16, the one "
                        "whose prune measures fastest at equal GFLOPs")
    p.add_argument("--min-channels", type=int, default=d.min_channels, help="channels every layer keeps at least")
    p.add_argument("--layers", type=int, default=d.layers, help="also remove the K least important C3 Bottlenecks")
    p.add_argument("--no-fold-beta", dest="fold_beta", action="store_false",
                   help="drop removed channels' beta instead of folding act(beta) into the next layers' biases")
    p.add_argument("--no-bn-recal", dest="bn_recal", action="store_false",
                   help="save the pruned model with the BN statistics of the unpruned one (default: re-estimate them, "
                        "and keep the estimate unless it validates worse)")
    p.add_argument("--bn-recal-images", type=int, default=d.bn_recal_images,
                   help="training images to re-estimate the pruned model's BN statistics on")
    p.add_argument("--noval", action="store_true", help="skip validating the original, masked and pruned models")
    p.add_argument("--no-latency", dest="latency", action="store_false", help="skip the CPU latency measurement")
    p.add_argument("--project", default=d.project, help="save to project/name")
    p.add_argument("--name", default=d.name, help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    a = p.parse_flags(argv)
    check_common_flags(p, a)
    if not 0 <= a.percent < 1:
        p.error(f"--percent must be in [0, 1), got {a.percent}")
    targets = [f for f in ("target_gflops", "target_params", "target_latency") if getattr(a, f)]
    if any(getattr(a, f) < 0 for f in ("target_gflops", "target_params", "target_latency")):
        p.error("--target-gflops, --target-params and --target-latency must be > 0 (0: off)")
    if len(targets) > 1:
        p.error(f"give one budget, not {' and '.join('--' + f.replace('_', '-') for f in targets)}")
    if targets and a.percent:
        p.error(f"--percent is chosen by --{targets[0].replace('_', '-')}; do not give both")
    if a.threads < 1:
        p.error(f"--threads must be >= 1, got {a.threads}")
    if not 0 <= a.max_map_drop < 1:
        p.error(f"--max-map-drop must be in [0, 1) (mAP points as a fraction, e.g. 0.01), got {a.max_map_drop}")
    if a.max_map_drop and a.percent:
        p.error("--percent is chosen by --max-map-drop; do not give both")
    if a.max_map_drop and a.noval:
        p.error("--max-map-drop validates every probe; it cannot be combined with --noval")
    if a.bn_recal_images < 1:
        p.error(f"--bn-recal-images must be >= 1, got {a.bn_recal_images} (use --no-bn-recal to skip recalibration)")
    if a.taylor_batches < 1:
        p.error(f"--taylor-batches must be >= 1, got {a.taylor_batches}")
    if (a.round != "auto" and a.round < 1) or a.min_channels < 1 or a.layers < 0:
        p.error("--round and --min-channels must be >= 1 and --layers >= 0")
    return PruneOptions(**vars(a))


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and prune."""
    return prune(parse_opt(argv))


run = python_api(main, "prune.py",
                 'prune.run(weights="runs/train/sparsity/weights/best.pt", data="data/aquarium.yaml", percent=0.3)')


if __name__ == "__main__":
    run_script(main)
