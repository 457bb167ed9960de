"""Differential test against ZigZag 3.9.1 (its own energy-optimal mapping) with the PE described as the project's.

ZigZag runs in its own environment, made by ``benchmarks/setup_zigzag_env.sh`` at
``.zigzag_venv``; without it these tests are skipped with that reason. The accelerator
is ``edge-16x16`` with dense weights, described in ZigZag's format by
``benchmarks/bench_zigzag.py`` with its default ``systolic`` PE (a one-word weight
register, a one-word input latch, no output register), which also prints the whole
comparison. ``docs/systolic-model.md`` §10 explains every remaining difference. ZigZag's
default search (``lpf_limit`` 6) misses its own best mapping on resnet18 ``layer1.0.conv1``
and ``layer2.0.conv1``, where ours is below it; ``lpf_limit`` 8 finds it, in about 8
minutes per layer, so that comparison runs only with ``ZIGZAG_LPF8=1`` (skipped with that
reason otherwise).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

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

PROFILE = [*DENSE, "mapping.search=energy"]


def _zoo_layer(model, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net, shape = build_model(model)
        return extract_workload(net, shape).layer(name)


def _both(layer, lpf_limit=6):
    profile = load_profile("edge-16x16", PROFILE)
    (theirs,) = run_zigzag(zigzag_accelerator(profile), [zigzag_layer(layer)], opt="energy", lpf_limit=lpf_limit)
    return estimate_layer(layer, profile, cycle_level=False), theirs


def test_small_conv_counts_equal_the_hand_derived_ones_in_both_tools():
    """Conv 32 -> 16, 3x3, 6x6 input, no padding: M = 16 outputs per channel, GEMM K = 288 =
    18 row folds of 16, one column fold. Weights: each of the 4,608 read once from DRAM,
    written to and read from the buffer once (stationary), written to its PE once.
    Inputs: footprint 32*36 = 1,152 words from DRAM; each fold streams its 16 input rows
    of 16 words: 18*256 = 4,608 buffer reads; every PE latches an input per MAC slot:
    73,728. Outputs: every fold writes each column's sum to the buffer, 18 per output:
    18*256 = 4,608 writes; 17 reads back per output plus one to DRAM: 4,608 reads; 256
    DRAM writes. ZigZag's conventions differ only in the PE: a stationary weight is read
    once per stay (4,608, ours per MAC), no partial-sum latch (ours: a write per MAC slot
    and a read per MAC)."""
    net = torch.nn.Conv2d(32, 16, 3, bias=False)
    layer = extract_workload(net, (32, 6, 6)).layers[0]
    ours, theirs = _both(layer)
    macs = 16 * 32 * 9 * 16
    hand = {
        "dram": {"weights": (4608, 0), "inputs": (1152, 0), "outputs": (0, 256)},
        "buffer": {"weights": (4608, 4608), "inputs": (4608, 1152), "outputs": (4608, 4608)},
    }
    for tool in (ours.accesses, theirs["accesses"]):
        for level, per_operand in hand.items():
            for operand, (reads, writes) in per_operand.items():
                assert (tool[level][operand]["reads"], tool[level][operand]["writes"]) == (reads, writes), (level, operand)
        assert tool["rf"]["inputs"] == {"reads": macs, "writes": macs}
        assert tool["rf"]["weights"]["writes"] == 4608
    assert ours.accesses["rf"]["weights"]["reads"] == macs and theirs["accesses"]["rf"]["weights"]["reads"] == 4608
    assert ours.accesses["rf"]["outputs"] == {"reads": macs, "writes": macs}
    assert theirs["accesses"]["rf"]["outputs"] == {"reads": 0, "writes": 0}


@pytest.mark.parametrize(
    "model,name",
    [("alexnet", "features.8"), ("resnet18", "layer3.0.conv2"), ("mobilenet_v2", "features.2.conv.0.0")],
)
def test_same_schedule_same_traffic_but_padding(model, name):
    """Where both tools choose the weight-stationary schedule with every operand at its DRAM
    minimum, every DRAM and buffer count is equal except the input buffer reads: ZigZag
    reads the padding words from the buffer, which the project generates (one per padding
    MAC slot and column: gated MACs / 16), and charges padding MACs in full."""
    layer = _zoo_layer(model, name)
    ours, theirs = _both(layer)
    for level in ("dram", "buffer"):
        for operand in ("weights", "inputs", "outputs"):
            for kind in ("reads", "writes"):
                if (level, operand, kind) == ("buffer", "inputs", "reads"):
                    continue
                assert ours.accesses[level][operand][kind] == theirs["accesses"][level][operand][kind], (level, operand, kind)
    padding_reads = theirs["accesses"]["buffer"]["inputs"]["reads"] - ours.accesses["buffer"]["inputs"]["reads"]
    assert padding_reads * 16 == ours.gated_macs
    assert ours.accesses["rf"]["inputs"]["writes"] == theirs["accesses"]["rf"]["inputs"]["writes"]
    profile = load_profile("edge-16x16", PROFILE)
    assert theirs["mac_pj"] - ours.energy_by_level["mac"] == pytest.approx(ours.gated_macs * (profile.compute.mac - profile.compute.gated_mac))


@pytest.mark.parametrize(
    "model,name",
    [("alexnet", "features.3"), ("alexnet", "features.6"), ("alexnet", "features.8"), ("alexnet", "features.10"),
     ("alexnet", "classifier.6"), ("resnet18", "layer3.0.conv2"), ("mobilenet_v2", "features.2.conv.0.0"),
     ("mobilenet_v2", "features.3.conv.2")],
)  # fmt: skip
def test_searched_energy_within_10_percent_of_zigzag(model, name):
    ours, theirs = _both(_zoo_layer(model, name))
    assert ours.energy == pytest.approx(theirs["energy_pj"], rel=0.10)


@pytest.mark.parametrize("name", ["layer1.0.conv1", "layer2.0.conv1"])
def test_searched_energy_below_zigzag_default_search(name):
    """Where ZigZag's default LOMA search (lpf_limit 6) misses its best mapping, ours is below
    what it finds (more than 10 % below: the comparison is against lpf_limit 8, next test)."""
    ours, theirs = _both(_zoo_layer("resnet18", name))
    assert ours.energy < 0.9 * theirs["energy_pj"]


@pytest.mark.skipif(not os.environ.get("ZIGZAG_LPF8"), reason="ZigZag with lpf_limit 8 takes about 8 minutes a layer: set ZIGZAG_LPF8=1")
@pytest.mark.parametrize("name", ["layer1.0.conv1", "layer2.0.conv1"])
def test_searched_energy_within_10_percent_of_zigzag_lpf8(name):
    """Against ZigZag's larger search. On layer2.0.conv1 both tools choose 4 output tiles that
    take the whole output buffer (ours single-buffered, docs/systolic-model.md §4b): the weights
    are read 4 times (294,912 words from DRAM and from the buffer) and the outputs written once,
    equal in both; the inputs differ by halos only."""
    ours, theirs = _both(_zoo_layer("resnet18", name), lpf_limit=8)
    assert ours.energy == pytest.approx(theirs["energy_pj"], rel=0.10)
    if name == "layer2.0.conv1":
        for level, operand in (("dram", "weights"), ("buffer", "weights"), ("dram", "outputs"), ("buffer", "outputs")):
            assert ours.accesses[level][operand] == theirs["accesses"][level][operand], (level, operand)
        assert ours.accesses["dram"]["weights"]["reads"] == 4 * 128 * 64 * 9
