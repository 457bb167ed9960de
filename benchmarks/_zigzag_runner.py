"""Run ZigZag (PyPI ``zigzag-dse`` 3.9.1) on single layers and print its per-layer figures as JSON.

As a script it runs inside the environment made by ``benchmarks/setup_zigzag_env.sh``
(``.zigzag_venv``), never inside the project's own. Imported (standard library only), it
gives the project's side :data:`ZIGZAG_PYTHON` and :func:`run_zigzag`, which runs this
script in that environment. Input (stdin, JSON)::

    {"accelerator": {...}, "layers": [{"name": ..., "kind": "conv" | "linear", "K": ..., "C": ...,
     "OY": ..., "OX": ..., "IY": ..., "IX": ..., "FY": ..., "FX": ..., "SY": ..., "SX": ..., "PY": ..., "PX": ...},
     ...], "opt": "energy", "order": null, "lpf_limit": 6}

``accelerator`` is what :func:`zigzag_accelerator` of ``benchmarks/bench_zigzag.py`` makes
from a project profile: the PE description (:data:`PES`), array size, per-operand buffer
words, per-access energies, DRAM bandwidth. ``IY``/``IX`` are the layer's input rows and
columns without padding. ``order`` (optional) forces ZigZag's temporal loop order (innermost first);
``lpf_limit`` (optional, ZigZag's default 6) bounds the loop prime factors its LOMA search
permutes.
Output (stdout, JSON): per layer ZigZag's total energy, MAC energy, memory energy per
level (register, buffer, dram), element reads and writes per level and operand, latency
in cycles, DRAM port accesses per operand and the wall
and process (CPU) time of its mapping search in seconds.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZIGZAG_PYTHON = Path(os.environ.get("ZIGZAG_VENV", ROOT / ".zigzag_venv")) / "bin" / "python"


def run_zigzag(
    accelerator: dict, layers: list[dict], opt: str = "energy", order: list | None = None, lpf_limit: int = 6, cache: str | None = None
) -> list[dict]:
    """Run this script in the ZigZag environment; raise OSError if it is missing or fails.

    ``cache`` (a JSON file, optional) keeps every result under its request (accelerator,
    layer, objective, order, lpf limit): layers found there are not run again (ZigZag's
    search takes minutes per layer with ``lpf_limit`` 8).
    """
    keys = [json.dumps([accelerator, layer, opt, order, lpf_limit], sort_keys=True) for layer in layers]
    stored = json.loads(Path(cache).read_text()) if cache and Path(cache).exists() else {}
    missing = [layer for layer, key in zip(layers, keys) if key not in stored]
    if missing:
        if not ZIGZAG_PYTHON.exists():
            raise OSError(f"{ZIGZAG_PYTHON} not found: run benchmarks/setup_zigzag_env.sh first")
        request = json.dumps({"accelerator": accelerator, "layers": missing, "opt": opt, "order": order, "lpf_limit": lpf_limit})
        done = subprocess.run(
            [str(ZIGZAG_PYTHON), str(Path(__file__).resolve())], input=request, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise OSError(f"ZigZag run failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        stored |= {key: result for key, result in zip([k for k in keys if k not in stored], json.loads(done.stdout), strict=True)}
        if cache:
            from energysim.files import atomic_write_json  # here: this module also runs in ZigZag's environment

            atomic_write_json(cache, stored)
    return [stored[key] for key in keys]


def _port(name, kind, bits_min, bits_max, allocation):
    return {"name": name, "type": kind, "bandwidth_min": bits_min, "bandwidth_max": bits_max, "allocation": allocation}


def _memory(bits, read, write, operands, ports, served, word):
    """One memory; ZigZag prices an access of the port's full (max) width, so the profile's
    per-word energies are scaled by the words in it (a narrower access pays its share)."""
    words = max(port["bandwidth_max"] for port in ports) / word
    return {"size": bits, "r_cost": read * words, "w_cost": write * words, "area": 0, "latency": 1,
            "operands": operands, "ports": ports, "served_dimensions": served}  # fmt: skip


#: The PE descriptions :func:`_accelerator_yaml` can give (``accelerator["pe"]``).
PES = ("systolic", "accumulating")


def _register(acc: dict, operand: str, words: int) -> dict:
    """A register of ``words`` words in every PE for input operand ``operand`` (written from above, read by the MAC)."""
    word, rf = acc["word_bits"], acc["rf"]
    ports = [_port("r_port_1", "read", word, word, [f"{operand}, tl"]), _port("w_port_1", "write", word, word, [f"{operand}, fh"])]
    return _memory(words * word, rf["read"], rf["write"], [operand], ports, [], word)


def _pe_registers(acc: dict) -> dict:
    """The PE's registers. ``systolic`` is the project's WS PE: one word for the stationary
    weight, one latch for the moving input and no output register, so every partial sum
    leaves the PE after each MAC (the column's adder chain is ZigZag's spatial reduction
    over D2) and each temporal accumulation goes through the output buffer. ``accumulating``
    (the first version of this benchmark) gives each PE ``memory.rf.words`` words for
    weights and for partial sums and no input register, so ZigZag may keep a partial sum
    in the PE across temporal loops."""
    if acc["pe"] == "systolic":
        return {"reg_W": _register(acc, "I2", 1), "reg_I": _register(acc, "I1", 1)}
    word, rf = acc["word_bits"], acc["rf"]
    return {
        "reg_W": _register(acc, "I2", rf["words"]),
        "reg_O": _memory(rf["words"] * word, rf["read"], rf["write"], ["O"], [
            _port("r_port_1", "read", word, word, ["O, tl"]), _port("r_port_2", "read", word, word, ["O, th"]),
            _port("w_port_1", "write", word, word, ["O, fh"]), _port("w_port_2", "write", word, word, ["O, fl"])], [], word),
    }  # fmt: skip


def _accelerator_yaml(acc: dict) -> dict:
    """ZigZag's accelerator description: the PE's registers (:func:`_pe_registers`), one buffer per operand, DRAM."""
    if acc.get("pe") not in PES:
        raise ValueError(f"accelerator pe {acc.get('pe')!r}: expected one of {', '.join(PES)}")
    word = acc["word_bits"]
    wide = word * acc["rows"] * acc["cols"]
    buf, dram = acc["buffer"], acc["dram"]
    in_out = lambda op: [_port("r_port_1", "read", word, wide, [f"{op}, tl"]), _port("w_port_1", "write", word, wide, [f"{op}, fh"])]  # noqa: E731
    outputs = [_port("r_port_1", "read", word, wide, ["O, tl", "O, th"]), _port("w_port_1", "write", word, wide, ["O, fh", "O, fl"])]
    dram_bits = word * min(acc["dram_words_per_cycle"], 1e6)
    all_directions = [f"{op}, {d}" for op in ("I1", "I2") for d in ("fh", "tl")] + [f"O, {d}" for d in ("fh", "tl", "fl", "th")]
    memories = {
        **_pe_registers(acc),
        "ifmap_buf": _memory(buf["ifmap_words"] * word, buf["read"], buf["write"], ["I1"], in_out("I1"), ["D1", "D2"], word),
        "filter_buf": _memory(buf["filter_words"] * word, buf["read"], buf["write"], ["I2"], in_out("I2"), ["D1", "D2"], word),
        "ofmap_buf": _memory(buf["ofmap_words"] * word, buf["read"], buf["write"], ["O"], outputs, ["D1", "D2"], word),
        "dram": _memory(10**12, dram["read"], dram["write"], ["I1", "I2", "O"],
                        [_port("rw_port_1", "read_write", word, int(max(dram_bits, word)), all_directions)], ["D1", "D2"], word),
    }  # fmt: skip
    return {
        "name": "from_profile",
        "memories": memories,
        "operational_array": {"unit_energy": acc["mac"], "unit_area": 1, "dimensions": ["D1", "D2"], "sizes": [acc["rows"], acc["cols"]]},
    }


def _workload_yaml(layer: dict, word: int) -> list:
    precision = {"W": word, "I": word, "O": word, "O_final": word}
    if layer["kind"] == "linear":
        return [{"id": 0, "name": layer["name"], "operator_type": "Gemm", "equation": "O[b][k]+=W[k][c]*I[b][c]",
                 "loop_dims": ["B", "K", "C"], "loop_sizes": [1, layer["K"], layer["C"]], "operand_precision": precision}]  # fmt: skip
    # The input rows and columns the windows cover, padding left out: padding is generated,
    # not stored, so ZigZag clips every input tile to these (its pr_loop_sizes).
    iy = min(layer["IY"], (layer["OY"] - 1) * layer["SY"] + layer["FY"] - layer["PY"])
    ix = min(layer["IX"], (layer["OX"] - 1) * layer["SX"] + layer["FX"] - layer["PX"])
    return [{
        "id": 0, "name": layer["name"], "operator_type": "Conv",
        "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
        "dimension_relations": [f"ix={layer['SX']}*ox+1*fx", f"iy={layer['SY']}*oy+1*fy"],
        "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
        "loop_sizes": [1, layer["K"], layer["C"], layer["OY"], layer["OX"], layer["FY"], layer["FX"]],
        "operand_precision": precision,
        "pr_loop_dims": ["IX", "IY"], "pr_loop_sizes": [ix, iy],
        "padding": [[layer["PX"], layer["PX"]], [layer["PY"], layer["PY"]]],
    }]  # fmt: skip


def _mapping_yaml(acc: dict, layer: dict, order: list | None) -> list:
    entry = {"name": "default", "spatial_mapping": {"D1": [f"K, {acc['cols']}"], "D2": [f"C, {acc['rows']}"]},
             "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}  # fmt: skip
    if order:
        entry["temporal_ordering"] = order
    return [entry]


def _level_energy(cme) -> dict:
    """ZigZag's memory energy per level kind: the top level of each operand is DRAM, the one
    below the buffer, the rest (W and O) the PE registers."""
    out = {"rf": 0.0, "buffer": 0.0, "dram": 0.0}
    for per_level in cme.mem_energy_breakdown.values():
        top = len(per_level) - 1
        for level, energy in enumerate(per_level):
            out["dram" if level == top else "buffer" if level == top - 1 else "rf"] += float(energy)
    return out


#: ZigZag's layer operands by the project's operand names.
_OPERANDS = {"W": "weights", "I": "inputs", "O": "outputs"}


def _accesses(cme) -> dict:
    """Element reads and writes per level kind and operand in the project's layout
    (``accesses[level][operand] = {"reads", "writes"}``, levels as in :func:`_level_energy`),
    from ZigZag's per-memory element move counts (a read goes to the level below or above,
    a write comes from either)."""
    from zigzag.mapping.data_movement import DataMoveAttr

    out = {kind: {name: {"reads": 0, "writes": 0} for name in _OPERANDS.values()} for kind in ("rf", "buffer", "dram")}
    for operand, per_level in cme.mapping.unit_mem_data_movement.items():
        top = len(per_level) - 1
        for level, movement in enumerate(per_level):
            counts = {str(d): int(c) for d, c in movement.get_attribute(DataMoveAttr.DATA_ELEM_MOVE_COUNT).data.items()}
            entry = out["dram" if level == top else "buffer" if level == top - 1 else "rf"][_OPERANDS[str(operand)]]
            entry["reads"] += counts["rd_out_to_low"] + counts["rd_out_to_high"]
            entry["writes"] += counts["wr_in_by_low"] + counts["wr_in_by_high"]
    return out


def _dram_accesses(cme) -> dict:
    """DRAM word accesses per layer operand and direction (ZigZag's ``memory_word_access``)."""
    out = {}
    for operand, per_level in cme.memory_word_access.items():
        top = per_level[-1]
        out[str(operand)] = {str(direction): float(count) for direction, count in top.data.items()}
    return out


def main() -> int:
    import yaml
    from zigzag.api import get_hardware_performance_zigzag

    request = json.load(sys.stdin)
    acc = request["accelerator"]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "acc.yaml").write_text(yaml.safe_dump(_accelerator_yaml(acc), sort_keys=False))
        for layer in request["layers"]:
            (folder / "wl.yaml").write_text(yaml.safe_dump(_workload_yaml(layer, acc["word_bits"]), sort_keys=False))
            (folder / "map.yaml").write_text(yaml.safe_dump(_mapping_yaml(acc, layer, request.get("order")), sort_keys=False))
            start, cpu_start = time.perf_counter(), time.process_time()
            energy, latency, cmes = get_hardware_performance_zigzag(
                str(folder / "wl.yaml"), str(folder / "acc.yaml"), str(folder / "map.yaml"), opt=request["opt"],
                dump_folder=str(folder / "out"), loma_show_progress_bar=False, lpf_limit=request.get("lpf_limit", 6),
            )  # fmt: skip
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            cme, extra = cmes[0]
            while not hasattr(cme, "temporal_mapping"):  # the layer's own evaluation, inside the cumulative one
                cme, extra = extra[0]
            results.append({
                "name": layer["name"], "energy_pj": float(energy), "cycles": float(latency), "seconds": seconds,
                "cpu_seconds": cpu_seconds, "mac_pj": float(cme.mac_energy), "levels_pj": _level_energy(cme),
                "dram": _dram_accesses(cme), "accesses": _accesses(cme),
                "temporal_mapping": str(cme.temporal_mapping),
            })  # fmt: skip
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)
    sys.exit(main())
