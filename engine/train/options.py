"""train.py's options as a dataclass (YOLOv5 flag names, plus network-slimming flags): each field declares its flags,
help text and range check once; train.py's parser is generated from it (:mod:`utils.options`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Collection

from pruning.masks import MODES
from pruning.sparsity import SPARSITY_IMPORTANCES
from utils.cli import FlagError
from utils.options import at_least, flag_name, imgsz_opt, in_range, not_a_file, opt, or_auto, stored_value_refusal

__all__ = ["TrainOptions", "options_from_dict", "RESUME_KEEPS"]

SLIM, KD = "network slimming", "knowledge distillation"
# Flags that may accompany --resume: the bare --resume looks for the latest last.pt under --project.
RESUME_KEEPS = ("resume", "project")


@dataclass
class TrainOptions:
    """Everything a training run needs; saved into every checkpoint as ``train_args``."""

    weights: str = opt("yolov5s.pt", "--weights", help="initial weights path ('' to train from scratch)")
    cfg: str = opt("", "--cfg", help="model.yaml path")
    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml path")
    hyp: str = opt("data/hyps/hyp.scratch-low.yaml", "--hyp", help="hyperparameters path")
    epochs: int = opt(100, "--epochs", help="total training epochs", check=at_least(1))
    batch_size: int = opt(16, "--batch-size", help="total batch size for all processes", check=at_least(1))
    imgsz: int = imgsz_opt(640, "train, val image size (pixels)")
    rect: bool = opt(False, "--rect", help="rectangular training")
    resume: str = opt("", "--resume", nargs="?", const="True", help="resume a run (its dir or last.pt)")
    nosave: bool = opt(False, "--nosave", help="only save the final checkpoint")
    noval: bool = opt(False, "--noval", help="only validate after the final epoch")
    noautoanchor: bool = opt(False, "--noautoanchor", help="disable AutoAnchor")
    noplots: bool = opt(False, "--noplots", help="save no plot files")
    cache: str | None = opt(None, "--cache", nargs="?", const="ram", choices=("ram", "disk"),
                            help="cache images in 'ram' (default) or 'disk'")
    device: str = opt("", "--device", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    multi_scale: bool = opt(False, "--multi-scale", help="vary img-size +/- 50%%")
    single_cls: bool = opt(False, "--single-cls", help="train multi-class data as single-class")
    optimizer: str = opt("SGD", "--optimizer", choices=("SGD", "Adam", "AdamW"), help="optimizer")
    sync_bn: bool = opt(False, "--sync-bn", help="use SyncBatchNorm (multi-GPU DDP only)")
    workers: int = opt(8, "--workers", help="max dataloader workers (per process)", check=at_least(0))
    project: str = opt("runs/train", "--project", help="save to project/name", check=not_a_file)
    name: str = opt("exp", "--name", help="save to project/name")
    exist_ok: bool = opt(False, "--exist-ok", help="existing project/name ok, do not increment")
    cos_lr: bool = opt(False, "--cos-lr", help="cosine LR scheduler")
    label_smoothing: float = opt(0.0, "--label-smoothing", help="label smoothing epsilon")
    patience: int = opt(100, "--patience", help="early stopping patience (epochs without gain)")
    freeze: list[int] = opt([0], "--freeze", nargs="+", type=int, help="freeze layers: backbone=10, first3=0 1 2")
    save_period: int = opt(-1, "--save-period", help="save a checkpoint every x epochs")
    seed: int = opt(0, "--seed", help="global training seed")
    # network slimming. The forks' spellings, each with its author's meaning: --st / -sr switch sparsity training
    # on, --sr / -s is S.
    bn_sparsity: bool = opt(False, "--bn_sparsity", "--bn-sparsity", "--st", "-sr", group=SLIM,
                            help="L1 sparsity on BatchNorm gammas (sparsity training)")
    # a number, or "auto" (chosen for the planned run, then stored as the number)
    sparsity_rate: float | str = opt(0.0, "--sparsity_rate", "--sparsity-rate", "--sr", "-s",
                                     type=or_auto(float, "number"), group=SLIM,
                                     help="sparsity rate S (L1 subgradient S * sign(gamma)), or 'auto': chosen for "
                                          "this run (SGD) so that unimportant gammas can reach 0 by its end")
    sparsity_constant: bool = opt(False, "--sparsity_constant", "--sparsity-constant", group=SLIM,
                                  help="keep S constant (default: S * (1 - 0.9 * epoch / epochs))")
    sparsity_mode: str = opt("normal", "--sparsity_mode", "--sparsity-mode", choices=MODES, group=SLIM,
                             help="which BNs are penalised: 'normal' skips residual-coupled ones, 'shortcut' "
                                  "includes them")
    sparsity_target: float = opt(0.0, "--sparsity_target", "--sparsity-target", group=SLIM, check=in_range(0, 1),
                                 help="targeted sparsity: act only on the share P of prunable channels that prune.py "
                                      "--percent P would remove (re-chosen every step), driving them to 0 while the "
                                      "rest train freely; 0: all")
    sparsity_round: int = opt(1, "--sparsity_round", "--sparsity-round", group=SLIM, check=at_least(1),
                              help="with --sparsity_target: the --round the model will be pruned with (8 suits ONNX "
                                   "Runtime)")
    sparsity_importance: str = opt("gamma", "--sparsity_importance", "--sparsity-importance",
                                   choices=SPARSITY_IMPORTANCES, group=SLIM,
                                   help="with --sparsity_target: which channels to drive to 0: the lowest by |gamma| "
                                        "('gamma'), by |gamma| over its layer's mean ('relative'), or by the loss's "
                                        "own estimate of what each one costs, (gamma * dL/dgamma)^2 averaged over the "
                                        "run ('taylor'), or that per multiply-accumulate the channel costs "
                                        "('taylor_flops': fewer channels for a GFLOPs cut)")
    ft_pruned_model: bool = opt(False, "--ft_pruned_model", "--ft-pruned-model", group=SLIM,
                                help="fine-tune a pruned checkpoint (its architecture is kept; --cfg is ignored)")
    # knowledge distillation
    teacher: str = opt("", "--teacher", "--t_weights", group=KD, help="teacher weights for distillation")
    kd_weight: float = opt(1.0, "--kd-weight", "--kd_weight", group=KD, help="distillation loss weight")
    distill: str = opt("output", "--distill", choices=("output", "feature"), group=KD,
                       help="with --teacher: match the head's outputs ('output'), or the neck's three feature maps "
                            "through 1x1 projections ('feature', normalised L2; a --kd-weight of 0.1 suits it)")
    # filled in by the trainer (no flag)
    save_dir: str = ""

    def validate(self, given: Collection[str] = ()) -> None:
        """Checks across flags. ``--resume`` continues a run with the options saved in its checkpoint (as YOLOv5
        does), so any other flag given with it (``given``: the fields set explicitly) would be ignored and is refused
        instead; only ``--project`` may come with a bare ``--resume`` (where to look for the latest run).

        Raises:
            FlagError: naming the flags.
        """
        if self.resume:
            keep = RESUME_KEEPS if self.resume == "True" else ("resume",)
            ignored = [flag_name(TrainOptions, f.name) for f in fields(self) if f.name in given and f.name not in keep
                       and f.metadata.get("cli")]
            if ignored:
                raise FlagError(f"--resume continues the run with the options saved in its checkpoint, so "
                                f"{', '.join(ignored)} would be ignored: drop {'it' if len(ignored) == 1 else 'them'}, "
                                "or start a new run from its weights (--weights .../last.pt)")
        rate, bn = self.sparsity_rate, self.bn_sparsity
        if bn and rate != "auto" and rate <= 0:
            raise FlagError("--bn_sparsity needs --sparsity_rate > 0 (e.g. 0.0005) or --sparsity_rate auto")
        if rate and not bn:  # a rate alone would train without sparsity, silently
            raise FlagError(f"--sparsity_rate {rate} does nothing without --bn_sparsity (alias --st): add it to train "
                            "with sparsity, or drop the rate")
        if bn and rate == "auto" and self.optimizer != "SGD":
            raise FlagError(f"--sparsity_rate auto plans S for SGD; with --optimizer {self.optimizer} every step is "
                            "normalised by the gradient's size, so give --sparsity_rate explicitly (e.g. 0.01)")


def options_from_dict(d: dict, source: str = "checkpoint") -> TrainOptions:
    """Rebuild options saved in a checkpoint, ignoring keys this version does not know.

    Raises:
        ValueError: a stored value of the wrong type or out of its flag's range, naming ``source`` and the entry.
    """
    known = {f.name for f in fields(TrainOptions)}
    for k, v in d.items():
        why = stored_value_refusal(TrainOptions, k, v) if k in known else None
        if why:
            raise ValueError(f"{source}: its stored training option '{k}' {why}; the checkpoint is damaged or was "
                             "edited")
    return TrainOptions(**{k: v for k, v in d.items() if k in known})
