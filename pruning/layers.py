"""Layer pruning: remove whole residual Bottlenecks from C3 blocks.

A residual Bottleneck computes ``x + f(x)``; removing it leaves ``x`` (the identity), so the model still runs and the
rest of its weights stay valid. The Bottlenecks whose BatchNorms have the smallest mean |gamma| go first; every C3
keeps at least one. This changes the output (it is not exact, unlike channel pruning): fine-tune afterwards.

The new architecture is the model dict written out explicitly (widths and repeats as built, ``explicit_widths``),
with the C3 row's repeat count lowered, so that any depth multiple can express it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from models.common import Bottleneck, C3
from models.registry import get_module
from models.summary import count_params
from models.yolo import Model
from utils.torch_utils import unwrap

__all__ = ["explicit_arch", "bottleneck_scores", "LayerPruneReport", "prune_layers"]


def explicit_arch(model: nn.Module) -> dict:
    """The model's architecture dict with every width and repeat count written as built (``explicit_widths: true``).

    Builds the same model as the original dict; rows can then be edited without the depth/width multiples in the way.
    """
    arch = model.arch()
    rows = list(arch.get("backbone", [])) + list(arch.get("head", []))
    for row, info in zip(rows, model.layer_infos):
        kind = get_module(row[2]).kind
        args = list(row[3] or [])
        if kind in ("conv", "csp"):
            args[0] = int(info.c2)
        row[1] = int(info.args[2]) if kind == "csp" else int(info.n)
        row[3] = args
    arch["explicit_widths"] = True
    return arch


def bottleneck_scores(model: nn.Module) -> dict[tuple[int, int], float]:
    """``{(layer index, bottleneck index): mean |gamma| of its BatchNorms}`` for residual Bottlenecks inside C3s."""
    scores: dict[tuple[int, int], float] = {}
    for i, layer in enumerate(unwrap(model).model):
        if not isinstance(layer, C3):
            continue
        for j, b in enumerate(layer.m):
            if isinstance(b, Bottleneck) and b.add:
                g = torch.cat([m.weight.detach().abs().float().flatten() for m in b.modules()
                               if isinstance(m, nn.BatchNorm2d)])
                scores[(i, j)] = float(g.mean())
    return scores


@dataclass
class LayerPruneReport:
    """Which Bottlenecks went (paths and scores), the scores of all candidates, and parameter totals."""

    removed: list[str]
    removed_scores: list[float]
    scores: dict[str, float] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0

    def to_dict(self) -> dict:
        """Plain values for JSON and checkpoints."""
        return {"removed": list(self.removed), "removed_scores": list(self.removed_scores),
                "scores": dict(self.scores), "params_before": self.params_before, "params_after": self.params_after}


def _renamer(plan: dict[int, list[int]]):  # noqa: ANN202 - returns a str -> str | None function
    """Map old state/channel keys to new ones: removed Bottlenecks give None, later ones move down."""
    pat = re.compile(r"^model\.(\d+)\.m\.(\d+)(\..*)?$")

    def rename(key: str) -> str | None:
        hit = pat.match(key)
        if not hit or int(hit.group(1)) not in plan:
            return key
        i, j, rest = int(hit.group(1)), int(hit.group(2)), hit.group(3) or ""
        kept = plan[i]
        return f"model.{i}.m.{kept.index(j)}{rest}" if j in kept else None

    return rename


def prune_layers(model: nn.Module, k: int, ch: int = 3):  # noqa: ANN201 - (Model, LayerPruneReport)
    """Remove the ``k`` least important residual Bottlenecks from C3 blocks; the input model is left as it was.

    Args:
        model: a ``models.yolo.Model`` (DDP wrappers are unwrapped), possibly already channel-pruned.
        k: how many Bottlenecks to remove.
        ch: input image channels.

    Returns:
        ``(new model, LayerPruneReport)``.

    Raises:
        TypeError: not a ``models.yolo.Model``.
        ValueError: ``k`` negative or more than can go while every C3 keeps one Bottleneck.
    """
    src = unwrap(model)
    if not isinstance(src, Model):
        raise TypeError(f"prune_layers needs a models.yolo.Model (it edits the architecture dict), got "
                        f"{type(src).__name__}")
    scores = bottleneck_scores(src)
    left = {i: len(src.model[i].m) for i, _ in scores}
    removable = sum(n - 1 for n in left.values())
    if not 0 <= k <= removable:
        raise ValueError(f"prune_layers: k must be in [0, {removable}] (residual Bottlenecks in C3 blocks, one kept "
                         f"per block), got {k}")
    chosen: list[tuple[int, int]] = []
    for key in sorted(scores, key=lambda x: (scores[x], x)):
        if len(chosen) == k:
            break
        if left[key[0]] > 1:
            chosen.append(key)
            left[key[0]] -= 1
    plan = {i: [j for j in range(len(src.model[i].m)) if (i, j) not in chosen] for i in {c[0] for c in chosen}}
    rename = _renamer(plan)

    arch = explicit_arch(src)
    rows = list(arch.get("backbone", [])) + list(arch.get("head", []))
    for i, kept in plan.items():
        rows[i][1] = len(kept)
    if arch.get("channels"):
        arch["channels"] = {rename(p): v for p, v in arch["channels"].items() if rename(p) is not None}
    new = Model(arch, ch=ch, nc=src.nc, names=list(src.names))
    state = {rename(key): v.detach().clone() for key, v in src.state_dict().items() if rename(key) is not None}
    new.load_state_dict(state, strict=True)
    p = next(src.parameters())
    new = new.to(device=p.device, dtype=p.dtype).train(src.training)
    report = LayerPruneReport(
        removed=[f"model.{i}.m.{j}" for i, j in chosen], removed_scores=[scores[c] for c in chosen],
        scores={f"model.{i}.m.{j}": s for (i, j), s in scores.items()},
        params_before=count_params(src), params_after=count_params(new))
    return new, report
