"""slim.py --search: the most accurate model for a speed budget, whichever knob reaches it: channel slimming, a
smaller input size, INT8, or a combination of milder settings of each.

1. **Measure** (``sizes/``, ``sizes.json``): the source exported at each candidate input size, in float32 and INT8
   (ONNX Runtime's static QDQ quantization, which ONNX Runtime and OpenVINO both run in INT8; none for PyTorch), all
   timed interleaved with the source at its own size: what each size and precision alone gives. Besides squares,
   each size as a fixed rectangle in the training photos' dominant orientation (:mod:`engine.slim.shapes`). A run
   folder from before rectangles were tried resumes: they are timed against the source alone, kept relative to it.
2. **Plan** (``candidates.json``): per precision and shape (square, rectangle), from the source's size down, each
   size whose unpruned model is too slow becomes a candidate slimmed by what is left of the budget; the first size
   fast enough alone ends that list (a smaller one only loses accuracy).
3. **Screen**: each slimmed candidate is one prune.py to its speed-up (Taylor, BN-recalibrated, as slim.py's steps),
   every candidate exported at its size and precision, scored on val without fine-tuning and timed interleaved with
   the source.
4. **Fine-tune the finalists** alike: the best-screened candidate of each kind (slimming alone, input size alone,
   INT8 alone, a combination) that meets the budget, each fine-tuned for the same epochs with the source's
   hyperparameters at its own size (a rectangle's long side), exported (INT8 re-calibrated on the fine-tuned model)
   and scored on val and test.
5. **Choose**: the finalists and the source timed again, interleaved; among those that meet the budget as measured
   (and whose INT8 stays within ``--int8-guard`` of their float model), the best val mAP50-95 wins. It is copied to
   ``chosen/`` with its input size in the export's metadata (val.py and detect.py use it by default).

Every stage is a normal run of our scripts in the run folder, skipped when done: the same command resumes. Writes
``search.json``, ``search.md`` and ``search.png`` (:mod:`engine.slim.search_report`).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.benchmark import LATENCY_BACKENDS, Timed, time_models
from engine.export.common import imgsz_text, normalize_imgsz
from engine.export.run import ExportOptions
from engine.progress import PlannedStage
from engine.prune.options import PruneOptions
from engine.slim.options import LAST_STEP_MARGIN, SlimOptions
from engine.slim.report import latencies, val_stage, write_outputs, write_report
from engine.slim.search_report import format_search, plot_search
from engine.slim.shapes import Size, dominant_aspect, long_side, parse_size, rect_shape
from engine.stages import StageError, StageRunner
from engine.train.options import TrainOptions
from models.summary import model_facts
from models.checkpoint import load_model
from utils.data import load_dataset_config
from utils.files import atomic_write_json
from utils.options import to_argv

__all__ = ["TYPICAL_FINALISTS", "Candidate", "search_sizes", "plan_candidates", "prune_steps", "choose", "run_search",
           "NoCandidate"]

FAMILIES = ("slim", "size", "int8", "combination")
MAX_STEP = 1.25  # the largest speed-up asked of one prune.py
TYPICAL_FINALISTS = 3  # yolov5n at 1.5x on aquarium: slimming alone, a smaller input alone, INT8 with a smaller input


class NoCandidate(ValueError):
    """No candidate meets the budget: the search's one ERROR line."""


@dataclass
class Candidate:
    """One way to the budget: the source at ``imgsz`` (or the fixed rectangle ``shape``, ``imgsz`` its long side) in
    ``precision``, slimmed ``slim`` times faster first (1: not slimmed)."""

    imgsz: int
    precision: str  # "fp32" or "int8"
    slim: float
    source_imgsz: int
    shape: tuple[int, int] | None = None  # (height, width) of a rectangular input

    @property
    def input_size(self) -> Size:
        """What the deployed file takes: the square side, or the rectangle."""
        return self.shape or self.imgsz

    @property
    def name(self) -> str:
        """``320px-fp32-slim1.50x``, ``256px-fp32``, ``288px-int8``, ``320x256px-int8``: path- and stage-safe."""
        return f"{imgsz_text(self.input_size)}px-{self.precision}" + (f"-slim{self.slim:.2f}x" if self.slimmed else "")

    @property
    def slimmed(self) -> bool:
        """True when channel slimming is one of its knobs."""
        return self.slim > 1

    @property
    def family(self) -> str:
        """The knob it turns (``slim``, ``size``, ``int8``), or ``combination`` for two or three."""
        smaller = self.imgsz < self.source_imgsz or self.shape is not None  # a smaller side, or a rectangle
        knobs = [k for k, on in (("slim", self.slimmed), ("size", smaller), ("int8", self.precision == "int8")) if on]
        return knobs[0] if len(knobs) == 1 else "combination"


