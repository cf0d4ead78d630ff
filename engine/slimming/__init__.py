"""The network-slimming study (``benchmarks/slimming.py``): stages, and its table and plot (its interleaved timing is
``engine.benchmark.time_models``)."""

from engine.slimming.report import format_markdown, plot_map_vs_latency, write_report
from engine.slimming.stages import SlimmingOptions, StageRunner, ratio_tag
from engine.slimming.study import run

__all__ = ["SlimmingOptions", "StageRunner", "ratio_tag", "run", "format_markdown",
           "plot_map_vs_latency", "write_report"]
