"""Worst error of the latency coefficients per layer on whole-tile patterns, quickly.

``ecc coeffs --verify`` prices every pattern's energy too (cycle level, 108 patterns of three
kinds per layer), which takes hours on ResNet-18 and MobileNetV2 on a shared machine. This
measures only the cycles of whole-tile patterns, the figure of merit of the latency
coefficients (docs/systolic-model.md, section 6): the table's terms straight from
:func:`energysim.model.groups.group_counts` (what ``coefficients`` stores as
``cycles_constant``, ``group_cycles`` and ``slice_cycles``) against the fold-level simulation
(``cycle_level=False``, whose cycles are the cycle-level ones), for 3 random patterns at each
share of kept tiles 5, 10, 25, 50, 75, 100 %.

    PYTHONPATH=. .venv/bin/python benchmarks/cycle_coefficients.py alexnet edge-16x16
    PYTHONPATH=. .venv/bin/python benchmarks/cycle_coefficients.py resnet18 tpu-like-128

Tile skipping is switched on (``sparsity.skip_zero_tiles=true``) where the profile has it off.
Prints one line per weighted layer and a summary (layers within 1 % and 5 %, the worst).
"""

import sys
import warnings

import numpy as np

from energysim import build_model, extract_workload, load_profile
from energysim.dataflow import get_dataflow
from energysim.model.groups import _plan, group_counts, shared_incidence, used_shared, weight_groups
from energysim.model.layer import simulate_layer


def main(model_name: str, profile_name: str) -> None:
    profile = load_profile(profile_name, ["sparsity.skip_zero_tiles=true"])
    dataflow = get_dataflow(profile.array.dataflow)
    model, shape = build_model(model_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workload = extract_workload(model, shape)
    rng = np.random.default_rng(0)
    worst = []
    for layer in (layer for layer in workload.layers if layer.has_weights):
        split = group_counts(layer, profile, dataflow)
        incidence = shared_incidence(layer, profile, dataflow)
        ids, count = weight_groups(layer, profile, dataflow)
        mapping = _plan(layer, profile, dataflow).mapping
        errors = []
        for share in (0.05, 0.1, 0.25, 0.5, 0.75, 1.0):
            for _ in range(3):
                kept = rng.random(count) < share
                truth = simulate_layer(profile, layer, dataflow, kept[ids], None, cycle_level=False, mapping=mapping).cycles
                predicted = split.constant.cycles + split.latency["groups"][kept].sum() + sum(
                    c[used_shared(incidence[kind], kept)].sum() for kind, c in split.latency["slices"].items())
                errors.append(((predicted - truth) / max(truth, 1), int(kept.sum()), truth))
        error, kept, truth = max(errors, key=lambda e: abs(e[0]))
        worst.append((layer.name, error))
        print(f"{layer.name:28s} groups {count:7d}  worst {100 * error:+7.2f} % ({kept} kept, {truth} cycles)", flush=True)
    name, error = max(worst, key=lambda w: abs(w[1]))
    within = lambda bound: sum(abs(e) <= bound for _, e in worst)  # noqa: E731
    print(f"{model_name} on {profile_name}: {len(worst)} layers, {within(0.01)} within 1 %, "
          f"{within(0.05)} within 5 %, worst {100 * error:+.1f} % ({name})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
