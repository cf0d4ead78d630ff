"""slim.py: the most accurate model for a budget, exported, validated and timed against its source.

A speed budget (``--speedup X``, or ``--target-latency MS``, measured in ``--latency-backend``) searches by default
(:mod:`engine.slim.search`): channel slimming, a smaller input size and INT8, alone and together, screened, the best of
each kind fine-tuned alike, the most accurate that meets the budget as measured kept. On aquarium that chose 288 px in
INT8 (1.70x, val mAP50-95 0.317 from a 0.299 source) where slimming alone reached 0.278 after the same 60 epochs
(docs/slimming/search/README.md).

Slimming alone (``--search off``, and every GFLOPs or parameter budget) prunes the trained model in K steps, each
BN-recalibrated and briefly fine-tuned, then gives the slimmed network a long fine-tune. Its defaults are the recipe
measured best on aquarium (docs/slimming/slim_finetune.md): Taylor importance, kept channels in multiples of 8, 3 steps
with BN recalibration and 2 warmup-free epochs between them, and a final fine-tune with the source's own
hyperparameters that runs until val fitness has not improved for ``--patience`` epochs, capped at 1.5x the source's own
training epochs (read from its checkpoint): the final fine-tune's length decided most of the recovered accuracy
(10 epochs 0.21, 30 epochs 0.27, 60 epochs 0.306 mAP50-95 from a 0.296 source). With a speed budget, step k aims at
``(1/X) ** (k/K)`` of the source's latency: before each step the current model is timed interleaved with the source,
and prune.py ``--target-speedup`` asks for what is left of the way; the last step's result is timed against the source
again and, if it falls short, pruned once more with the shortfall added.

Each stage is a normal run of prune.py / train.py / export.py / val.py in ``<project>/<name>/<stage>`` (logs in
``logs/``), skipped when its outputs exist: the same command resumes. Writes ``steps.md/json`` (slimming alone) or
``search.md/json/png``, and (unless ``--no-export``) ``report.md/json/png`` (:mod:`engine.slim.report`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import yaml

from engine.benchmark import LATENCY_BACKENDS, Timed, time_models
from engine.progress import PlannedStage
from engine.prune.options import PruneOptions
from engine.slim.options import CAP_FACTOR, CAP_UNKNOWN, DEFAULT_HYP, LAST_STEP_MARGIN, SlimOptions
from engine.slim.report import build_report
from engine.slim.search import TYPICAL_FINALISTS, run_search
from engine.stages import StageError, StageRunner
from utils.files import atomic_write_json, atomic_write_text
from engine.train.options import TrainOptions
from models.checkpoint import load_model
from models.summary import model_facts
from utils.checkpoint import load_checkpoint, resolve_weights
from utils.data import load_dataset_config
from utils.options import to_argv

__all__ = ["run", "step_targets", "format_steps", "final_epochs", "slim_plan", "stop_reason"]

def step_targets(start: float, target: float, steps: int) -> list[float]:
    """The budget after each of ``steps`` steps from ``start`` to ``target``: a geometric ramp, the last equal to
    ``target``."""
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    return [start * (target / start) ** (k / steps) for k in range(1, steps)] + [target]


def final_epochs(opt: SlimOptions, source_epochs: int | None) -> tuple[int, str]:
    """The final fine-tune's epochs and how they were chosen: ``--final-ft-epochs``, or the cap derived from the
    source's own training length (1.5x its epochs; 60 when its checkpoint does not say)."""
    if opt.final_ft_epochs:
        return opt.final_ft_epochs, f"--final-ft-epochs {opt.final_ft_epochs}"
    if source_epochs:
        cap = max(round(CAP_FACTOR * source_epochs), opt.patience + 1)
        return cap, f"cap {cap} = {CAP_FACTOR:g} x the source's {source_epochs} training epochs"
    return CAP_UNKNOWN, f"cap {CAP_UNKNOWN} (the source's checkpoint does not record its epochs)"


