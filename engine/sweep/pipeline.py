"""``run_sweep``: plan the stages, run what is not done yet, keep the tables current, then time every model and draw
the plots. Everything lands in ``<project>/<name>``: ``sweep.yaml`` (the settings), ``state.json``, ``logs/``,
``results.csv``, ``results.md``, ``map_vs_latency.png``, ``map_vs_params.png`` and ``gamma_hist_s<rate>.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from engine.progress import Plan, PlannedStage
from engine.sweep.config import SweepConfig, check_resumable, config_to_dict
from utils.files import atomic_write_text
from engine.sweep.measure import Measurements, prunable_gammas
from engine.sweep.plots import plot_gamma_histogram, plot_tradeoff, save_figure
from engine.sweep.executors import Executor, Launcher, LocalExecutor, SubprocessLauncher, check_cuda_slots
from engine.sweep.ray_executor import RayExecutor
from engine.sweep.runner import SweepState, run_stages
from engine.sweep.stages import Stage, plan_stages
from engine.sweep.table import build_rows, format_markdown, write_tables
from engine.train.options import TrainOptions

__all__ = ["run_sweep", "sweep_dir", "write_plots", "make_executor"]

LOGGER = logging.getLogger(__name__)


def sweep_dir(cfg: SweepConfig) -> Path:
    """``<project>/<name>``, absolute. Not incremented: running the same sweep again resumes it."""
    return (Path(cfg.project) / cfg.name).resolve()


def _notes(cfg: SweepConfig, rows: list[dict]) -> list[str]:
    threads = next((r.get("latency_threads") for r in rows if r.get("latency_threads")), None)
    base = f"{cfg.base_epochs} epochs of training" if cfg.base_epochs else "used as they are (base_epochs 0)"
    return [f"weights `{cfg.weights}` {base}; data `{cfg.data}`; {cfg.imgsz} px; batch {cfg.batch_size}; "
            f"sparsity {cfg.sparsity_epochs} epochs, fine-tuning {cfg.finetune_epochs} epochs "
            f"(`{cfg.finetune_hyp}`); mode {cfg.mode}",
            f"P, R, mAP: the run's val split at {cfg.imgsz} px (prune rows: the pruned model before fine-tuning)",
            f"CPU latency: {cfg.latency_repeats} forward passes of each fused model, batch 1, {cfg.imgsz} px"
            + (f", {threads} thread(s)" if threads else "") + ", all models timed together in interleaved rounds "
            "after the stages ended (median of all runs); speed-up relative to base",
            "model size: the model as an fp16 checkpoint without training state; GFLOPs at 640 px; training time "
            "excludes validation; gamma<0.01: share of prunable BN |gamma| below 0.01"] + (
        ["(resumed): the run was interrupted and resumed; its training time counts only the part after resuming"]
        if any(r.get("resumed") for r in rows) else [])


def _measure(stages: list[Stage], state: SweepState, meas: Measurements, latency: bool) -> dict[str, str]:
    """Measure each finished stage's model; returns per stage the reason a measurement failed."""
    problems = {}
    for s in stages:
        if not state.finished(s):
            continue
        try:
            meas.facts(s.name, s.model, gammas=s.kind in ("base", "sparsity"))
        except Exception as e:  # noqa: BLE001 - one model the sweep cannot measure must not cost the others' rows
            LOGGER.warning(f"sweep: could not measure {s.name} ({s.model}): {e}")
            problems[s.name] = f"measurement failed: {e}"
    if latency:
        meas.latency({s.name: s.model for s in stages if state.finished(s) and s.name not in problems})
    return problems


def write_plots(rows: list[dict], stages: list[Stage], cfg: SweepConfig, out: Path) -> list[Path]:
    """The trade-off plots and one |gamma| histogram per finished sparsity run; returns the files written."""
    files = [save_figure(plot_tradeoff(rows, "latency_ms", f"CPU latency (ms, batch 1, {cfg.imgsz} px)",
                                       title="mAP50-95 against CPU latency"), out / "map_vs_latency.png"),
             save_figure(plot_tradeoff(rows, "params", "parameters", title="mAP50-95 against parameters"),
                         out / "map_vs_params.png")]
    done = {s.name: s for s in stages if s.is_done()}
    base = next((s for s in done.values() if s.kind == "base"), None)
    base_g = prunable_gammas(base.model, cfg.mode) if base else None
    thresholds = {r["exp_name"]: r.get("gamma_threshold") for r in rows if r["stage"] == "prune"}
    for s in stages:
        if s.kind != "sparsity" or s.name not in done:
            continue
        thr = {p.ratio: thresholds.get(p.name) for p in stages
               if p.kind == "prune" and p.deps == [s.name] and p.name in done}
        fig = plot_gamma_histogram(prunable_gammas(s.model, cfg.mode), s.rate, base_g, thr)
        files.append(save_figure(fig, out / f"gamma_hist_s{s.rate:g}.png"))
    return files


