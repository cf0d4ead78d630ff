"""Build-time checks that a model's layers chain, with errors that name the layer.

Without them a mis-wired backbone config fails deep inside torch (``torch.cat``: "Sizes of tensors must match ...",
a conv: "expected input to have 40 channels ...") during the stride forward pass, or builds silently with Detect reading
maps at the wrong strides. :func:`detect_strides` runs the layers one at a time on a dummy image instead, and turns
each of those into a :class:`~models.builder.ModelConfigError` that says which layer, what it read and what it expected.
"""

from __future__ import annotations

import torch
from torch import nn

from models.builder import LayerInfo, ModelConfigError

__all__ = ["detect_strides", "check_detect_strides", "expected_strides"]


def expected_strides(nl: int) -> tuple[int, ...] | None:
    """Strides a Detect head with ``nl`` levels must see, when fixed: the P5 anchors are made for 8, 16 and 32."""
    return (8, 16, 32) if nl == 3 else None


def _describe(x: torch.Tensor | list[torch.Tensor]) -> str:
    if isinstance(x, torch.Tensor):
        return str(tuple(x.shape))
    return "[" + ", ".join(str(tuple(t.shape)) for t in x) + "]"


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def detect_strides(layers: nn.Sequential, save: list[int], infos: list[LayerInfo] | None = None, ch: int = 3,
                   imgsz: int = 256) -> list[int]:
    """Run the layers one by one on a zero image and return the strides of the Detect (last layer) inputs.

    The layers run in eval mode under ``no_grad`` (BatchNorm statistics are left alone) and get their mode back.
    ``Model`` calls it as ``detect_strides(self.model, self.save, self.layer_infos, ch)``; the three come straight
    from :func:`models.builder.build_layers`.

    Args:
        layers: the built layers (each with ``i``, ``f``, ``type``), the last one the detection head.
        save: indices of outputs that later layers read.
        infos: the builder's LayerInfo per layer; when given, each layer's output width is checked against it.
        ch: input channels.
        imgsz: side of the dummy image; a multiple of the largest stride.

    Raises:
        ModelConfigError: naming the layer, when a layer cannot run on the shapes it receives, produces a width other
            than the one the builder declared for it, or when the Detect inputs are not at integer, increasing,
            doubling strides (8, 16, 32 for three levels).
    """
    save = set(save)
    was_training = layers.training
    layers.eval()
    y: list[torch.Tensor | None] = []
    x: torch.Tensor | list[torch.Tensor] = torch.zeros(1, ch, imgsz, imgsz, device=_device(layers))
    try:
        with torch.no_grad():
            for m in layers:
                if m.f != -1:
                    x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
                if m is layers[-1]:
                    break  # x now holds the Detect inputs
                try:
                    x = m(x)
                except (RuntimeError, ValueError, TypeError) as e:
                    raise ModelConfigError(f"layer {m.i} ({m.type}, from {m.f}) cannot run on input shapes "
                                           f"{_describe(x)}: {_first_line(e)}") from e
                if infos is not None and isinstance(x, torch.Tensor) and x.shape[1] != infos[m.i].c2:
                    raise ModelConfigError(f"layer {m.i} ({m.type}) outputs {x.shape[1]} channels but the config "
                                           f"declares {infos[m.i].c2}; the layers reading it were built for that")
                y.append(x if m.i in save else None)
            head = layers[-1]
            inputs = x if isinstance(x, list) else [x]
            froms = [j % head.i for j in (head.f if isinstance(head.f, list) else [head.f])]
            strides = []
            for j, (t, src) in enumerate(zip(inputs, froms)):
                sh, sw = imgsz / t.shape[-2], imgsz / t.shape[-1]
                if sh != sw or sh != int(sh) or t.shape[-2] * int(sh) != imgsz:
                    raise ModelConfigError(f"layer {head.i} ({head.type}) input {j} (layer {src}) has a non-integer "
                                           f"stride: map {tuple(t.shape[-2:])} for a {imgsz}x{imgsz} image")
                strides.append(int(sh))
            check_detect_strides(strides, froms, head.i, head.type)
            try:
                head(inputs)
            except (RuntimeError, ValueError, TypeError) as e:
                raise ModelConfigError(f"layer {head.i} ({head.type}, from {head.f}) cannot run on input shapes "
                                       f"{_describe(inputs)}: {_first_line(e)}") from e
    finally:
        layers.train(was_training)
    return strides


def check_detect_strides(strides: list[int], froms: list[int], index: int, name: str = "Detect") -> None:
    """Check the strides of a detection head's inputs: increasing, each twice the last, and as expected for ``nl``.

    Raises:
        ModelConfigError: naming the head layer and, per input, the layer it reads and that layer's stride.
    """
    where = ", ".join(f"layer {f} at stride {s}" for f, s in zip(froms, strides))
    expected = expected_strides(len(strides))
    if expected is not None and tuple(strides) != expected:
        raise ModelConfigError(f"layer {index} ({name}) reads {where}; a {len(strides)}-level head needs strides "
                               f"{list(expected)} (check the backbone's stride-2 layers and the head's 'from' indices)")
    if any(b != 2 * a for a, b in zip(strides, strides[1:])):
        raise ModelConfigError(f"layer {index} ({name}) reads {where}; its inputs must have increasing strides, "
                               f"each twice the previous")


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
