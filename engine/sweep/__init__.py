"""Experiment sweeps over sparsity rates and prune ratios: ``sweep.py --config sweeps/example.yaml``.

One concern per module: ``config`` (settings), ``stages`` (the stage graph), ``runner`` (the scheduler: running it,
resumably), ``executors`` and ``ray_executor`` (where stages run: one at a time, side by side on device slots, or as
Ray tasks; each stage runs through :func:`engine.stages.run_stage`), ``measure`` (parameters, GFLOPs, size, latency), ``table``
(results.csv / results.md), ``pareto`` and ``plots`` (figures), ``pipeline`` (``run_sweep``, tying them together).
"""

from engine.sweep.config import SweepConfig, load_config
from engine.sweep.pareto import pareto_front
from engine.sweep.pipeline import run_sweep, sweep_dir
from engine.sweep.stages import Stage, plan_stages

__all__ = ["SweepConfig", "load_config", "pareto_front", "run_sweep", "sweep_dir", "Stage", "plan_stages"]
