"""prune.py's searches: the percent that meets a budget (GFLOPs, parameters or a *measured* latency), the largest
percent an accuracy guard allows, and the channel rounding that measures fastest (``--round auto``).

Each search prunes for real at every probe (surgery, then a count, a timing or a validation) and returns its probes,
which prune.py keeps in results.json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from engine.benchmark import LATENCY_BACKENDS, Timed, time_models
from engine.prune.recal import recalibrated
from engine.val.validator import scorer
from models.summary import count_flops, count_params
from pruning import candidate_groups, compute_masks, masked_model, prune_model, safe_max_percent
from pruning.budget import search_accuracy, search_percent
from utils.data import load_dataset_config

if TYPE_CHECKING:
    from engine.prune.options import PruneOptions

__all__ = ["ROUND_CHOICES", "has_target", "latency_pair", "search_budget", "search_map_guard",
           "choose_round"]

# --latency-backend -> engine.benchmark.time_models runtime
ROUND_CHOICES = (1, 4, 8, 16)  # the multiples --round auto compares


def has_target(opt: PruneOptions) -> bool:
    """True when a budget (``--target-gflops``, ``--target-params``, ``--target-latency`` or ``--target-speedup``)
    chooses the percent."""
    return bool(opt.target_gflops or opt.target_params or opt.target_latency or opt.target_speedup)


def _pruner(opt: PruneOptions, model: nn.Module, groups: list, scores: dict) -> Callable[..., nn.Module]:
    """``prune(p, round_to=opt.round)``: the model pruned at percent ``p`` (unverified, beta not folded)."""
    def prune(p: float, round_to: int | None = None) -> nn.Module:
        plan = compute_masks(model, groups, p, mode=opt.mode, min_channels=opt.min_channels,
                             round_to=opt.round if round_to is None else round_to, scores=scores)
        return prune_model(model, plan, fold_beta=False, verify=False)[0]

    return prune


def _candidates(opt: PruneOptions, groups: list, scores: dict) -> tuple[int, float]:
    """(number of candidate channels, safe maximum percent)."""
    cands = [g for g in candidate_groups(groups, opt.mode) if g.id in scores]
    return sum(g.width for g in cands), safe_max_percent(scores, cands, opt.min_channels)[0]


def latency_pair(source: nn.Module, pruned: nn.Module | None, opt: PruneOptions,
                  repeats: int = 20) -> tuple[float, float]:
    """(pruned ms, unpruned ms) in ``--latency-backend``, batch 1, ``--threads``, at ``--imgsz``, timed interleaved
    (``pruned`` None: the unpruned model alone, both figures its own)."""
    rt = LATENCY_BACKENDS[opt.latency_backend]
    items = [Timed("unpruned", source, opt.imgsz)] + ([Timed("pruned", pruned, opt.imgsz)] if pruned else [])
    t = time_models(items, threads=opt.threads, repeats=repeats, rounds=4, runtimes=(rt,))
    return t["pruned" if pruned else "unpruned"][f"{rt}_ms"], t["unpruned"][f"{rt}_ms"]


def search_budget(opt: PruneOptions, source: nn.Module, model: nn.Module, groups: list, scores: dict) -> dict:
    """The smallest prune that meets ``--target-gflops`` (at ``--imgsz``), ``--target-params``, ``--target-latency``
    or ``--target-speedup``: the search's record for results.json, its decision in ``percent``.

    Latency probes are measured, each interleaved with the unpruned model; a probe's latency is its ratio to the
    unpruned model times the median of all the unpruned model's timings so far, so a load change during the search
    moves both alike and is divided out.
    """
    prune = _pruner(opt, model, groups, scores)
    n, safe = _candidates(opt, groups, scores)
    timed = bool(opt.target_latency or opt.target_speedup)
    base: list[float] = []
    ratios: dict[float, float] = {}
    if timed:
        where = f"{opt.latency_backend}, {opt.threads} thread(s), {opt.imgsz} px"
        if opt.target_latency:
            what, target = f"ms latency ({where})", opt.target_latency
        else:  # the latency as a share of the unpruned model's: 1 / speed-up
            what, target = f"x the unpruned model's latency ({where})", 1 / opt.target_speedup

        def measure(p: float) -> float:
            ms, ms0 = latency_pair(source, prune(p) if p > 0 else None, opt)
            base.append(ms0)
            ratios[p] = ms / ms0
            return ratios[p] * (float(torch.tensor(base).median()) if opt.target_latency else 1.0)
    elif opt.target_gflops:
        what, target = f"GFLOPs at {opt.imgsz} px", opt.target_gflops

        def measure(p: float) -> float:
            return count_flops(prune(p), opt.imgsz)
    else:
        what, target = "parameters", float(opt.target_params)

        def measure(p: float) -> float:
            return float(count_params(prune(p)))

    r = search_percent(measure, target, n, safe, what)
    print(f"Budget: {target:g} {what} -> --percent {r.percent:.4f} ({r.value:.4g} {what} predicted, "
          f"{len(r.probes)} probes)")
    out = {"target": target, "what": what, "percent": r.percent, "value": r.value, "probes": r.probes}
    if timed:
        unpruned = float(torch.tensor(base).median())
        out.update(backend=opt.latency_backend, threads=opt.threads, imgsz=opt.imgsz, unpruned_ms=unpruned,
                   predicted_ms=r.value if opt.target_latency else r.value * unpruned,
                   predicted_speedup=unpruned / r.value if opt.target_latency else 1 / r.value)
        for q in out["probes"]:
            q["ratio"] = ratios[q["percent"]]
    return out


def search_map_guard(opt: PruneOptions, source: nn.Module, model: nn.Module, groups: list, scores: dict,
                     device: torch.device) -> dict:
    """``--max-map-drop D``: bisection over the percent, each probe pruned, BN-recalibrated (unless --no-bn-recal)
    and validated once, up to ``opt.percent`` (a target's) or the safe maximum without one: the largest prune whose
    val mAP50-95 stays >= original - D, in ``percent`` of the record returned (with every probe, for results.json)."""
    data = load_dataset_config(opt.data)
    score = scorer(data, opt.imgsz, int(source.stride.max()), source.names, batch_size=opt.batch_size,
                   workers=opt.workers, device=device)

    def map50_95(m: nn.Module) -> float:
        return score(m)["mAP50_95"]

    n, safe = _candidates(opt, groups, scores)
    hi = opt.percent if has_target(opt) else safe
    original = map50_95(source)
    floor = original - opt.max_map_drop
    print(f"Accuracy guard: original val mAP50-95 {original:.4f}; searching the largest prune up to --percent {hi:.4f} "
          f"that keeps it >= {floor:.4f} (--max-map-drop {opt.max_map_drop:g})")
    gflops: dict[float, float] = {}

    def measure(p: float) -> float:
        plan = compute_masks(model, groups, p, mode=opt.mode, min_channels=opt.min_channels, round_to=opt.round,
                             scores=scores)
        pruned, _ = prune_model(model, plan, fold_beta=opt.fold_beta, verify=False)
        gflops[p] = count_flops(pruned, opt.imgsz)
        v = map50_95(pruned)
        if opt.bn_recal:  # prune.py saves the better of the two
            masked = masked_model(model, plan, keep_beta=opt.fold_beta)
            v = max(v, map50_95(recalibrated(opt, data, model, masked, plan, device)))
        print(f"  probe --percent {p:.4f}: {gflops[p]:.3f} GFLOPs at {opt.imgsz} px, val mAP50-95 {v:.4f} "
              f"({'ok' if v >= floor else 'too low'})")
        return v

    r = search_accuracy(measure, floor, n, hi)
    binds = "the accuracy guard" if r.percent < hi else ("the budget" if has_target(opt) else "the safe maximum")
    print(f"Accuracy guard: --percent {r.percent:.4f} ({binds} binds)")
    return {"max_map_drop": opt.max_map_drop, "original_map50_95": original, "percent": r.percent, "binds": binds,
            "probes": [{"percent": q["percent"], "gflops": gflops[q["percent"]], "map50_95": q["value"]}
                       for q in r.probes]}


def choose_round(opt: PruneOptions, source: nn.Module, model: nn.Module, groups: list, scores: dict) -> dict:
    """``--round auto``: the multiple of ``ROUND_CHOICES`` whose prune measures fastest at equal GFLOPs.

    The reference prune is ``--percent`` with ``--round 1`` (half the safe maximum when a budget or guard chooses the
    percent later); each larger multiple keeps more channels per layer, so its percent is raised until its GFLOPs are
    at most the reference's. All candidates are timed together, interleaved, in ``--latency-backend``; the record's
    ``picked`` is the fastest and ``percent`` its percent (``--round 1`` itself is a candidate, so the pick is never
    measured slower than it).
    """
    prune = _pruner(opt, model, groups, scores)
    n, safe = _candidates(opt, groups, scores)
    p1 = opt.percent if opt.percent > 0 else round(safe / 2, 4)
    goal = count_flops(prune(p1, 1), opt.imgsz)
    rows = []
    for r in ROUND_CHOICES:
        if r == 1:
            p, g = p1, goal
        else:
            try:
                res = search_percent(lambda q, r=r: count_flops(prune(q, r), opt.imgsz), goal * (1 + 1e-9), n, safe)
            except ValueError:  # this multiple cannot get down to the reference's GFLOPs within the safe maximum
                continue
            p, g = res.percent, res.value
        rows.append({"round": r, "percent": p, "gflops": g})
    rt = LATENCY_BACKENDS[opt.latency_backend]
    t = time_models([Timed(str(row["round"]), prune(row["percent"], row["round"]), opt.imgsz) for row in rows],
                    threads=opt.threads, repeats=40, rounds=8, runtimes=(rt,))
    for row in rows:
        row["latency_ms"] = t[str(row["round"])][f"{rt}_ms"]
    best = min(rows, key=lambda row: row["latency_ms"])
    print("Round auto: " + ", ".join(f"--round {row['round']} {row['latency_ms']:.2f} ms ({row['gflops']:.3f} GFLOPs)"
                                     for row in rows) + f" -> --round {best['round']}")
    return {"reference_percent": p1, "gflops": goal, "backend": opt.latency_backend, "picked": best["round"],
            "percent": best["percent"], "candidates": rows}
