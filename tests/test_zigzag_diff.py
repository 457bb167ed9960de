"""Differential test: energy by level against ZigZag 3.9.1 (its own energy-optimal mapping) on layers where the models agree.

ZigZag runs in its own environment, made by ``benchmarks/setup_zigzag_env.sh`` at
``.zigzag_venv``; without it these tests are skipped with that reason. The accelerator
is ``edge-16x16`` with dense weights, described in ZigZag's format by
``benchmarks/bench_zigzag.py`` (which also prints the whole comparison). The layers
here are the ones where both models keep every operand's DRAM traffic at its minimum and
the output partial sums of the project's WS mapping do not dominate: the 10 % goal of
issue 17 holds on them; ``docs/systolic-model.md`` §10 explains the layers where it does not.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from benchmarks._zigzag_runner import ZIGZAG_PYTHON, run_zigzag
from energysim import extract_workload, load_profile
from energysim.estimators.systolic import estimate_layer
from energysim.zoo import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_zigzag import DENSE, zigzag_accelerator, zigzag_layer  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ZIGZAG_PYTHON.exists(),
        reason="ZigZag environment missing: run benchmarks/setup_zigzag_env.sh to create .zigzag_venv",
    ),
]


@pytest.mark.parametrize("model,name", [("alexnet", "classifier.6"), ("mobilenet_v2", "features.2.conv.0.0")])
def test_searched_energy_within_10_percent_of_zigzag(model, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net, shape = build_model(model)
        layer = extract_workload(net, shape).layer(name)
    profile = load_profile("edge-16x16", [*DENSE, "mapping.search=energy"])
    (theirs,) = run_zigzag(zigzag_accelerator(profile), [zigzag_layer(layer)], opt="energy")
    ours = estimate_layer(layer, profile, cycle_level=False)
    assert ours.energy == pytest.approx(theirs["energy_pj"], rel=0.10)
    # Both reach the same DRAM traffic (the unique footprints), priced alike.
    assert ours.energy_by_level["dram"] == pytest.approx(theirs["levels_pj"]["dram"], rel=0.01)
