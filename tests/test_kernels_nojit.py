"""The numba kernels also run as plain Python: a subset of the systolic tests with NUMBA_DISABLE_JIT=1.

Coverage tools see kernel lines only this way, and it guards against code that only
numba accepts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest_without_jit(test_file: str, selection: str) -> str:
    """Run the tests of ``tests/test_file`` that ``-k selection`` picks with numba off; their output."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / test_file), "-k", selection],
        cwd=ROOT, env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done.stdout


def test_kernel_subset_without_jit():
    out = _pytest_without_jit("test_systolic_model.py", (
        "test_kernel_equals_brute_force and (dense-0 or random-1 or channels-0)"
        " or test_stall_cycles_by_hand or test_conv_input_dram_reads_count_distinct_elements"
        " or test_utilization_trace_rows_sum_to_pes"
    ))
    assert " passed" in out and "deselected" in out


def test_nm_kernel_subset_without_jit():
    """The N:M selection path of the trace kernel, as plain Python, against the brute force."""
    out = _pytest_without_jit("test_nm.py", "test_kernel_equals_brute_force and (True-1-2-4 or False-3-1-2)")
    assert "2 passed" in out


def test_mapping_kernels_without_jit():
    """The refetch-window kernels (window_fetch, slice_unique_counts) and the mapped trace, as plain Python."""
    out = _pytest_without_jit("test_systolic_mapping.py", (
        "(test_mapped_traffic_matches_brute_force and caps5) or test_input_slices_reuse_what_the_previous_slice_left"
        " or (test_mapped_trace_matches_brute_force and True-order1-is)"
    ))
    assert " passed" in out and "deselected" in out


def test_projection_kernels_without_jit():
    """compress's bundle kernels (serial and parallel wraps) as plain Python, against the torch code and the brute force."""
    out = _pytest_without_jit("test_structured_projection.py", (
        "test_hybrid_kernel_equals_torch_bundles_on_tiled_layers or test_many_dinkelbach_passes_and_float64_weights_kernel"
        " or test_group_order_is_cached_per_group_map or test_hybrid_hand_derived_example"
    ))
    assert "5 passed" in out
