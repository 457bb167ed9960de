"""Dense timing and SRAM reads against SCALE-Sim 3.0.0's recorded figures, in every run.

``tests/data/scalesim-3.0.0.json`` holds SCALE-Sim's own output for the differential
test's layers x arrays x dataflows, written by ``benchmarks/record_scalesim.py`` (its
provenance is in the file). The comparison is the differential test's
(``tests/scalesim_agreement.py``), so this checks the README's "identical to SCALE-Sim"
claim where SCALE-Sim is not installed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks._scalesim_runner import ARRAYS, DATAFLOWS, LAYERS
from scalesim_agreement import assert_agrees_with_scalesim

RECORD = json.loads((Path(__file__).parent / "data" / "scalesim-3.0.0.json").read_text(encoding="utf-8"))
RUNS = [(rows, cols, dataflow) for rows, cols in ARRAYS for dataflow in DATAFLOWS]


def _recorded(rows, cols, dataflow):
    """The recorded layers of one array and dataflow, and SCALE-Sim's figures for each."""
    run = (rows, cols, dataflow)
    cases = [case for case in RECORD["cases"] if (case["rows"], case["cols"], case["dataflow"]) == run]
    return [case["layer"] for case in cases], [case["scalesim"] for case in cases]


def test_record_is_scalesim_300_on_exactly_the_differential_cases():
    provenance = RECORD["provenance"]
    assert (provenance["tool"], provenance["version"]) == ("SCALE-Sim", "3.0.0")
    assert provenance["script"] == "benchmarks/record_scalesim.py"
    recorded = [(case["rows"], case["cols"], case["dataflow"], case["layer"]) for case in RECORD["cases"]]
    # A case added to benchmarks/_scalesim_runner.py but not recorded (or the reverse) fails here.
    assert recorded == [(rows, cols, dataflow, layer) for rows, cols, dataflow in RUNS for layer in LAYERS]


@pytest.mark.parametrize("rows,cols,dataflow", RUNS)
def test_dense_matches_recorded_scalesim(rows, cols, dataflow):
    layers, refs = _recorded(rows, cols, dataflow)
    assert layers
    assert_agrees_with_scalesim(rows, cols, dataflow, layers, refs)


@pytest.mark.parametrize(
    "key",
    [
        "compute_cycles",
        "stall_cycles",
        "row_folds",
        "col_folds",
        "overall_util_pct",
        "mapping_efficiency_pct",
        "ifmap_sram_reads",
        "filter_sram_reads",
    ],
)
def test_comparison_notices_each_quantity_off_by_one(key):
    # Guards the check itself: a figure that no assertion compares would let drift pass.
    layers, refs = _recorded(*RUNS[0])
    wrong = copy.deepcopy(refs)
    wrong[-1][key] += 1
    with pytest.raises(AssertionError, match=layers[-1]["name"]):
        assert_agrees_with_scalesim(*RUNS[0], layers, wrong)
