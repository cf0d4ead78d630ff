"""Apply channel masks: the masked reference model, and the exact rebuild into a smaller model.

:func:`prune_model` never touches its input. It turns the masks into new leaf shapes (the ``channels`` entry of the
architecture dict, see :mod:`models.channels`), builds the smaller model through the normal builder, and copies the
kept weights: conv output/input slices, depthwise channels, BN parameters and running statistics, the Detect convs'
input slices, and everything else (anchors, strides, names) as it is. Without folding it equals
``masked_model(keep_beta=False)``: removed channels output exactly 0 there, and 0 contributes nothing downstream.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from models.channels import apply_channel_overrides, leaf_shape
from models.yolo import Model
from pruning.fold import fold_constants
from pruning.graph import default_input
from pruning.masked import masked_model
from pruning.masks import ChannelMasks
from pruning.report import PruneReport, build_report
from utils.torch_utils import unwrap

__all__ = ["masked_model", "leaf_keeps", "prune_model", "output_difference"]

_AXES = {"producer": ("out",), "bn": ("out",), "consumer": ("in",), "depthwise": ("in", "out")}


def leaf_keeps(model: nn.Module, plan: ChannelMasks) -> tuple[dict[str, dict[str, list[int]]], set[str]]:
    """Kept channel indices of every leaf that shrinks.

    Returns:
        ``({path: {"out": [...], "in": [...]}}, depthwise_paths)``; an axis missing from a leaf's dict is unchanged.
    """
    modules = dict(unwrap(model).named_modules())
    removed: dict[tuple[str, str], set[int]] = defaultdict(set)
    depthwise: set[str] = set()
    for g in plan.groups:
        mask = plan.mask(g)
        if bool(mask.all()):
            continue
        keep = mask.tolist()
        for mem in g.members:
            gone = {p for p, k in zip(mem.positions, mem.index) if not keep[k]}
            for axis in _AXES[mem.role]:
                removed[(mem.path, axis)] |= gone
            if mem.role == "depthwise":
                depthwise.add(mem.path)
    keeps: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for (path, axis), gone in removed.items():
        shape = leaf_shape(modules[path])
        n = shape[0] if len(shape) == 1 else shape[0 if axis == "in" else 1]
        keeps[path][axis] = [i for i in range(n) if i not in gone]
    return dict(keeps), depthwise


def _new_shapes(model: nn.Module, keeps: dict[str, dict[str, list[int]]], depthwise: set[str]) -> dict[str, list[int]]:
    modules = dict(model.named_modules())
    shapes: dict[str, list[int]] = {}
    for path, k in keeps.items():
        shape = leaf_shape(modules[path])
        if len(shape) == 1:
            shapes[path] = [len(k["out"])]
            continue
        c_in = len(k["in"]) if "in" in k else shape[0]
        c_out = len(k["out"]) if "out" in k else shape[1]
        shapes[path] = [c_in, c_out] + ([c_out if path in depthwise else shape[2]] if len(shape) == 3 else [])
    return shapes


def _sliced_state(model: nn.Module, keeps: dict[str, dict[str, list[int]]], depthwise: set[str]) -> dict:
    state = {}
    for key, v in model.state_dict().items():
        path, _, name = key.rpartition(".")
        k = keeps.get(path)
        if k is not None and name != "num_batches_tracked":
            if "out" in k:
                v = v.index_select(0, torch.tensor(k["out"], dtype=torch.long, device=v.device))
            if "in" in k and v.ndim >= 2 and path not in depthwise:  # a depthwise weight is (out, 1, kh, kw)
                v = v.index_select(1, torch.tensor(k["in"], dtype=torch.long, device=v.device))
        state[key] = v.detach().clone()
    return state


def _rebuild(src: nn.Module, shapes: dict[str, list[int]], ch: int) -> nn.Module:
    """The smaller model: through the builder for a ``models.yolo.Model``, by replacing leaves otherwise."""
    if isinstance(src, Model):
        arch = src.arch()
        merged = {**(arch.get("channels") or {}), **shapes}
        if merged:
            arch["channels"] = merged
        new = Model(arch, ch=ch, nc=src.nc, names=list(src.names))
        return new
    new = copy.deepcopy(src)
    apply_channel_overrides(new, shapes)
    return new


def output_difference(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Max absolute difference between the floating-point outputs of ``a`` and ``b`` on ``x`` (both in eval mode)."""
    diffs = []
    with torch.no_grad():
        ya, yb = tree_leaves(a.eval()(x)), tree_leaves(b.eval()(x))
    for u, v in zip(ya, yb):
        if isinstance(u, torch.Tensor) and u.is_floating_point():
            diffs.append(float((u - v).abs().max()) if u.numel() else 0.0)
    return max(diffs, default=0.0)


def prune_model(model: nn.Module, plan: ChannelMasks, fold_beta: bool = False, ch: int = 3, verify: bool = True,
                example_input: torch.Tensor | None = None) -> tuple[nn.Module, PruneReport]:
    """Build the smaller model the masks describe; the input model is left as it was.

    Args:
        model: the model the masks were computed for (DDP wrappers are unwrapped).
        plan: from :func:`pruning.masks.compute_masks` (or hand-made :class:`ChannelMasks`).
        fold_beta: fold each removed channel's constant output act(beta) into the layers reading it (bias, or the
            running mean of the BN after a bias-free conv). Exact for 1x1 readers; at the zero-padded borders of kxk
            readers the constant was partly padding, so there it is an approximation. Without it, removed channels
            are dropped as if they were 0 (exact w.r.t. ``masked_model(keep_beta=False)``).
        ch: input image channels (to rebuild a ``models.yolo.Model``).
        verify: record in the report the largest output difference on one input between the sliced model (before
            folding) and ``masked_model(keep_beta=False)``, which it must equal (``max_abs_diff``), and with
            ``fold_beta`` between the folded model and ``masked_model(keep_beta=True)`` (``fold_diff``: 0 up to
            rounding with 1x1 readers, larger where kxk readers met zero padding at the borders).
        example_input: input for folding and verifying (default a random 64x64 image).

    Returns:
        ``(pruned model, PruneReport)``; the pruned model is on the input's device and dtype, in its train/eval mode.
    """
    src = unwrap(model)
    p = next(src.parameters())
    keeps, depthwise = leaf_keeps(src, plan)
    shapes = _new_shapes(src, keeps, depthwise)
    new = _rebuild(src, shapes, ch)
    try:
        new.load_state_dict(_sliced_state(src, keeps, depthwise), strict=True)
    except RuntimeError as e:  # a bug, not a user error: say what did not line up
        raise RuntimeError(f"pruned weights do not fit the rebuilt model: {e}") from None
    new = new.to(device=p.device, dtype=p.dtype)
    x = example_input if example_input is not None else torch.rand_like(default_input(src, ch=ch))
    diff = fold_diff = float("nan")
    if verify:  # the surgery itself, before any folding, against its exact reference: removed channels output 0
        diff = output_difference(new, masked_model(src, plan, keep_beta=False), x)
    notes = fold_constants(src, plan, new, keeps, depthwise, x) if fold_beta else []
    if verify and fold_beta:  # what folding adds: keeping act(beta) everywhere but in the zero padding of kxk convs
        fold_diff = output_difference(new, masked_model(src, plan, keep_beta=True), x)
    new.train(src.training)
    return new, build_report(src, new, plan, fold_beta=fold_beta, notes=notes, max_abs_diff=diff,
                             fold_diff=fold_diff)
