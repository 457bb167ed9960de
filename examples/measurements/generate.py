"""Regenerate the measurement files of the README's calibration example.

"chip-a" is a made-up accelerator: eyeriss-65nm's array and buffers with other
per-access energies (``CHIP_A`` below: the answer calibration should find). Its
"measurements" are the systolic estimator's energies of lenet5 and alexnet, dense and
pruned (30 % of the weights and 50 % of the inputs nonzero, random pattern, seed 0), one
inference each, with 3 % multiplicative noise (seed 2025), in uJ:

- ``chip-a-power-sim.csv``: every layer's energy split into DRAM, global buffer, register
  files, MACs and leakage, as a gate-level power simulation of the design reports it;
- ``chip-a-board.csv``: what a board gives: the layer's energy, the DRAM rail and the
  leakage (idle power x run time).

Run from the repository root: ``python examples/measurements/generate.py``.
"""

import warnings
from pathlib import Path

import numpy as np

from energysim import load_profile
from energysim.simulate import simulate
from energysim.sparsity import Sparsity
from energysim.workload import extract_workload
from energysim.zoo import build_model

CHIP_A = {
    "compute.mac": 0.8,
    "compute.gated_mac": 0.05,
    "memory.rf.read": 0.6,
    "memory.rf.write": 0.9,
    "memory.buffer.read": 9.0,
    "memory.buffer.write": 11.0,
    "memory.dram.read": 160.0,
    "memory.dram.write": 180.0,
    "leakage_mw": 25.0,
}
FILES = {
    "chip-a-power-sim.csv": ("dram", "buffer", "rf", "mac", "leakage"),
    "chip-a-board.csv": ("dram", "leakage"),
}
NOISE = 0.03
PJ_PER_UJ = 1e6


def main() -> None:
    warnings.simplefilter("ignore")  # pooling and activations are not modelled: expected here
    chip = load_profile("eyeriss-65nm", CHIP_A)
    reports = []
    for name in ("lenet5", "alexnet"):
        model, shape = build_model(name)
        workload = extract_workload(model, shape, name=name)
        for density in ((1.0, 1.0), (0.3, 0.5)):
            sparsity = Sparsity() if density == (1.0, 1.0) else Sparsity.synthetic(workload, *density, "random", 0)
            reports.append((name, density, simulate(workload, chip, "systolic", sparsity)))
    rng = np.random.default_rng(2025)
    for file_name, levels in FILES.items():
        lines = [
            f"# chip-a, measured per layer (synthetic: see generate.py); parts: {', '.join(levels)}",
            ",".join(["model", "layer", "energy", *(f"energy_{k}" for k in levels),
                      "unit", "weight_density", "input_density"]),
        ]
        for name, density, report in reports:
            for layer in report.layers:
                parts = [layer.energy] + [layer.energy_by_level[k] for k in levels]
                measured = [f"{v * (1 + NOISE * rng.standard_normal()) / PJ_PER_UJ:.4g}" for v in parts]
                lines.append(",".join([name, layer.name, *measured, "uJ", *(f"{d:g}" for d in density)]))
        Path(__file__).with_name(file_name).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
