"""Exponential moving average of model weights, with a decay that ramps up over the first updates."""

from __future__ import annotations

import math
from copy import deepcopy

import torch
import torch.nn as nn

from utils.torch_utils import unwrap

__all__ = ["ModelEMA"]

# Attributes worth carrying from the training model to the EMA copy that checkpoints and validation read.
DEFAULT_ATTRS = ("yaml", "nc", "names", "stride", "class_weights")


class ModelEMA:
    """Keep ``ema = d * ema + (1 - d) * model`` over the floating point state, ``d = decay * (1 - exp(-updates/tau))``.

    The ramp makes early updates follow the model closely, so the average is not dominated by random init weights.

    Args:
        model: the model being trained (DDP wrappers are unwrapped); a deep copy is kept in eval mode without grads.
        decay: asymptotic decay.
        tau: ramp length in updates (decay reaches 63% of its final value after tau updates).
        updates: number of updates already done (when resuming).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.ema = deepcopy(unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.base_decay = float(decay)
        self.tau = float(tau)
        self.updates = int(updates)

    def decay(self, x: float) -> float:
        """Decay used at update number ``x``."""
        return self.base_decay * (1.0 - math.exp(-x / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` into the average (floating point entries only)."""
        self.updates += 1
        d = self.decay(self.updates)
        msd = unwrap(model).state_dict()
        for k, v in self.ema.state_dict().items():
            if not v.dtype.is_floating_point:
                continue  # counters such as BN num_batches_tracked are not averaged
            src = msd.get(k)
            if src is None or src.shape != v.shape:
                # A pruned or rebuilt model needs a fresh EMA; blending mismatched tensors would be meaningless.
                got = "missing" if src is None else tuple(src.shape)
                raise ValueError(f"ModelEMA.update: '{k}' has shape {tuple(v.shape)} in the EMA but {got} in the "
                                 "model; create a new ModelEMA after changing the architecture")
            v.mul_(d).add_(src.detach().to(v.dtype), alpha=1.0 - d)

    def update_attr(self, model: nn.Module, include: tuple[str, ...] = DEFAULT_ATTRS,
                    exclude: tuple[str, ...] = ("process_group", "reducer")) -> None:
        """Copy plain attributes named in ``include`` (all public ones if empty) from ``model`` to the EMA copy."""
        model = unwrap(model)
        for k, v in model.__dict__.items():
            # 'training' is excluded so that copying never takes the EMA copy out of eval mode.
            if k.startswith("_") or k == "training" or k in exclude or (include and k not in include):
                continue
            setattr(self.ema, k, v)

    def state_dict(self) -> dict:
        """``{'ema': {name: tensor}, 'updates': int}``: plain tensors, loadable with ``weights_only=True``."""
        return {"ema": {k: v.detach().clone() for k, v in self.ema.state_dict().items()}, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (missing or mismatched keys raise)."""
        if "ema" not in state or "updates" not in state:
            raise KeyError(f"ModelEMA.load_state_dict: expected keys 'ema' and 'updates', got {sorted(state)}")
        self.ema.load_state_dict(state["ema"])
        self.updates = int(state["updates"])
