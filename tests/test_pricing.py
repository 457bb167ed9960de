"""One pricing for every estimator: typed counts x per-access energies, and calibration on the counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import energysim.estimators.paper as paper
import energysim.estimators.systolic as systolic
from energysim import load_profile, simulate
from energysim.calibrate import Measurement, Run, design_matrix
from energysim.estimators import ESTIMATORS, Estimator, get_estimator
from energysim.estimators.pricing import PARAMETERS, AccessCounts, energy_breakdown, parameter_counts
from energysim.report import LEVELS, MEMORY_LEVELS, OPERANDS, empty_accesses
from energysim.sparsity import Sparsity

SETTINGS = settings(max_examples=60, deadline=None)
PROFILES = {name: load_profile(name) for name in ("eyeriss-65nm", "eyeriss-iclr19", "edge-16x16")}


@st.composite
def access_counts(draw):
    count = st.integers(0, 10**9)
    accesses = {lvl: {op: {"reads": draw(count), "writes": draw(count)} for op in OPERANDS} for lvl in MEMORY_LEVELS}
    return AccessCounts(
        accesses,
        draw(count),
        draw(st.one_of(st.none(), count)),
        draw(st.one_of(st.none(), count)),
        draw(st.one_of(st.none(), count)),
    )


def test_energy_by_hand():
    """eyeriss-65nm: every level, leakage from cycles at the clock, pJ."""
    p = PROFILES["eyeriss-65nm"]
    m = p.memory
    acc = empty_accesses()
    acc["dram"]["weights"]["reads"] = 7
    acc["dram"]["outputs"]["writes"] = 3
    acc["buffer"]["inputs"] = {"reads": 11, "writes": 5}
    acc["rf"]["outputs"] = {"reads": 13, "writes": 17}
    energy, by_level, by_operand = energy_breakdown(p, AccessCounts(acc, 19, 23, 1000))
    expected = {
        "dram": 7 * m.dram.read + 3 * m.dram.write,
        "buffer": 11 * m.buffer.read + 5 * m.buffer.write,
        "rf": 13 * m.rf.read + 17 * m.rf.write,
        "mac": 19 * p.compute.mac + 23 * p.compute.gated_mac,
        "leakage": p.leakage_mw * 1000 / p.clock_mhz * 1000,  # mW x us = nJ, x 1000 = pJ
    }
    assert by_level == pytest.approx(expected, rel=1e-12)
    assert energy == pytest.approx(sum(expected.values()), rel=1e-12)
    assert by_operand == pytest.approx({
        "weights": 7 * m.dram.read,
        "inputs": 11 * m.buffer.read + 5 * m.buffer.write,
        "outputs": 3 * m.dram.write + 13 * m.rf.read + 17 * m.rf.write,
    }, rel=1e-12)  # fmt: skip


def test_unmodelled_counts_price_as_nothing():
    """The paper model has no gated MACs and no time: None prices as 0, never as an error."""
    p = PROFILES["eyeriss-65nm"]
    assert p.leakage_mw > 0 and p.compute.gated_mac > 0
    _, by_level, _ = energy_breakdown(p, AccessCounts(empty_accesses(), 10))
    assert by_level["leakage"] == 0.0 and by_level["mac"] == 10 * p.compute.mac


@SETTINGS
@given(counts=access_counts(), profile=st.sampled_from(sorted(PROFILES)))
def test_price_is_parameter_counts_times_values(counts, profile):
    """The design matrix of calibration and the estimators' energy are the same numbers."""
    p = PROFILES[profile]
    values = p.to_flat()
    energy, by_level, by_operand = energy_breakdown(p, counts)
    units = parameter_counts(p, counts)
    assert set(units) == set(LEVELS) == set(by_level)
    assert sorted(k for level in units.values() for k in level) == sorted(PARAMETERS)
    for level in LEVELS:
        assert by_level[level] == pytest.approx(sum(n * values[k] for k, n in units[level].items()), rel=1e-12, abs=0)
    assert energy == pytest.approx(math.fsum(by_level.values()), rel=1e-12)
    memory = math.fsum(by_level[level] for level in MEMORY_LEVELS)
    assert math.fsum(by_operand.values()) == pytest.approx(memory, rel=1e-12)


@SETTINGS
@given(counts=access_counts(), level=st.sampled_from(MEMORY_LEVELS), op=st.sampled_from(OPERANDS),
       rw=st.sampled_from(["reads", "writes"]), more=st.integers(1, 10**6), profile=st.sampled_from(sorted(PROFILES)))
