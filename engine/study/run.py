"""The slimming study on one dataset: is a sparsity-trained, pruned and fine-tuned model faster than an unpruned one
trained for the same number of epochs, at nearly the same accuracy? And does it beat simply shrinking the input?

Rows (``rows`` of the JSON, in this order):

- ``base``: the pretrained weights fine-tuned ``epochs`` epochs;
- ``reference``: the same fine-tune for ``epochs + ft_epochs`` epochs: what a user gets for the recipe's compute
  without slimming, and the row every speed-up is measured against;
- ``sparsity``: ``epochs`` epochs with BN sparsity (``--sparsity_rate auto`` unless told otherwise), targeted at the
  channels a prune at ``sparsity_target`` takes;
- ``pruned_<p>``: prune.py at each percent (BN-recalibrated; the mAP before recalibration is kept beside it);
- ``finetune_<p>``: each pruned model fine-tuned ``ft_epochs`` epochs;
- ``input_<size>``: ``reference`` at the smaller input size whose ONNX Runtime latency is closest to the chosen
  fine-tuned model's;
- ``onnx``, ``int8``: the chosen fine-tuned model exported (static, batch 1) and quantized, validated through val.py.

Accuracy comes from val.py runs on the val and test splits; latency from one interleaved timing session after all
training (:func:`engine.benchmark.time_models`).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from engine.benchmark import Timed, time_models
from engine.progress import PlannedStage
from engine.prune.options import PruneOptions
from engine.stages import StageRunner, ratio_tag
from engine.study.options import SlimmingOptions
from engine.study.report import write_report
from utils.files import atomic_write_json, read_json
from engine.train.options import TrainOptions
from engine.val.options import ValOptions
from models.checkpoint import load_model
from models.summary import model_facts
from utils.checkpoint import load_checkpoint
from utils.data import load_dataset_config
from utils.options import to_argv
from utils.plots import read_results_csv

__all__ = ["run"]

SPLITS = ("val", "test")


def _accuracy(runner: StageRunner, row: str, file: Path, opt: SlimmingOptions, imgsz: int, splits: tuple) -> dict:
    """mAP50 and mAP50-95 of ``file`` on each split, from val.py stages (run again when the model is newer)."""
    out = {}
    for split in splits:
        d = runner.root / "val" / f"{row}_{split}"
        done = d / "results.json"
        if done.exists() and done.stat().st_mtime < file.stat().st_mtime:
            done.unlink()  # the model was trained or pruned again since: its figures are stale
        runner.run(f"val_{row}_{split}", "val.py", to_argv(ValOptions(
            weights=str(file), data=opt.data, imgsz=imgsz, task=split, batch_size=opt.batch_size, workers=opt.workers,
            project=str(runner.root / "val"), name=f"{row}_{split}", exist_ok=True)), done)
        r = read_json(done)
        out[f"map50_{split}"], out[f"map50_95_{split}"] = r["mAP50"], r["mAP50_95"]
    return out


def _train_stages(runner: StageRunner, opt: SlimmingOptions, errors: dict) -> dict[str, Path]:
    """base, reference, sparsity, prune_<p> and finetune_<p>; returns ``{row: model file}`` of those that finished."""
    common = dict(data=opt.data, imgsz=opt.imgsz, batch_size=opt.batch_size, workers=opt.workers, noval=True)
    models: dict[str, Path] = {}
    try:
        models["sparsity"] = runner.train("sparsity", to_argv(TrainOptions(
            weights=opt.weights, epochs=opt.epochs, bn_sparsity=True, sparsity_rate=opt.sparsity_rate,
            sparsity_mode=opt.mode, sparsity_target=opt.sparsity_target, sparsity_round=opt.round,
            sparsity_importance=opt.sparsity_importance, **common)))
    except RuntimeError as e:
        errors["sparsity"] = str(e)
    for p in opt.percents if "sparsity" in models else []:
        t = ratio_tag(p)
        d = runner.root / f"prune_{t}"
        if (d / "results.json").exists() and (d / "results.json").stat().st_mtime < models["sparsity"].stat().st_mtime:
            (d / "results.json").unlink()  # sparsity was trained again since
        try:
            runner.run(f"prune_{t}", "prune.py", to_argv(PruneOptions(
                weights=str(models["sparsity"]), data=opt.data, percent=float(t), imgsz=opt.imgsz, mode=opt.mode,
                round=opt.round, importance=opt.importance, bn_recal_images=opt.bn_recal_images,
                workers=opt.workers, latency=False, project=str(runner.root), name=f"prune_{t}", exist_ok=True)),
                d / "results.json")
            models[f"pruned_{t}"] = d / "pruned_model.pt"
            models[f"finetune_{t}"] = runner.train(f"finetune_{t}", to_argv(TrainOptions(
                weights=str(d / "pruned_model.pt"), ft_pruned_model=True, hyp=opt.ft_hyp, epochs=opt.ft_epochs,
                **common)), after=d / "pruned_model.pt")
        except RuntimeError as e:
            errors[f"percent {t}"] = str(e)
    # The baselines last: the recipe's stages are the ones that can fail, and they should fail early.
    wanted = {"all": ("base", "reference"), "reference": ("reference",), "none": ()}[opt.baselines]
    for stage, epochs in (("base", opt.epochs), ("reference", opt.epochs + opt.ft_epochs)):
        if stage not in wanted:
            continue
        try:
            models[stage] = runner.train(stage, to_argv(TrainOptions(weights=opt.weights, epochs=epochs, **common)))
        except RuntimeError as e:
            errors[stage] = str(e)
    return models


def _facts(file: Path, imgsz: int) -> dict:
    """Parameters, GFLOPs at the row's own input size, and the size of the fp16 checkpoint (as prune.py saves)."""
    return model_facts(load_model(file, device="cpu")[0], imgsz)


