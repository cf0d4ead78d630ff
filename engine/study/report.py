"""The slimming study's outputs: a Markdown table, the JSON document, and mAP50-95 against latency with the Pareto
front marked."""

from __future__ import annotations

from pathlib import Path

from utils.files import atomic_write_json, atomic_write_text
from engine.sweep.pareto import pareto_front

__all__ = ["format_markdown", "plot_map_vs_latency", "plot_learning_curves", "write_report"]

COLUMNS = [  # (key, header, format)
    ("name", "model", "{}"), ("imgsz", "input", "{}"), ("params", "params", "{:,}"), ("gflops", "GFLOPs", "{:.2f}"),
    ("size_mb", "file MB", "{:.2f}"), ("map50_val", "mAP50 val", "{:.3f}"), ("map50_95_val", "mAP50-95 val", "{:.3f}"),
    ("map50_95_val_before_recal", "mAP50-95 val before BN recal.", "{:.3f}"), ("map50_test", "mAP50 test", "{:.3f}"),
    ("map50_95_test", "mAP50-95 test", "{:.3f}"), ("torch_ms", "PyTorch ms (p90)", "{:.1f}"),
    ("ort_ms", "ONNX Runtime ms (p90)", "{:.1f}"), ("speedup", "speed-up (ORT)", "{:.2f}x"),
]


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    text = fmt.format(v)
    p90 = row.get(key.replace("_ms", "_p90_ms")) if key.endswith("_ms") else None
    return f"{text} ({p90:.1f})" if p90 is not None else text


def format_markdown(doc: dict) -> str:
    """The study as Markdown: settings, the table, what the chosen model gains over the reference, and errors."""
    s, t = doc["settings"], doc["timing"]
    lines = [f"# Network slimming on {doc['dataset']}", "",
             f"`python benchmarks/slimming.py --data {s['data']} --weights {s['weights']} --imgsz {s['imgsz']} "
             f"--epochs {s['epochs']} --ft-epochs {s['ft_epochs']} --percents {' '.join(f'{p:g}' for p in s['percents'])}"
             f" --sparsity-rate {s['sparsity_rate']} --sparsity-target {s.get('sparsity_target', 0):g} "
             f"--sparsity-importance {s.get('sparsity_importance', 'gamma')} --importance {s.get('importance', 'gamma')}"
             f" --round {s['round']}`", "",
             f"Training at {s['imgsz']} px, batch {s['batch_size']}; `base` and `sparsity` train {s['epochs']} epochs "
             f"from `{s['weights']}`, `reference` {s['epochs'] + s['ft_epochs']} (the recipe's total), each pruned model "
             f"is fine-tuned {s['ft_epochs']} with `{s.get('ft_hyp', 'hyp.finetune_prune.yaml')}`. Sparsity rate used: "
             f"{doc['sparsity_rate'] if doc['sparsity_rate'] is not None else '-'} ({s['sparsity_rate']}), mode "
             f"{s['mode']}. mAPs from val.py (conf 0.001, IoU 0.6) on each split; GFLOPs at the row's input size; "
             f"file MB of the fp16 checkpoint (ONNX rows: the file). Latency: batch 1, {t['threads']} thread(s), "
             f"{t['repeats']} runs per model and runtime, all models interleaved in {t['rounds']} rounds in one "
             f"process after training; median (p90) in ms. Speed-up: `{doc['reference']}`'s ONNX Runtime latency over "
             f"the row's.", ""]
    rows = doc["rows"]
    cols = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    lines.append("| " + " | ".join(h for _, h, _ in cols) + " |")
    lines.append("|" + " --- |" * len(cols))
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, k, f) for k, _, f in cols) + " |")
    by = {r["name"]: r for r in rows}
    best, ref = doc.get("best"), by.get(doc["reference"])
    if best in by and ref is not None:
        b = by[best]
        lines += ["", f"Chosen model `{best}` against `{doc['reference']}`: GFLOPs {b['gflops']:.2f} vs "
                      f"{ref['gflops']:.2f} ({1 - b['gflops'] / ref['gflops']:.0%} fewer), ONNX Runtime "
                      f"{b['ort_ms']:.1f} vs {ref['ort_ms']:.1f} ms ({b['speedup']:.2f}x), PyTorch "
                      f"{b['torch_ms']:.1f} vs {ref['torch_ms']:.1f} ms ({b['speedup_torch']:.2f}x), mAP50-95 val "
                      f"{b['map50_95_val']:.3f} vs {ref['map50_95_val']:.3f} "
                      f"({100 * (b['map50_95_val'] - ref['map50_95_val']):+.1f} points)"
                  + (f", test {b['map50_95_test']:.3f} vs {ref['map50_95_test']:.3f} "
                     f"({100 * (b['map50_95_test'] - ref['map50_95_test']):+.1f} points)."
                     if b.get("map50_95_test") is not None and ref.get("map50_95_test") is not None else ".")]
    for k, e in doc.get("errors", {}).items():
        lines += ["", f"**{k} failed**: {e}"]
    return "\n".join(lines) + "\n"


