"""Prune LeNet-5 to an energy budget inside your own training loop, with ``EnergyPruner``.

Everything but two lines is a plain PyTorch loop: build the pruner once, call
``pruner.step()`` after every optimizer step, and ``pruner.finalize()`` at the end, which
projects at exactly the budget, simulates the final pattern on the accelerator model and
re-projects until the simulation fits.

Run it (about half a minute on 2 cores)::

    python examples/own_loop.py --budget 0.4 --profile edge-16x16 --epochs 3
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from compress import EnergyPruner, load_dataset
from energysim.zoo import build_model


def accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    model.train()
    return correct / total


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.4, help="energy budget, relative to the dense model")
    parser.add_argument("--profile", default="edge-16x16", help="hardware profile (default: edge-16x16)")
    parser.add_argument("--estimator", default="systolic", choices=("systolic", "paper"))
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of pruning")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    data = load_dataset("digits", input_shape=(1, 32, 32))
    train_loader = DataLoader(data.train, batch_size=32, shuffle=True)
    test_loader = DataLoader(data.test, batch_size=500)
    model, shape = build_model("lenet5", num_classes=data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def epoch(pruner: EnergyPruner | None = None) -> None:
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if pruner is not None:
                pruner.step()

    for _ in range(args.pretrain_epochs):
        epoch()
    dense_accuracy = accuracy(model, test_loader)

    # The masks rename each `weight` parameter to `weight_orig` (the same tensor): `opt` keeps training it.
    pruner = EnergyPruner(model, args.profile, budget=args.budget, input_shape=shape, estimator=args.estimator,
                          interval=10, total_steps=len(train_loader) * args.epochs)
    for _ in range(args.epochs):
        epoch(pruner)
    report = pruner.finalize()
    result = {
        "dense_accuracy": dense_accuracy,
        "accuracy": accuracy(model, test_loader),
        "budget": args.budget,
        "energy_simulated_relative": report["energy_simulated_relative"],
        "density": {layer["name"]: round(layer["density"], 4) for layer in report["layers"]},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
