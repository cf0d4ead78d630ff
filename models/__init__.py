"""Model code: registry, YOLOv5 blocks, light backbone blocks, the Detect head, the builder and the Model.

Blocks register themselves with :mod:`models.registry` where they are defined; importing this package imports those
modules once (below), so every YAML name is known before a model config is parsed. The registry imports none of them.

Widths are given in exactly two ways:

1. **Model configs** (YAML): each row's first arg is the layer's output width. YOLOv5 configs scale it by
   ``width_multiple`` (rounded up to a multiple of 8) and scale repeats by ``depth_multiple``. A config whose widths
   are not a uniform multiple of a base (``ShuffleNet.yaml``: 116, 232, 464), or an architecture written out as it was
   built (layer pruning), says ``explicit_widths: true``: the widths and repeats in the rows are then used as written.
   Inner widths of a block (a C3's hidden width, an expansion width) follow from its row (``e``, ``t``, ``exp``).
2. **Pruned architectures**: the config above plus ``channels``, a dict from leaf path (``"model.2.cv1.conv"``) to
   its new shape, applied after the normal build (see :mod:`models.channels`). Any inner width of any block can be
   narrowed this way, so blocks take no pruning-specific constructor arguments. Channel pruning writes these, and a
   checkpoint's ``arch`` dict carries them.

Earlier versions also took a trailing dict of keyword arguments in a row (``hidden``, ``hidden2``, ``m_hidden``,
``se_hidden``, ``split``). No shipped config and no pruner ever wrote one (channel pruning has always written
``channels``), so checkpoints saved by earlier versions still load; the builder now refuses such a row, naming the
layer.
"""

from models import common, detect  # noqa: F401 - imported to register their blocks
from models import backbones  # noqa: F401 - imported to register its blocks (after common, which it builds on)
from models.registry import get_module, list_modules, register_module

__all__ = ["get_module", "list_modules", "register_module"]
