"""Sparsity training: the L1 subgradient on BatchNorm gammas, and statistics that show how sparse they got.

``BNSparsity`` is a hook the training loop calls between ``loss.backward()`` and ``optimizer.step()``; it adds
``s_epoch * sign(gamma)`` to the gradients of the prunable BatchNorm weights, with the linear decay of the seed
recipes, ``s_epoch = s * (1 - 0.9 * epoch / epochs)``. With ``target`` P, the term acts only on the channels a prune
at P would take (re-chosen at every step from the current gammas, see :func:`pruning.masks.lowest_channels`): they
are driven to zero while the network still trains, and the other channels train free of it. With AMP, call it after ``scaler.unscale_(optimizer)`` or pass
the loss scale as ``grad_scale``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pruning.graph import ChannelGroup, build_groups
from pruning.importance import bn_importance, group_sums, relative_macs
from pruning.masks import candidate_groups, lowest_channels
from utils.torch_utils import unwrap

# How targeted sparsity picks its channels: 'gamma' and 'relative' as prune.py ranks them (pruning.importance), or
# 'taylor': the channels whose gamma the loss depends on least, (gamma * dL/dgamma)^2 averaged over the run's steps
# (Molchanov et al. 2019), on one global scale. Measured on the 40-epoch aquarium yolov5n, masking 30% of the
# prunable channels kept val mAP50-95 0.175 of 0.296 ranked by Taylor and 0.000 ranked by relative |gamma|.
SPARSITY_IMPORTANCES = ("gamma", "relative", "taylor", "taylor_flops")

__all__ = ["SPARSITY_IMPORTANCES", "BNSparsity", "strength_factor", "prunable_bn_positions", "gamma_stats", "plot_gamma_hist"]

LOGGER = logging.getLogger(__name__)


def prunable_bn_positions(groups: list[ChannelGroup], mode: str = "normal") -> dict[str, list[int]]:
    """``{bn path: channel indices}`` of the BatchNorm channels in candidate groups under ``mode``."""
    out: dict[str, set[int]] = {}
    for g in candidate_groups(groups, mode):
        for m in g.bns:
            out.setdefault(m.path, set()).update(m.positions)
    return {k: sorted(v) for k, v in out.items()}


def strength_factor(epoch: int, epochs: int, constant: bool = False) -> float:
    """The share of the sparsity rate ``s`` applied at ``epoch`` (0-based): 1, or the forks' linear decay to 0.1 at the
    end, ``1 - 0.9 * epoch / epochs``."""
    return 1.0 if constant else 1.0 - 0.9 * epoch / epochs


class BNSparsity:
    """L1 sparsity on the gammas of prunable BatchNorms (see the module docstring).

    Args:
        model: the model being trained (DDP wrappers are unwrapped; the parameters are shared, so the hook acts on
            what the optimizer steps).
        rate: ``s``, the L1 strength at epoch 0 (e.g. 1e-3 .. 1e-2).
        epochs: total epochs, for the decay.
        constant: keep ``s`` fixed instead of decaying it.
        mode: which groups count as prunable: ``normal`` (residual groups left alone) or ``shortcut``.
        groups: precomputed groups (default: traced from ``model``).
        target: 0 (every prunable gamma, classic network slimming), or the share P of prunable channels to drive to
            zero: only the lowest-ranked P (as prune.py ``--percent P --round round_to`` ranks them) get the term.
        round_to: the ``--round`` the model will be pruned with (for ``target``).
        importance: how ``target`` picks channels: as prune.py ranks them (``gamma``, ``relative``), or ``taylor`` (see
            ``SPARSITY_IMPORTANCES``), or ``taylor_flops`` (Taylor per multiply-accumulate at ``imgsz``); targeted
            gammas end near 0, so any of prune.py's rankings takes them first.
        imgsz: training image size (for ``taylor_flops``' channel costs).
    """

    def __init__(self, model: nn.Module, rate: float, epochs: int, constant: bool = False, mode: str = "normal",
                 groups: list[ChannelGroup] | None = None, target: float = 0.0, round_to: int = 1,
                 importance: str = "gamma", imgsz: int = 640) -> None:
        if rate < 0 or epochs < 1 or not 0.0 <= target < 1.0 or round_to < 1:
            raise ValueError(f"BNSparsity: need rate >= 0, epochs >= 1, target in [0, 1) and round_to >= 1, got "
                             f"rate={rate}, epochs={epochs}, target={target}, round_to={round_to}")
        net = unwrap(model)
        groups = groups if groups is not None else build_groups(net)
        modules = dict(net.named_modules())
        self.net, self.rate, self.epochs, self.constant, self.mode = net, float(rate), int(epochs), constant, mode
        self.target, self.round_to, self.importance = float(target), int(round_to), importance
        self.groups = candidate_groups(groups, mode)
        self.paths: list[str] = []
        self.params: list[nn.Parameter] = []
        self.masks: list[torch.Tensor | None] = []  # None: every channel of that BN is prunable
        for path, pos in prunable_bn_positions(groups, mode).items():
            w = modules[path].weight
            self.paths.append(path)
            self.params.append(w)
            if len(pos) == w.numel():
                self.masks.append(None)
            else:
                m = torch.zeros_like(w, dtype=torch.bool)
                m[pos] = True
                self.masks.append(m)
        if not self.params:
            LOGGER.warning("BNSparsity: the model has no prunable BatchNorm channels; the hook does nothing")
        if importance not in SPARSITY_IMPORTANCES:
            raise ValueError(f"BNSparsity: importance must be one of {SPARSITY_IMPORTANCES}, got '{importance}'")
        self.scales = self._scales() if importance != "gamma" else [None] * len(self.params)
        self.taylor: list[torch.Tensor] | None = None  # EMA of (gamma * dL/dgamma)^2 per channel, from the first step
        self.macs = None
        if importance == "taylor_flops":  # per channel, in units of the mean channel's MACs
            self.macs = relative_macs(net, self.groups, imgsz)

    def _scales(self) -> list[torch.Tensor]:
        """Per regularised BN, each channel's step scale: the mean |gamma| of its channel group at the start.

        Ranked relative to their layer (``importance='relative'``), targeted channels of a layer whose gammas are 4x
        larger would take 4x as long to reach 0 under one ``s``; scaling the step by the layer's own size takes them
        all there together, so ``s`` (and ``auto``) work in relative units, as the ranking does.
        """
        means = {g.id: s.mean().item() for g, s in ((g, bn_importance(self.net, [g])[g.id]) for g in self.groups
                                                    if g.bns)}
        out = {p: torch.ones_like(w, dtype=torch.float32, device="cpu") for p, w in zip(self.paths, self.params)}
        for g in self.groups:
            for m in g.bns:
                out[m.path][m.positions] = max(means.get(g.id, 1.0), 1e-6)
        return [out[p] for p in self.paths]

    def strength(self, epoch: int) -> float:
        """``s`` at ``epoch`` (0-based)."""
        return self.rate * strength_factor(epoch, self.epochs, self.constant)

    def targeted(self) -> list[torch.Tensor | None]:
        """Per regularised BN, the bool mask of channels the term acts on now (None: all of its prunable ones)."""
        if not self.target:
            return self.masks
        if self.importance.startswith("taylor") and self.taylor is not None:
            scores = group_sums(self.groups, dict(zip(self.paths, self.taylor)))
            if self.macs is not None:
                scores = {k: v / self.macs[k] for k, v in scores.items()}
        else:  # 'taylor' before its first gradient ranks like 'relative'
            scores = bn_importance(self.net, self.groups, importance="gamma" if self.importance == "gamma" else
                                   "relative")
        hit = lowest_channels(scores, self.groups, self.target, round_to=self.round_to)
        out = {p: torch.zeros_like(w, dtype=torch.bool, device="cpu") for p, w in zip(self.paths, self.params)}
        for g in self.groups:
            if g.id in hit:
                for m in g.bns:
                    out[m.path][m.positions] |= hit[g.id][m.index]
        return [out[p] for p in self.paths]

    def __call__(self, epoch: int, grad_scale: float = 1.0) -> float:
        """Add ``s_epoch * sign(gamma)`` (times ``grad_scale``) to the grad of each prunable (with ``target``:
        targeted) BN weight; returns s_epoch.

        BatchNorms whose grad is None (frozen, or unused this step) are skipped.
        """
        s = self.strength(epoch)
        if self.importance.startswith("taylor") and self.target:
            self._update_taylor(grad_scale)
        with torch.no_grad():
            for w, m, k in zip(self.params, self.targeted(), self.scales):
                if w.grad is None:
                    continue
                g = torch.sign(w) * (s * grad_scale)
                if k is not None:
                    g = g * k.to(g.device)
                w.grad.add_(g if m is None else g * m.to(g.device))
        return s

    def _update_taylor(self, grad_scale: float, decay: float = 0.9) -> None:
        """Fold this step's (gamma * dL/dgamma)^2 (the loss gradient, before the L1 term is added) into the EMA."""
        now = [(w.detach() * w.grad.detach() / grad_scale).float().pow(2).cpu() if w.grad is not None else
               torch.zeros(w.numel()) for w in self.params]
        if self.taylor is None:
            self.taylor = now
        else:
            self.taylor = [decay * t + (1 - decay) * n for t, n in zip(self.taylor, now)]

    def target_max(self) -> float:
        """The largest |gamma| among the targeted channels (how far the term still has to go), in units of the step
        scale (its layer's starting mean with ``importance='relative'``); 0 without target."""
        if not self.target:
            return 0.0
        vals = [(w.detach().abs().float().cpu() / (k if k is not None else 1.0))[m]
                for w, m, k in zip(self.params, self.targeted(), self.scales)]
        vals = [v for v in vals if v.numel()]
        return float(torch.cat(vals).max()) if vals else 0.0

    def stats(self, bins: int = 50) -> dict:
        """:func:`gamma_stats` over the BatchNorms this hook regularises."""
        return _stats(torch.cat([w.detach().abs().float().cpu().flatten()[m.cpu()] if m is not None else
                                 w.detach().abs().float().cpu().flatten() for w, m in zip(self.params, self.masks)])
                      if self.params else torch.zeros(0), bins)


def _stats(g: torch.Tensor, bins: int) -> dict:
    if g.numel() == 0:
        return {"n": 0, "share_below_0.01": 0.0, "median": float("nan"), "mean": float("nan"),
                "hist": {"counts": [], "edges": []}}
    counts, edges = np.histogram(g.numpy(), bins=bins, range=(0.0, max(float(g.max()), 1e-6)))
    return {"n": int(g.numel()), "share_below_0.01": float((g < 0.01).float().mean()), "median": float(g.median()),
            "mean": float(g.mean()), "hist": {"counts": counts.tolist(), "edges": edges.tolist()}}


def gamma_stats(model: nn.Module, bns: list[str] | None = None, bins: int = 50) -> dict:
    """Statistics of |gamma| for logging: ``n``, ``share_below_0.01``, ``median``, ``mean`` and ``hist``
    (``counts`` and ``edges`` of a ``bins``-bin histogram over [0, max]).

    Args:
        model: the model (DDP wrappers are unwrapped).
        bns: BatchNorm module paths to include (e.g. ``BNSparsity.paths``); default every BatchNorm.
    """
    net = unwrap(model)
    mods = dict(net.named_modules())
    paths = bns if bns is not None else [p for p, m in mods.items() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    ws = [mods[p].weight.detach().abs().float().cpu().flatten() for p in paths if mods[p].weight is not None]
    return _stats(torch.cat(ws) if ws else torch.zeros(0), bins)


def plot_gamma_hist(stats_per_epoch: dict[int, dict], path: str | Path, max_epochs: int = 12) -> Path:
    """Draw the |gamma| histograms of several epochs as a ridge (one offset curve per epoch) and save it.

    Args:
        stats_per_epoch: ``{epoch: gamma_stats(...)}``.
        path: image file to write (PNG).
        max_epochs: at most this many epochs are drawn, evenly spaced, always including the first and the last.
    """
    # An Agg canvas on a bare Figure: no pyplot, so no global backend switch in the caller's session.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = sorted(stats_per_epoch)
    if len(epochs) > max_epochs:
        idx = np.linspace(0, len(epochs) - 1, max_epochs).round().astype(int)
        epochs = [epochs[i] for i in sorted(set(idx.tolist()))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 1.0 + 0.6 * max(len(epochs), 1)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    cmap = colormaps["viridis"]
    for row, e in enumerate(reversed(epochs)):
        h = stats_per_epoch[e]["hist"]
        if not h["counts"]:
            continue
        counts = np.asarray(h["counts"], float)
        y = counts / max(counts.max(), 1.0) * 0.9
        offset = len(epochs) - 1 - row
        ax.fill_between(h["edges"][:-1], offset, offset + y, step="post", alpha=0.8,
                        color=cmap(offset / max(len(epochs) - 1, 1)), zorder=len(epochs) - offset)
        ax.text(h["edges"][-1], offset + 0.1, f"epoch {e}: {stats_per_epoch[e]['share_below_0.01']:.0%} < 0.01",
                fontsize=7, ha="right")
    ax.set_yticks(range(len(epochs)))
    ax.set_yticklabels([str(e) for e in epochs])
    ax.set_ylabel("epoch")
    ax.set_xlabel("|gamma| of prunable BatchNorms")
    ax.set_title("BatchNorm |gamma| during sparsity training")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
