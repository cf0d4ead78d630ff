"""slim.py --search's table and plot: every candidate with its knobs, cost, speed and accuracy, the chosen one
marked, and mAP50-95 against latency with the Pareto front of the fine-tuned models."""

from __future__ import annotations

from engine.export.common import imgsz_text
from engine.sweep.pareto import pareto_front
from utils.plots import new_figure

__all__ = ["format_search", "plot_search"]


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_search(result: dict) -> str:
    """The Markdown table of search.json: the source, then each candidate (screened only, or fine-tuned)."""
    b, key = result["budget"], result["budget"]["ms_key"]
    lines = [f"| candidate | kind | input | precision | GFLOPs | {b['backend']} ms | speed-up | meets {b['speedup']:.3g}x "
             "| val mAP50-95 screened | epochs | val mAP50-95 | test mAP50-95 | |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    s = result["source"]
    lines.append(f"| source | - | {imgsz_text(s['imgsz'])} | fp32 | {s['gflops']:.3f} | {s[key]:.2f} | 1.00x | | | | "
                 f"{_f(s.get('map50_95_val'), '.4f')} | {_f(s.get('map50_95_test'), '.4f')} | |")
    for r in result["candidates"]:
        note = "**chosen**" if r.get("chosen") else ("INT8 guard" if not r.get("kept", True) else "")
        lines.append(f"| {r['name']} | {r['family']} | {imgsz_text(r['imgsz'])} | {r['precision']} | {r['gflops']:.3f} | "
                     f"{r[key]:.2f} | {r['speedup']:.2f}x | {'yes' if r['meets_budget'] else 'no'} | "
                     f"{r['map50_95_screen']:.4f} | {r['epochs'] or '-'} | {_f(r.get('map50_95_val'), '.4f')} | "
                     f"{_f(r.get('map50_95_test'), '.4f')} | {note} |")
    chosen = result.get("chosen")
    tail = (f"Chosen: {chosen['name']} ({chosen['file']}, input {imgsz_text(chosen['imgsz'])} px)." if chosen else
            "No fine-tuned candidate met the budget as measured.")
    return ("\n".join(lines) + f"\n\nBatch 1, {b['threads']} thread(s), {b['backend']}, each model timed interleaved "
            f"with the source ({b['source_ms']:.2f} ms; budget {b['target_ms']:.2f} ms). Screened: before "
            f"fine-tuning. Finalists (the best-screened of each kind) fine-tuned {result['epochs']} epochs each; an "
            f"INT8 model is dropped when its val mAP50-95 falls more than {result['int8_guard']:g} below its float "
            f"model's.\n{tail}")


def plot_search(result: dict):  # noqa: ANN201 - a matplotlib Figure
    """Val mAP50-95 against latency: screened candidates hollow, fine-tuned ones filled, the source a star, the
    budget a dashed line, the Pareto front of the fine-tuned models joined, the chosen one circled."""
    b, key = result["budget"], result["budget"]["ms_key"]
    fig, ax = new_figure(figsize=(8, 5.5))
    s = result["source"]
    ax.scatter([s[key]], [s["map50_95_val"]], marker="*", s=160, color="black", label="source", zorder=4)
    colors = {"slim": "tab:blue", "size": "tab:orange", "int8": "tab:purple", "combination": "tab:green"}
    done = [r for r in result["candidates"] if r.get("map50_95_val") is not None]
    for r in result["candidates"]:
        c = colors.get(r["family"], "grey")
        ax.scatter([r[key]], [r["map50_95_screen"]], facecolors="none", edgecolors=c, s=40, zorder=3)
        if r.get("map50_95_val") is not None:
            ax.plot([r[key], r[key]], [r["map50_95_screen"], r["map50_95_val"]], ":", color=c, linewidth=1)
            ax.scatter([r[key]], [r["map50_95_val"]], color=c, s=50, zorder=3, label=f"{r['name']} ({r['family']})")
        ax.annotate(r["name"], (r[key], r.get("map50_95_val") or r["map50_95_screen"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=7)
    front = [done[i] for i in pareto_front([r[key] for r in done], [r["map50_95_val"] for r in done])]
    if front:
        ax.plot([r[key] for r in front], [r["map50_95_val"] for r in front], "--", color="tab:red", linewidth=1.2,
                label="Pareto front (fine-tuned)", zorder=2)
    for r in result["candidates"]:
        if r.get("chosen"):
            ax.scatter([r[key]], [r["map50_95_val"]], s=260, facecolors="none", edgecolors="tab:red", linewidths=2,
                       label="chosen", zorder=5)
    ax.axvline(b["target_ms"], color="grey", linestyle="--", linewidth=1, label=f"budget {b['speedup']:.3g}x")
    ax.set(xlabel=f"{b['backend']} ms (batch 1, {b['threads']} thread(s))", ylabel="val mAP50-95",
           title="Candidates: hollow = screened (no fine-tune), filled = fine-tuned")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    return fig
