"""prune.py: load a (sparsity-trained) checkpoint, prune channels (and layers), validate, save and report."""

from __future__ import annotations

import copy
import csv
import json
import logging
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from torch import nn

from engine.benchmark import Timed, time_models
from engine.prune.options import PruneOptions
from engine.prune.recal import recalibrated
from engine.prune.search import choose_round, has_target, latency_pair, search_budget, search_map_guard
from engine.val.validator import print_results, scorer
from models.checkpoint import load_model
from models.summary import count_flops, count_params
from models.yolo import Model
from pruning import build_groups, compute_masks, masked_model, prune_layers, prune_model
from pruning.importance import bn_importance, relative_macs, taylor_importance
from utils.checkpoint import atomic_save, make_checkpoint, resolve_weights
from utils.data import create_dataloader, load_dataset_config
from utils.hyp import load_hyp
from utils.loss import ComputeLoss
from utils.options import check_options
from utils.paths import increment_path
from utils.torch_utils import select_device

__all__ = ["PruneOptions", "run", "check_cfg_matches", "channel_scores"]

LOGGER = logging.getLogger(__name__)


def check_cfg_matches(cfg: str, model: nn.Module) -> None:
    """``--cfg`` is optional; when given it must describe the same (unpruned) architecture as the checkpoint.

    Raises:
        ValueError: naming the first tensor whose shape differs.
    """
    if model.yaml.get("channels"):
        raise ValueError(f"--cfg {cfg}: the checkpoint is already pruned, its architecture is stored in it; "
                         "omit --cfg")
    ref = Model(cfg, nc=model.nc).state_dict()
    own = model.state_dict()
    for k, v in own.items():
        if k not in ref or ref[k].shape != v.shape:
            got = tuple(ref[k].shape) if k in ref else "missing"
            raise ValueError(f"--cfg {cfg} does not match the weights: {k} is {tuple(v.shape)} in the checkpoint but "
                             f"{got} in the config; omit --cfg (the architecture comes from the checkpoint)")
    if len(ref) != len(own):
        raise ValueError(f"--cfg {cfg} does not match the weights ({len(ref)} vs {len(own)} tensors); omit --cfg")


