"""Lightweight backbone blocks (MobileNet, ShuffleNet, GhostNet); each registers itself with the model registry."""

__all__: list[str] = []