def search_sizes(imgsz: int, speedup: float, given: list[int] | None = None) -> list[int]:
    """The input sizes to try, largest first: ``given``, or multiples of 32 from ``imgsz`` down to about 0.85x the
    size whose pixel count alone would meet the budget (latency scales roughly with pixels, but not exactly)."""
    if given:
        return sorted(set(given), reverse=True)
    low = imgsz / math.sqrt(speedup) * 0.85
    return [s for s in range(imgsz, 31, -32) if s >= low]


def plan_candidates(speedup: float, source_ms: float, ms: dict[tuple[Size, str], float], source_imgsz: int
                    ) -> list[Candidate]:
    """The candidates that reach ``speedup`` over ``source_ms``, from the measured latency of the unpruned model at
    each (size, precision) in ``ms`` (a size: a square side or a (height, width)): per precision and shape, largest
    size first, the slimming each size still needs; a size that meets the budget unslimmed ends its list. A (size,
    precision) slower than the source gives none (slimming alone at the source's size does better)."""
    out: list[Candidate] = []
    for precision in ("fp32", "int8"):
        for rect in (False, True):
            sizes = {s for s, p in ms if p == precision and isinstance(s, tuple) == rect}
            for s in sorted(sizes, key=long_side, reverse=True):
                need = speedup * ms[(s, precision)] / source_ms
                if need > speedup:
                    continue
                out.append(Candidate(long_side(s), precision, float(f"{need:.4g}") if need > 1 else 1.0, source_imgsz,
                                     s if rect else None))
                if need <= 1:
                    break
    return out


def choose(rows: list[dict]) -> dict:
    """The finalist with the best val mAP50-95 among those that meet the budget (``meets_budget``) and were
    fine-tuned (``epochs`` > 0) and kept (``kept``, the INT8 guard).

    Raises:
        NoCandidate: none qualifies, naming the best speed-up reached.
    """
    ok = [r for r in rows if r.get("meets_budget") and r.get("epochs") and r.get("kept", True)
          and r.get("map50_95_val") is not None]
    if not ok:
        fastest = max((r for r in rows if r.get("speedup")), key=lambda r: r["speedup"], default=None)
        best = f"; the fastest, {fastest['name']}, measured {fastest['speedup']:.3f}x" if fastest else ""
        raise NoCandidate(f"no fine-tuned candidate meets the budget as measured{best}: ask for a smaller --speedup, "
                          "or give --search-sizes with smaller sizes")
    return max(ok, key=lambda r: (r["map50_95_val"], r["speedup"]))


def _runtime(opt: SlimOptions) -> str:
    return LATENCY_BACKENDS[opt.latency_backend]


def _deployed(pt: Path, precision: str) -> Path:
    """The file a candidate runs as: the ONNX export beside ``pt``, its INT8 twin for INT8."""
    return pt.with_name(pt.stem + ("_int8.onnx" if precision == "int8" else ".onnx"))


def _export(runner: StageRunner, stage: str, weights: Path, pt: Path, imgsz: Size, int8: bool, opt: SlimOptions
            ) -> Path:
    """Copy ``weights`` to ``pt`` and export it at ``imgsz`` (a side or a fixed (height, width)) beside it (ONNX, and
    INT8 when asked); returns the export summary."""
    pt.parent.mkdir(parents=True, exist_ok=True)
    done = pt.with_name(pt.stem + "_export.json")
    if not done.exists():
        shutil.copy2(weights, pt)
    args = ExportOptions(weights=str(pt), include=["onnx"], imgsz=[imgsz] if isinstance(imgsz, int) else list(imgsz),
                         int8=int8, data=opt.data)
    return runner.run(stage, "export.py", to_argv(args), done)