def run(opt: PruneOptions) -> dict:
    """Prune ``opt.weights`` and write ``pruned_model.pt``, ``pruned.yaml``, ``layers.csv`` and ``results.json``."""
    check_options(opt)  # the flags' own checks, for options built in Python rather than parsed
    device = select_device(opt.device)
    src_path = resolve_weights(opt.weights)
    model, ckpt = load_model(src_path, device="cpu")
    if opt.cfg:
        check_cfg_matches(opt.cfg, model)
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise ValueError(f"{src_path}: the model has no BatchNorm layers, so there are no gammas to rank channels by "
                         "(was it exported fused?); prune the training checkpoint instead")
    source = model
    layer_report = None
    if opt.layers:
        model, layer_report = prune_layers(model, opt.layers)
        print(layer_report.table() if hasattr(layer_report, "table") else layer_report)
    groups = build_groups(model)
    scores = channel_scores(opt, model, groups, device)
    opt = replace(opt)  # the searches' decisions are applied to this run's copy, never to the caller's options
    rounding = choose_round(opt, source, model, groups, scores) if opt.round == "auto" else None
    if rounding is not None:
        opt.round, opt.percent = rounding["picked"], rounding["percent"] if opt.percent > 0 else 0.0
    budget = search_budget(opt, source, model, groups, scores) if has_target(opt) else None
    if budget is not None:
        opt.percent = budget["percent"]
    guard = search_map_guard(opt, source, model, groups, scores, device) if opt.max_map_drop else None
    if guard is not None:
        opt.percent = guard["percent"]
    plan = compute_masks(model, groups, opt.percent, mode=opt.mode, min_channels=opt.min_channels,
                         round_to=opt.round, scores=scores)
    print(f"Safe maximum: --percent {plan.safe_percent:.4f} ({opt.importance} threshold {plan.safe_threshold:.4g}; "
          f"above it a layer would lose every channel). Using --percent {opt.percent:.4f} -> threshold "
          f"{plan.threshold:.4g}")
    masked = masked_model(model, plan, keep_beta=opt.fold_beta)
    pruned, report = prune_model(model, plan, fold_beta=opt.fold_beta)
    print(report.table())

    data = load_dataset_config(opt.data) if opt.bn_recal or not opt.noval else None
    if data is not None and len(model.names) != data["nc"]:
        raise ValueError(f"{opt.weights} has {len(model.names)} classes but {opt.data} has nc={data['nc']}")
    # The check above compared the pruned model with its masked reference as surgery left it; recalibration then
    # re-measures the BN statistics of the network as it now is, and that model is the one saved.
    final = recalibrated(opt, data, model, masked, plan, device) if opt.bn_recal else pruned

    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    res = {"weights": str(src_path), "percent": opt.percent, "mode": opt.mode, "round": opt.round,
           "importance": opt.importance, "layers": opt.layers, "fold_beta": opt.fold_beta,
           "threshold": plan.threshold,
           "safe_percent": plan.safe_percent, "safe_threshold": plan.safe_threshold,
           "params": {"before": count_params(source), "after": count_params(pruned)},
           "gflops": {"before": count_flops(source, 640), "after": count_flops(pruned, 640)},
           "max_abs_diff_vs_masked": report.max_abs_diff,
           "fold_diff_vs_masked_keep_beta": report.to_dict()["fold_diff"],
           "bn_recal_images": opt.bn_recal_images if opt.bn_recal else 0}
    if rounding is not None:
        res["round_auto"] = rounding
    if budget is not None:
        res["budget"] = budget
    if guard is not None:
        res["map_guard"] = guard
    if not opt.noval:
        res.update(_validate(opt, data, device, source, masked, pruned, final if opt.bn_recal else None, save_dir))
    res["saved"] = "recalibrated" if opt.bn_recal else "pruned"
    if "recalibrated" in res and res["recalibrated"]["mAP50_95"] < res["pruned"]["mAP50_95"]:
        # Nothing to repair (the removed channels were already ~0, e.g. after targeted sparsity): the training-time
        # statistics fit better than 256 unaugmented images' estimate. Keep the better model, and say so.
        print(f"BN recalibration lowered val mAP50-95 ({res['pruned']['mAP50_95']:.4f} -> "
              f"{res['recalibrated']['mAP50_95']:.4f}): saving the model with its training-time BN statistics")
        final, res["saved"] = pruned, "pruned"
    out_pt = save_dir / "pruned_model.pt"
    info = {"source": str(src_path), "percent": opt.percent, "mode": opt.mode, "round": opt.round,
            "importance": opt.importance, "layers": opt.layers, "fold_beta": opt.fold_beta,
            "bn_recal_images": res["bn_recal_images"],
            "saved": res["saved"], "report": report.to_dict()}
    atomic_save(make_checkpoint(final, half=True, epoch=-1, pruning=info,
                                train_args=ckpt.get("train_args") or {}), out_pt)
    (save_dir / "pruned.yaml").write_text(yaml.safe_dump(pruned.arch(), sort_keys=False))
    _write_layers_csv(report, save_dir / "layers.csv")
    res["file_size_mb"] = {"before": src_path.stat().st_size / 1e6, "after": out_pt.stat().st_size / 1e6}
    if opt.latency or opt.target_latency:
        res["latency_ms"] = _latency(source, pruned, opt.imgsz, opt.threads)
        if opt.target_latency:
            measured = latency_pair(source, pruned, opt, repeats=50)[0]
            budget.update(measured_ms=measured, measured_vs_target=measured / opt.target_latency)
            print(f"Latency budget: target {opt.target_latency:.2f} ms, predicted {budget['predicted_ms']:.2f} ms, "
                  f"measured again {measured:.2f} ms ({opt.latency_backend}, {opt.threads} thread(s), {opt.imgsz} px)")
    (save_dir / "results.json").write_text(json.dumps(res, indent=1, default=_json_default))
    print(_summary_table(res))
    print(f"Pruned model saved to {out_pt}\nResults saved to {save_dir}")
    res["save_dir"] = str(save_dir)
    return res


