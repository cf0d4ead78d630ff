"""Train a detector: ``python train.py --weights yolov5n.pt --data data/coco128.yaml --imgsz 320 --epochs 3``.

Several GPUs, one process each (DDP): ``torchrun --nproc_per_node 2 train.py --device 0,1 ...`` (NCCL; gloo with
``--device cpu``). ``--device 0,1`` without torchrun is refused with the command to use, not run on one GPU.
Network slimming: ``--bn_sparsity --sparsity_rate 0.0005`` (or the forks' ``--st --sr 0.0005``) for sparsity
training, ``--ft_pruned_model`` to fine-tune a checkpoint written by prune.py.
"""

from __future__ import annotations

import sys
from typing import Mapping

from engine.train.options import TrainOptions
from engine.train.trainer import build_trainer
from utils.cli import Flags, ScriptParser, python_api, run_script
from utils.dist import torchrun_command
from utils.options import build_parser, parse_options
from utils.torch_utils import NeedsTorchrun


def _parser() -> ScriptParser:
    """train.py's parser, generated from :class:`TrainOptions` (flags, help, aliases and checks live there)."""
    return build_parser(TrainOptions, "train.py", __doc__)


def parse_opt(argv: Flags = None) -> TrainOptions:
    """Parse train.py's flags into TrainOptions: a command line (bad flags exit with the usage line) or
    ``run``'s keyword arguments (bad flags raise FlagError)."""
    return parse_options(TrainOptions, argv, "train.py", __doc__)


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and train (``--resume`` and the hooks the options ask for resolved before it starts)."""
    opt = parse_opt(argv)
    try:
        trainer = build_trainer(opt)
    except NeedsTorchrun as e:  # --device 0,1 outside torchrun: name the command that trains on all of them
        script, args = (sys.argv[0], sys.argv[1:]) if argv is None else \
            ("train.py", _parser().to_argv(argv) if isinstance(argv, Mapping) else list(argv))
        raise e.with_command(torchrun_command(e.nproc, script, args)) from None
    try:
        return trainer.train()
    except KeyboardInterrupt:
        wdir = getattr(trainer, "wdir", None)  # set once the run folder exists
        last = wdir / "last.pt" if wdir is not None else None
        if last is not None and last.exists():
            raise KeyboardInterrupt(f"training stopped; the last checkpoint is {last}, continue with: python train.py "
                                    f"--resume {last}") from None
        raise KeyboardInterrupt("training stopped before its first checkpoint was saved") from None


run = python_api(main, "train.py", 'train.run(weights="yolov5n.pt", data="data/aquarium.yaml", imgsz=320, epochs=3)')


if __name__ == "__main__":
    run_script(main)