def _time(items: list[Timed], opt: SlimOptions, repeats: int) -> dict[str, float]:
    """``{key: median ms}`` in ``--latency-backend``, all interleaved, batch 1, ``--threads``."""
    rt = _runtime(opt)
    t = time_models(items, threads=opt.threads, repeats=repeats, rounds=10, warmup=10, runtimes=(rt,))
    return {k: v[f"{rt}_ms"] for k, v in t.items()}


def _timed_item(key: str, file: Path, imgsz: Size, opt: SlimOptions) -> Timed:
    """ONNX files for ONNX Runtime and OpenVINO (the file deployed), the checkpoint for PyTorch (fp32 only)."""
    return Timed(key, str(file if _runtime(opt) != "torch" else file.with_suffix(".pt")), imgsz)


def _measure_sizes(runner: StageRunner, opt: SlimOptions, source: Path, budget: dict) -> dict:
    """Export the source at every candidate size, square and rectangular (and INT8 where the backend has it), and
    time each against the source at its own size: ``sizes.json``, whose ``ms`` the sizes this run tries. Sizes an
    earlier sizes.json lacks (a run begun before rectangles were tried) are timed with the source alone and stored
    relative to the source's first timing, so the sizes measured before keep their figures and candidates."""
    f = runner.root / "sizes.json"
    out = json.loads(f.read_text()) if f.exists() else {}
    int8 = opt.latency_backend != "torch"  # OpenVINO runs the QDQ file's convolutions in u8 too; PyTorch has no INT8
    sizes = out.get("sizes") or search_sizes(opt.imgsz, budget["speedup"], opt.search_sizes)
    if opt.search_rect and "aspect" not in out:
        out["aspect"] = dominant_aspect(load_dataset_config(opt.data)["train"])
    rects = [r for s in sizes if (r := rect_shape(s, out.get("aspect")))] if opt.search_rect else []
    keys = {f"{imgsz_text(s)}|{p}": s for s in [*sizes, *rects] for p in ("fp32", "int8")[:1 + int8]}
    missing = [k for k in keys if k not in out.get("ms", {})]
    if missing:
        items = []
        for s in sorted({keys[k] for k in missing} | {opt.imgsz}, key=normalize_imgsz, reverse=True):
            tag = imgsz_text(s)
            pt = runner.root / "sizes" / f"source_{tag}.pt"
            _export(runner, f"size{tag}_export", source, pt, s, int8 and s in keys.values(), opt)
            items += [_timed_item(f"{tag}|fp32", pt.with_suffix(".onnx"), s, opt)] if (
                s == opt.imgsz or f"{tag}|fp32" in missing) else []
            items += [Timed(f"{tag}|int8", str(_deployed(pt, "int8")), s)] if f"{tag}|int8" in missing else []
        print(f"slim: timing the source at {', '.join(k.replace('|', ' px ') for k in missing)} against "
              f"{opt.imgsz} px ({opt.latency_backend}, batch 1, {opt.threads} thread(s), interleaved)", flush=True)
        ms = _time(items, opt, repeats=50)
        source_ms = ms[f"{opt.imgsz}|fp32"]
        scale = out.setdefault("source_ms", source_ms) / source_ms  # 1 unless sizes measured before are kept
        out.update(sizes=sizes, int8=int8)
        out["ms"] = out.get("ms", {}) | {k: ms[k] * scale for k in missing}
        atomic_write_json(f, out)
        for k in missing:
            print(f"slim:   {k.replace('|', ' px ')}: {out['ms'][k]:.2f} ms, {out['source_ms'] / out['ms'][k]:.3f}x",
                  flush=True)
    return out | {"ms": {k: out["ms"][k] for k in keys}}


def prune_steps(ask: float) -> int:
    """Prune steps for a speed-up of ``ask``: at most 1.25x each (one prune of yolov5n could not go past 1.43x: its
    safe limit keeps channels in every layer; the next step's Taylor scores see the pruned network)."""
    return max(1, math.ceil(math.log(ask) / math.log(MAX_STEP) - 1e-9))


