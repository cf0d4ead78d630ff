"""prune.py's options as a dataclass: each field declares its flags, help text and range check once; prune.py's
parser is generated from it (:mod:`utils.options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from engine.benchmark import LATENCY_BACKENDS
from pruning.importance import IMPORTANCES
from pruning.masks import MODES
from utils.cli import FlagError
from utils.options import at_least, imgsz_opt, in_range, not_a_file, opt, or_auto

__all__ = ["PruneOptions"]

_BUDGETS = ("target_gflops", "target_params", "target_latency", "target_speedup")


@dataclass
class PruneOptions:
    """prune.py's options."""

    weights: str = opt("runs/train/exp/weights/best.pt", "--weights", help="checkpoint to prune (ours or official)")
    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml for validating before/after")
    cfg: str = opt("", "--cfg", help="optional model.yaml, cross-checked against the weights")
    percent: float = opt(0.0, "--percent", help="share of prunable channels to remove, [0, 1)", check=in_range(0, 1))
    imgsz: int = imgsz_opt(640, "validation image size")
    batch_size: int = opt(16, "--batch-size", help="validation batch size", check=at_least(1))
    device: str = opt("", "--device", help="cuda device, i.e. 0 or cpu (for validation)")
    workers: int = opt(8, "--workers", help="max dataloader workers", check=at_least(0))
    mode: str = opt("normal", "--mode", choices=MODES,
                    help="'normal' leaves residual-coupled channels alone, 'shortcut' prunes them jointly")
    importance: str = opt("gamma", "--importance", choices=IMPORTANCES,
                          help="rank channels by |gamma| ('gamma'), by |gamma| over its layer's mean ('relative': no "
                               "layer is emptied because its gammas are on a smaller scale), or by the loss's "
                               "estimate of what each costs, (gamma * dL/dgamma)^2 on training batches ('taylor'), or "
                               "that per multiply-accumulate the channel costs at --imgsz ('taylor_flops': the most "
                               "importance per GFLOP)")
    taylor_batches: int = opt(28, "--taylor-batches", check=at_least(1),
                              help="--importance taylor: training batches to sum the gradients over")
    target_gflops: float = opt(0.0, "--target-gflops", check=at_least(0, "0: off"),
                               help="instead of --percent: the smallest prune with at most this many GFLOPs at --imgsz")
    target_params: int = opt(0, "--target-params", check=at_least(0, "0: off"),
                             help="instead of --percent: the smallest prune with at most this many parameters")
    target_latency: float = opt(0.0, "--target-latency", check=at_least(0, "0: off"),
                                help="instead of --percent: the smallest prune whose batch-1 latency in ms (measured "
                                     "here, in --latency-backend with --threads at --imgsz) is at most this")
    target_speedup: float = opt(0.0, "--target-speedup", check=at_least(0, "0: off"),
                                help="instead of --percent: the smallest prune at least this many times faster than "
                                     "the input model (batch 1, each probe timed interleaved with it in "
                                     "--latency-backend with --threads at --imgsz)")
    latency_backend: str = opt("onnxruntime", "--latency-backend", choices=tuple(LATENCY_BACKENDS),
                               help="runtime that --target-latency, --target-speedup and --round auto measure")
    threads: int = opt(1, "--threads", help="intra-op threads for every latency measured", check=at_least(1))
    max_map_drop: float = opt(0.0, "--max-map-drop",
                              check=in_range(0, 1, note="mAP points as a fraction, e.g. 0.01"),
                              help="the largest prune (up to the target's, or the safe maximum) whose "
                                   "BN-recalibrated val mAP50-95 stays within this of the original (bisection, one "
                                   "validation per probe)")
    # a multiple, or "auto": the one that measures fastest at equal GFLOPs (engine.prune.search)
    round: int | str = opt(1, "--round", type=or_auto(int, "whole number"), check=at_least(1),
                           help="round kept channels up to a multiple of this (e.g. 8), or 'auto': of 1, 4, 8 and "
                                "16, the one whose prune measures fastest at equal GFLOPs")
    min_channels: int = opt(1, "--min-channels", help="channels every layer keeps at least", check=at_least(1))
    layers: int = opt(0, "--layers", help="also remove the K least important C3 Bottlenecks", check=at_least(0))
    fold_beta: bool = opt(True, "--no-fold-beta",
                          help="drop removed channels' beta instead of folding act(beta) into the next layers' biases")
    bn_recal: bool = opt(True, "--no-bn-recal",
                         help="save the pruned model with the BN statistics of the unpruned one (default: re-estimate "
                              "them, and keep the estimate unless it validates worse)")
    bn_recal_images: int = opt(256, "--bn-recal-images", check=at_least(1, "use --no-bn-recal to skip it"),
                               help="training images to re-estimate the pruned model's BN statistics on")
    noval: bool = opt(False, "--noval", help="skip validating the original, masked and pruned models")
    latency: bool = opt(True, "--no-latency", help="skip the CPU latency measurement")
    project: str = opt("runs/prune", "--project", help="save to project/name", check=not_a_file)
    name: str = opt("exp", "--name", help="save to project/name")
    exist_ok: bool = opt(False, "--exist-ok", help="existing project/name ok, do not increment")

    def validate(self, given: Collection[str] = ()) -> None:
        """Checks across flags: one budget at most, and a budget or ``--max-map-drop`` chooses the percent.

        Raises:
            FlagError: naming the flags.
        """
        targets = ["--" + f.replace("_", "-") for f in _BUDGETS if getattr(self, f)]
        if len(targets) > 1:
            raise FlagError(f"give one budget, not {' and '.join(targets)}")
        if targets and self.percent:
            raise FlagError(f"--percent is chosen by {targets[0]}; do not give both")
        if self.max_map_drop and self.percent:
            raise FlagError("--percent is chosen by --max-map-drop; do not give both")
        if self.max_map_drop and self.noval:
            raise FlagError("--max-map-drop validates every probe; it cannot be combined with --noval")