def _choose(rows: dict[str, dict], ref: str, max_drop: float) -> str | None:
    """The fine-tuned row to export: the fewest GFLOPs within ``max_drop`` mAP50-95 (val) of ``ref``, else the most
    accurate one."""
    ft = [k for k in rows if k.startswith("finetune_") and "map50_95_val" in rows[k]]
    if not ft:
        return None
    ok = [k for k in ft if rows[k]["map50_95_val"] >= rows[ref]["map50_95_val"] - max_drop]
    return min(ok, key=lambda k: rows[k]["gflops"]) if ok else max(ft, key=lambda k: rows[k]["map50_95_val"])


def _timing(root: Path, opt: SlimmingOptions, items: list) -> dict[str, dict]:
    """Interleaved latency of ``items``, cached in ``timing.json`` while the files and settings stay the same."""
    key = {"threads": opt.threads, "repeats": opt.repeats, "rounds": opt.rounds,
           "items": [[it.key, it.file, it.imgsz, os.stat(it.file).st_mtime_ns] for it in items]}
    cache = read_json(root / "timing.json")
    if cache.get("key") == key:
        print("slimming: timing: done (timing.json)", flush=True)
        return cache["results"]
    print(f"slimming: timing {len(items)} models interleaved ({opt.repeats} runs each per runtime, batch 1, "
          f"{opt.threads} thread(s), {opt.rounds} rounds); nothing else should run meanwhile", flush=True)
    res = time_models(items, threads=opt.threads, repeats=opt.repeats, rounds=opt.rounds)
    atomic_write_json(root / "timing.json", {"key": key, "results": res, "load_average": os.getloadavg()[0]})
    return res