def _prune(runner: StageRunner, opt: SlimOptions, stage: str, weights: Path, ask: float, imgsz: int) -> Path:
    """One prune.py to ``ask`` times the speed of ``weights`` at ``imgsz`` (Taylor, BN-recalibrated): its model."""
    d = runner.root / stage
    args = PruneOptions(weights=str(weights), target_speedup=float(f"{ask:.5g}"), mode=opt.mode, round=opt.round,
                        importance=opt.importance, bn_recal_images=opt.bn_recal_images, latency=False,
                        latency_backend=opt.latency_backend, threads=opt.threads, data=opt.data, imgsz=imgsz,
                        batch_size=opt.batch_size, workers=opt.workers, device=opt.device, project=str(runner.root),
                        name=d.name, exist_ok=True)
    runner.run(stage, "prune.py", to_argv(args), d / "results.json")
    return d / "pruned_model.pt"


def _speedup(runner: StageRunner, opt: SlimOptions, file: Path, imgsz: Size) -> float:
    """``file`` at ``imgsz`` timed interleaved with the source at its own size: the speed-up over it."""
    ms = _time([_timed_item("source", runner.root / "sizes" / f"source_{opt.imgsz}.onnx", opt.imgsz, opt),
                _timed_item("model", file, imgsz, opt)], opt, repeats=30)
    return ms["source"] / ms["model"]


def _screen(runner: StageRunner, opt: SlimOptions, c: Candidate, source: Path, speedup: float,
            sizes_speedup: float) -> tuple[Path, Path, float]:
    """Make candidate ``c`` without fine-tuning and export it at its size and precision: slimmed, prune.py steps
    (each BN-recalibrated, none fine-tuned) to its share of the budget, then timed against the source as it runs and
    pruned once more if it falls short of ``speedup`` (kept in ``screen/<name>_speed.json``). Returns (its
    checkpoint, the file it runs as, its measured speed-up; ``sizes_speedup`` for an unslimmed one)."""
    if not c.slimmed:
        pt = runner.root / "sizes" / f"source_{imgsz_text(c.input_size)}.pt"
        return pt, _deployed(pt, c.precision), sizes_speedup
    int8 = c.precision == "int8"
    ask = c.slim * LAST_STEP_MARGIN
    steps = prune_steps(ask)
    current = source
    for k in range(1, steps + 1):
        current = _prune(runner, opt, f"prune_{c.name}_step{k}", current, ask ** (1 / steps), c.imgsz)
    pt = runner.root / "screen" / f"{c.name}.pt"
    _export(runner, f"screen_{c.name}_export", current, pt, c.input_size, int8, opt)
    check = runner.root / "screen" / f"{c.name}_speed.json"
    if not check.exists():
        got = _speedup(runner, opt, _deployed(pt, c.precision), c.input_size)
        record: dict = {"asked": c.slim, "measured": got, "retry": None}
        if got < speedup:  # short as measured: the shortfall (and the margin) asked of one more prune
            again = pt.with_name(f"{c.name}_again.pt")
            ask2 = speedup / got * LAST_STEP_MARGIN
            print(f"slim: {c.name} measured {got:.3f}x, short of {speedup:.3g}x: pruning again for {ask2:.4g}x",
                  flush=True)
            try:
                model = _prune(runner, opt, f"prune_{c.name}_again", current, ask2, c.imgsz)
                _export(runner, f"screen_{c.name}_again_export", model, again, c.input_size, int8, opt)
                record["retry"] = {"asked": ask2, "measured": _speedup(runner, opt, _deployed(again, c.precision),
                                                                       c.input_size)}
            except StageError as e:  # nothing faster is reachable: it stays short of the budget, as the table says
                record["missed"] = str(e)
        atomic_write_json(check, record)
    record = json.loads(check.read_text())
    if record["retry"]:
        pt = pt.with_name(f"{c.name}_again.pt")
    return pt, _deployed(pt, c.precision), (record["retry"] or record)["measured"]


