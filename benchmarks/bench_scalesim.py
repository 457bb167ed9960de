"""Benchmark: the same dense conv layers through this estimator and through SCALE-Sim 3.0.0.

Prints, per layer and dataflow, both cycle counts (they must agree exactly) and the
time each tool takes per layer; then the speed ratio. SCALE-Sim runs in the
environment made by ``benchmarks/setup_scalesim_env.sh`` (``.bench_venv``; it needs
numpy 1.26), in CALC bandwidth mode; its time is measured inside that process
around each layer's simulation, ours around ``estimate_layer`` after numba has
compiled (best of 5 runs).

Run: ``bash benchmarks/setup_scalesim_env.sh`` once, then
``.venv/bin/python benchmarks/bench_scalesim.py [--array 32] [--dataflows ws,os,is]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from _scalesim_runner import LAYER_KEYS, ROOT, run_scalesim

from energysim.estimators.systolic import estimate_layer

# The builder of the layers and of the profile is the agreement tests' own (tests/scalesim_agreement.py).
sys.path.insert(0, str(ROOT / "tests"))
from scalesim_agreement import layer_spec, scalesim_profile  # noqa: E402

# AlexNet-like and ResNet-like convs with no padding ((H - F) % stride == 0, so SCALE-Sim's
# output size equals PyTorch's): name, ifmap h, w, filter h, w, channels, filters, stride.
LAYERS = [
    dict(zip(LAYER_KEYS, layer))
    for layer in (
        ("alex_conv1", 227, 227, 11, 11, 3, 96, 4),
        ("alex_conv2", 31, 31, 5, 5, 96, 256, 1),
        ("alex_conv3", 15, 15, 3, 3, 256, 384, 1),
        ("res_3x3", 30, 30, 3, 3, 64, 64, 1),
        ("res_1x1", 28, 28, 1, 1, 128, 256, 1),
    )
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--array", type=int, default=32, help="square array side (default 32)")
    parser.add_argument("--dataflows", default="ws,os,is")
    args = parser.parse_args()
    ratios = []
    agree = True
    print(f"{'layer':<12}{'df':>4}{'scalesim cyc':>14}{'ours cyc':>11}{'scalesim s':>12}{'ours ms':>10}{'speed-up':>11}")
    for dataflow in args.dataflows.split(","):
        try:
            theirs = run_scalesim(args.array, args.array, dataflow, LAYERS)
        except (OSError, ValueError) as err:  # SCALE-Sim missing or failed; ValueError: its output is not JSON
            print(f"bench_scalesim.py: error: {err}", file=sys.stderr)
            return 2
        profile = scalesim_profile(args.array, args.array, dataflow)
        for layer, ref in zip(LAYERS, theirs, strict=True):
            spec = layer_spec(layer)
            estimate_layer(spec, profile)  # compile / warm caches
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                ours = estimate_layer(spec, profile)
                best = min(best, time.perf_counter() - start)
            ratio = ref["seconds"] / best
            ratios.append(ratio)
            same = ours.compute_cycles == ref["compute_cycles"]
            agree &= same
            print(f"{layer['name']:<12}{dataflow:>4}{ref['compute_cycles']:>14}{ours.compute_cycles:>11}"
                  f"{ref['seconds']:>12.3f}{best * 1e3:>10.2f}{ratio:>10.0f}x{'' if same else '  MISMATCH'}")  # fmt: skip
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\ncycle counts agree on all {len(ratios)} runs: {agree}")
    print(f"speed-up over SCALE-Sim: min {min(ratios):.0f}x, geometric mean {geo:.0f}x, max {max(ratios):.0f}x")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
