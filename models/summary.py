"""Model summary as users know it: layers, parameters, gradients and GFLOPs, optionally per layer."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch
from torch import nn

from utils.checkpoint import make_checkpoint

__all__ = ["count_flops", "count_params", "model_facts", "model_summary"]

LOGGER = logging.getLogger(__name__)


def count_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640, ch: int = 3) -> float:
    """GFLOPs of one forward pass at ``imgsz`` (2 x multiply-accumulates of convs and linears, thop's convention).

    Measured on two small inputs (sides s and 2s, s the largest stride) and fitted as ``a * H * W + b``: most layers
    scale with the image area, but squeeze-excite convs run on a pooled 1x1 map whatever the size (the ``b`` part).
    Exact for sizes that are multiples of the largest stride.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    stride = int(max(getattr(model, "stride", torch.tensor([32])).max().item(), 32))
    macs = 0.0

    def hook(m: nn.Module, inp, out) -> None:  # noqa: ANN001
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            macs += out.numel() * k
        elif isinstance(m, nn.Linear):
            macs += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    p = next(model.parameters())
    was_training = model.training
    measured = []
    try:
        model.eval()
        with torch.no_grad():
            for side in (stride, 2 * stride):
                macs = 0.0
                model(torch.zeros(1, ch, side, side, device=p.device, dtype=p.dtype))
                measured.append(macs)
    finally:
        model.train(was_training)
        for hd in handles:
            hd.remove()
    per_area = (measured[1] - measured[0]) / 3  # a * s^2
    fixed = measured[0] - per_area  # b
    return 2 * (per_area * (h * w) / (stride * stride) + fixed) / 1e9


def count_params(model: nn.Module) -> int:
    """The number of parameters (BN statistics and other buffers not counted, as YOLOv5 counts)."""
    return sum(p.numel() for p in model.parameters())


def model_facts(model: nn.Module, imgsz: int | tuple[int, int] = 640, file: str | Path | None = None) -> dict:
    """The facts every table gives of a model: ``params``, ``gflops`` at ``imgsz`` (640 is YOLOv5's convention) and
    ``size_mb``: of ``file`` when given, else of the model as an fp16 checkpoint without training state (what
    prune.py writes), so rows from different kinds of files compare like with like."""
    if file is not None:
        size = Path(file).stat().st_size
    else:
        buf = io.BytesIO()
        torch.save(make_checkpoint(model, half=True), buf)
        size = buf.tell()
    return {"params": count_params(model), "gflops": count_flops(model, imgsz), "size_mb": size / 1e6}


def model_summary(model: nn.Module, verbose: bool = False, imgsz: int = 640) -> dict:
    """Print a YOLOv5-style summary and return it as a dict (layers, parameters, gradients, gflops).

    The line reads ``YOLOv5n summary: 214 layers, 1872157 parameters, 1872157 gradients, 4.5 GFLOPs``: layers are
    all modules, gradients the parameters that train (not frozen), GFLOPs those of one ``imgsz`` square image.
    """
    n_p = sum(p.numel() for p in model.parameters())
    n_g = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_l = len(list(model.modules()))
    try:
        gflops = count_flops(model, imgsz)
    except Exception as e:  # noqa: BLE001 - a summary must not fail on an exotic layer
        LOGGER.warning(f"GFLOPs not computed: {e}")
        gflops = float("nan")
    if verbose and hasattr(model, "model"):
        print(f"{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
        for m, info in zip(model.model, getattr(model, "layer_infos", [None] * len(model.model))):
            args = info.args if info is not None else ""
            n = info.n if info is not None else 1
            print(f"{m.i:>3}{str(m.f):>18}{n:>3}{m.np:10.0f}  {m.type:<40}{str(args):<30}")
    # YOLOv5's wording and plain numbers (users grep their logs for it): "YOLOv5n summary" from a model YAML's name,
    # "Model summary" for an architecture that came from a checkpoint.
    yaml_file = getattr(model, "yaml", {}).get("yaml_file")
    name = Path(yaml_file).stem.replace("yolov5", "YOLOv5") if yaml_file else "Model"
    print(f"{name} summary: {n_l} layers, {n_p} parameters, {n_g} gradients, {gflops:.1f} GFLOPs")
    return {"layers": n_l, "parameters": n_p, "gradients": n_g, "gflops": gflops}
