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
import json
import subprocess
import sys
import time
from pathlib import Path

from energysim.estimators.systolic import estimate_layer
from energysim.spec import load_profile
from energysim.workload import LayerSpec

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / ".bench_venv" / "bin" / "python"

# AlexNet-like and ResNet-like convs with no padding ((H - F) % stride == 0, so SCALE-Sim's
# output size equals PyTorch's): name, ifmap h, w, filter h, w, channels, filters, stride.
LAYERS = [
    ("alex_conv1", 227, 227, 11, 11, 3, 96, 4),
    ("alex_conv2", 31, 31, 5, 5, 96, 256, 1),
    ("alex_conv3", 15, 15, 3, 3, 256, 384, 1),
    ("res_3x3", 30, 30, 3, 3, 64, 64, 1),
    ("res_1x1", 28, 28, 1, 1, 128, 256, 1),
]


def _spec(name, h, w, fh, fw, c, n, s):
    out = ((h - fh) // s + 1, (w - fw) // s + 1)
    return LayerSpec(name, "conv", (c, h, w), (n, *out), c, n, (fh, fw), (s, s), (0, 0), (1, 1), 1, False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--array", type=int, default=32, help="square array side (default 32)")
    parser.add_argument("--dataflows", default="ws,os,is")
    args = parser.parse_args()
    if not BENCH_PYTHON.exists():
        print(f"missing {BENCH_PYTHON}: run benchmarks/setup_scalesim_env.sh first", file=sys.stderr)
        return 2
    keys = ("name", "ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "filters", "stride")
    ratios = []
    agree = True
    print(f"{'layer':<12}{'df':>4}{'scalesim cyc':>14}{'ours cyc':>11}{'scalesim s':>12}{'ours ms':>10}{'speed-up':>11}")
    for dataflow in args.dataflows.split(","):
        request = {"rows": args.array, "cols": args.array, "dataflow": dataflow,
                   "layers": [dict(zip(keys, layer)) for layer in LAYERS]}  # fmt: skip
        done = subprocess.run([str(BENCH_PYTHON), str(ROOT / "benchmarks" / "_scalesim_runner.py")],
                              input=json.dumps(request), capture_output=True, text=True, check=True)  # fmt: skip
        theirs = json.loads(done.stdout)
        profile = load_profile("edge-16x16", [f"array.rows={args.array}", f"array.cols={args.array}",
                                              f"array.dataflow={dataflow}", "sparsity.weight_format=dense",
                                              "memory.dram.bandwidth_words_per_cycle=.inf"])  # fmt: skip
        for layer, ref in zip(LAYERS, theirs):
            spec = _spec(*layer)
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
            print(f"{layer[0]:<12}{dataflow:>4}{ref['compute_cycles']:>14}{ours.compute_cycles:>11}"
                  f"{ref['seconds']:>12.3f}{best * 1e3:>10.2f}{ratio:>10.0f}x{'' if same else '  MISMATCH'}")  # fmt: skip
    geo = 1.0
    for r in ratios:
        geo *= r ** (1 / len(ratios))
    print(f"\ncycle counts agree on all {len(ratios)} runs: {agree}")
    print(f"speed-up over SCALE-Sim: min {min(ratios):.0f}x, geometric mean {geo:.0f}x, max {max(ratios):.0f}x")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
