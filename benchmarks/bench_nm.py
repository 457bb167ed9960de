"""Benchmark: every AlexNet layer at cycle level on nm-32x32, a 2:4 pattern against an unstructured one.

Both patterns have the same weight density (``--density``, at most 0.5 for 2:4): the 2:4 one
(``Sparsity.synthetic(pattern="nm")``) runs N:M-compressed, selecting every PE's input, the
unstructured one (``pattern="random"``) runs dense on the same array. Inputs are the ReLU
zeros of one random image through the dense model (the first layer's input is dense), for
both. Reported: seconds of each (median of ``--repeats``, after compiling every kernel on
tiny layers) and the ratio 2:4 / unstructured, measured in the same run. Seconds are this process's CPU
time (``time.process_time``), so the ratio holds on a machine shared with other jobs.

Run: ``.venv/bin/python benchmarks/bench_nm.py [--density 0.5] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time

from _alexnet import alexnet_with_activations

from energysim.estimators.systolic import estimate_layer
from energysim.sparsity import LayerSparsity, Sparsity
from energysim.spec import load_profile
from energysim.workload import LayerSpec, Workload


def seconds(workload, profile, sparsity, repeats: int) -> tuple[float, list]:
    """Median CPU seconds of simulating every layer at cycle level, and the last run's reports."""
    times, reports = [], []
    for _ in range(repeats):
        start = time.process_time()
        reports = [estimate_layer(layer, profile, sparsity[layer.name]) for layer in workload.layers]
        times.append(time.process_time() - start)
    return statistics.median(times), reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", type=float, default=0.5, help="weight density of both patterns (default 0.5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each pattern (default 3)")
    args = parser.parse_args()

    workload, activations = alexnet_with_activations()
    profile = load_profile("nm-32x32")
    patterns = {
        "2:4": Sparsity.synthetic(workload, args.density, pattern="nm", nm=(2, 4), seed=0).with_inputs_from(activations),
        "unstructured": Sparsity.synthetic(workload, args.density, seed=0).with_inputs_from(activations),
    }

    # Compile (or load from numba's cache) every kernel specialisation the timed runs use.
    tiny_conv = LayerSpec("warm", "conv", (2, 5, 5), (3, 3, 3), 2, 3, (3, 3), (1, 1), (0, 0), (1, 1), 1, False)
    tiny_fc = LayerSpec("warm_fc", "linear", (8,), (3,), 8, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    tiny_workload = Workload("warm", (2, 5, 5), (tiny_conv, tiny_fc))
    start = time.perf_counter()
    for tiny in (Sparsity.synthetic(tiny_workload, 0.5, 0.5, "nm", nm=(2, 4)), Sparsity.synthetic(tiny_workload, 0.5, 0.5)):
        for layer in (tiny_conv, tiny_fc):
            for masks in (LayerSparsity(tiny[layer.name].weight_mask, None), tiny[layer.name]):
                estimate_layer(layer, profile, masks)
    print(f"compile / numba cache load: {time.perf_counter() - start:.2f} s")

    timed = {}
    for name, sparsity in patterns.items():
        timed[name], reports = seconds(workload, profile, sparsity, args.repeats)
        print(f"\n{name} at weight density {args.density:g} on {profile.name}")
        print(f"{'layer':<14}{'nm':>4}{'macs':>12}{'effective':>12}{'cycles':>11}{'stall':>9}{'energy uJ':>11}")
        for r in reports:
            print(f"{r.name:<14}{'yes' if r.extra['nm'] else 'no':>4}{r.macs:>12}{r.effective_macs:>12}{r.cycles:>11}"
                  f"{r.stall_cycles:>9}{r.energy / 1e6:>11.2f}")  # fmt: skip
        print(f"{name}: all {len(reports)} layers at cycle level in {timed[name]:.3f} s (median of {args.repeats})")
    print(f"\nratio 2:4 / unstructured: {timed['2:4'] / timed['unstructured']:.3f}")


if __name__ == "__main__":
    main()
