"""Overhead of the weighted sparse projection in a LeNet-5 training step (issue 6, requirement 2).

Measures, in one run, the mean time of an SGD step of LeNet-5 on digits (batch 32) and the mean
time of one projection as the trainer does it (``EnergyPruner.step()`` at a projection step:
check the input masks for changed costs, project the effective weights, install the masks,
release them for regrowth), and prints the overhead per step with a projection every
`--interval` batches: t_projection / (interval * t_step). Goal: below 10 %.

    python benchmarks/bench_train_step.py [--interval 10] [--steps 200] [--threads 1]
        [--estimator systolic --profile edge-16x16 --structure tile|hybrid]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from compress import EnergyPruner
from compress.data import load_dataset
from energysim import build_model
from energysim.estimators import ESTIMATORS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=10, help="batches between projections")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--estimator", default="paper", choices=list(ESTIMATORS))
    parser.add_argument("--profile", default="eyeriss-iclr19")
    parser.add_argument("--structure", default="none", help="none, tile or hybrid (tiles need e.g. edge-16x16)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, shape = build_model("lenet5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # interval=1 and a long phase: every pruner.step() is an annealed projection (not the
        # phase's last, which on the systolic estimator also searches its landing on the simulator).
        pruner = EnergyPruner(model, args.profile, budget=0.3, input_shape=shape, estimator=args.estimator, interval=1,
                              structure=args.structure, total_steps=10**6)
    data = load_dataset("digits", input_shape=shape).train
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def batches():
        while True:
            yield from loader

    stream = batches()

    def step() -> None:
        x, y = next(stream)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    def projection() -> None:
        pruner.step()

    for _ in range(20):  # warm-up
        step()
        projection()
    begin = time.process_time()
    for _ in range(args.steps):
        step()
    t_step = (time.process_time() - begin) / args.steps
    begin = time.process_time()
    repeats = max(20, args.steps // args.interval)
    for _ in range(repeats):
        projection()
    t_proj = (time.process_time() - begin) / repeats
    overhead = t_proj / (args.interval * t_step)
    print(f"training step (batch 32): {1e3 * t_step:.2f} ms; projection: {1e3 * t_proj:.2f} ms")
    print(f"overhead with a projection every {args.interval} batches: {100 * overhead:.1f} % of the step (goal < 10 %)")


if __name__ == "__main__":
    main()
