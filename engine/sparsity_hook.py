"""Sparsity training as a training hook: L1 on prunable BN gammas, logged and plotted every epoch."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from engine.train_hooks import TrainHook

if TYPE_CHECKING:
    from engine.trainer import Trainer

__all__ = ["SparsityHook"]

LOGGER = logging.getLogger(__name__)


class SparsityHook(TrainHook):
    """Adds ``s_epoch * sign(gamma)`` to the grads of prunable BN weights before every optimizer step.

    Older recipes add the subgradient after every ``backward()``; with gradient accumulation that is once per
    accumulated batch, so the term is scaled by the number of batches accumulated since the last step to keep their
    ``--sparsity_rate`` values meaning the same here. Logs the share of prunable |gamma| < 0.01 (the figure that says
    whether sparsity training worked), the median, a TensorBoard histogram, and saves ``gamma_hist.png``.

    Args:
        rate: S, the L1 strength at epoch 0.
        constant: keep S constant instead of ``S * (1 - 0.9 * epoch / epochs)``.
        mode: which BNs count as prunable ('normal' leaves residual-coupled channels alone, 'shortcut' includes them).
    """

    def __init__(self, rate: float, constant: bool = False, mode: str = "normal") -> None:
        self.rate, self.constant, self.mode = rate, constant, mode
        self.reg = None
        self.history: dict[int, dict] = {}
        self._last_step_ni = -1

    def before_train(self, trainer: Trainer) -> None:
        from pruning.sparsity import BNSparsity

        self.reg = BNSparsity(trainer.model, self.rate, trainer.opt.epochs, constant=self.constant, mode=self.mode)
        if trainer.main:
            s = self.reg.stats()
            self.history[-1] = s
            LOGGER.info(f"Sparsity training: S={self.rate} ({'constant' if self.constant else 'decaying'}), "
                        f"{len(self.reg.paths)} BatchNorms, {s['n']} prunable channels, mode {self.mode}; "
                        f"|gamma| < 0.01: {s['share_below_0.01']:.1%}, median {s['median']:.3f}")
            self._check_strength(trainer, s["median"])

    def _check_strength(self, trainer: Trainer, median: float) -> None:
        """Warn when S cannot move gammas far in this run: the L1 term shrinks an unimportant gamma by about
        lr * S / (1 - momentum) per accumulated batch (SGD), summed over the run's batches and schedules."""
        h = trainer.hyp_scaled
        mom = h["momentum"] if trainer.opt.optimizer == "SGD" else 0.0
        shrink = trainer.nb * h["lr0"] / (1 - mom) * sum(
            trainer.lf(e) * self.reg.strength(e) for e in range(trainer.start_epoch, trainer.opt.epochs))
        LOGGER.info(f"Sparsity: an unimportant |gamma| can shrink by about {shrink:.3g} over this run "
                    f"({trainer.nb} batches/epoch, {trainer.opt.epochs} epochs)")
        if shrink < 0.5 * median:
            LOGGER.warning(f"Sparsity: S={self.rate} is too weak for a run of {trainer.nb * trainer.opt.epochs} "
                           f"batches to push gammas (median {median:.2f}) towards 0; that takes about --sparsity_rate "
                           f"{self.rate * median / max(shrink, 1e-12):.2g} for this run, but on a small dataset a rate "
                           f"that strong can cost most of the mAP before the gammas separate (more epochs or more "
                           f"images help); check the result with benchmarks/prune_sensitivity.py before pruning")

    def before_step(self, trainer: Trainer) -> None:
        ni = trainer.current_ni
        batches = max(ni - self._last_step_ni, 1) if self._last_step_ni >= 0 else trainer.accumulate
        self._last_step_ni = ni
        self.reg(trainer.epoch, grad_scale=float(batches))

    def after_epoch(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        s = self.reg.stats()
        self.history[epoch] = s
        if trainer.logger is not None:
            import numpy as np

            trainer.logger.histogram("sparsity/gamma", np.array(self._gammas()), epoch)
        print(f"Sparsity: S={self.reg.strength(epoch):.3g}, prunable |gamma| < 0.01: {s['share_below_0.01']:.1%}, "
              f"median {s['median']:.3f}")
        return {"sparsity/s": self.reg.strength(epoch), "sparsity/gamma_lt_0.01": s["share_below_0.01"],
                "sparsity/gamma_median": s["median"]}

    def after_train(self, trainer: Trainer) -> None:
        from pruning.sparsity import plot_gamma_hist

        if trainer.opt.noplots:
            return
        f = plot_gamma_hist(self.history, trainer.save_dir / "gamma_hist.png")
        (trainer.save_dir / "gamma_stats.json").write_text(json.dumps(
            {str(k): {kk: vv for kk, vv in v.items() if kk != "hist"} for k, v in self.history.items()}, indent=1))
        print(f"Gamma distribution per epoch saved to {f}")

    def _gammas(self) -> list[float]:
        out: list[float] = []
        for w, m in zip(self.reg.params, self.reg.masks):
            g = w.detach().abs().float().cpu().flatten()
            out.extend((g[m.cpu()] if m is not None else g).tolist())
        return out
