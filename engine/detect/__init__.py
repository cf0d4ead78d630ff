"""detect.py: ``predictor`` (DetectOptions and the run over images, videos and streams)."""

__all__: list[str] = []
