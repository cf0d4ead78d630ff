"""The training loop, as small methods with hooks: ``train -> train_one_epoch -> train_one_iter``."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from engine.train.hooks import StepInfo, TrainHook, settle_options
from engine.train.log import TrainLogger
from engine.train.options import TrainOptions
from engine.train.recipes import hooks_for
from engine.train.setup import (ResumeState, build_model, claim_run_dir, freeze_layers, resolve_resume,
                                restore_training_state)
from engine.val.validator import ValStats, collect, evaluate, fitness, print_results, summarise, val_loader
from models.checkpoint import load_model, model_from_checkpoint
from utils import dist
from utils.autoanchor import check_anchors
from utils.checkpoint import atomic_save, load_checkpoint, make_checkpoint
from utils.data import create_dataloader, load_dataset_config
from utils.ema import ModelEMA
from utils.hyp import load_hyp
from utils.interrupt import DeferredInterrupt
from utils.loss import ComputeLoss
from utils.optim import EarlyStopping, build_lr_lambda, build_optimizer, warmup_step
from utils.paths import RunLock
from utils.plots import plot_images, plot_labels, plot_results
from utils.torch_utils import init_seeds, select_device, unwrap

__all__ = ["Trainer", "build_trainer"]

LOGGER = logging.getLogger(__name__)
NBS = 64  # nominal batch size: gradients accumulate up to it


def build_trainer(opt: TrainOptions, hooks: Sequence[TrainHook] | None = None) -> Trainer:
    """The trainer for ``opt``: ``--resume`` resolved first (the resumed run's own options and checkpoint), then the
    hooks those options ask for (``--bn_sparsity``, ``--teacher``; see :func:`engine.train.recipes.hooks_for`) unless
    ``hooks`` replaces them.

    Raises:
        FileNotFoundError, ValueError: as :func:`engine.train.setup.resolve_resume` and :class:`Trainer`.
    """
    opt, resume = resolve_resume(opt)
    # From the resolved options, so a resumed sparsity or distillation run keeps its hooks.
    return Trainer(opt, hooks_for(opt) if hooks is None else hooks, resume=resume)


class Trainer:
    """One training run. ``Trainer(opt, hooks).train()`` returns the final metrics dict.

    Args:
        opt: the run's options (for a resumed run, the stored ones: see :func:`build_trainer`).
        hooks: what extends the loop (sparsity training, distillation, ...); the trainer adds none itself.
        resume: the run to continue, resolved beforehand (:func:`engine.train.setup.resolve_resume`).
    """

    def __init__(self, opt: TrainOptions, hooks: Sequence[TrainHook] = (), resume: ResumeState | None = None) -> None:
        if opt.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {opt.batch_size}")
        if opt.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {opt.epochs}")
        self.opt, self.hooks, self.resume = opt, list(hooks), resume
        self.device = select_device(opt.device, opt.batch_size, ddp=True)  # several GPUs: torchrun, one per GPU
        self.rank, self.world = dist.rank(), dist.world_size()
        self.main = dist.is_main()
        if self.world > 1 and opt.batch_size % self.world:
            raise ValueError(f"--batch-size {opt.batch_size} must be a multiple of the {self.world} processes")
        self.hyp = load_hyp(opt.hyp)
        self.hyp.label_smoothing = opt.label_smoothing or self.hyp.label_smoothing
        self.save_dir = Path(opt.save_dir) if opt.save_dir else None  # a new run's is chosen in _setup
        self.lock: RunLock | None = None
        self.logger: TrainLogger | None = None
        self.epoch, self.best_fitness, self.best_epoch, self.metrics = 0, 0.0, -1, {}
        self.interrupt = DeferredInterrupt()
        self.best_stats: ValStats | None = None  # the best epoch's validation, for the final plots

    # -- set-up ------------------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        """Everything the epochs need, in order: run folder, model, data, optimizer, then the distributed wrapper."""
        dist.init_distributed(self.device)
        init_seeds(self.opt.seed + 1 + max(self.rank, 0))
        self.save_dir, self.lock = claim_run_dir(self.opt, self.save_dir, self.hyp, self.main, self.resume is not None)
        self.wdir = self.save_dir / "weights"
        with dist.main_first():
            self.data = load_dataset_config(self.opt.data)
        self.names = ["item"] if self.opt.single_cls else self.data["names"]
        model = self._build_model()
        self._build_loaders(model)
        self._build_optimizer(model)
        self._wrap(model)

    def _build_model(self) -> nn.Module:
        """The model on the device (resumed, or built from the options), frozen layers, image size, scaled hyp."""
        opt, nc = self.opt, len(self.names)
        if self.resume is not None:  # the raw weights: the EMA's are restored into the EMA with the optimizer
            model = model_from_checkpoint(self.resume.ckpt, self.resume.path, "model", names=self.names, nc=nc)
        else:
            model, _ = build_model(opt, nc, self.names)
        model = model.to(self.device)
        freeze_layers(model, opt.freeze)
        if self.main:  # YOLOv5's "Model summary: ... layers, ... parameters, ... gradients, ... GFLOPs" (at 640)
            model.info()
        self.gs = max(int(model.stride.max()), 32)
        self.imgsz = math.ceil(opt.imgsz / self.gs) * self.gs
        if self.imgsz != opt.imgsz:
            LOGGER.warning(f"--imgsz {opt.imgsz} must be a multiple of stride {self.gs}, using {self.imgsz}")
        self.hyp_scaled = self.hyp.scaled(model.detect.nl, nc, self.imgsz)
        return model

    def _build_loaders(self, model: nn.Module) -> None:
        """Train loader (labels checked), val loader (rank 0), and for a new run the label plots and AutoAnchor."""
        opt, nc, hyp = self.opt, len(self.names), self.hyp_scaled
        self.train_loader, self.dataset = create_dataloader(
            self.data["train"], self.imgsz, opt.batch_size // self.world, self.gs, single_cls=opt.single_cls, hyp=hyp,
            augment=True, cache=opt.cache, rect=opt.rect, rank=self.rank if self.world > 1 else -1,
            workers=opt.workers, prefix="train: ", shuffle=not opt.rect, seed=opt.seed, nc=nc)
        if len(self.dataset) == 0:
            raise ValueError(f"{opt.data}: the training set {self.data['train']} has no images")
        labels = np.concatenate([lb for lb in self.dataset.labels if len(lb)], 0) if any(
            len(lb) for lb in self.dataset.labels) else np.zeros((0, 5))
        if len(labels) and labels[:, 0].max() >= nc:
            raise ValueError(f"{opt.data}: label class {int(labels[:, 0].max())} exceeds nc={nc}")
        self.val_loader = self._val_loader() if self.main and not opt.noval else None
        if self.main and self.resume is None:
            if not opt.noplots and len(labels):
                plot_labels(labels, self.names, self.save_dir)
            if not opt.noautoanchor:
                # As YOLOv5 does, also for a pretrained head: its runs re-fit yolov5n's anchors on coco128 at 320 px
                # (BPR 0.963), and matching its first epochs needs the same start (--noautoanchor keeps them). The
                # k-means and evolution follow --seed as YOLOv5's do: another seed, other (equally fit) anchors.
                check_anchors(self.dataset, model.detect, thr=hyp["anchor_t"], imgsz=self.imgsz, rng=opt.seed)
        self.nb = len(self.train_loader)

    def _build_optimizer(self, model: nn.Module) -> None:
        """Gradient accumulation, optimizer, schedule, warmup length and EMA; a resumed run's state restored."""
        opt, hyp = self.opt, self.hyp_scaled
        self.accumulate = max(round(NBS / opt.batch_size), 1)
        hyp["weight_decay"] *= opt.batch_size * self.accumulate / NBS
        self.optimizer = build_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
        self.lf = build_lr_lambda(opt.epochs, hyp["lrf"], cos=opt.cos_lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=self.lf)
        # YOLOv5's floor of 100 iterations (not the older forks' 1000, which kept a 20-40 epoch coco128 run in warmup
        # throughout): without it, fine-tuning yolov5n for 3 epochs at 320 lost 0.03 mAP50-95 to the faster ramp.
        self.nw = max(round(hyp["warmup_epochs"] * self.nb), 100) if hyp["warmup_epochs"] > 0 else -1
        self.ema = ModelEMA(model) if self.main else None
        self.start_epoch = 0
        if self.resume is not None:
            self.start_epoch, self.best_fitness = restore_training_state(self.resume, self.optimizer, self.ema,
                                                                         opt.epochs)
            if self.start_epoch >= opt.epochs:  # stopped while finalising: only that is left to do
                self.epoch = self.start_epoch - 1
        self.scheduler.last_epoch = self.start_epoch - 1

    def _wrap(self, model: nn.Module) -> None:
        """DDP (and SyncBatchNorm) for several processes; the loss, AMP scaler, early stopping and logger."""
        if self.world > 1:
            if self.opt.sync_bn and self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)
        self.model = model
        self.compute_loss = ComputeLoss(unwrap(model).detect, self.hyp_scaled)
        self.amp = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.main:
            LOGGER.info(f"AMP: {'on (float16 autocast, gradient scaling)' if self.amp else 'off (float32 on the CPU)'}")
        self.stopper = EarlyStopping(patience=self.opt.patience)
        self.logger = TrainLogger(self.save_dir, tensorboard=True) if self.main else None
        if self.logger is not None and self.resume is not None:
            self.logger.drop_epochs_from(self.start_epoch)

    def _step_info(self, ni: int = -1, epoch: int | None = None) -> StepInfo:
        """What hooks see of the run now (see :class:`engine.train.hooks.StepInfo`)."""
        return StepInfo(model=self.model, optimizer=self.optimizer, device=self.device, main=self.main,
                        opt=replace(self.opt), hyp=self.hyp_scaled, imgsz=self.imgsz,
                        epoch=self.epoch if epoch is None else epoch,
                        epochs=self.opt.epochs, start_epoch=self.start_epoch, nb=self.nb, nw=self.nw, ni=ni,
                        accumulate=self.accumulate, save_dir=self.save_dir, logger=self.logger)

    def _val_loader(self) -> torch.utils.data.DataLoader:
        """The protocol's val loader at the training size, twice the per-process batch and twice the workers."""
        opt = self.opt
        return val_loader(self.data["val"], self.imgsz, opt.batch_size // self.world * 2, self.gs, nc=len(self.names),
                          single_cls=opt.single_cls, workers=opt.workers * 2)

    # -- loop --------------------------------------------------------------------------------------------------------
    def train(self) -> dict:
        """Run all epochs, the final validation of best.pt, and return the final metrics. Ctrl-C stops it before the
        next iteration (a second Ctrl-C at once) with KeyboardInterrupt."""
        try:
            with self.interrupt:
                self._setup()
                return self._run_epochs()
        finally:
            if self.logger is not None:
                self.logger.close()
            if self.lock is not None:
                self.lock.release()
            dist.cleanup()

    def _run_epochs(self) -> dict:
        """The epochs after set-up, then (rank 0) the final validation; returns its summary."""
        opt = self.opt
        for h in self.hooks:  # --sparsity_rate auto plans S over the warmup too: nw is known by now
            settle_options(opt, h.before_train(self._step_info(epoch=self.start_epoch)) or {}, h)
        self.last_opt_step = -1
        self.train_time, self.train_images = 0.0, 0
        if self.main:
            LOGGER.info(f"Image sizes {self.imgsz} train, {self.imgsz} val\nUsing {self.train_loader.num_workers} "
                        f"dataloader workers\nLogging results to {self.save_dir}\nStarting training for "
                        f"{opt.epochs} epochs...")
        t0 = time.time()
        for epoch in range(self.start_epoch, opt.epochs):
            self.epoch = epoch
            losses = self.train_one_epoch(epoch)
            stop = self.after_epoch(epoch, losses)
            if self.world > 1:
                flag = torch.tensor([int(stop)], device=self.device)
                torch.distributed.broadcast(flag, 0)
                stop = bool(flag.item())
            if stop:
                break
        return self.after_train(time.time() - t0) if self.main else {}

    def train_one_epoch(self, epoch: int) -> np.ndarray:
        """One pass over the training set; returns the mean [box, obj, cls] losses."""
        self.model.train()
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        mloss = torch.zeros(3, device=self.device)
        pbar = enumerate(self.train_loader)
        if self.main:
            LOGGER.info(("\n" + "%11s" * 7) % ("Epoch", "GPU_mem", "box_loss", "obj_loss", "cls_loss", "Instances",
                                               "Size"))
            pbar = tqdm(pbar, total=self.nb, bar_format="{l_bar}{bar:10}{r_bar}")
        self.optimizer.zero_grad()
        t_epoch, seen = time.time(), 0
        for i, (imgs, targets, paths, _) in pbar:
            self.interrupt.check()
            loss_items = self.train_one_iter(i + self.nb * epoch, imgs, targets)
            mloss = (mloss * i + loss_items) / (i + 1)
            if self.main:
                mem = f"{torch.cuda.memory_reserved() / 1e9:.3g}G" if self.device.type == "cuda" else "0G"
                pbar.set_description(("%11s" * 2 + "%11.4g" * 5) % (f"{epoch}/{self.opt.epochs - 1}", mem, *mloss,
                                                                    targets.shape[0], imgs.shape[-1]))
                if epoch == self.start_epoch and i < 3 and not self.opt.noplots:
                    plot_images(imgs, targets, paths, self.save_dir / f"train_batch{i}.jpg", names=self.names)
            self.train_images += imgs.shape[0] * self.world
            seen += imgs.shape[0]
        self.train_time += time.time() - t_epoch
        if self.world > 1:  # every rank reports, so a log shows that all of them took their share of the data
            LOGGER.info(f"DDP: rank {self.rank}/{self.world} epoch {epoch}: {i + 1} iterations, {seen} of "
                        f"{len(self.dataset)} images")
        self.lr = [x["lr"] for x in self.optimizer.param_groups]
        self.scheduler.step()
        return mloss.cpu().numpy()

    def train_one_iter(self, ni: int, imgs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward and (every ``accumulate`` iterations) an optimizer step; returns loss items."""
        imgs = imgs.to(self.device, non_blocking=True).float() / 255
        if ni <= self.nw:
            self.accumulate = max(1, int(np.interp(ni, [0, self.nw], [1, NBS / self.opt.batch_size]).round()))
            warmup_step(self.optimizer, ni, self.nw, self.epoch, self.lf, self.hyp_scaled)
        if self.opt.multi_scale:
            sz = random.randrange(int(self.imgsz * 0.5), int(self.imgsz * 1.5) + self.gs) // self.gs * self.gs
            sf = sz / max(imgs.shape[2:])
            if sf != 1:
                ns = [math.ceil(x * sf / self.gs) * self.gs for x in imgs.shape[2:]]
                imgs = nn.functional.interpolate(imgs, size=ns, mode="bilinear", align_corners=False)
        with torch.autocast(self.device.type, enabled=self.amp):
            preds = self.model(imgs)
            loss, loss_items = self.compute_loss(preds, targets.to(self.device))
            for h in self.hooks:
                extra = h.extra_loss(self._step_info(ni), imgs, preds, targets)
                if extra is not None:
                    loss = loss + extra
        if self.world > 1:
            loss = loss * self.world  # DDP averages gradients across processes
        self.scaler.scale(loss).backward()
        if ni - self.last_opt_step >= self.accumulate:
            self.optimizer_step(ni)
            self.last_opt_step = ni
        return loss_items.detach()

    def optimizer_step(self, ni: int) -> None:
        """Unscale, clip, run ``before_step`` hooks (e.g. BN sparsity), step, update the EMA (at iteration ``ni``)."""
        self.scaler.unscale_(self.optimizer)
        # Hooks run after clipping: a regulariser's term must neither be clipped away nor, by raising the total norm,
        # shrink the detection loss's gradient.
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
        for h in self.hooks:
            h.before_step(self._step_info(ni))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)

    # -- epoch end ---------------------------------------------------------------------------------------------------
    def after_epoch(self, epoch: int, losses: np.ndarray) -> bool:
        """Validate, log, save; returns True when early stopping says so (rank 0 decides)."""
        if not self.main:
            return False
        opt = self.opt
        final = epoch + 1 == opt.epochs
        self.ema.update_attr(self.model, include=("yaml", "nc", "names", "stride"))
        if not opt.noval or final:
            if self.val_loader is None:  # --noval: only the final epoch validates
                self.val_loader = self._val_loader()
            stats = collect(self.ema.ema, self.val_loader, self.names, single_cls=opt.single_cls, half=self.amp,
                            compute_loss=self.compute_loss, keep_batches=not opt.noplots)  # for best's plots
            self.metrics = summarise(stats)
            print_results(self.metrics)
        else:
            stats = None
        m = self.metrics or {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50_95": 0.0, "loss": [0, 0, 0]}
        fit = fitness(m)
        improved = fit > self.best_fitness or self.best_fitness == 0
        if improved:
            self.best_epoch = epoch
            self.best_stats = stats.cpu() if stats is not None else None
        if fit > self.best_fitness:
            self.best_fitness = fit
        vl = m.get("loss", [0] * 3)
        values = {"train/box_loss": losses[0], "train/obj_loss": losses[1], "train/cls_loss": losses[2],
                  "metrics/precision": m["precision"], "metrics/recall": m["recall"], "metrics/mAP_0.5": m["mAP50"],
                  "metrics/mAP_0.5:0.95": m["mAP50_95"], "val/box_loss": vl[0], "val/obj_loss": vl[1],
                  "val/cls_loss": vl[2], **{f"x/lr{j}": lr for j, lr in enumerate(self.lr)}}
        for h in self.hooks:
            values.update(h.after_epoch(self._step_info()))
        self.logger.log_epoch(epoch, {k: float(v) for k, v in values.items()})
        if not opt.nosave or final:
            self.save(epoch, improved)
        return self.stopper(epoch, fit)

    def save(self, epoch: int, best: bool) -> None:
        """Write last.pt (and best.pt, and epoch{N}.pt every --save-period) atomically."""
        model = unwrap(self.model)
        ema_state = self.ema.state_dict()
        ckpt = make_checkpoint(model, epoch=epoch, best_fitness=self.best_fitness, ema=ema_state["ema"],
                               updates=ema_state["updates"], optimizer=self.optimizer.state_dict(),
                               train_args=asdict(self.opt), hyp=self.hyp.to_dict(),
                               results={k: v for k, v in self.metrics.items() if k != "per_class"})
        atomic_save(ckpt, self.wdir / "last.pt")
        if best:
            atomic_save(ckpt, self.wdir / "best.pt")
        if self.opt.save_period > 0 and epoch % self.opt.save_period == 0:
            atomic_save(ckpt, self.wdir / f"epoch{epoch}.pt")

    def after_train(self, elapsed: float) -> dict:
        """Final validation of best.pt with plots, results.png, hooks; returns the final metrics."""
        epochs_done = max(self.epoch - self.start_epoch + 1, 0)
        ips = self.train_images / max(self.train_time, 1e-9)
        print(f"\n{epochs_done} epochs completed in {elapsed / 3600:.3f} hours ({elapsed:.1f} s). "
              f"Training throughput: {ips:.1f} images/s ({self.train_time:.1f} s training, validation excluded)")
        best = self.wdir / "best.pt"
        results = dict(self.metrics)
        if self.best_stats is not None and best.exists():  # best.pt holds that epoch's EMA, validated then
            print(f"\n{best} holds epoch {self.best_epoch}'s weights, validated above")
            results = summarise(self.best_stats, plots=not self.opt.noplots, save_dir=self.save_dir)
            print_results(results, verbose=len(self.names) < 50)
        elif best.exists() and self.val_loader is not None:  # e.g. resumed after its best epoch
            model, _ = load_model(best, device=self.device, fuse=True)
            print(f"\nValidating {best}...")
            results = evaluate(model, self.val_loader, self.names, single_cls=self.opt.single_cls,
                               save_dir=self.save_dir, plots=not self.opt.noplots)
            print_results(results, verbose=len(self.names) < 50)
        for f in (self.wdir / "last.pt", best):
            if f.exists():  # finished: keep the EMA weights in fp16, drop the optimizer (resuming says it is done)
                ck = load_checkpoint(f)
                final = ck.get("ema") or ck["model"]
                ck["model"] = {k: v.half() if v.is_floating_point() else v for k, v in final.items()}
                ck["ema"], ck["optimizer"] = None, None
                atomic_save(ck, f)
        if not self.opt.noplots and (self.save_dir / "results.csv").exists():
            plot_results(self.save_dir / "results.csv")
        for h in self.hooks:
            h.after_train(self._step_info())
        summary = dict(results, epochs=epochs_done, planned_epochs=self.opt.epochs, best_epoch=self.best_epoch,
                       stopped_early=self.epoch + 1 < self.opt.epochs, train_seconds=self.train_time,
                       train_images_per_second=ips, best_fitness=self.best_fitness, save_dir=str(self.save_dir))
        (self.save_dir / "results.json").write_text(json.dumps(summary, indent=1, default=float))
        print(f"Results saved to {self.save_dir}")
        return summary

