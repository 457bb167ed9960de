"""Time compress.projection.project against torch.sort of the same values.

AlexNet-sized weights (8 layers, 61.1 M weights; scaled with
--weights-millions) are projected onto 30 % of the dense weight energy with a
weight-buffer breakpoint in every layer (the slowest case: each layer needs a
rank threshold). The time is reported as a ratio to one descending torch.sort
of all the weights in the same run, which is the core of the authors'
projection. The projection of LeNet-5-sized weights (61.5 k weights, 5 layers)
is timed too.

Usage: python benchmarks/bench_projection.py [--weights-millions 61.1] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from compress.projection import LayerCost, layer_energy, project

ALEXNET_SHAPES = {
    "conv1": (64, 3, 11, 11),
    "conv2": (192, 64, 5, 5),
    "conv3": (384, 192, 3, 3),
    "conv4": (256, 384, 3, 3),
    "conv5": (256, 256, 3, 3),
    "fc6": (4096, 9216),
    "fc7": (4096, 4096),
    "fc8": (1000, 4096),
}
LENET5_SHAPES = {
    "conv1": (6, 1, 5, 5),
    "conv2": (16, 6, 5, 5),
    "fc1": (120, 400),
    "fc2": (84, 120),
    "fc3": (10, 84),
}
# The paper's weight buffer holds 4,096 words.
BREAKPOINT = 4096
BUDGET_SHARE = 0.3


def make_weights(shapes, millions, device, seed):
    """Gaussian weights with fan-in scaling; layers shrunk evenly to about `millions` M weights."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(torch.Size(s).numel() for s in shapes.values())
    scale = 1.0 if millions is None else min(1.0, millions * 1e6 / total)
    weights = {}
    for name, shape in shapes.items():
        rows = max(1, round(shape[0] * scale))
        fan_in = torch.Size(shape[1:]).numel()
        weights[name] = (torch.randn((rows, *shape[1:]), generator=gen) / fan_in**0.5).to(device)
    return weights


def make_costs(weights):
    """Per-layer costs: per-weight cost growing with depth, 3x beyond the buffer breakpoint."""
    return {
        name: LayerCost(name, 1.0 + i, 3.0 * (1.0 + i), BREAKPOINT, 1000.0 * (i + 1))
        for i, name in enumerate(weights)
    }


def budget_for(weights, costs):
    floor = sum(c.constant for c in costs.values())
    dense = sum(layer_energy(costs[n], w.numel()) for n, w in weights.items())
    return floor + BUDGET_SHARE * (dense - floor)


def median_seconds(fn, repeats, device):
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(shapes, millions, repeats, device, seed):
    weights = make_weights(shapes, millions, device, seed)
    costs = make_costs(weights)
    budget = budget_for(weights, costs)
    flat = torch.cat([w.reshape(-1) for w in weights.values()])
    project(weights, costs, budget)  # warm-up
    torch.sort(flat[: 1 << 16], descending=True)
    t_sort = median_seconds(lambda: torch.sort(flat, descending=True), repeats, device)
    t_project = median_seconds(lambda: project(weights, costs, budget), repeats, device)
    result = project(weights, costs, budget)
    return flat.numel(), t_sort, t_project, sum(result.kept.values()), result.energy / budget


def parse_arguments(doc: str, argv=None) -> tuple[argparse.Namespace, torch.device]:
    """The options shared by the projection benchmarks; prints the torch setup."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(
        "--weights-millions",
        type=float,
        default=None,
        help="shrink AlexNet's layers to about this many million weights (default: full 61.1 M)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    return args, device


def main(argv=None):
    args, device = parse_arguments(__doc__, argv)
    for label, shapes, millions in (("alexnet", ALEXNET_SHAPES, args.weights_millions),
                                    ("lenet5", LENET5_SHAPES, None)):
        n, t_sort, t_project, kept, used = bench(shapes, millions, args.repeats, device, args.seed)
        print(f"{label}: {n:,} weights, {len(shapes)} layers, kept {kept:,} "
              f"(energy {used:.4f} of budget) | torch.sort {t_sort * 1e3:.1f} ms | "
              f"project {t_project * 1e3:.1f} ms | ratio {t_project / t_sort:.3f}")


if __name__ == "__main__":
    main()
