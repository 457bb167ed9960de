"""Record SCALE-Sim's own figures for the agreement cases in a data file for the tests.

Runs SCALE-Sim (in the environment made by ``benchmarks/setup_scalesim_env.sh``, via
``benchmarks/_scalesim_runner.py``) on every layer x array x dataflow of the
differential test and writes, per case, the inputs and SCALE-Sim's compute, stall and
overall cycles, row and column folds, utilization and mapping efficiency, and SRAM and
DRAM traffic per operand, with the provenance (tool and numpy versions, command, date,
script). ``tests/test_scalesim_recorded.py`` compares the estimator with that file in
every default test run, where SCALE-Sim itself is not installed.

Run: ``bash benchmarks/setup_scalesim_env.sh`` once, then
``.venv/bin/python benchmarks/record_scalesim.py`` (writes ``tests/data/scalesim-<version>.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

from _scalesim_runner import ARRAYS, DATAFLOWS, LAYERS, ROOT, run_scalesim, scalesim_versions

from compress.checkpoint import atomic_write_text

# Wall time differs between runs; everything else SCALE-Sim reports is recorded.
_NOT_RECORDED = ("name", "seconds")


def _shown(path):
    """``path`` relative to the repository root where it lies inside it (for the provenance)."""
    path = Path(path).absolute()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output file (default tests/data/scalesim-<version>.json)")
    args = parser.parse_args()
    try:
        versions = scalesim_versions()
        cases = [
            {"layer": layer, "rows": rows, "cols": cols, "dataflow": dataflow,
             "scalesim": {key: value for key, value in ref.items() if key not in _NOT_RECORDED}}
            for rows, cols in ARRAYS
            for dataflow in DATAFLOWS
            for layer, ref in zip(LAYERS, run_scalesim(rows, cols, dataflow, LAYERS), strict=True)
        ]  # fmt: skip
    except (OSError, ValueError) as err:
        # OSError: SCALE-Sim missing or failed; ValueError: its output is not one JSON result per layer.
        print(f"record_scalesim.py: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else ROOT / "tests" / "data" / f"scalesim-{versions['scalesim']}.json"
    record = {
        "provenance": {
            "tool": "SCALE-Sim",
            "version": versions["scalesim"],
            "numpy": versions["numpy"],
            "python": versions["python"],
            "settings": "CALC bandwidth, dense, 1024 kB SRAM per operand: benchmarks/_scalesim_runner.py",
            "environment": "bash benchmarks/setup_scalesim_env.sh",
            "command": shlex.join([_shown(sys.executable), _shown(__file__), *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
            "script": _shown(__file__),
        },
        "cases": cases,
    }
    try:
        os.makedirs(out.parent, exist_ok=True)
        atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    except OSError as err:
        print(f"record_scalesim.py: error: cannot write {out}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(cases)} cases from SCALE-Sim {versions['scalesim']} to {_shown(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
