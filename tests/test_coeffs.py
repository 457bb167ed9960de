"""Coefficient table: exact for the paper model, JSON with stale-profile detection, CLI."""

import json
import warnings

import numpy as np
import pytest
import torch

from compress.budget import EnergyModel
from compress.schedule import geometric_budgets
from compress.cli import main
from energysim import LayerSparsity, Sparsity, build_model, extract_workload, load_profile, simulate
from energysim.coeffs import CoefficientTable, coefficient_table, verify_table

PAPER = load_profile("eyeriss-iclr19")


@pytest.fixture(scope="module")
def lenet5():
    model, shape = build_model("lenet5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, extract_workload(model, shape, name="lenet5")


@pytest.fixture(scope="module")
def strided():
    """A padded, strided conv, a grouped conv and a linear layer past the input buffer."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=4),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 20),
    )
    return extract_workload(model, (3, 12, 12), name="strided")


def test_paper_table_is_exact_on_random_patterns(lenet5, strided):
    small_buffers = load_profile("eyeriss-iclr19", ["memory.buffer.filter_words=100", "memory.buffer.ifmap_words=200"])
    for workload, profile in ((lenet5[1], PAPER), (strided, small_buffers)):
        table = coefficient_table(workload, profile, "paper")
        for row in verify_table(table, workload, profile, densities=(0.05, 0.3, 1.0), seed=1):
            assert abs(row["max_rel_error"]) < 1e-9, row


def test_paper_table_numbers_are_the_papers(lenet5):
    table = coefficient_table(lenet5[1], PAPER, "paper")
    conv1 = table.layer("conv1")
    assert (conv1.per_weight, conv1.per_weight_overflow, conv1.weight_breakpoint) == (3732, 16732, 4096)
    assert table.layer("fc1").per_weight == 210
    assert table.dense_energy == pytest.approx(1.7108e7, rel=5e-5)
    assert table.floor_energy / table.dense_energy == pytest.approx(0.1523, abs=5e-5)


def test_table_json_round_trip_and_stale_detection(lenet5, tmp_path):
    table = coefficient_table(lenet5[1], PAPER, "paper")
    table.save(tmp_path / "t.json")
    again = CoefficientTable.load(tmp_path / "t.json", PAPER)
    assert again.to_dict() == table.to_dict()
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["schema_version"] == 6 and data["profile_digest"] == PAPER.digest
    other = load_profile("eyeriss-iclr19", ["memory.dram.read=100"])
    with pytest.raises(ValueError, match="stale coefficient table"):
        CoefficientTable.load(tmp_path / "t.json", other)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a readable coefficient table"):
        CoefficientTable.load(tmp_path / "bad.json")


def test_energy_model_costs_match_simulation(lenet5):
    """Proxy energy of a projected pattern equals the paper estimator's relaxed energy."""
    model, workload = lenet5
    em = EnergyModel(workload, PAPER, "paper")
    rng = np.random.default_rng(0)
    masks = {l.name: torch.from_numpy(rng.random(l.weight_shape) < 0.3) for l in workload.layers}
    inputs = {"conv2": rng.random(workload.layer("conv2").input_shape) < 0.5}
    sparsity = Sparsity({n: LayerSparsity(m.numpy(), inputs.get(n)) for n, m in masks.items()})
    truth = simulate(workload, PAPER, "paper", sparsity).energy_relaxed
    assert em.proxy_energy(masks, inputs) == pytest.approx(truth, rel=1e-12)
    assert em.floor_energy() == pytest.approx(coefficient_table(workload, PAPER, "paper").floor_energy)


def test_geometric_budgets_end_exactly_at_target():
    budgets = geometric_budgets(100.0, 20.0, 4)
    assert budgets[-1] == 20.0 and all(a > b for a, b in zip(budgets, budgets[1:]))
    assert budgets[0] == pytest.approx(100 * 0.2 ** 0.25)


def test_cli_writes_table_and_verifies(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["coeffs", "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper",
                 "--out", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "15.23% of dense" in text and "+0.00e+00" in text
    assert CoefficientTable.load(out, PAPER).layer("conv2").per_weight == 654


def test_cli_verify_densities_and_kinds(tmp_path, capsys):
    """--densities sets the patterns: every (weight, input) pair once per layer and kind (paper: random
    only); --kinds keeps the kinds asked for, and a layer with none of them has no row."""
    out = tmp_path / "v.json"
    paper = ["coeffs", "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper", "--verify"]
    assert main([*paper, "--densities", "0.1,1", "--kinds", "random", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["verify"]
    assert [row["patterns"] for row in rows] == [4] * 5 and all(set(row["worst"]) == {"random"} for row in rows)
    assert main([*paper, "--densities", "1", "--kinds", "nm", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["verify"] == []
    capsys.readouterr()
    for option, value in (("--densities", "0.5,1.5"), ("--kinds", "nm,tile")):
        with pytest.raises(SystemExit) as exit_info:
            main([*paper, option, value])
        assert exit_info.value.code == 2
        assert option in capsys.readouterr().err


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "mobilenet_v2"])
def test_systolic_table_within_one_percent_without_tile_skipping(name):
    model, shape = build_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workload = extract_workload(model, shape, name=name)
    # Bitmask weights and finite bandwidth (stalls) on, tile skipping off.
    profile = load_profile("edge-16x16", ["sparsity.skip_zero_tiles=false"])
    table = coefficient_table(workload, profile, "systolic")
    assert not any(l.upper_bound for l in table.layers)
    rows = verify_table(table, workload, profile, densities=(0.05, 0.3, 1.0), seed=2)
    assert len(rows) == len(workload.layers)
    for row in rows:
        assert abs(row["max_rel_error"]) < 0.01, row


def test_systolic_table_with_input_tile_skipping_never_underestimates(lenet5):
    """IS skips on input tiles, which the table does not model: its rows are upper bounds."""
    profile = load_profile("edge-16x16", ["array.dataflow=is"])
    assert profile.sparsity.skip_zero_tiles
    table = coefficient_table(lenet5[1], profile, "systolic")
    assert all(l.upper_bound and l.group_cost is None for l in table.layers)
    for row in verify_table(table, lenet5[1], profile, densities=(0.05, 0.2, 0.6, 1.0), seed=3):
        assert row["min_rel_error"] >= 0, row


def test_input_costs_count_the_macs_an_input_makes_effective(lenet5):
    """On a dense-storage array an input's traffic does not depend on zeros: it costs what the
    MACs it makes effective cost beyond gated ones, which the per-input cost must include."""
    profile = load_profile("eyeriss-65nm")
    em = EnergyModel(lenet5[1], profile, "systolic")
    coeffs = em.table.layer("conv2")
    assert coeffs.per_input == 0  # inputs move dense
    assert coeffs.per_effective_mac >= profile.compute.mac - profile.compute.gated_mac
    conv2 = lenet5[1].layer("conv2")  # no padding: every input position takes part in MACs
    expected = coeffs.per_effective_mac * conv2.macs / (6 * 14 * 14)
    assert em.input_costs()["conv2"] == pytest.approx(expected, rel=1e-9)
    assert all(cost > 0 for cost in em.input_costs().values())
