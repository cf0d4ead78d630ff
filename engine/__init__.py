"""Library functions behind the scripts: validation, detection, training, pruning, export."""

__all__: list[str] = []
