"""Print a sweep's summary.csv as the Markdown table of docs/results.md.

One row per method (variant), one column per budget: test accuracy in % as mean ± sample std
over seeds, the mean simulated energy relative to dense in brackets, "n.r." where the budget is
below what the structure can reach, "k/3 at chance" where k seeds collapsed and "k/3 n.r." where
the budget is below the floor of k seeds (the mean is over the others).

Usage: python scripts/results_table.py SWEEP_DIR
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from compress.sweep import read_summary


def main(root: str) -> None:
    rows = read_summary(Path(root))
    budgets = sorted({r["budget"] for r in rows}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["budget"]): r for r in rows}
    print("| method | " + " | ".join(f"{b:g}" for b in budgets) + " |")
    print("| --- |" + " --- |" * len(budgets))
    for method in methods:
        cells = []
        for budget in budgets:
            r = by.get((method, budget))
            if r is None:
                cells.append("")
            elif r["feasible_seeds"] == 0 or math.isnan(r["accuracy_mean"]):
                cells.append("n.r.")
            else:
                text = f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} ({r['energy_mean']:.3f})"
                if r.get("collapsed_seeds"):
                    text += f", {r['collapsed_seeds']}/{r['seeds']} at chance"
                if r["feasible_seeds"] < r["seeds"]:
                    text += f", {r['seeds'] - r['feasible_seeds']}/{r['seeds']} n.r."
                cells.append(text)
        print(f"| `{method}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
