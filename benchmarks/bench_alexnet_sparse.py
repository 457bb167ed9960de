"""Benchmark: every AlexNet layer, 30 %-dense random weights, ReLU-sparse inputs, at cycle level.

Input masks come from the real activations of one random image through the dense
model (ReLU zeros; the first layer's input is dense). Arrays: ``tpu-like-128``
(128x128 WS) and the same profile at 32x32. Compile time (or numba cache load) is
measured on a tiny layer first and reported separately.

Run: ``.venv/bin/python benchmarks/bench_alexnet_sparse.py``
"""

from __future__ import annotations

import time

from _alexnet import alexnet_with_activations

from energysim.estimators.systolic import estimate_layer
from energysim.sparsity import LayerSparsity, Sparsity
from energysim.spec import load_profile
from energysim.workload import LayerSpec, Workload


def main() -> None:
    workload, activations = alexnet_with_activations()
    sparsity = Sparsity.synthetic(workload, weight_density=0.3, seed=0).with_inputs_from(activations)

    profiles = {"tpu-like-128": load_profile("tpu-like-128"),
                "32x32 ws": load_profile("tpu-like-128", ["array.rows=32", "array.cols=32"])}  # fmt: skip

    # Compile (or load from numba's cache) every kernel specialisation the timed runs use:
    # dense and sparse masks, conv and linear, both levels.
    tiny_conv = LayerSpec("warm", "conv", (2, 5, 5), (3, 3, 3), 2, 3, (3, 3), (1, 1), (0, 0), (1, 1), 1, False)
    tiny_fc = LayerSpec("warm_fc", "linear", (6,), (3,), 6, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    tiny = Sparsity.synthetic(Workload("warm", (2, 5, 5), (tiny_conv, tiny_fc)), 0.5, 0.5)
    start = time.perf_counter()
    for profile in profiles.values():
        for layer in (tiny_conv, tiny_fc):
            for masks in (LayerSparsity(), tiny[layer.name]):
                for cycle_level in (True, False):
                    estimate_layer(layer, profile, masks, cycle_level=cycle_level)
    print(f"compile / numba cache load: {time.perf_counter() - start:.2f} s")

    for name, profile in profiles.items():
        for cycle_level in (True, False):
            start = time.perf_counter()
            reports = [estimate_layer(layer, profile, sparsity[layer.name], cycle_level=cycle_level) for layer in workload.layers]
            seconds = time.perf_counter() - start
            if cycle_level:
                print(f"\n{name}: {profile.array.rows}x{profile.array.cols} {profile.array.dataflow}")
                print(f"{'layer':<14}{'macs':>12}{'effective':>12}{'cycles':>11}{'stall':>9}{'util':>7}{'energy uJ':>11}")
                for r in reports:
                    print(f"{r.name:<14}{r.macs:>12}{r.effective_macs:>12}{r.cycles:>11}{r.stall_cycles:>9}"
                          f"{r.utilization:>7.3f}{r.energy / 1e6:>11.2f}")  # fmt: skip
            level = "cycle level" if cycle_level else "fold level "
            print(f"{name} {level}: all {len(reports)} layers in {seconds:.3f} s")


if __name__ == "__main__":
    main()
