"""Time the coefficient table with skip-group costs against the table without them.

For each (model, profile) the table is built twice in the same run: with tile skipping on
(skip-group costs: four more counts of every layer, see energysim.model.groups) and off (the
four corner patterns only). Prints both times and their ratio; the issue's goal is the
group-cost table of resnet18 on tpu-like-128 under 10 s on 2 cores.

Usage: python benchmarks/bench_coeffs.py [--cases resnet18:tpu-like-128,alexnet:edge-16x16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from energysim import build_model, extract_workload, load_profile
from energysim.coeffs import coefficient_table


def timed(workload, profile, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        coefficient_table(workload, profile)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="resnet18:tpu-like-128,alexnet:edge-16x16")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for case in args.cases.split(","):
        name, profile_name = case.split(":")
        model, shape = build_model(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            workload = extract_workload(model, shape, name=name)
        on = load_profile(profile_name, ["sparsity.skip_zero_tiles=true"])
        off = load_profile(profile_name, ["sparsity.skip_zero_tiles=false"])
        coefficient_table(workload, on)  # compile / load the numba kernels
        t_on, t_off = timed(workload, on, args.repeats), timed(workload, off, args.repeats)
        groups = sum(len(l.group_cost) for l in coefficient_table(workload, on).layers)
        print(f"{name} on {profile_name}: with skip-group costs ({groups} groups) {t_on:.2f} s, "
              f"without {t_off:.2f} s, ratio {t_on / t_off:.2f}")


if __name__ == "__main__":
    main()
