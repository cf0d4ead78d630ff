"""The sweep's figures: mAP50-95 against a cost (latency, parameters) with the Pareto front marked, and the |gamma|
histogram of each sparsity rate.

Figures are bare ``matplotlib.figure.Figure`` objects (no pyplot), so drawing never switches the backend of the
caller's session; ``save_figure`` renders them through Agg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from engine.sweep.pareto import pareto_front
from utils.plots import new_figure

__all__ = ["plot_tradeoff", "plot_gamma_histogram", "save_figure"]

# marker and colour per stage kind
_STYLE = {"base": ("*", "black"), "sparsity": ("o", "tab:blue"), "prune": ("v", "tab:orange"),
          "finetune": ("s", "tab:green")}


def plot_tradeoff(rows: Sequence[Mapping], x: str, xlabel: str, y: str = "mAP50_95", ylabel: str = "mAP50-95",
                  title: str = ""):  # noqa: ANN201 - a matplotlib Figure
    """mAP (``y``) against a cost (``x``) for every finished row, one marker per stage kind, and the Pareto front (no
    other model both cheaper and more accurate) joined by a line and named.

    Returns:
        matplotlib.figure.Figure
    """
    pts = [r for r in rows if r.get("status") == "done" and r.get(x) is not None and r.get(y) is not None]
    fig, ax = new_figure(figsize=(8, 5.5))
    for kind, (marker, color) in _STYLE.items():
        sel = [r for r in pts if r.get("stage") == kind]
        if sel:
            ax.scatter([r[x] for r in sel], [r[y] for r in sel], marker=marker, color=color, s=60 if kind == "base"
                       else 36, label=kind, zorder=3)
    front = [pts[i] for i in pareto_front([r[x] for r in pts], [r[y] for r in pts])]
    # Names only on the front and the base: a grid's other points crowd together, and the table lists them all.
    for r in pts:
        if any(r is f for f in front) or r.get("stage") == "base":
            ax.annotate(str(r["exp_name"]), (r[x], r[y]), textcoords="offset points", xytext=(5, 5), fontsize=7)
    if front:
        ax.plot([r[x] for r in front], [r[y] for r in front], "--", color="tab:red", linewidth=1.2, zorder=2)
        ax.scatter([r[x] for r in front], [r[y] for r in front], s=160, facecolors="none", edgecolors="tab:red",
                   linewidths=1.5, label="Pareto front", zorder=4)
    if not pts:
        ax.text(0.5, 0.5, "no finished runs with this figure yet", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or f"{ylabel} against {xlabel}")
    ax.grid(True, alpha=0.3)
    if pts:
        ax.legend(loc="best", fontsize=8)
    return fig


def plot_gamma_histogram(gammas: np.ndarray, rate: float, base: np.ndarray | None = None,
                         thresholds: Mapping[float, float] | None = None, bins: int = 60):  # noqa: ANN201
    """Histogram of prunable |gamma| after sparsity training at ``rate`` (the base model's in grey behind it), with
    the global thresholds that each prune ratio chose drawn as vertical lines.

    Returns:
        matplotlib.figure.Figure
    """
    fig, ax = new_figure(figsize=(8, 4.5))
    g = np.asarray(gammas, dtype=float)
    top = max(float(g.max()) if g.size else 0.0, float(base.max()) if base is not None and base.size else 0.0, 1e-3)
    edges = np.linspace(0.0, top, bins + 1)
    if base is not None and base.size:
        ax.hist(base, bins=edges, color="grey", alpha=0.45, label=f"base ({(base < 0.01).mean():.0%} < 0.01)")
    if g.size:
        ax.hist(g, bins=edges, color="tab:blue", alpha=0.75, label=f"S={rate:g} ({(g < 0.01).mean():.0%} < 0.01, "
                f"median {np.median(g):.3f})")
    for i, (ratio, thr) in enumerate(sorted((thresholds or {}).items())):
        if thr is not None:
            ax.axvline(thr, color=f"C{(i + 3) % 10}", linestyle="--", linewidth=1.2,
                       label=f"prune ratio {ratio:g}: threshold {thr:.3g}")
    ax.set_yscale("log")  # sparse gammas pile up near 0; a log count keeps the tail visible
    ax.set(xlabel="|gamma| of prunable BatchNorm channels", ylabel="channels",
           title=f"BatchNorm |gamma| after sparsity training, S={rate:g}")
    ax.legend(fontsize=8)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 150) -> Path:  # noqa: ANN001
    """Render ``fig`` to ``path`` (PNG) through Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return path
