"""Figures (PNG and SVG) from results that are already computed; nothing here computes.

(a) :func:`energy_accuracy` — accuracy against relative energy (log x), one line per
    method with a +/- std band over seeds, the dense model as a reference point.
(b) :func:`layer_energy` — per-layer energy, stacked by memory level, of several reports
    (e.g. dense and pruned) side by side.
(c) :func:`layer_density` — per-layer density of each method at one budget (and, on an
    array that skips all-zero tiles, the share of tiles each layer keeps).
(d) :func:`utilization_timeline` — effective / gated / idle PEs per cycle of one layer.
(e) :func:`energy_latency_accuracy` — accuracy over the (energy, latency) plane, one panel per method.
(f) :func:`latency_accuracy` — at one energy budget, accuracy against relative latency, one line per method.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from energysim.files import atomic_write_bytes  # noqa: E402

__all__ = [
    "energy_accuracy",
    "energy_latency_accuracy",
    "latency_accuracy",
    "layer_density",
    "layer_energy",
    "save",
    "utilization_timeline",
]

_LEVEL_COLORS = {"dram": "#c0392b", "buffer": "#e67e22", "rf": "#f1c40f", "mac": "#2980b9", "leakage": "#7f8c8d"}
_LEVEL_LABELS = {"dram": "DRAM", "buffer": "global buffer", "rf": "register file", "mac": "MAC", "leakage": "leakage"}
_TIMELINE_POINTS = 2000  # at most this many points are drawn; longer traces are averaged in bins


def save(fig: plt.Figure, path: str | Path) -> list[Path]:
    """Write ``fig`` as PNG and SVG next to each other (``path`` without or with a suffix), atomically."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".png", ".svg") else path
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        target = base.parent / f"{base.name}{suffix}"  # names like density_b0.2 keep their dot
        image = io.BytesIO()
        fig.savefig(image, format=suffix[1:], dpi=150, bbox_inches="tight")
        atomic_write_bytes(target, image.getvalue())
        written.append(target)
    plt.close(fig)
    return written


def energy_accuracy(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    dense_accuracy: float | None = None,
    title: str = "",
) -> list[Path]:
    """Accuracy vs relative energy, one line per method.

    Parameters
    ----------
    rows : sequence of mapping
        One per (method, budget) with ``method``, ``energy_mean``, ``energy_std``
        (relative to dense), ``accuracy_mean``, ``accuracy_std`` (fractions in [0, 1]).
    path : str or Path
        Output path; ``.png`` and ``.svg`` are written.
    dense_accuracy : float, optional
        Accuracy of the dense model, drawn at relative energy 1.
    title : str, optional
        The figure's title (default: "Energy–accuracy trade-off").

    Returns
    -------
    list of Path
        The PNG and SVG files written.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["energy_mean"])
        x = np.array([r["energy_mean"] for r in pts])
        y = 100 * np.array([r["accuracy_mean"] for r in pts])
        sd = 100 * np.array([r["accuracy_std"] for r in pts])
        xerr = np.array([r["energy_std"] for r in pts])
        (line,) = ax.plot(x, y, marker="o", label=method)
        ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.2, linewidth=0)
        if np.any(xerr > 0):
            ax.errorbar(x, y, xerr=xerr, fmt="none", ecolor=line.get_color(), alpha=0.6)
    if dense_accuracy is not None:
        ax.scatter([1.0], [100 * dense_accuracy], marker="*", s=160, color="black", zorder=5, label="dense")
    ax.set_xscale("log")
    # Ticks where the points are (budgets like 0.15 fall between the default log ticks); of two
    # closer than 10 % (0.25 and 0.26, 0.39 and 0.4) only the first, so that labels never overlap.
    ticks = []
    for tick in sorted({float(f"{r['energy_mean']:.2g}") for r in rows if r["energy_mean"] > 0} | {1.0}):
        if not ticks or tick > 1.1 * ticks[-1]:
            ticks.append(tick)
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("simulated energy, relative to the dense model (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="method (mean ± std over seeds)", fontsize=8)
    ax.set_title(title or "Energy–accuracy trade-off")
    return save(fig, path)


def energy_latency_accuracy(rows: Sequence[Mapping[str, Any]], path: str | Path, *, title: str = "") -> list[Path]:
    """Accuracy over the (energy, latency) plane: one panel per method, a point per cell of the grid.

    Parameters
    ----------
    rows : sequence of mapping
        One per (method, budget, latency budget) with ``method``, ``energy_mean`` and
        ``latency_mean`` (simulated energy and cycles relative to dense) and ``accuracy_mean``.
    path : str or Path
    title : str, optional

    Returns
    -------
    list of Path
    """
    methods = sorted({r["method"] for r in rows})
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 4.0), squeeze=False, sharey=True)
    low = min(100 * r["accuracy_mean"] for r in rows)
    high = max(100 * r["accuracy_mean"] for r in rows)
    points = None
    for ax, method in zip(axes[0], methods):
        pts = [r for r in rows if r["method"] == method]
        x = [r["energy_mean"] for r in pts]
        y = [r["latency_mean"] for r in pts]
        accuracy = [100 * r["accuracy_mean"] for r in pts]
        points = ax.scatter(x, y, c=accuracy, cmap="viridis", vmin=low, vmax=high, s=140, edgecolors="black")
        for xi, yi, a in zip(x, y, accuracy):
            ax.annotate(f"{a:.1f}", (xi, yi), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=7)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("simulated energy / dense")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("simulated cycles / dense")
    fig.colorbar(points, ax=list(axes[0]), label="test accuracy (%), mean over seeds")
    fig.suptitle(title or "Accuracy over energy and latency")
    return save(fig, path)


def latency_accuracy(
    rows: Sequence[Mapping[str, Any]], path: str | Path, *, budget: float, title: str = ""
) -> list[Path]:
    """At the energy budget ``budget``: accuracy against simulated cycles / dense, one line per method.

    Parameters
    ----------
    rows : sequence of mapping
        As for :func:`energy_latency_accuracy`, with ``budget``, ``accuracy_std`` and ``latency_std``.
    path : str or Path
    budget : float
        The energy budget whose rows are drawn.
    title : str, optional

    Returns
    -------
    list of Path
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r for r in rows if r["method"] == method and r["budget"] == budget),
                     key=lambda r: r["latency_mean"])
        if not pts:
            continue
        x = np.array([r["latency_mean"] for r in pts])
        y = 100 * np.array([r["accuracy_mean"] for r in pts])
        sd = 100 * np.array([r["accuracy_std"] for r in pts])
        (line,) = ax.plot(x, y, marker="o", label=method)
        ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.errorbar(x, y, xerr=np.array([r["latency_std"] for r in pts]), fmt="none", ecolor=line.get_color(),
                    alpha=0.6)
    ax.set_xlabel("simulated cycles, relative to the dense model")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(title="method (mean ± std over seeds)", fontsize=8)
    ax.set_title(title or f"Latency–accuracy at energy budget {budget:g}")
    return save(fig, path)


