"""Run SCALE-Sim 3.0.0 on conv layers and print its per-layer figures as JSON.

Runs inside the environment made by ``benchmarks/setup_scalesim_env.sh`` (numpy 1.26),
never inside the project's own. Input (stdin, JSON)::

    {"rows": 8, "cols": 8, "dataflow": "ws",
     "layers": [{"name": "c1", "ifmap_h": 9, "ifmap_w": 9, "filter_h": 3, "filter_w": 3,
                 "channels": 4, "filters": 6, "stride": 1}, ...]}

Output (stdout, JSON): one object per layer with SCALE-Sim's compute cycles, stall
cycles, overall utilization and mapping efficiency (percent), average compute
utilization (percent), SRAM reads and writes per operand, DRAM reads per operand and
the wall time of that layer's simulation in seconds. CALC bandwidth mode, no sparsity.
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import time

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
