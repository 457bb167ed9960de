"""Print a sweep's summary.csv as the Markdown table of docs/results.md.

One row per method (variant), one column per budget: test accuracy in % as mean ± sample std
over seeds, the mean simulated energy relative to dense in brackets, "n.r." where the budget is
below what the structure can reach, "k/3 at chance" where k seeds collapsed and "k/3 n.r." where
the budget is below the floor of k seeds (the mean is over the others). A sweep with latency
budgets gives one grid per method instead: rows energy budget, columns latency budget, the mean
simulated energy and cycles relative to dense in brackets.

Usage: python scripts/results_table.py SWEEP_DIR
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from compress.sweep import read_summary


def _cell(r: dict | None, *stats: str) -> str:
    """One table cell: accuracy mean ± std over seeds and the means of ``stats`` in brackets."""
    if r is None:
        return ""
    if r["feasible_seeds"] == 0 or math.isnan(r["accuracy_mean"]):
        return "n.r."
    means = " / ".join(f"{r[f'{name}_mean']:.3f}" for name in stats)
    text = f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} ({means})"
    if r.get("collapsed_seeds"):
        text += f", {r['collapsed_seeds']}/{r['seeds']} at chance"
    if r["feasible_seeds"] < r["seeds"]:
        text += f", {r['seeds'] - r['feasible_seeds']}/{r['seeds']} n.r."
    return text


def latency_grids(rows: list[dict]) -> None:
    """One Markdown grid per method: energy budgets down, latency budgets across."""
    energies = sorted({r["budget"] for r in rows}, reverse=True)
    latencies = sorted({r["latency_budget"] for r in rows}, reverse=True)
    by = {(r["method"], r["budget"], r["latency_budget"]): r for r in rows}
    for method in dict.fromkeys(r["method"] for r in rows):
        print(f"**`{method}`**: accuracy % (simulated energy / cycles relative to dense)\n")
        print("| energy \\ latency | " + " | ".join(f"{b:g}" for b in latencies) + " |")
        print("| --- |" + " --- |" * len(latencies))
        for energy in energies:
            cells = [_cell(by.get((method, energy, latency)), "energy", "latency") for latency in latencies]
            print(f"| {energy:g} | " + " | ".join(cells) + " |")
        print()


def main(root: str) -> None:
    rows = read_summary(Path(root))
    if any(r.get("latency_budget") is not None for r in rows):
        latency_grids(rows)
        return
    budgets = sorted({r["budget"] for r in rows}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["budget"]): r for r in rows}
    print("| method | " + " | ".join(f"{b:g}" for b in budgets) + " |")
    print("| --- |" + " --- |" * len(budgets))
    for method in methods:
        cells = [_cell(by.get((method, budget)), "energy") for budget in budgets]
        print(f"| `{method}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
