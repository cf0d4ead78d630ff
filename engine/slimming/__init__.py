"""The network-slimming study (``benchmarks/slimming.py``): stages, interleaved timing, and its table and plot."""

from engine.slimming.report import format_markdown, plot_map_vs_latency, write_report
from engine.slimming.stages import SlimmingOptions, StageRunner, ratio_tag
from engine.slimming.study import run
from engine.slimming.timing import Timed, time_interleaved

__all__ = ["SlimmingOptions", "StageRunner", "ratio_tag", "run", "Timed", "time_interleaved", "format_markdown",
           "plot_map_vs_latency", "write_report"]