class _Tables:
    """The sweep's state, measurements and tables; :meth:`refresh` measures what is new and rewrites the tables."""

    def __init__(self, cfg: SweepConfig, stages: list[Stage], out: Path) -> None:
        self.cfg, self.stages, self.out = cfg, stages, out
        self.log_dir = out / "logs"
        self.state = SweepState(out / "state.json")
        self.meas = Measurements(out / "measurements.json", cfg.imgsz, cfg.latency_warmup, cfg.latency_repeats,
                                 cfg.latency_threads, cfg.mode)
        self.title = f"Sweep {cfg.name}"

    def refresh(self, latency: bool = False) -> list[dict]:
        """Measure the finished stages (and time them all with ``latency``), write the tables, return the rows."""
        problems = _measure(self.stages, self.state, self.meas, latency)
        rows = build_rows(self.stages, self.state, self.meas.data, self.log_dir)
        for r in rows:
            r["latency_threads"] = self.meas.get(r["exp_name"]).get("latency_threads")
            if r["exp_name"] in problems:
                r["error"] = problems[r["exp_name"]]
        write_tables(rows, self.out, self.title, _notes(self.cfg, rows))
        return rows


def make_executor(cfg: SweepConfig, launcher: Launcher | None = None, plan: Plan | None = None) -> Executor:
    """The executor ``cfg`` asks for (``backend``, ``devices``, ``jobs``); errors before any stage starts.

    Args:
        cfg: the sweep settings.
        launcher: for the local backend, what runs one stage (default: a :class:`SubprocessLauncher` with a live
            progress line when stages run one at a time, plain progress lines when several do).
        plan: the sweep's plan, for the default launcher's time estimate.

    Raises:
        ValueError: Ray is not installed (``--backend ray``), or GPU slots this machine does not have.
    """
    if cfg.backend == "ray":
        if launcher is not None:
            raise ValueError("a launcher runs stages on this machine; backend 'ray' runs their commands as Ray tasks")
        return RayExecutor(cfg.device, cpus=cfg.ray_cpus, address=cfg.ray_address)
    slots: list[str | None] = list(cfg.devices) if cfg.devices else [None] * cfg.jobs
    check_cuda_slots(cfg.devices)
    return LocalExecutor(launcher or SubprocessLauncher(live=None if len(slots) == 1 else False, plan=plan),
                         slots)


def run_sweep(cfg: SweepConfig, launcher: Launcher | None = None, dry_run: bool = False,
              executor: Executor | None = None) -> dict:
    """Run (or resume) the sweep ``cfg`` describes.

    The stages run on the executor that ``cfg.backend``, ``cfg.devices`` and ``cfg.jobs`` ask for (see
    :func:`make_executor`); whichever it is, the tables come out the same.

    Args:
        cfg: the settings (see :func:`engine.sweep.config.load_config`).
        launcher: local backend: runs one stage (default: a subprocess of our script, output teed to
            ``logs/<stage>.log``).
        dry_run: print the stages' commands and return without running anything.
        executor: runs the stages instead of the one ``cfg`` asks for (closed when the sweep ends).

    Returns:
        dict: ``dir`` (the sweep dir), ``stages``, ``rows`` (one per stage, see :mod:`engine.sweep.table`),
        ``files`` (tables and plots written) and ``failed`` (names of stages that failed or were skipped).

    Raises:
        ValueError: the sweep dir holds a sweep made with other settings (see
            :func:`engine.sweep.config.check_resumable`), or the executor cannot be had (Ray not installed, GPU
            slots this machine lacks); both before anything is written.
        KeyboardInterrupt: after the running stages were stopped and the tables written.
    """
    out = sweep_dir(cfg)
    stages = plan_stages(cfg, out)
    if dry_run:
        for s in stages:
            state = "done" if s.is_done() else "to run"
            print(f"[{state}] {s.name}: {' '.join(s.argv())}")
        return {"dir": out, "stages": stages, "rows": [], "files": [], "failed": []}
    check_resumable(out / "sweep.yaml", cfg)
    if executor is not None and launcher is not None:
        raise ValueError("run_sweep: pass a launcher or an executor, not both")
    plan = Plan("sweep", [PlannedStage(s.name, s.options.epochs if isinstance(s.options, TrainOptions) else 0)
                          for s in stages if not s.is_done()])
    plan.show()
    executor = executor or make_executor(cfg, launcher, plan)
    try:
        atomic_write_text(out / "sweep.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        tables = _Tables(cfg, stages, out)
        try:
            run_stages(stages, executor, tables.state, tables.log_dir, on_change=tables.refresh, plan=plan)
        except KeyboardInterrupt:
            tables.refresh()  # the interrupted stages' status
            raise
    finally:  # threads joined, and a Ray instance started for the sweep shut down, before the timing
        executor.close()
    rows = tables.refresh(latency=True)  # timed now, one model after another, with no stage of ours running
    title = tables.title
    files = [out / "results.csv", out / "results.md"] + write_plots(rows, stages, cfg, out)
    print("\n" + format_markdown(rows, title, _notes(cfg, rows)))
    plan.summary()
    failed = [r["exp_name"] for r in rows if r["status"] in ("failed", "skipped")]
    print(f"Sweep results saved to {out}" + (f"; {len(failed)} stage(s) did not finish: {', '.join(failed)}"
                                             if failed else ""))
    return {"dir": out, "stages": stages, "rows": rows, "files": files, "failed": failed}
