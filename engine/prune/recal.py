"""BN recalibration of a pruned model (prune.py and its accuracy guard): the statistics re-estimated on training
images before the model is saved or scored."""

from __future__ import annotations

import torch
from torch import nn

from engine.prune.options import PruneOptions
from pruning import prune_model
from pruning.masks import ChannelMasks
from pruning.recalibrate import shifted_bn_stats
from utils.data import create_dataloader

__all__ = ["recalibrated"]


def recalibrated(opt: PruneOptions, data: dict, model: nn.Module, masked: nn.Module, plan: ChannelMasks,
                 device: torch.device) -> nn.Module:
    """The pruned model with BN statistics re-estimated on ``opt.bn_recal_images`` training images (a seeded random
    sample, letterboxed at ``--imgsz``, no augmentation): the unpruned model's statistics moved by the shift that
    masking the removed channels causes on those images (:func:`pruning.recalibrate.shifted_bn_stats`), then pruned
    with the same plan."""
    loader, dataset = create_dataloader(data["train"], opt.imgsz, opt.batch_size, int(model.stride.max()),
                                        shuffle=True, seed=0, workers=opt.workers, prefix="BN recalibration: ",
                                        nc=data["nc"])
    n = min(opt.bn_recal_images, len(dataset))
    print(f"\nRe-estimating BatchNorm statistics of the pruned model on {n} training images (--bn-recal-images)...")
    shifted = shifted_bn_stats(model.to(device), masked.to(device), loader, n)
    model.cpu(), masked.cpu()
    return prune_model(shifted.cpu(), plan, fold_beta=opt.fold_beta, verify=False)[0]