def _screened_stem(c: Candidate) -> str:
    """The stem of the file candidate ``c`` runs as before fine-tuning (without a shortfall's extra prune)."""
    stem = c.name if c.slimmed else f"source_{imgsz_text(c.input_size)}"
    return stem + ("_int8" if c.precision == "int8" else "")


def _finalists(rows: list[dict]) -> list[dict]:
    """The best-screened row of each kind among those that meet the budget at screening."""
    out = []
    for fam in FAMILIES:
        ok = [r for r in rows if r["family"] == fam and r["screen_meets"]]
        if ok:
            out.append(max(ok, key=lambda r: r["map50_95_screen"]))
    return out


def run_search(opt: SlimOptions, source: Path, root: Path, budget: dict, source_hyp: str, epochs: int,
               epochs_why: str) -> dict:
    """The search (module doc); returns search.json's contents.

    Raises:
        NoCandidate: no fine-tuned candidate meets the budget as measured (search.json and its table written first).
    """
    runner = StageRunner(root, prefix="slim")
    sizes = _measure_sizes(runner, opt, source, budget)
    x = budget["speedup"]
    ms = {(parse_size(k.split("|")[0]), k.split("|")[1]): v for k, v in sizes["ms"].items()}
    cands = plan_candidates(x, sizes["source_ms"], ms, opt.imgsz)
    atomic_write_json(root / "candidates.json", [asdict(c) | {"name": c.name, "family": c.family} for c in cands])
    print(f"slim: {len(cands)} candidates for {x:.3g}x: " + ", ".join(f"{c.name} ({c.family})" for c in cands),
          flush=True)
    runner.plan.stages = ([PlannedStage(f"prune_{c.name}_step{k}") for c in cands if c.slimmed
                           for k in range(1, prune_steps(c.slim * LAST_STEP_MARGIN) + 1)] +
                          [PlannedStage(f"val_screen_{_screened_stem(c)}_val") for c in cands] +
                          [PlannedStage(f"ft_{f}", epochs) for f in FAMILIES if any(c.family == f for c in cands)])
    runner.plan.show()
    rows, files = [], {}
    for c in cands:  # screening: each candidate as it is before fine-tuning, scored on val, timed with the source
        row, files[c.name] = _screen_row(runner, opt, c, source, x,
                                         sizes["source_ms"] / ms[(c.input_size, c.precision)])
        rows.append(row)
    finals = _finalists(rows)
    runner.plan.stages = [st for st in runner.plan.stages if not st.name.startswith("ft_")] + [
        PlannedStage(f"ft_{r['name']}", epochs) for r in finals]  # the kinds' placeholders get their finalists' names
    print("slim: screened (val mAP50-95 before fine-tuning, speed-up): " + ", ".join(
        f"{r['name']} {r['map50_95_screen']:.4f} {r['screen_speedup']:.3f}x" for r in rows) +
        f"\nslim: fine-tuning the best of each kind for {epochs} epochs ({epochs_why}): " +
        ", ".join(r["name"] for r in finals), flush=True)
    splits = [s for s in ("val", "test") if load_dataset_config(opt.data).get(s)]
    for r in finals:
        files[r["name"]] = _fine_tune(runner, opt, r, files[r["name"]][0], epochs, opt.final_ft_hyp or source_hyp,
                                      splits)
    src = {"name": "source", "family": "source", "imgsz": opt.imgsz, "slimmed": False, "precision": "fp32",
           "backend": opt.latency_backend, "epochs": 0, "file": str(source),
           **{k: v for k, v in model_facts(load_model(source, device="cpu")[0], opt.imgsz).items()
              if k in ("gflops", "params")}}
    src_file = root / "sizes" / f"source_{opt.imgsz}.onnx"
    for split in splits:
        res = val_stage(runner, "source", split, src_file, opt.imgsz, opt)
        src[f"map50_{split}"], src[f"map50_95_{split}"] = res["mAP50"], res["mAP50_95"]
    result = _decide(runner, opt, src, rows, files, finals, x)
    result["epochs"] = epochs
    _write(root, result)
    if "chosen" not in result:
        raise NoCandidate(result["refused"])
    if opt.export:
        result["report"] = _report(opt, root, result, f"ran all {epochs} epochs, as every finalist ({epochs_why})")
    runner.plan.summary()
    chosen = next(r for r in rows if r["chosen"])
    print(f"slim: chosen: {chosen['name']}: val mAP50-95 {chosen['map50_95_val']:.4f} (source "
          f"{src['map50_95_val']:.4f}), {chosen['speedup']:.2f}x in {opt.latency_backend}; deploy "
          f"{result['chosen']['file']} (input {imgsz_text(chosen['imgsz'])} px, in its metadata)", flush=True)
    return result


