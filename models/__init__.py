"""Model code: registry, YOLOv5 blocks, the Detect head, the builder and the Model."""

from models.registry import get_module, list_modules, register_module

__all__ = ["get_module", "list_modules", "register_module"]