def channel_scores(opt: PruneOptions, model: nn.Module, groups: list, device: torch.device) -> dict:
    """Channel scores for ``--importance``: from the BN gammas, or ``taylor`` from gradients on the training set
    (``--taylor-batches`` batches, augmented as training with hyp.scratch-low), ``taylor_flops`` that per MAC."""
    if not opt.importance.startswith("taylor"):
        return bn_importance(model, groups, importance=opt.importance)

    data = load_dataset_config(opt.data)
    if len(model.names) != data["nc"]:
        raise ValueError(f"--importance taylor: {opt.weights} has {len(model.names)} classes but {opt.data} has "
                         f"nc={data['nc']}; the loss needs the data the model was trained on")
    hyp = load_hyp("data/hyps/hyp.scratch-low.yaml").scaled(model.detect.nl, data["nc"], opt.imgsz)
    loader, _ = create_dataloader(data["train"], opt.imgsz, opt.batch_size, int(model.stride.max()), hyp=hyp,
                                  augment=True, shuffle=True, seed=0, workers=opt.workers, prefix="Taylor: ",
                                  nc=data["nc"])
    print(f"Estimating each channel's Taylor importance on {opt.taylor_batches} training batches...")
    m = copy.deepcopy(model).to(device)
    scores = taylor_importance(m, groups, loader, ComputeLoss(m.detect, hyp), max_batches=opt.taylor_batches)
    if opt.importance == "taylor_flops":  # importance per MAC, on a scale that does not depend on the image size
        macs = relative_macs(model, groups, opt.imgsz)
        scores = {k: v / macs[k] for k, v in scores.items()}
    return scores


def _json_default(x):  # noqa: ANN001, ANN202
    return float(x) if hasattr(x, "__float__") else str(x)


def _write_layers_csv(report, path: Path) -> None:  # noqa: ANN001
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "original_channels", "kept_channels", "prunable", "reason"])
        for r in report.rows:
            w.writerow([r.path, r.original, r.kept, r.prunable, r.reason])


def _validate(opt: PruneOptions, data: dict, device: torch.device, original: nn.Module, masked: nn.Module,
              pruned: nn.Module, recalibrated: nn.Module | None, save_dir: Path) -> dict:
    score = scorer(data, opt.imgsz, int(original.stride.max()), original.names, batch_size=opt.batch_size,
                   workers=opt.workers, device=device)
    models = [("original", original), ("masked", masked), ("pruned", pruned)]
    if recalibrated is not None:
        models.append(("recalibrated", recalibrated))
    out = {}
    for name, m in models:
        print(f"\nValidating the {name} model...")
        last = name == models[-1][0]  # the saved model's plots
        res = score(m, save_dir=save_dir if last else None, plots=last)
        print_results(res)
        out[name] = res
    return out


def _latency(original: nn.Module, pruned: nn.Module, imgsz: int, threads: int) -> dict:
    """Batch-1 CPU latency of both models in PyTorch and ONNX Runtime (median of 50 runs each), timed interleaved: on
    a busy machine, timing one model after the other handed the load of that moment to one of them (a 25%-pruned
    yolov5n came out 3.5x slower)."""
    t = time_models([Timed("before", original, imgsz), Timed("after", pruned, imgsz)], threads=threads, repeats=50,
                    rounds=10)
    return {"before": t["before"]["torch_ms"], "after": t["after"]["torch_ms"],
            "p90": {k: t[k]["torch_p90_ms"] for k in t},
            "torch": {k: t[k]["torch_ms"] for k in t}, "onnxruntime": {k: t[k]["ort_ms"] for k in t},
            "onnxruntime_p90": {k: t[k]["ort_p90_ms"] for k in t}, "threads": threads, "imgsz": imgsz}


def _summary_table(res: dict) -> str:
    rows = [("parameters", f"{res['params']['before']:,}", f"{res['params']['after']:,}"),
            ("GFLOPs (640)", f"{res['gflops']['before']:.2f}", f"{res['gflops']['after']:.2f}"),
            ("file size (MB)", f"{res['file_size_mb']['before']:.2f}", f"{res['file_size_mb']['after']:.2f}")]
    if "latency_ms" in res:
        lat = res["latency_ms"]
        rows.append((f"PyTorch ms (bs 1, {lat['threads']} thread(s), {lat['imgsz']} px)", f"{lat['before']:.1f}",
                     f"{lat['after']:.1f}"))
        rows.append(("ONNX Runtime ms (same)", f"{lat['onnxruntime']['before']:.1f}",
                     f"{lat['onnxruntime']['after']:.1f}"))
    if "original" in res:
        after = ["masked", "pruned"] + (["recalibrated"] if "recalibrated" in res else [])
        for key in ("mAP50_95", "mAP50"):
            rows.append((f"{key.replace('_', '-')} original / {' / '.join(after)}", f"{res['original'][key]:.4f}",
                         " / ".join(f"{res[a][key]:.4f}" for a in after)))
    w = max(len(r[0]) for r in rows)
    lines = [f"{'':<{w}}  {'before':>14}  {'after':>25}"] + [f"{a:<{w}}  {b:>14}  {c:>25}" for a, b, c in rows]
    return "\n".join(lines)