def _screen_row(runner: StageRunner, opt: SlimOptions, c: Candidate, source: Path, speedup: float,
                sizes_speedup: float) -> tuple[dict, tuple[Path, Path]]:
    """Candidate ``c`` screened (:func:`_screen`) and scored on val: its row and (checkpoint, file it runs as)."""
    pt, deployed, got = _screen(runner, opt, c, source, speedup, sizes_speedup)
    res = val_stage(runner, f"screen_{deployed.stem}", "val", deployed, c.input_size, opt)
    facts = model_facts(load_model(pt, device="cpu")[0], c.input_size)
    return {"name": c.name, "family": c.family, "imgsz": c.input_size, "train_imgsz": c.imgsz, "slimmed": c.slimmed,
            "slim": c.slim, "precision": c.precision, "backend": opt.latency_backend, "gflops": facts["gflops"],
            "params": facts["params"], "map50_95_screen": res["mAP50_95"], "screen_speedup": got,
            "screen_meets": got >= speedup}, (pt, deployed)


def _fine_tune(runner: StageRunner, opt: SlimOptions, r: dict, weights: Path, epochs: int, hyp: str,
               splits: list[str]) -> tuple[Path, Path]:
    """Finalist ``r`` fine-tuned at its own size (a rectangle's long side) for ``epochs`` (no early stop: the same
    epochs for every finalist), exported (INT8 calibrated anew), scored on each split; returns (checkpoint, the file
    it runs as). An INT8 finalist more than ``--int8-guard`` below its float model on val is marked not ``kept``."""
    name, imgsz, int8 = r["name"], r["imgsz"], r["precision"] == "int8"
    best = runner.train(f"ft_{name}", to_argv(TrainOptions(
        weights=str(weights), ft_pruned_model=True, hyp=hyp, epochs=epochs, patience=0, data=opt.data,
        imgsz=r["train_imgsz"], batch_size=opt.batch_size, workers=opt.workers, device=opt.device)))
    pt = runner.root / "final" / f"{name}.pt"
    summary = json.loads(_export(runner, f"export_{name}", best, pt, imgsz, int8, opt).read_text())
    deployed = _deployed(pt, r["precision"])
    r["epochs"] = json.loads((best.parent.parent / "results.json").read_text()).get("epochs", epochs)
    for split in splits:
        res = val_stage(runner, name, split, deployed, imgsz, opt)
        r[f"map50_{split}"], r[f"map50_95_{split}"] = res["mAP50"], res["mAP50_95"]
    if int8:  # the guard: INT8 against its own float model, both as export.py scored them on val
        fp32, q = (row["mAP50_95"] for row in summary["int8"]["report"])
        r["map50_95_val_fp32"], r["kept"] = fp32, q >= fp32 - opt.int8_guard
    return pt, deployed


