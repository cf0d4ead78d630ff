"""The slimming study's options (``benchmarks/slimming.py``).

Stage folders under ``<project>/<name>/``: ``base``, ``reference``, ``sparsity`` (train.py runs), ``prune_<p>``
(prune.py), ``finetune_<p>`` (train.py ``--ft_pruned_model``), ``export`` (export.py of the chosen fine-tuned model)
and ``val/<row>_<split>`` (val.py); ``logs/<stage>.log`` holds each stage's output.
"""

from __future__ import annotations

from dataclasses import dataclass

from pruning.importance import IMPORTANCES
from pruning.masks import MODES
from pruning.sparsity import SPARSITY_IMPORTANCES
from utils.options import above, at_least, imgsz_opt, in_range, not_a_file, opt, or_auto

__all__ = ["SlimmingOptions"]


@dataclass
class SlimmingOptions:
    """benchmarks/slimming.py's options: each field declares its flags, help text and range check once."""

    data: str = opt("data/aquarium.yaml", "--data",
                    help="dataset.yaml (val and, when it has one, test split are scored)")
    weights: str = opt("yolov5n.pt", "--weights", help="pretrained weights every training starts from")
    imgsz: int = imgsz_opt(320, "train, val and latency image size", minimum=32)
    epochs: int = opt(20, "--epochs", help="epochs of base and of sparsity training (E)", check=at_least(1))
    # reference trains epochs + ft_epochs
    ft_epochs: int = opt(20, "--ft-epochs", help="fine-tuning epochs per pruned model (F)", check=at_least(1))
    batch_size: int = opt(16, "--batch-size", help="training and validation batch size", check=at_least(1))
    workers: int = opt(2, "--workers", help="dataloader workers per run", check=at_least(0))
    sparsity_rate: float | str = opt("auto", "--sparsity-rate", type=or_auto(float, "number"),
                                     check=above(0, "or 'auto'"), help="train.py --sparsity_rate (a number or 'auto')")
    # Targeted sparsity: drive to 0 the channels a prune at this share takes (0: L1 on every prunable gamma). Plain L1
    # on aquarium shrank every gamma alike (safe maximum 0.296 after 20 epochs, pruned mAP 0).
    # 60% of the prunable channels by Taylor importance: the share whose pruned yolov5n has >= 35% fewer GFLOPs
    # (Taylor takes the cheap channels first: 30% of them are only 17% of the GFLOPs).
    sparsity_target: float = opt(0.6, "--sparsity-target", check=in_range(0, 1),
                                 help="train.py --sparsity_target: the share of prunable channels driven to 0 (0: L1 "
                                      "on all)")
    # the reference's hyperparameters: fine-tuning continues its recipe
    ft_hyp: str = opt("data/hyps/hyp.scratch-low.yaml", "--ft-hyp", help="hyperparameters of the fine-tuning runs")
    mode: str = opt("normal", "--mode", choices=MODES, help="prune.py --mode")
    percents: list[float] = opt([0.6], "--percents", nargs="+", type=float, help="prune ratios (prune.py --percent)",
                                check=in_range(0, 1, open_lo=True))
    # Kept channel counts in multiples of 8: ONNX Runtime's CPU kernels work in blocks of 8 channels; measured on
    # aquarium at 320 px, the same 50% prune ran 1.33x faster than the unpruned model with --round 1 and 1.63x with 8.
    round: int = opt(8, "--round", help="prune.py --round", check=at_least(1))
    # prune.py's ranking after targeted sparsity: the targeted gammas end near 0, lowest in their layer; relative
    # |gamma| takes them first without plain |gamma|'s refusal (on yolov5n.pt a 28% plain-|gamma| prune would empty
    # model.17.m.0.cv1, in the P3 neck where aquarium's small fish are found).
    importance: str = opt("relative", "--importance", choices=IMPORTANCES, help="prune.py --importance")
    # Which channels targeted sparsity drives to 0: by Taylor, the loss's own estimate of what each costs (masking 30%
    # of the 40-epoch aquarium model's channels kept mAP50-95 0.175 of 0.296 by Taylor, 0.000 by relative |gamma|).
    sparsity_importance: str = opt("taylor", "--sparsity-importance", choices=SPARSITY_IMPORTANCES,
                                   help="train.py --sparsity_importance: which channels targeted sparsity drives to 0")
    bn_recal_images: int = opt(256, "--bn-recal-images", help="prune.py --bn-recal-images", check=at_least(1))
    # "reference" only: the main job, to fit its time budget
    baselines: str = opt("all", "--baselines", choices=("all", "reference", "none"),
                         help="unpruned runs to train: base and reference, only reference, or none (speed-ups are then "
                              "over the sparsity-trained model)")
    threads: int = opt(1, "--threads", help="CPU threads of both runtimes when timing", check=at_least(1))
    repeats: int = opt(50, "--repeats", help="timed runs per model and runtime", check=at_least(1))
    rounds: int = opt(10, "--rounds", help="interleaved timing rounds", check=at_least(1))
    max_map_drop: float = opt(0.01, "--max-map-drop", check=in_range(0, 1),
                              help="export the smallest fine-tuned model whose val mAP50-95 is within this of the "
                                   "reference")
    project: str = opt("runs/slimming", "--project", help="study folders go under project/name", check=not_a_file)
    name: str = opt("", "--name", help="study name (default: the dataset YAML's stem)")
    out: str = opt("", "--out", help="folder for <name>.md/.json/.png (default: the study folder)", check=not_a_file)