def test_more_accesses_never_cost_less(counts, level, op, rw, more, profile):
    p = PROFILES[profile]
    accesses = {lvl: {o: dict(c) for o, c in ops.items()} for lvl, ops in counts.accesses.items()}
    accesses[level][op][rw] += more
    assert energy_breakdown(p, AccessCounts(accesses, counts.effective_macs, counts.gated_macs, counts.cycles))[0] >= (
        energy_breakdown(p, counts)[0]
    )


def test_relaxed_counts_swap_only_the_macs():
    counts = AccessCounts(empty_accesses(), 5, None, None, relaxed_macs=9)
    assert counts.relaxed() == AccessCounts(empty_accesses(), 9)
    assert AccessCounts(empty_accesses(), 5, 1, 2).relaxed() == AccessCounts(empty_accesses(), 5, 1, 2)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_reports_its_counts_priced(lenet5, name):
    """Report energy, split and accesses are exactly the estimator's counts priced by the one function."""
    estimator = get_estimator(name)
    profile = PROFILES["eyeriss-65nm"]
    sparsity = Sparsity.synthetic(lenet5, 0.4, 0.6, "random", 1)
    for layer in lenet5.layers:
        counts = estimator.counts(layer, profile, sparsity[layer.name])
        report = estimator.estimate_layer(layer, profile, sparsity[layer.name])
        energy, by_level, by_operand = energy_breakdown(profile, counts)
        assert (report.energy, report.energy_by_level, report.energy_by_operand) == (energy, by_level, by_operand)
        assert report.energy_relaxed == energy_breakdown(profile, counts.relaxed())[0]
        assert report.accesses == counts.accesses and report.effective_macs == counts.effective_macs
        assert (report.gated_macs, report.cycles) == (counts.gated_macs, counts.cycles)
        # What the registry says about the estimator matches what it reports.
        assert (report.cycles is not None) == estimator.has_cycles
        assert (counts.relaxed_macs is not None) == estimator.relaxed_bound


def test_paper_figures_are_exact_from_the_counts(lenet5):
    """Dense LeNet-5 on eyeriss-iclr19: 17,107,544 relaxed, the counts priced, to the unit."""
    profile = PROFILES["eyeriss-iclr19"]
    estimator = ESTIMATORS["paper"]
    counts = [estimator.counts(layer, profile) for layer in lenet5.layers]
    assert sum(energy_breakdown(profile, c.relaxed())[0] for c in counts) == 17_107_544
    conv1 = counts[0]  # 6 x 1 x 5 x 5 weights, 28 x 28 outputs, all in the weight buffer
    assert conv1.accesses["dram"]["weights"]["reads"] == 150
    assert conv1.accesses["rf"]["weights"]["reads"] == 150 * 784
    assert conv1.relaxed_macs == 150 * 784 and conv1.gated_macs is None and conv1.cycles is None
    report = simulate(lenet5, profile, "paper")
    assert report.energy == sum(energy_breakdown(profile, c)[0] for c in counts)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_design_matrix_is_the_counts_without_running_the_estimator(lenet5, name, monkeypatch):
    """Calibration reads the counts; the estimator's report (or a probe profile) is never needed.

    Any profile with BASE's sizes then prices each row exactly as the estimator would.
    """
    base = PROFILES["eyeriss-65nm"]
    chip = load_profile("eyeriss-65nm", {"compute.mac": 1.7, "memory.dram.read": 333.0, "leakage_mw": 12.0})
    run = Run("lenet5", None, 0.5, 0.7)
    truth = simulate(lenet5, chip, name, Sparsity.synthetic(lenet5, 0.5, 0.7, "random", 0))

    def refuse(*args, **kwargs):
        raise AssertionError("calibration ran the estimator")

    monkeypatch.setattr(paper, "estimate_layer", refuse)
    monkeypatch.setattr(systolic, "estimate_layer", refuse)
    rows = [Measurement(run, layer.name, 1.0) for layer in lenet5.layers]
    design = design_matrix(rows, base, name, {run: lenet5})
    values = np.array([chip.to_flat()[p] for p in PARAMETERS])
    np.testing.assert_allclose(design.matrix @ values, [l.energy for l in truth.layers], rtol=1e-12)


def test_registry_values():
    assert list(ESTIMATORS) == ["paper", "systolic"]
    assert all(isinstance(e, Estimator) and e.name == name and e.summary for name, e in ESTIMATORS.items())
    with pytest.raises(AttributeError):
        ESTIMATORS["paper"].has_cycles = True  # frozen


@pytest.mark.parametrize("bad", ["spice", "", "Paper", None, 3, ["paper"]])
def test_unknown_estimator_is_one_line(bad):
    with pytest.raises(ValueError) as info:
        get_estimator(bad)
    assert str(info.value) == f"estimator must be one of paper, systolic, got {bad!r}"