def run(opt: SlimmingOptions) -> dict:
    """Run (or resume) the study and write ``slimming.md``, ``slimming.json`` and ``slimming.png``; returns the
    JSON document."""
    data = load_dataset_config(opt.data)
    name = opt.name or Path(str(data.get("yaml_file") or opt.data)).stem
    root = Path(opt.project) / name
    runner = StageRunner(root, plan=_plan(opt, tuple(s for s in SPLITS if data.get(s))))
    errors: dict[str, str] = {}
    models = _train_stages(runner, opt, errors)
    splits = tuple(s for s in SPLITS if data.get(s))
    rows: dict[str, dict] = {}
    for row, file in models.items():
        rows[row] = {"name": row, "file": str(file), "imgsz": opt.imgsz, **_facts(file, opt.imgsz),
                     **_accuracy(runner, row, file, opt, opt.imgsz, splits)}
        if row.startswith("pruned_"):
            pr = read_json(file.parent / "results.json")
            if "recalibrated" in pr:
                rows[row].update(map50_val_before_recal=pr["pruned"]["mAP50"],
                                 map50_95_val_before_recal=pr["pruned"]["mAP50_95"])
            rows[row].update(safe_percent=pr["safe_percent"], threshold=pr["threshold"])
    ref = "reference" if "reference" in rows else "sparsity"
    best = _choose(rows, ref, opt.max_map_drop) if ref in rows else None
    if best is not None:
        best_file = Path(rows[best]["file"])
        export_json = best_file.with_name(f"{best_file.stem}_export.json")
        try:
            runner.run("export", "export.py", ["--weights", str(best_file), "--include", "onnx", "--imgsz",
                                               str(opt.imgsz), "--int8", "--data", opt.data], export_json)
            for row, f in (("onnx", best_file.with_suffix(".onnx")), ("int8", best_file.with_name(
                    f"{best_file.stem}_int8.onnx"))):
                rows[row] = {"name": row, "file": str(f), "imgsz": opt.imgsz, "params": rows[best]["params"],
                             "gflops": rows[best]["gflops"], "size_mb": f.stat().st_size / 1e6,
                             **_accuracy(runner, row, f, opt, opt.imgsz, splits)}
        except RuntimeError as e:
            errors["export"] = str(e)
    items = [Timed(k, r["file"], opt.imgsz) for k, r in rows.items()]
    sizes = [s for s in range(opt.imgsz - 32, 127, -32)] if ref == "reference" and best else []
    items += [Timed(f"input_{s}", rows[ref]["file"], s) for s in sizes]
    timing = _timing(root, opt, items)
    for k, r in rows.items():
        r.update({f: timing[k][f] for f in ("torch_ms", "torch_p90_ms", "ort_ms", "ort_p90_ms")})
    if sizes:  # the input size whose latency is closest to the chosen pruned model's: does pruning beat it?
        s = min(sizes, key=lambda s: abs(timing[f"input_{s}"]["ort_ms"] - rows[best]["ort_ms"]))
        f = Path(rows[ref]["file"])
        rows[f"input_{s}"] = {"name": f"input_{s}", "file": str(f), "imgsz": s, **_facts(f, s),
                              **_accuracy(runner, f"input_{s}", f, opt, s, splits),
                              **{k: timing[f"input_{s}"][k] for k in ("torch_ms", "torch_p90_ms", "ort_ms",
                                                                      "ort_p90_ms")}}
    order = ["base", "reference", "sparsity"] + [f"{kind}_{ratio_tag(p)}" for kind in ("pruned", "finetune")
                                                 for p in opt.percents]
    ordered = [rows[k] for k in order if k in rows] + [r for k, r in rows.items() if k not in order]
    for r in ordered:
        r["speedup"] = rows[ref]["ort_ms"] / r["ort_ms"] if r.get("ort_ms") else None
        r["speedup_torch"] = rows[ref]["torch_ms"] / r["torch_ms"] if r.get("torch_ms") else None
    doc = {"dataset": name, "data": opt.data, "reference": ref, "best": best, "settings": asdict(opt),
           "sparsity_rate": _chosen_rate(root), "errors": errors, "curves": _curves(root, opt, models),
           "timing": {"threads": opt.threads, "repeats": opt.repeats, "rounds": opt.rounds, "batch_size": 1,
                      "imgsz": opt.imgsz}, "rows": ordered}
    out = Path(opt.out) if opt.out else root
    write_report(doc, out, name)
    runner.plan.summary()
    return doc


def _plan(opt: SlimmingOptions, splits: tuple) -> list[PlannedStage]:
    """The study's stages in the order they run (val.py stages of each model, an input-size row and the export's
    INT8 rows are added as they come)."""
    stages = [PlannedStage("sparsity", opt.epochs)]
    for p in opt.percents:
        stages += [PlannedStage(f"prune_{ratio_tag(p)}"), PlannedStage(f"finetune_{ratio_tag(p)}", opt.ft_epochs)]
    baselines = {"all": ("base", "reference"), "reference": ("reference",), "none": ()}[opt.baselines]
    stages += [PlannedStage(b, opt.epochs + (opt.ft_epochs if b == "reference" else 0)) for b in baselines]
    rows = ["sparsity", *baselines] + [f"{k}_{ratio_tag(p)}" for k in ("pruned", "finetune") for p in opt.percents]
    return stages + [PlannedStage(f"val_{r}_{s}") for r in rows for s in splits] + [PlannedStage("export")]


def _curves(root: Path, opt: SlimmingOptions, models: dict[str, Path]) -> dict[str, dict]:
    """Each training stage's mean train loss (box + obj + cls) per epoch, placed on the recipe's epoch axis
    (fine-tuning continues where sparsity training ended): where accuracy is lost, and whether it comes back."""
    out = {}
    for stage in models:
        f = root / stage / "results.csv"
        if stage.startswith("pruned_") or not f.is_file():
            continue
        header, data = read_results_csv(f)
        cols = [header.index(c) for c in ("train/box_loss", "train/obj_loss", "train/cls_loss")]
        out[stage] = {"start": opt.epochs if stage.startswith("finetune_") else 0,
                      "loss": [float(x) for x in data[:, cols].sum(1)]}
    return out


def _chosen_rate(root: Path) -> float | None:
    """The S the sparsity stage trained with (``auto`` resolves to a number stored in the checkpoint options)."""
    f = root / "sparsity" / "weights" / "best.pt"
    if not f.exists():
        return None

    rate = (load_checkpoint(f).get("train_args") or {}).get("sparsity_rate")
    return float(rate) if isinstance(rate, (int, float)) else None
