"""Where a ViT's energy goes: per kind of layer, dense and after pruning, from an `ecc sweep` directory.

Reads the sweep's dense runs and cells (each ``report.json`` lists every layer's simulated
energy) and prints, per method and budget, the mean over seeds of each group's share of the
dense model's energy: patch embedding, attention projections (``in_proj_weight``,
``out_proj``), the attention products (``qk``, ``av``: no weights), MLP, head.

Run: ``.venv/bin/python scripts/vit_attention_energy.py SWEEP_DIR``
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from energysim import Sparsity, load_profile, simulate
from energysim.workload import extract_workload
from energysim.zoo import build_model

GROUPS = (
    ("patch embedding", ("conv_proj",)),
    ("Q/K/V projection", ("in_proj_weight",)),
    ("Q·Kᵀ and attention·V", (".qk", ".av")),
    ("output projection", ("out_proj",)),
    ("MLP", ("mlp.",)),
    ("head", ("heads.",)),
)


def group_of(name: str) -> str:
    return next(g for g, keys in GROUPS if any(k in name for k in keys))


def shares(layers: list[dict], dense: float) -> dict[str, float]:
    out = defaultdict(float)
    for layer in layers:
        out[group_of(layer["name"])] += layer["energy"] / dense
    return out


def main(root: Path) -> None:
    sweep = json.loads((root / "sweep.json").read_text())
    base = sweep["base"]
    profile = load_profile(base["profile"])
    model, shape = build_model(base["model"])
    dense = simulate(extract_workload(model, shape), profile, base["estimator"], Sparsity())
    rows = {"dense": [shares([{"name": l.name, "energy": l.energy} for l in dense.layers], dense.energy)]}
    for report in sorted(root.glob("cells/*/*/report.json")):
        r = json.loads(report.read_text())
        rows.setdefault(f"{r['method']} {r['budget']:g}", []).append(shares(r["layers"], r["energy_dense"]))
    names = [g for g, _ in GROUPS]
    print("| model | " + " | ".join(names) + " | total |")
    print("|---" * (len(names) + 2) + "|")
    for label, runs in rows.items():
        mean = {g: sum(r[g] for r in runs) / len(runs) for g in names}
        print(f"| {label} ({len(runs)}) | " + " | ".join(f"{100 * mean[g]:.1f} %" for g in names)
              + f" | {100 * sum(mean.values()):.1f} % |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