def layer_energy(reports: Mapping[str, Mapping[str, Any]], path: str | Path, *, title: str = "") -> list[Path]:
    """Per-layer energy stacked by memory level, one bar per report in each layer group.

    Parameters
    ----------
    reports : mapping of label to report dict
        ``energysim.Report.to_dict()`` outputs (same layers), e.g. {"dense": ..., "pruned": ...}.
    """
    labels = list(reports)
    first = reports[labels[0]]
    layers = [l["name"] for l in first["layers"]]
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(min(12.0, max(6.0, 0.9 * len(layers) * len(labels) + 2)), 4.6))
    x = np.arange(len(layers))
    hatches = ["", "//", "..", "xx"]
    for j, label in enumerate(labels):
        by_name = {l["name"]: l for l in reports[label]["layers"]}
        bottom = np.zeros(len(layers))
        for level, color in _LEVEL_COLORS.items():
            values = np.array([by_name[n]["energy_by_level"][level] for n in layers])
            ax.bar(
                x + (j - (len(labels) - 1) / 2) * width, values, width, bottom=bottom, color=color,
                hatch=hatches[j % len(hatches)], edgecolor="white", linewidth=0.5,
                label=_LEVEL_LABELS[level] if j == 0 else None,
            )
            bottom += values
        for xi, top in zip(x, bottom):
            ax.text(xi + (j - (len(labels) - 1) / 2) * width, top, label, ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(x, layers, rotation=45 if len(layers) > 6 else 0, ha="right" if len(layers) > 6 else "center")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"energy per inference [{first['units']}]")
    ax.margins(y=0.12)
    ax.legend(title="memory level", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or f"{first['model']} on {first['profile']} ({first['estimator']} estimator): energy by level")
    return save(fig, path)


def layer_density(
    densities: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    budget: float | None = None,
    title: str = "",
    quantity: str = "weight density (% nonzero)",
) -> list[Path]:
    """Per-layer weight density of each method (bars grouped by layer); or, with ``quantity``,
    another per-layer share, e.g. the tiles kept."""
    methods = list(densities)
    layers = list(densities[methods[0]])
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(min(11.0, max(6.0, 0.7 * len(layers) * len(methods) + 2)), 4.2))
    x = np.arange(len(layers))
    for j, method in enumerate(methods):
        ax.bar(x + (j - (len(methods) - 1) / 2) * width, [100 * densities[method][n] for n in layers], width, label=method)
    ax.set_xticks(x, layers, rotation=45 if len(layers) > 6 else 0, ha="right" if len(layers) > 6 else "center")
    ax.set_xlabel("layer")
    ax.set_ylabel(quantity)
    ax.set_ylim(0, 100)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="method", fontsize=8)
    what = quantity.split(" (")[0]
    ax.set_title(title or (f"Per-layer {what}" + (f" at budget {budget:g} of dense energy" if budget else "")))
    return save(fig, path)


def utilization_timeline(trace: np.ndarray, path: str | Path, *, pes: int, title: str = "") -> list[Path]:
    """Effective, gated and idle PEs per cycle (stacked), from a (cycles, 3) trace."""
    trace = np.asarray(trace, dtype=float)
    cycles = len(trace)
    if cycles > _TIMELINE_POINTS:
        bins = np.array_split(np.arange(cycles), _TIMELINE_POINTS)
        x = np.array([b[0] for b in bins])
        trace = np.array([trace[b].mean(axis=0) for b in bins])
    else:
        x = np.arange(cycles)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.stackplot(
        x, 100 * trace[:, 0] / pes, 100 * trace[:, 1] / pes, 100 * trace[:, 2] / pes,
        labels=["effective MAC", "clock-gated MAC (zero operand)", "idle"],
        colors=["#27ae60", "#f39c12", "#d5d8dc"],
    )
    ax.set_xlim(0, max(cycles - 1, 1))
    ax.set_ylim(0, 100)
    ax.set_xlabel("cycle")
    ax.set_ylabel(f"PEs (% of {pes})")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or "Array utilization over time")
    return save(fig, path)
