"""Sparsity training as a training hook: L1 on prunable BN gammas, logged and plotted every epoch."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.train.hooks import StepInfo, TrainHook
from pruning.sparsity import BNSparsity, plot_gamma_hist, strength_factor
from utils.optim import build_lr_lambda

__all__ = ["SparsityHook", "SparsityPlan", "choose_rate", "choose_target_rate"]

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparsityPlan:
    """The parts of a planned run that decide how far the L1 term can move a gamma.

    With SGD, an unimportant gamma (no loss gradient to resist) moves by ``lr * s / (1 - momentum)`` per batch once
    momentum has built up (the hook adds ``s`` per accumulated batch, so accumulation does not change it). Summed over
    the batches left, with the warmup's ramps (lr from 0, momentum from ``warmup_momentum``), the learning-rate
    schedule and the decay of ``s``, that is ``s * shrink_per_rate()``. Adam-style optimizers normalise each step by
    the gradient's running size, so there the distance does not grow with ``s``: ``s`` only decides which gammas the
    L1 term overpowers.
    """

    optimizer: str
    batches_per_epoch: int
    start_epoch: int
    epochs: int
    warmup_iters: int
    lr0: float
    lrf: float
    cos_lr: bool
    momentum: float
    warmup_momentum: float
    constant: bool = False

    def shrink_per_rate(self, until: int | None = None) -> float:
        """How far an unimportant |gamma| moves per unit of ``s`` (SGD) from the start epoch to epoch ``until``
        (default: the end of the run)."""
        lf = build_lr_lambda(self.epochs, self.lrf, cos=self.cos_lr)
        nb, total = self.batches_per_epoch, 0.0
        for epoch in range(self.start_epoch, self.epochs if until is None else min(until, self.epochs)):
            decay = strength_factor(epoch, self.epochs, self.constant)
            ni = np.arange(epoch * nb, (epoch + 1) * nb, dtype=float)
            lr = np.full_like(ni, self.lr0 * lf(epoch))
            mom = np.full_like(ni, self.momentum)
            warm = ni < self.warmup_iters
            if warm.any():  # as utils.optim.warmup_step: lr rises from 0, momentum from warmup_momentum
                lr[warm] = np.interp(ni[warm], [0, self.warmup_iters], [0.0, self.lr0 * lf(epoch)])
                mom[warm] = np.interp(ni[warm], [0, self.warmup_iters], [self.warmup_momentum, self.momentum])
            total += decay * float(np.sum(lr / (1.0 - mom)))
        return total


AUTO_REACH = 0.5  # auto S lets an unimportant gamma move by this share of the median |gamma| over the run


def choose_target_rate(plan: SparsityPlan, largest: float, log: bool = True) -> float:
    """``--sparsity_rate auto`` with ``--sparsity_target``: the S that takes the largest targeted |gamma| to 0 by the
    middle of the planned run, ``largest / plan.shrink_per_rate(until=middle)``, leaving the second half to train the
    network without those channels. Only the targeted channels feel S, so it can be this strong without costing the
    rest their accuracy.

    Raises:
        ValueError: as :func:`choose_rate`.
    """
    middle = plan.start_epoch + math.ceil((plan.epochs - plan.start_epoch) / 2)
    per_rate = _sgd_shrink(plan, middle)
    rate = float(f"{largest / per_rate:.3g}")
    if log:
        LOGGER.info(f"Sparsity: --sparsity_rate auto chose S={rate:g} for the targeted channels: by epoch {middle} of "
                    f"{plan.epochs} ({plan.batches_per_epoch} batches/epoch, lr0 {plan.lr0:g}, momentum "
                    f"{plan.momentum:g}) S moves a |gamma| by {per_rate:.3g} per unit, so the largest targeted one "
                    f"({largest:.3f}) reaches 0 there")
    return rate


def _sgd_shrink(plan: SparsityPlan, until: int | None = None) -> float:
    """``plan.shrink_per_rate(until)``, refusing what auto cannot plan for."""
    if plan.optimizer != "SGD":
        raise ValueError(f"--sparsity_rate auto plans S for SGD, whose L1 step grows with S; {plan.optimizer} "
                         "normalises every step by the gradient's size, so S only decides which gammas lose, not how "
                         "far they move: give --sparsity_rate explicitly (e.g. 0.01, as benchmarks/backbones.py does)")
    per_rate = plan.shrink_per_rate(until)
    if per_rate <= 0:
        raise ValueError("--sparsity_rate auto: the planned run takes no optimizer step with a learning rate above 0")
    return per_rate


def choose_rate(plan: SparsityPlan, median: float, log: bool = True) -> float:
    """``--sparsity_rate auto``: the S with which an unimportant gamma of half the median size reaches 0 at the end of
    the planned run, i.e. ``AUTO_REACH * median / plan.shrink_per_rate()``. Fewer optimizer steps (a shorter run,
    fewer images, a lower learning rate) give a larger S.

    Why half, measured on aquarium (yolov5n, 20 epochs at 320 px): the loss hardly resists the L1 term (a BN's
    output scale is undone by the next BatchNorm), so every gamma moves about as far as planned. Planned to take the
    median gamma to 0 (S=0.0384), the median fell 0.90 -> 0.03 and mAP50-95 to 0.028 against 0.27 without sparsity.

    Raises:
        ValueError: for Adam-style optimizers, whose steps do not scale with S (give S explicitly there).
    """
    per_rate = _sgd_shrink(plan)
    rate = float(f"{AUTO_REACH * median / per_rate:.3g}")
    if log:
        steps = plan.batches_per_epoch * (plan.epochs - plan.start_epoch)
        LOGGER.info(f"Sparsity: --sparsity_rate auto chose S={rate:g}: {steps} batches over epochs "
                    f"{plan.start_epoch}-{plan.epochs - 1} at lr0 {plan.lr0:g} ({'cosine' if plan.cos_lr else 'linear'}"
                    f" to lrf {plan.lrf:g}, {plan.warmup_iters} warmup iterations, momentum {plan.momentum:g}) move an "
                    f"unimportant |gamma| by {per_rate:.3g} per unit of S{'' if plan.constant else ' (S decaying to 0.1 S)'}"
                    f", so S={rate:g} moves one by {AUTO_REACH:g} x the median |gamma| ({median:.3f}): gammas below that reach 0 by "
                    "the last epoch")
    return rate


class SparsityHook(TrainHook):
    """Adds ``s_epoch * sign(gamma)`` to the grads of prunable BN weights before every optimizer step.

    Older recipes add the subgradient after every ``backward()``; with gradient accumulation that is once per
    accumulated batch, so the term is scaled by the number of batches accumulated since the last step to keep their
    ``--sparsity_rate`` values meaning the same here. Logs the share of prunable |gamma| < 0.01 (the figure that says
    whether sparsity training worked), the median, a TensorBoard histogram, and saves ``gamma_hist.png``.

    Args:
        rate: S, the L1 strength at epoch 0, or ``"auto"``: S is chosen in ``before_train`` so that an unimportant
            gamma of half the median size can reach 0 by the end of the planned run (see :func:`choose_rate`), and
            written back into the run's options, so checkpoints (and ``--resume``) carry the number.
        constant: keep S constant instead of ``S * (1 - 0.9 * epoch / epochs)``.
        mode: which BNs count as prunable ('normal' leaves residual-coupled channels alone, 'shortcut' includes them).
        target: 0, or the share of prunable channels the term acts on (the ones ``prune.py --percent target --round
            round_to`` would take; see :class:`pruning.sparsity.BNSparsity`); with ``auto``, S is chosen by
            :func:`choose_target_rate`.
        round_to: the ``--round`` the model will be pruned with.
        importance: which channels ``target`` picks (one of ``SPARSITY_IMPORTANCES``; see :class:`BNSparsity`).
    """

    def __init__(self, rate: float | str, constant: bool = False, mode: str = "normal", target: float = 0.0,
                 round_to: int = 1, importance: str = "gamma") -> None:
        self.auto = rate == "auto"
        self.rate, self.constant, self.mode = (0.0 if self.auto else float(rate)), constant, mode
        self.target, self.round_to, self.importance = target, round_to, importance
        self.reg = None
        self.history: dict[int, dict] = {}
        self._last_step_ni = -1

    def before_train(self, step: StepInfo) -> dict[str, Any]:
        """Set up the regulariser, choose S for ``auto`` (returned as the run's ``sparsity_rate``), log the start."""
        self.reg = BNSparsity(step.model, self.rate, step.epochs, constant=self.constant, mode=self.mode,
                              target=self.target, round_to=self.round_to, importance=self.importance,
                              imgsz=step.imgsz)
        if self.auto:  # every rank computes the same S: same weights, same schedule
            plan = self._plan(step)
            self.rate = self.reg.rate = (choose_target_rate(plan, self.reg.target_max(), step.main) if self.target
                                         else choose_rate(plan, self.reg.stats()["median"], step.main))
        if step.main:
            s = self.reg.stats()
            self.history[-1] = s
            aim = (f"; targeted: the lowest {self.target:g} (round {self.round_to}, {self.importance}), largest |gamma| "
                   f"{self.reg.target_max():.3f}" if self.target else "")
            LOGGER.info(f"Sparsity training: S={self.rate} ({'constant' if self.constant else 'decaying'}), "
                        f"{len(self.reg.paths)} BatchNorms, {s['n']} prunable channels, mode {self.mode}; "
                        f"|gamma| < 0.01: {s['share_below_0.01']:.1%}, median {s['median']:.3f}{aim}")
            if not self.target:
                self._check_strength(step, s["median"])
        return {"sparsity_rate": self.rate} if self.auto else {}  # checkpoints (and --resume) carry the number

    def _plan(self, step: StepInfo) -> SparsityPlan:
        h = step.hyp
        return SparsityPlan(optimizer=step.opt.optimizer, batches_per_epoch=step.nb, start_epoch=step.start_epoch,
                            epochs=step.epochs, warmup_iters=step.nw, lr0=h["lr0"], lrf=h["lrf"],
                            cos_lr=step.opt.cos_lr, momentum=h["momentum"], warmup_momentum=h["warmup_momentum"],
                            constant=self.constant)

    def _check_strength(self, step: StepInfo, median: float) -> None:
        """Warn when S cannot move gammas far in this run (see :meth:`SparsityPlan.shrink_per_rate`)."""
        plan = self._plan(step)
        if plan.optimizer != "SGD":
            return  # Adam-style updates do not scale with S; see SparsityPlan
        shrink = self.rate * plan.shrink_per_rate()
        LOGGER.info(f"Sparsity: an unimportant |gamma| can shrink by about {shrink:.3g} over this run "
                    f"({step.nb} batches/epoch, {step.epochs} epochs)")
        if shrink < 0.5 * median and not self.auto:
            LOGGER.warning(f"Sparsity: S={self.rate} is too weak for a run of {step.nb * step.epochs} "
                           f"batches to push gammas (median {median:.2f}) towards 0; that takes about --sparsity_rate "
                           f"{self.rate * median / max(shrink, 1e-12):.2g} for this run (--sparsity_rate auto picks it), "
                           f"but on a small dataset a rate that strong can cost most of the mAP before the gammas "
                           f"separate (more epochs or more images help); check the result with "
                           f"benchmarks/prune_sensitivity.py before pruning")

    def before_step(self, step: StepInfo) -> None:
        """Add the L1 subgradient, scaled by the batches accumulated since the previous step."""
        batches = max(step.ni - self._last_step_ni, 1) if self._last_step_ni >= 0 else step.accumulate
        self._last_step_ni = step.ni
        self.reg(step.epoch, grad_scale=float(batches))

    def after_epoch(self, step: StepInfo) -> dict[str, float]:
        """Record and print the share of small gammas; returns the sparsity columns of results.csv."""
        epoch = step.epoch
        s = self.reg.stats()
        self.history[epoch] = s
        if step.logger is not None:
            step.logger.histogram("sparsity/gamma", np.array(self._gammas()), epoch)
        extra = {"sparsity/target_max": self.reg.target_max()} if self.target else {}
        aim = f", largest targeted {extra['sparsity/target_max']:.4f}" if self.target else ""
        print(f"Sparsity: S={self.reg.strength(epoch):.3g}, prunable |gamma| < 0.01: {s['share_below_0.01']:.1%}, "
              f"median {s['median']:.3f}{aim}")
        return {"sparsity/s": self.reg.strength(epoch), "sparsity/gamma_lt_0.01": s["share_below_0.01"],
                "sparsity/gamma_median": s["median"], **extra}

    def after_train(self, step: StepInfo) -> None:
        """Save ``gamma_hist.png`` and ``gamma_stats.json`` (unless ``--noplots``)."""
        if step.opt.noplots:
            return
        f = plot_gamma_hist(self.history, step.save_dir / "gamma_hist.png")
        (step.save_dir / "gamma_stats.json").write_text(json.dumps(
            {str(k): {kk: vv for kk, vv in v.items() if kk != "hist"} for k, v in self.history.items()}, indent=1))
        print(f"Gamma distribution per epoch saved to {f}")

    def _gammas(self) -> list[float]:
        out: list[float] = []
        for w, m in zip(self.reg.params, self.reg.masks):
            g = w.detach().abs().float().cpu().flatten()
            out.extend((g[m.cpu()] if m is not None else g).tolist())
        return out