def _decide(runner: StageRunner, opt: SlimOptions, src: dict, rows: list[dict], files: dict, finals: list[dict],
            x: float) -> dict:
    """Time the finalists as deployed against the source once more (interleaved), complete every row and choose
    (:func:`choose`); the chosen model is copied to ``chosen/``. Returns search.json's contents, with ``chosen``, or
    ``refused`` (the reason) when none qualifies."""
    final_ms = _cached_times(runner.root / "final_times.json", opt, [_timed_item(
        "source", runner.root / "sizes" / f"source_{opt.imgsz}.onnx", opt.imgsz, opt)] + [
        _timed_item(r["name"], files[r["name"]][1], r["imgsz"], opt) for r in finals], repeats=100)
    key = f"{_runtime(opt)}_ms"  # ort_ms, ov_ms or torch_ms
    src[key] = final_ms["source"]
    for r in rows:  # the others keep their screening ratio (the same network, not fine-tuned: the same speed)
        r["speedup"] = final_ms["source"] / final_ms[r["name"]] if r["name"] in final_ms else r["screen_speedup"]
        r[key] = final_ms["source"] / r["speedup"]
        r["meets_budget"] = r["speedup"] >= x
        r["file"] = str(files[r["name"]][1])
        r["chosen"] = False
        r.setdefault("epochs", 0)
        r.setdefault("kept", True)
        for split in ("val", "test"):
            r.setdefault(f"map50_{split}", None)
            r.setdefault(f"map50_95_{split}", None)
    result = {"budget": {"speedup": x, "source_ms": src[key], "target_ms": src[key] / x, "ms_key": key,
                         "backend": opt.latency_backend, "threads": opt.threads},
              "source": src, "candidates": rows, "int8_guard": opt.int8_guard}
    try:
        chosen = choose(rows)
    except NoCandidate as e:
        return result | {"refused": str(e)}
    chosen["chosen"] = True
    dest = runner.root / "chosen"
    shutil.rmtree(dest, ignore_errors=True)  # a resumed run that chooses anew leaves no earlier choice beside it
    dest.mkdir()
    pt, deployed = files[chosen["name"]]
    for f in (pt, deployed):
        shutil.copy2(f, dest / f.name)
    result["chosen"] = {"name": chosen["name"], "file": str(dest / deployed.name), "pt": str(dest / pt.name),
                        "imgsz": chosen["imgsz"]}
    return result


def _report(opt: SlimOptions, root: Path, result: dict, stopped: str) -> dict:
    """slim.py's before/after report (:mod:`engine.slim.report`) for the chosen model: source and chosen timed per
    runtime (ONNX Runtime and OpenVINO on the files as deployed, PyTorch on float32 checkpoints) at their own sizes;
    report.json/md/png."""
    src, pick = result["source"], next(r for r in result["candidates"] if r["chosen"])
    chosen = result["chosen"]
    models = {"source": (Path(src["file"]), root / "sizes" / f"source_{src['imgsz']}.onnx", src["imgsz"]),
              "final": (Path(chosen["pt"]) if pick["precision"] == "fp32" else None, Path(chosen["file"]),
                        pick["imgsz"])}
    print(f"slim: timing source and chosen model in ONNX Runtime, OpenVINO and PyTorch (batch 1, {opt.threads} "
          "thread(s), interleaved per runtime)", flush=True)
    times = latencies(models, opt.threads)
    keys = ("params", "gflops", "imgsz", "precision", *(f"map50{k}_{sp}" for k in ("", "_95") for sp in ("val", "test")))
    rows = {w: {k: row.get(k) for k in keys} for w, row in (("source", src), ("final", pick))}
    for w, (pt, onnx, _) in models.items():
        rows[w] |= {"file": str(Path(src["file"]) if w == "source" else onnx), "onnx": str(onnx),
                    "size_mb": (pt if w == "source" else onnx).stat().st_size / 1e6, **times[w]}
    for row in rows.values():
        row["speedup"] = rows["source"]["ort_ms"] / row["ort_ms"]
    report = {"source": rows["source"], "final": rows["final"], "stopped": stopped, "epochs": result["epochs"],
              "budget": result["budget"], "threads": opt.threads, "data": opt.data, "label": "chosen",
              "chosen": pick["name"]}
    write_report(root, report)
    return report


def _cached_times(f: Path, opt: SlimOptions, items: list[Timed], repeats: int = 50) -> dict[str, float]:
    """Time ``items`` once and keep the figures in ``f`` (a resumed run keeps them while it times the same
    models)."""
    if f.exists() and set(kept := json.loads(f.read_text())) == {it.key for it in items}:
        return kept
    ms = _time(items, opt, repeats)
    atomic_write_json(f, ms)
    return ms


def _write(root: Path, result: dict) -> None:
    """search.json, search.md and search.png; the table printed."""
    write_outputs(root, "search", result, f"slim.py --search: {result['budget']['speedup']:.3g}x faster than "
                                          f"{Path(result['source']['file']).name}", format_search(result),
                  plot_search(result))