def stop_reason(results: dict, patience: int | None, chosen: str) -> str:
    """Why a fine-tune ended, from train.py's results.json: the early stop (with its best epoch) or its planned
    length."""
    done, planned = results.get("epochs"), results.get("planned_epochs")
    if results.get("stopped_early") and patience:
        return (f"early stop after {done} of {planned} epochs: val fitness (0.1 mAP50 + 0.9 mAP50-95) did not improve "
                f"for {patience} epochs (best epoch {results.get('best_epoch')})")
    return f"ran all {done} epochs ({chosen})" + (", still improving within the patience window" if patience else "")


def format_steps(rows: list[dict], source_map: float, what: str, target: str = "") -> str:
    """The per-step Markdown table; ``target`` names the steps' targets (default: ``what``; "speed-up" shows them as
    multiples of the source's speed)."""
    target = target or what
    lines = [f"| step | target {target} | {what} | parameters | mAP50-95 pruned | recalibrated | fine-tuned | "
             "vs source |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ft = f"{r['map_ft']:.4f}" if r.get("map_ft") is not None else "-"
        guard = " (guard)" if r["broke"] else ""
        aim = f"{r['target']:.3f}x" if target == "speed-up" else f"{r['target']:.4g}"
        lines.append(f"| {r['step']} | {aim} | {r['value']:.4g} | {r['params']:,} | "
                     f"{r['map_pruned']:.4f} | {r['map_recal']:.4f} | {ft} | {r['map'] - source_map:+.4f}{guard} |")
    return "\n".join(lines)


def _measure(file: Path, imgsz: int, gflops: bool) -> tuple[float, int]:
    f = model_facts(load_model(file, device="cpu")[0], imgsz)
    return (f["gflops"] if gflops else float(f["params"])), f["params"]


def latency_vs_source(source: Path, model: Path, opt: SlimOptions, repeats: int = 30) -> dict:
    """``{"source_ms", "ms", "speedup"}``: ``model`` and ``source`` timed interleaved in ``--latency-backend``."""
    rt = LATENCY_BACKENDS[opt.latency_backend]
    items = [Timed("source", str(source), opt.imgsz)] + ([Timed("model", str(model), opt.imgsz)]
                                                          if model != source else [])
    t = time_models(items, threads=opt.threads, repeats=repeats, rounds=6, runtimes=(rt,))
    ms0 = t["source"][f"{rt}_ms"]
    ms = t["model"][f"{rt}_ms"] if model != source else ms0
    return {"source_ms": ms0, "ms": ms, "speedup": ms0 / ms}


def _source_facts(source: Path, root: Path) -> tuple[int | None, str]:
    """The source's training epochs (None when its checkpoint does not record them) and a hyp file holding its own
    hyperparameters (written into the run folder), or the default one."""
    ckpt = load_checkpoint(source)
    args = ckpt.get("train_args") or {}
    epochs = args.get("epochs") if isinstance(args.get("epochs"), int) and not args.get("ft_pruned_model") else None
    hyp = ckpt.get("hyp")
    if isinstance(hyp, dict) and hyp:
        f = root / "source_hyp.yaml"
        atomic_write_text(f, yaml.safe_dump(hyp, sort_keys=False))
        return epochs, str(f)
    return epochs, DEFAULT_HYP


def _stored_searching(stored: dict) -> bool:
    """Whether the run in a settings.json searched: ``--search`` was a switch before it took auto/on/off (``true``:
    on; ``false``: slimming alone), so a run started then resumes under the spelling that means the same."""
    value = stored.get("search")
    return value is True or value == "on" or (value == "auto" and bool(stored.get("speedup") or
                                                                         stored.get("target_latency")))


def _speed_budget(opt: SlimOptions, source: Path, root: Path) -> dict:
    """The speed-up asked for, measured once and kept in ``budget.json`` (a resumed run keeps its budget)."""
    f = root / "budget.json"
    if f.exists():
        return json.loads(f.read_text())
    lat = latency_vs_source(source, source, opt, repeats=50)
    x = opt.speedup or lat["source_ms"] / opt.target_latency
    budget = {"speedup": x, "source_ms": lat["source_ms"], "backend": opt.latency_backend, "threads": opt.threads,
              "imgsz": opt.imgsz, "target_ms": lat["source_ms"] / x}
    if x <= 1:
        raise ValueError(f"--target-latency {opt.target_latency:g} ms: the source already runs in "
                         f"{lat['source_ms']:.2f} ms ({opt.latency_backend}, {opt.threads} thread(s), {opt.imgsz} px)")
    atomic_write_json(f, budget)
    print(f"slim: budget: {x:.3g}x faster than the source's {lat['source_ms']:.2f} ms -> {budget['target_ms']:.2f} ms "
          f"({opt.latency_backend}, batch 1, {opt.threads} thread(s), {opt.imgsz} px)", flush=True)
    return budget


def run(opt: SlimOptions) -> dict:
    """Slim ``opt.weights`` in ``opt.steps`` steps, fine-tune the result and report it; returns ``{"rows",
    "source_map50_95", "final", "stopped", "epochs", "report", ...}``."""
    SlimOptions.validate(opt)
    source = resolve_weights(opt.weights)  # a bad source is refused before anything is written
    timed = bool(opt.speedup or opt.target_latency)
    gflops = bool(opt.target_gflops) or timed  # the steps' table shows GFLOPs for a speed budget
    what = f"GFLOPs at {opt.imgsz} px" if gflops else "parameters"
    start, _ = _measure(source, opt.imgsz, gflops)
    root = Path(opt.project) / opt.name
    root.mkdir(parents=True, exist_ok=True)
    settings = root / "settings.json"
    if settings.exists():  # a setting added since the run started counts as its default
        stored, defaults = json.loads(settings.read_text()), asdict(SlimOptions(weights=opt.weights))
        changed = [k for k, v in asdict(opt).items() if stored.get(k, defaults[k]) != v
                   and not (k == "search" and _stored_searching(stored) == opt.searching)]
        if changed:
            raise ValueError(f"{root} holds a slim.py run with other settings ({settings}: "
                             f"{', '.join(changed)}); give another --name to start a new one, or the same flags to "
                             "resume it")
    atomic_write_json(settings, asdict(opt))
    source_epochs, source_hyp = _source_facts(source, root)
    cap, cap_why = final_epochs(opt, source_epochs)
    budget = _speed_budget(opt, source, root) if timed else None
    if opt.searching:
        epochs, why = (opt.search_epochs, f"--search-epochs {opt.search_epochs}") if opt.search_epochs else \
            (cap, cap_why)
        result = run_search(opt, source, root, budget, source_hyp, epochs, why)
        print(f"Results saved to {root}")
        return result
    runner = StageRunner(root, prefix="slim", plan=slim_plan(opt, cap))
    if timed:
        targets = [budget["speedup"] ** (k / opt.steps) for k in range(1, opt.steps + 1)]
    else:
        targets = step_targets(start, opt.target_gflops or float(opt.target_params), opt.steps)
    common = dict(data=opt.data, imgsz=opt.imgsz, batch_size=opt.batch_size, workers=opt.workers, device=opt.device)
    teacher = dict(teacher=str(source), distill=opt.distill, kd_weight=opt.kd_weight) if opt.distill != "none" else {}
    print(f"slim: {opt.steps} steps to {_budget_text(opt, budget)}; fine-tunes: {opt.ft_epochs} epochs between "
          f"steps, then {'up to ' if not opt.final_ft_epochs else ''}{cap} ({cap_why}"
          f"{f', patience {opt.patience}' if not opt.final_ft_epochs else ''}) with {opt.final_ft_hyp or source_hyp}"
          f"{f'; distillation from the source: {opt.distill}' if teacher else ''}", flush=True)
    rows: list[dict] = []
    current, final, source_map, stopped = source, source, None, ""
    for k, target in enumerate(targets, 1):
        last = k == len(targets)
        d = _prune_step(runner, opt, k, target, current, source, timed, common, last)
        res = json.loads((d / "results.json").read_text())
        source_map = res["original"]["mAP50_95"] if source_map is None else source_map
        value, params = _measure(d / "pruned_model.pt", opt.imgsz, gflops)
        row = {"step": k, "target": target, "value": value, "params": params,
               "percent": res["percent"], "map_pruned": res["pruned"]["mAP50_95"],
               "map_recal": res[res["saved"]]["mAP50_95"], "map_ft": None, "model": str(d / "pruned_model.pt")}
        epochs = cap if last else opt.ft_epochs
        if epochs:
            auto = last and not opt.final_ft_epochs
            best = runner.train(f"step{k}_ft", to_argv(TrainOptions(
                weights=str(d / "pruned_model.pt"), ft_pruned_model=True,
                hyp=(opt.final_ft_hyp or source_hyp) if last else opt.ft_hyp, epochs=epochs, noval=not last,
                patience=opt.patience if auto else 0, **teacher, **common)), after=d / "pruned_model.pt")
            ft = json.loads((best.parent.parent / "results.json").read_text())
            row["map_ft"], row["model"], row["ft_epochs"] = ft["mAP50_95"], str(best), ft.get("epochs", epochs)
            if last:
                stopped = stop_reason(ft, opt.patience if auto else None, cap_why)
        row["map"] = row["map_ft"] if row["map_ft"] is not None else row["map_recal"]
        row["broke"] = bool(opt.max_map_drop) and row["map"] < source_map - opt.max_map_drop
        rows.append(row)
        print(f"slim: step {k}/{opt.steps}: {value:.4g} {what}, val mAP50-95 {row['map']:.4f} (source "
              f"{source_map:.4f})", flush=True)
        if row["broke"]:
            print(f"slim: step {k} falls more than --max-map-drop {opt.max_map_drop:g} below the source's mAP50-95; "
                  f"stopping with step {k - 1}'s model ({final})", flush=True)
            stopped = f"accuracy guard: step {k} fell more than --max-map-drop {opt.max_map_drop:g} below the source"
            break
        current = final = Path(row["model"])
    epochs_all = sum(r.get("ft_epochs", 0) for r in rows if not r["broke"])
    out = {"settings": asdict(opt), "what": what, "source": str(source), "source_value": start,
           "source_map50_95": source_map, "rows": rows, "final": str(final), "budget": budget,
           "stopped_early": bool(rows and rows[-1]["broke"]), "stopped": stopped, "epochs": epochs_all}
    atomic_write_json(root / "steps.json", out)
    table = format_steps(rows, source_map, what, "speed-up" if timed else "")
    atomic_write_text(root / "steps.md", f"# slim.py: {opt.steps} steps to {_budget_text(opt, budget)}\n\n"
                                         f"Source {source} ({start:.4g} {what}, val mAP50-95 {source_map:.4f}).\n\n"
                                         f"{table}\n\nFinal model: {final}\n\nFinal fine-tune: {stopped}\n")
    print(f"\n{table}\n\nFinal model: {final}\nFinal fine-tune: {stopped}")
    if opt.export and final != source:
        out["report"] = build_report(runner, opt, source, final, stopped, epochs_all, out)
    runner.plan.summary()
    print(f"Results saved to {root}")
    return out


def slim_plan(opt: SlimOptions, cap: int) -> list[PlannedStage]:
    """The stages a slim.py run expects: a search's finalists' fine-tunes (typically three kinds reach a speed budget;
    the screening before them is short), or slimming's steps (a last step that falls short of a speed budget adds one
    prune) and its report."""
    if opt.searching:
        epochs = opt.search_epochs or cap
        return [PlannedStage("search: measure and screen")] + [PlannedStage(f"ft_finalist{k}", epochs)
                                                               for k in range(1, TYPICAL_FINALISTS + 1)]
    stages: list[PlannedStage] = []
    for k in range(1, opt.steps + 1):
        epochs = cap if k == opt.steps else opt.ft_epochs
        stages += [PlannedStage(f"step{k}_prune")] + ([PlannedStage(f"step{k}_ft", epochs)] if epochs else [])
    if opt.export:
        data = load_dataset_config(opt.data)
        stages += [PlannedStage(f"export_{w}") for w in ("source", "final")]
        stages += [PlannedStage(f"val_{w}_{s}") for w in ("source", "final") for s in ("val", "test") if data.get(s)]
    return stages


def _budget_text(opt: SlimOptions, budget: dict | None) -> str:
    if budget:
        return (f"{budget['speedup']:.3g}x faster than the source ({budget['target_ms']:.2f} ms of "
                f"{budget['source_ms']:.2f} ms in {opt.latency_backend}, {opt.threads} thread(s))")
    if opt.target_gflops:
        return f"{opt.target_gflops:g} GFLOPs at {opt.imgsz} px"
    return f"{opt.target_params:,} parameters"


def _prune_step(runner: StageRunner, opt: SlimOptions, k: int, target: float, current: Path, source: Path,
                timed: bool, common: dict, last: bool) -> Path:
    """Run step k's prune.py (``step<k>_prune``) and return its folder. With a speed budget, ``target`` is the
    speed-up over the source this step should reach: the current model is timed against the source first and
    prune.py asked for the rest; the last step is timed again and pruned once more if it falls short."""
    d = runner.root / f"step{k}_prune"
    base = dict(mode=opt.mode, round=opt.round, importance=opt.importance, bn_recal_images=opt.bn_recal_images,
                latency=False, latency_backend=opt.latency_backend, threads=opt.threads, **common,
                project=str(runner.root), exist_ok=True)
    if not timed:
        budget = dict(target_gflops=float(f"{target:.6g}")) if opt.target_gflops else dict(target_params=int(target))
        runner.run(f"step{k}_prune", "prune.py", to_argv(PruneOptions(weights=str(current), **budget, name=d.name,
                                                                      **base)), d / "results.json")
        return d
    check = d / "speedup.json"
    if (d / "results.json").exists() and (not last or check.exists()):
        return _retry_dir(d) if last and json.loads(check.read_text()).get("retry") else d
    now = latency_vs_source(source, current, opt)["speedup"] if current != source else 1.0
    aim = target * (LAST_STEP_MARGIN if last else 1.0)
    ask = float(f"{max(aim / now, 1.0 + 1e-3):.5g}")
    try:
        runner.run(f"step{k}_prune", "prune.py", to_argv(PruneOptions(weights=str(current), target_speedup=ask,
                                                                      name=d.name, **base)), d / "results.json")
    except StageError:
        if aim == target:
            raise
        aim = target  # the margin is ours: unreachable with it, the budget itself may still be reachable
        ask = float(f"{max(aim / now, 1.0 + 1e-3):.5g}")
        print(f"slim: step {k}: {LAST_STEP_MARGIN:g}x the budget is out of reach, asking for the budget itself",
              flush=True)
        runner.run(f"step{k}_prune", "prune.py", to_argv(PruneOptions(weights=str(current), target_speedup=ask,
                                                                      name=d.name, **base)), d / "results.json")
    if not last:
        return d
    got = latency_vs_source(source, d / "pruned_model.pt", opt, repeats=50)
    record = {"target": target, "measured": got, "retry": None}
    if got["speedup"] < target:  # fell short as measured: ask for the shortfall (and the margin) on top, once
        retry = _retry_dir(d)
        if retry.exists():
            shutil.rmtree(retry)
        ask2 = float(f"{ask * aim / got['speedup']:.5g}")
        print(f"slim: step {k} measured {got['speedup']:.4f}x, short of {target:.4f}x: pruning again for "
              f"{ask2:g}x over step {k - 1}", flush=True)
        try:
            runner.run(retry.name, "prune.py", to_argv(PruneOptions(weights=str(current), target_speedup=ask2,
                                                                    name=retry.name, **base)), retry / "results.json")
            record["retry"] = {"asked": ask2, "measured": latency_vs_source(source, retry / "pruned_model.pt", opt,
                                                                             repeats=50)}
        except StageError as e:  # nothing faster is reachable: keep the first prune, short of the budget as measured
            print(f"slim: step {k}: no prune reaches {ask2:g}x over step {k - 1}, keeping the first one at "
                  f"{got['speedup']:.3f}x ({e})", flush=True)
            record["missed"] = str(e)
    atomic_write_json(check, record)
    return _retry_dir(d) if record["retry"] else d


def _retry_dir(d: Path) -> Path:
    return d.with_name(d.name + "_again")
