"""Train a detector: ``python train.py --weights yolov5n.pt --data data/coco128.yaml --imgsz 320 --epochs 3``.

Several GPUs, one process each (DDP): ``torchrun --nproc_per_node 2 train.py --device 0,1 ...`` (NCCL; gloo with
``--device cpu``). ``--device 0,1`` without torchrun is refused with the command to use, not run on one GPU.
Network slimming: ``--bn_sparsity --sparsity_rate 0.0005`` (or the forks' ``--st --sr 0.0005``) for sparsity
training, ``--ft_pruned_model`` to fine-tune a checkpoint written by prune.py.
"""

from __future__ import annotations

import argparse
import sys
from typing import Mapping

from engine.train_options import TrainOptions
from pruning.sparsity import SPARSITY_IMPORTANCES
from utils.cli import Flags, ScriptParser, check_common_flags, python_api, run_script


def _rate(text: str) -> float | str:
    """``--sparsity_rate``: a number, or 'auto'."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got '{text}'") from None


def _parser() -> ScriptParser:
    d = TrainOptions()
    p = ScriptParser(prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=str, default=d.weights, help="initial weights path ('' to train from scratch)")
    p.add_argument("--cfg", type=str, default=d.cfg, help="model.yaml path")
    p.add_argument("--data", type=str, default=d.data, help="dataset.yaml path")
    p.add_argument("--hyp", type=str, default=d.hyp, help="hyperparameters path")
    p.add_argument("--epochs", type=int, default=d.epochs, help="total training epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="total batch size for all processes")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=d.imgsz, help="train, val image size (pixels)")
    p.add_argument("--rect", action="store_true", help="rectangular training")
    p.add_argument("--resume", nargs="?", const="True", default="", help="resume a run (its dir or last.pt)")
    p.add_argument("--nosave", action="store_true", help="only save the final checkpoint")
    p.add_argument("--noval", action="store_true", help="only validate after the final epoch")
    p.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    p.add_argument("--noplots", action="store_true", help="save no plot files")
    p.add_argument("--cache", nargs="?", const="ram", choices=("ram", "disk"), default=None,
                   help="cache images in 'ram' (default) or 'disk'")
    p.add_argument("--device", default=d.device, help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--multi-scale", action="store_true", help="vary img-size +/- 50%%")
    p.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    p.add_argument("--optimizer", type=str, choices=("SGD", "Adam", "AdamW"), default=d.optimizer, help="optimizer")
    p.add_argument("--sync-bn", action="store_true", help="use SyncBatchNorm (multi-GPU DDP only)")
    p.add_argument("--workers", type=int, default=d.workers, help="max dataloader workers (per process)")
    p.add_argument("--project", default=d.project, help="save to project/name")
    p.add_argument("--name", default=d.name, help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--cos-lr", action="store_true", help="cosine LR scheduler")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="label smoothing epsilon")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping patience (epochs without gain)")
    p.add_argument("--freeze", nargs="+", type=int, default=d.freeze, help="freeze layers: backbone=10, first3=0 1 2")
    p.add_argument("--save-period", type=int, default=d.save_period, help="save a checkpoint every x epochs")
    p.add_argument("--seed", type=int, default=d.seed, help="global training seed")
    g = p.add_argument_group("network slimming")
    # The forks' spellings, each with its author's meaning: --st / -sr switch sparsity training on, --sr / -s is S.
    g.add_argument("--bn_sparsity", "--bn-sparsity", "--st", "-sr", action="store_true",
                   help="L1 sparsity on BatchNorm gammas (sparsity training)")
    g.add_argument("--sparsity_rate", "--sparsity-rate", "--sr", "-s", type=_rate, default=d.sparsity_rate,
                   help="sparsity rate S (L1 subgradient S * sign(gamma)), or 'auto': chosen for this run (SGD) so "
                        "that unimportant gammas can reach 0 by its end")
    g.add_argument("--sparsity_constant", "--sparsity-constant", action="store_true",
                   help="keep S constant (default: S * (1 - 0.9 * epoch / epochs))")
    g.add_argument("--sparsity_mode", "--sparsity-mode", choices=("normal", "shortcut"), default=d.sparsity_mode,
                   help="which BNs are penalised: 'normal' skips residual-coupled ones, 'shortcut' includes them")
    g.add_argument("--sparsity_target", "--sparsity-target", type=float, default=d.sparsity_target,
                   help="targeted sparsity: act only on the share P of prunable channels that prune.py --percent P "
                        "would remove (re-chosen every step), driving them to 0 while the rest train freely; 0: all")
    g.add_argument("--sparsity_round", "--sparsity-round", type=int, default=d.sparsity_round,
                   help="with --sparsity_target: the --round the model will be pruned with (8 suits ONNX Runtime)")
    g.add_argument("--sparsity_importance", "--sparsity-importance", choices=SPARSITY_IMPORTANCES,
                   default=d.sparsity_importance,
                   help="with --sparsity_target: which channels to drive to 0: the lowest by |gamma| ('gamma'), by "
                        "|gamma| over its layer's mean ('relative'), or by the loss's own estimate of what each one "
                        "costs, (gamma * dL/dgamma)^2 averaged over the run ('taylor'), or that per "
                        "multiply-accumulate the channel costs ('taylor_flops': fewer channels for a GFLOPs cut)")
    g.add_argument("--ft_pruned_model", "--ft-pruned-model", action="store_true",
                   help="fine-tune a pruned checkpoint (its architecture is kept; --cfg is ignored)")
    k = p.add_argument_group("knowledge distillation")
    k.add_argument("--teacher", "--t_weights", type=str, default=d.teacher, help="teacher weights for distillation")
    k.add_argument("--kd-weight", "--kd_weight", type=float, default=d.kd_weight, help="distillation loss weight")
    return p


def parse_opt(argv: Flags = None) -> TrainOptions:
    """Parse train.py's flags into TrainOptions: a command line (bad flags exit with the usage line) or
    ``run``'s keyword arguments (bad flags raise FlagError)."""
    p = _parser()
    a = p.parse_flags(argv)
    check_common_flags(p, a)
    if a.bn_sparsity and a.sparsity_rate != "auto" and a.sparsity_rate <= 0:
        p.error("--bn_sparsity needs --sparsity_rate > 0 (e.g. 0.0005) or --sparsity_rate auto")
    if a.sparsity_rate and not a.bn_sparsity:  # a rate alone would train without sparsity, silently
        p.error(f"--sparsity_rate {a.sparsity_rate} does nothing without --bn_sparsity (alias --st): add it to train "
                "with sparsity, or drop the rate")
    if not 0.0 <= a.sparsity_target < 1.0:
        p.error(f"--sparsity_target must be in [0, 1), got {a.sparsity_target}")
    if a.sparsity_round < 1:
        p.error(f"--sparsity_round must be >= 1, got {a.sparsity_round}")
    if a.bn_sparsity and a.sparsity_rate == "auto" and a.optimizer != "SGD":
        p.error(f"--sparsity_rate auto plans S for SGD; with --optimizer {a.optimizer} every step is normalised by the "
                "gradient's size, so give --sparsity_rate explicitly (e.g. 0.01)")
    return TrainOptions(**vars(a))


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and train (the trainer adds the hooks the options ask for)."""
    from engine.trainer import Trainer
    from utils.dist import torchrun_command
    from utils.torch_utils import NeedsTorchrun

    opt = parse_opt(argv)
    try:
        trainer = Trainer(opt)
    except NeedsTorchrun as e:  # --device 0,1 outside torchrun: name the command that trains on all of them
        script, args = (sys.argv[0], sys.argv[1:]) if argv is None else \
            ("train.py", _parser().to_argv(argv) if isinstance(argv, Mapping) else list(argv))
        raise e.with_command(torchrun_command(e.nproc, script, args)) from None
    return trainer.train()


run = python_api(main, "train.py", 'train.run(weights="yolov5n.pt", data="data/aquarium.yaml", imgsz=320, epochs=3)')


if __name__ == "__main__":
    run_script(main)
