"""Run SCALE-Sim 3.0.0 on conv layers and print its per-layer figures as JSON.

As a script it runs inside the environment made by ``benchmarks/setup_scalesim_env.sh``
(numpy 1.26), never inside the project's own. Imported (standard library only), it gives
the project's side the agreement cases (``LAYERS`` x ``ARRAYS`` x ``DATAFLOWS``) and
:func:`run_scalesim`, which runs this script in that environment. Input (stdin, JSON)::

    {"rows": 8, "cols": 8, "dataflow": "ws",
     "layers": [{"name": "c1", "ifmap_h": 9, "ifmap_w": 9, "filter_h": 3, "filter_w": 3,
                 "channels": 4, "filters": 6, "stride": 1}, ...]}

Output (stdout, JSON): one object per layer with SCALE-Sim's compute cycles, stall
cycles, overall utilization and mapping efficiency (percent), average compute
utilization (percent), SRAM reads and writes per operand, DRAM reads per operand and
the wall time of that layer's simulation in seconds. CALC bandwidth mode, no sparsity.
With ``--versions`` it prints the versions of SCALE-Sim, numpy and Python instead.
"""

import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / ".bench_venv" / "bin" / "python"

LAYER_KEYS = ("name", "ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "filters", "stride")
# (H - F) % stride == 0 in every layer, so that SCALE-Sim's ceil-based output size equals
# PyTorch's floor-based one. Most GEMM sizes are not multiples of the array sides (c1x1's
# M = 25 output pixels and N = 11 filters divide none of them), so partial folds with idle
# PEs occur on both axes; (4, 5) and (8, 2) are non-square.
LAYERS = [
    dict(zip(LAYER_KEYS, layer))
    for layer in (
        ("c3x3", 6, 6, 3, 3, 2, 7, 1),
        ("c_stride2", 7, 9, 3, 3, 3, 5, 2),
        ("c1x1", 5, 5, 1, 1, 9, 11, 1),
        ("fc_like", 1, 1, 1, 1, 23, 6, 1),
        ("c_wide", 4, 10, 2, 4, 4, 13, 2),
    )
]
ARRAYS = [(4, 5), (3, 3), (8, 2)]
DATAFLOWS = ["ws", "os", "is"]


def _run_self(args, stdin_text, what, timeout_s):
    """Run this script under ``BENCH_PYTHON`` and return its JSON output (errors as in run_scalesim)."""
    if not BENCH_PYTHON.exists():
        raise FileNotFoundError(f"missing {BENCH_PYTHON}: run benchmarks/setup_scalesim_env.sh first")
    done = subprocess.run(
        [str(BENCH_PYTHON), __file__, *args], input=stdin_text, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise ChildProcessError(f"SCALE-Sim {what} exited with {done.returncode}: {last}")
    return json.loads(done.stdout)


def run_scalesim(rows, cols, dataflow, layers, timeout_s=600):
    """Run this script under ``BENCH_PYTHON`` on ``layers``; return its per-layer dicts.

    Parameters
    ----------
    rows, cols : int
        Array height and width.
    dataflow : str
        ``"ws"``, ``"os"`` or ``"is"``.
    layers : list of dict
        Layers with the keys ``LAYER_KEYS``.
    timeout_s : float, default 600
        Wall-clock limit of the SCALE-Sim process.

    Returns
    -------
    list of dict
        One dict per layer, in order, as described in the module docstring.

    Raises
    ------
    FileNotFoundError
        If ``BENCH_PYTHON`` does not exist.
    ChildProcessError
        If SCALE-Sim exits with an error; the message ends with its last stderr line.
    subprocess.TimeoutExpired
        If it runs longer than ``timeout_s``.
    """
    request = {"rows": rows, "cols": cols, "dataflow": dataflow, "layers": layers}
    return _run_self([], json.dumps(request), f"on {rows}x{cols} {dataflow}", timeout_s)


def scalesim_versions():
    """Versions of SCALE-Sim, numpy and Python in the ``BENCH_PYTHON`` environment.

    Returns
    -------
    dict
        ``{"scalesim": ..., "numpy": ..., "python": ...}``, as that environment reports them.

    Raises
    ------
    FileNotFoundError
        If ``BENCH_PYTHON`` does not exist.
    ChildProcessError
        If it cannot report them.
    """
    return _run_self(["--versions"], None, "--versions", 60)


_CONFIG = """[general]
run_name = ecc_diff

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {sram_kb}
FilterSramSzkB: {sram_kb}
OfmapSramSzkB: {sram_kb}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth : 10
Dataflow : {dataflow}
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

_TOPOLOGY_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
_LAYOUT_HEADER = "Layer name, " + ", ".join(f"f{i}" for i in range(20)) + ",\n"


def _write_inputs(folder, request):
    config = os.path.join(folder, "scale.cfg")
    topology = os.path.join(folder, "topology.csv")
    layout = os.path.join(folder, "layout.csv")
    with open(config, "w") as f:
        f.write(_CONFIG.format(sram_kb=request.get("sram_kb", 1024), **request))
    with open(topology, "w") as f:
        f.write(_TOPOLOGY_HEADER)
        for layer in request["layers"]:
            f.write(
                "{name}, {ifmap_h}, {ifmap_w}, {filter_h}, {filter_w}, {channels}, {filters}, {stride},\n".format(**layer)
            )
    with open(layout, "w") as f:
        f.write(_LAYOUT_HEADER)
        for layer in request["layers"]:
            f.write(layer["name"] + ", 1, 1, 1, 1, 1, 1, 0, 1, 2, 0, 1, 2, 3, 2, 1, 0, 3, 2, 1, 0,\n")
    return config, topology, layout


def main():
    if sys.argv[1:] == ["--versions"]:
        versions = {name: metadata.version(name) for name in ("scalesim", "numpy")}
        json.dump({**versions, "python": platform.python_version()}, sys.stdout)
        return
    request = json.load(sys.stdin)
    from scalesim.scale_sim import scalesim

    results = []
    with tempfile.TemporaryDirectory() as folder:
        config, topology, layout = _write_inputs(folder, request)
        with contextlib.redirect_stdout(io.StringIO()):
            sim = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology, layout=layout)
            sim.runner.set_params(
                config_obj=sim.config, topo_obj=sim.topo, layout_obj=sim.layout,
                top_path=folder, verbosity=False, save_trace=False,
            )
            runner = sim.runner
            for i in range(runner.num_layers):
                from scalesim.single_layer_sim import single_layer_sim

                layer_sim = single_layer_sim()
                layer_sim.set_params(layer_id=i, config_obj=runner.conf, topology_obj=runner.topo,
                                     layout_obj=runner.layout, verbose=False)
                start = time.perf_counter()
                layer_sim.run()
                overall, compute, stall, util, mapping, comp_util = layer_sim.get_compute_report_items()
                seconds = time.perf_counter() - start
                cs = layer_sim.compute_system
                results.append({
                    "name": request["layers"][i]["name"],
                    "compute_cycles": int(compute),
                    "overall_cycles": int(overall),
                    "stall_cycles": int(stall),
                    "overall_util_pct": float(util),
                    "mapping_efficiency_pct": float(mapping),
                    "compute_util_pct": float(comp_util),
                    "row_folds": int(cs.row_fold),
                    "col_folds": int(cs.col_fold),
                    "ifmap_sram_reads": int(layer_sim.ifmap_sram_reads),
                    "filter_sram_reads": int(layer_sim.filter_sram_reads),
                    "ofmap_sram_writes": int(layer_sim.ofmap_sram_writes),
                    "ifmap_dram_reads": int(layer_sim.ifmap_dram_reads),
                    "filter_dram_reads": int(layer_sim.filter_dram_reads),
                    "ofmap_dram_writes": int(layer_sim.ofmap_dram_writes),
                    "seconds": seconds,
                })
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