def plot_map_vs_latency(doc: dict):  # noqa: ANN201 - a matplotlib Figure
    """mAP50-95 (val) against ONNX Runtime latency, every row named, the Pareto front joined and ringed."""
    from matplotlib.figure import Figure

    pts = [r for r in doc["rows"] if r.get("ort_ms") is not None and r.get("map50_95_val") is not None]
    fig = Figure(figsize=(9, 6), tight_layout=True)
    ax = fig.subplots()
    colour = {"base": "black", "reference": "black", "sparsity": "tab:blue", "pruned": "tab:orange",
              "finetune": "tab:green", "input": "tab:purple", "onnx": "tab:red", "int8": "tab:brown"}
    for i, r in enumerate(sorted(pts, key=lambda r: (r["ort_ms"], r["map50_95_val"]))):
        kind = r["name"].split("_")[0]
        ax.scatter(r["ort_ms"], r["map50_95_val"], color=colour.get(kind, "gray"), s=50, zorder=3,
                   marker="*" if kind == "reference" else "o")
        # Alternate label sides so that neighbouring points' names do not overprint each other.
        ax.annotate(r["name"], (r["ort_ms"], r["map50_95_val"]), textcoords="offset points",
                    xytext=(7, 6 if i % 2 == 0 else -12), fontsize=9)
    front = [pts[i] for i in pareto_front([r["ort_ms"] for r in pts], [r["map50_95_val"] for r in pts])]
    if front:
        ax.plot([r["ort_ms"] for r in front], [r["map50_95_val"] for r in front], "--", color="tab:red", lw=1.2,
                zorder=2)
        ax.scatter([r["ort_ms"] for r in front], [r["map50_95_val"] for r in front], s=200, facecolors="none",
                   edgecolors="tab:red", linewidths=1.5, label="Pareto front", zorder=4)
        ax.legend(loc="lower right")
    if not pts:
        ax.text(0.5, 0.5, "no timed rows yet", ha="center", va="center", transform=ax.transAxes)
    t = doc["timing"]
    ax.set(xlabel=f"ONNX Runtime latency, ms (batch 1, {t['threads']} thread(s), median)", ylabel="mAP50-95 (val)",
           title=f"Network slimming on {doc['dataset']}: accuracy against measured latency")
    ax.grid(True, alpha=0.3)
    return fig


def plot_learning_curves(doc: dict):  # noqa: ANN201 - a matplotlib Figure
    """Train loss (box + obj + cls) per epoch of every training stage on the recipe's epoch axis."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), tight_layout=True)
    ax = fig.subplots()
    style = {"base": ("black", ":"), "reference": ("black", "-"), "sparsity": ("tab:blue", "-")}
    others = iter(("tab:green", "tab:orange", "tab:purple", "tab:red", "tab:brown", "tab:olive"))
    for name, c in doc.get("curves", {}).items():
        colour, ls = style.get(name) or (next(others, "gray"), "-")
        ax.plot(range(c["start"], c["start"] + len(c["loss"])), c["loss"], ls, color=colour, label=name, lw=1.5)
    ax.set(xlabel="epoch of the recipe (fine-tuning continues after sparsity training)",
           ylabel="train loss (box + obj + cls)", title=f"Learning curves on {doc['dataset']}")
    ax.grid(True, alpha=0.3)
    if doc.get("curves"):
        ax.legend()
    return fig


def write_report(doc: dict, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.json``, ``<stem>.png`` (mAP against latency) and ``<stem>_curves.png`` (learning
    curves) into ``out_dir``; print the Markdown."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = format_markdown(doc)
    files = [atomic_write_text(out_dir / f"{stem}.md", md), atomic_write_json(out_dir / f"{stem}.json", doc)]
    for fig, png in ((plot_map_vs_latency(doc), out_dir / f"{stem}.png"),
                     (plot_learning_curves(doc), out_dir / f"{stem}_curves.png")):
        FigureCanvasAgg(fig)
        fig.savefig(png, dpi=110)
        files.append(png)
    print(md)
    print("slimming: results saved to " + ", ".join(str(f) for f in files), flush=True)
    return files
