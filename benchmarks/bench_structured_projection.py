"""Time compress.structured.project_groups (tile and hybrid) against compress.projection.project.

The AlexNet-sized weights of bench_projection (8 layers, 61.1 M weights;
scaled with --weights-millions) are grouped into 16 x 16 tiles of each
layer's GEMM view W[K, N] (K = in * kh * kw, N = out channels, W[k, n] =
weight[n].reshape(-1)[k]; tile id (k // 16) * ceil(N / 16) + n // 16), about
250 k tiles. Every layer pays per_weight = 1 + depth per kept weight (as in
bench_projection, without a buffer breakpoint) and, structured, a tile charge
of TILE_CHARGE_WEIGHTS weights' worth per tile that keeps any weight. Each
projection targets 30 % of the way from its floor to its dense energy. The
three are timed in the same run, interleaved (each repeat runs all three), by
the wall clock and by process time (all threads; the fair clock on a loaded
machine), and reported as medians of --repeats and ratios structured / unstructured.

Usage: python benchmarks/bench_structured_projection.py [--weights-millions 61.1] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import math

import torch

import statistics
import time

from bench_projection import ALEXNET_SHAPES, BUDGET_SHARE, make_weights, parse_arguments
from compress.projection import LayerCost, floor_energy, project, proxy_energy
from compress.structured import GroupCost, group_floor_energy, project_groups, proxy_group_energy

TILE = 16
# A tile that keeps any weight costs as much as this many kept weights of its layer.
TILE_CHARGE_WEIGHTS = 64


def tile_groups(shape, device):
    """Group ids of the 16 x 16 tiles of the GEMM view of a weight of this shape, and their number."""
    out_channels, fan_in = shape[0], math.prod(shape[1:])
    flat = torch.arange(out_channels * fan_in, device=device)
    n, k = flat // fan_in, flat % fan_in
    cols = -(-out_channels // TILE)
    groups = (k // TILE) * cols + n // TILE
    return groups.view(shape), -(-fan_in // TILE) * cols


def make_costs(weights):
    """Unstructured LayerCost and structured GroupCost per layer, with the same per-weight cost."""
    layer_costs, group_costs = {}, {}
    for i, (name, w) in enumerate(weights.items()):
        per_weight, constant = 1.0 + i, 1000.0 * (i + 1)
        layer_costs[name] = LayerCost(name, per_weight, per_weight, None, constant)
        groups, n_groups = tile_groups(tuple(w.shape), w.device)
        charges = torch.full((n_groups,), TILE_CHARGE_WEIGHTS * per_weight, dtype=torch.float64)
        group_costs[name] = GroupCost(name, groups, charges, per_weight, constant)
    return layer_costs, group_costs


def main(argv=None):
    args, device = parse_arguments(__doc__, argv)

    weights = make_weights(ALEXNET_SHAPES, args.weights_millions, device, args.seed)
    layer_costs, group_costs = make_costs(weights)
    n_weights = sum(w.numel() for w in weights.values())
    n_groups = sum(c.group_cost.numel() for c in group_costs.values())
    floor = floor_energy(layer_costs)
    dense = proxy_energy({n: w.numel() for n, w in weights.items()}, layer_costs)
    budget = floor + BUDGET_SHARE * (dense - floor)
    group_floor, group_dense = group_floor_energy(group_costs), proxy_group_energy(weights, group_costs)
    group_budget = group_floor + BUDGET_SHARE * (group_dense - group_floor)
    print(f"alexnet: {n_weights:,} weights, {len(weights)} layers, {n_groups:,} tiles of {TILE}x{TILE}")

    runs = {
        "project": lambda: project(weights, layer_costs, budget),
        "tile": lambda: project_groups(weights, group_costs, group_budget, "tile"),
        "hybrid": lambda: project_groups(weights, group_costs, group_budget, "hybrid"),
    }
    for fn in runs.values():  # warm-up, and the results reported below
        fn()
    wall, process = {label: [] for label in runs}, {label: [] for label in runs}
    for _ in range(args.repeats):
        for label, fn in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start_wall, start_process = time.perf_counter(), time.process_time()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall[label].append(time.perf_counter() - start_wall)
            process[label].append(time.process_time() - start_process)
    seconds = {label: statistics.median(t) for label, t in wall.items()}
    cpu = {label: statistics.median(t) for label, t in process.items()}
    total_value = sum(float(w.double().square().sum()) for w in weights.values())
    for label, fn in runs.items():
        result = fn()
        target = budget if label == "project" else group_budget
        groups = "" if label == "project" else f", {sum(result.kept_groups.values()):,} tiles"
        value = sum(float(w.double()[result.masks[n]].square().sum()) for n, w in weights.items())
        print(f"  {label:8s} {seconds[label] * 1e3:8.1f} ms wall, {cpu[label] * 1e3:8.1f} ms process | kept {sum(result.kept.values()):,} weights{groups}, "
              f"{value / total_value:.4f} of sum w**2 (energy {result.energy / target:.6f} of budget)")
    for label in ("tile", "hybrid"):
        print(f"ratio {label} / project: {seconds[label] / seconds['project']:.3f} wall, "
              f"{cpu[label] / cpu['project']:.3f} process")


if __name__ == "__main__":
    main()
