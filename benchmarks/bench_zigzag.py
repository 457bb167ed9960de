"""Benchmark: dense layers through this estimator (SCALE-Sim's mapping and a searched one) and through ZigZag.

Describes a project profile's accelerator in ZigZag's format (the PE's registers by
``--pe``: ``systolic``, the default, is the project's WS PE, a one-word weight register,
a one-word input latch and no output register; ``accumulating`` is the first version's,
registers for weights and partial sums; one buffer per operand with the profile's capacities, DRAM
with its bandwidth, the profile's per-word energies; 16x16 weight-stationary unrolling
K x C: output channels along the columns, input channels along the rows) and runs
ZigZag 3.9.1's own mapping search (LOMA) with the same objective on every layer. Prints
per layer the energy by level (rf, buffer, dram, mac), the cycles and the search time of
each tool, ``before`` (``mapping.search: scalesim``) and ``after`` (the searched mapping).
ZigZag runs in the environment made by ``benchmarks/setup_zigzag_env.sh``
(``.zigzag_venv``). Our search is timed around ``search_mapping`` after numba has compiled
(one untimed search of the layer first), the best of three runs, two ways: ``cold``, with
the model's per-layer caches emptied first (operands, folds, input slices, block sums: a
layer seen for the first time, the cost a compiler pays once per layer), and ``warm``,
with them kept from the searches before (the protocol of the first version of this
benchmark). ``ms one`` is one cold fold-level evaluation of SCALE-Sim's mapping (no search),
for scale. ZigZag's time is taken inside its process around its search. Both are process
(CPU) time, so that other jobs on the machine do not count; the ratios are ZigZag's time
over ours, in one run.

Run: ``bash benchmarks/setup_zigzag_env.sh`` once, then
``.venv/bin/python benchmarks/bench_zigzag.py [--profile edge-16x16] [--objective energy] [--layers a,b]
[--lpf-limit 6,8] [--zigzag-cache FILE]``: with several LOMA limits the reference is the lowest energy
ZigZag finds (column ``lpf``: the limit that found it); the cache keeps ZigZag's results between runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

from _zigzag_runner import PES, run_zigzag

from energysim import extract_workload, load_profile
from energysim.dataflow import get_dataflow
from energysim.estimators.systolic import estimate_layer
from energysim.model import folds, gemm, nm, search
from energysim.model import layer as layer_model
from energysim.model.layer import simulate_layer
from energysim.model.search import mapping_space, search_mapping
from energysim.zoo import build_model

#: (model, layer) pairs: the issue's AlexNet and ResNet-18 layers plus MobileNet-v2 pointwise convs.
LAYERS = [
    ("alexnet", "features.3"),
    ("alexnet", "features.6"),
    ("alexnet", "features.8"),
    ("alexnet", "features.10"),
    ("alexnet", "classifier.6"),
    ("resnet18", "layer1.0.conv1"),
    ("resnet18", "layer2.0.conv1"),
    ("resnet18", "layer3.0.conv2"),
    ("mobilenet_v2", "features.2.conv.0.0"),
    ("mobilenet_v2", "features.3.conv.2"),
]

#: The comparison is of dense layers: no compressed weight format, no tile skipping.
DENSE = ["sparsity.weight_format=dense", "sparsity.skip_zero_tiles=false"]


def zigzag_accelerator(profile, pe: str = "systolic") -> dict:
    """The numbers of ``profile`` that ``benchmarks/_zigzag_runner.py`` turns into ZigZag's YAML,
    with the PE description ``pe`` (one of :data:`_zigzag_runner.PES`)."""
    buffer = profile.memory.buffer
    if buffer.is_shared:
        raise ValueError(f"profile {profile.name!r}: the ZigZag description needs per-operand buffers")
    return {
        "pe": pe,
        "word_bits": profile.word_bits,
        "rows": profile.array.rows,
        "cols": profile.array.cols,
        "rf": {"words": profile.memory.rf.words, "read": profile.memory.rf.read, "write": profile.memory.rf.write},
        "buffer": {"ifmap_words": buffer.ifmap_words, "filter_words": buffer.filter_words, "ofmap_words": buffer.ofmap_words,
                   "read": buffer.read, "write": buffer.write},  # fmt: skip
        "dram": {"read": profile.memory.dram.read, "write": profile.memory.dram.write},
        "dram_words_per_cycle": profile.memory.dram.bandwidth_words_per_cycle,
        "mac": profile.compute.mac,
    }


def zigzag_layer(layer) -> dict:
    """ZigZag's loop sizes of a conv or linear layer (groups of 1 only)."""
    if layer.groups != 1:
        raise ValueError(f"layer {layer.name!r}: grouped convolutions are not compared")
    if layer.kind == "linear":
        return {"name": layer.name, "kind": "linear", "K": layer.out_channels, "C": layer.in_channels}
    _, iy, ix = layer.input_shape
    _, oy, ox = layer.output_shape
    return {"name": layer.name, "kind": "conv", "K": layer.out_channels, "C": layer.in_channels, "OY": oy, "OX": ox,
            "IY": iy, "IX": ix,
            "FY": layer.kernel[0], "FX": layer.kernel[1], "SY": layer.stride[0], "SX": layer.stride[1],
            "PY": layer.padding[0], "PX": layer.padding[1]}  # fmt: skip


def best_zigzag(accelerator: dict, layers: list[dict], objective: str, lpf_limits: list[int], cache: str | None = None) -> list[dict]:
    """Per layer, ZigZag's result with the lowest energy over one LOMA search per ``lpf_limits``
    (its search is not exhaustive: a larger limit can find a better mapping), with
    ``lpf_limit`` (the winner's) and ``energy_pj_by_lpf`` added; ``cpu_seconds`` is the
    fastest of the searches (its default limit's, usually: the speed ratios stay conservative)."""
    runs = {lpf: run_zigzag(accelerator, layers, opt=objective, lpf_limit=lpf, cache=cache) for lpf in lpf_limits}
    best = []
    for i in range(len(layers)):
        lpf = min(lpf_limits, key=lambda v: (runs[v][i]["energy_pj"], v))
        by_lpf = {str(v): runs[v][i]["energy_pj"] for v in lpf_limits}
        fastest = min(runs[v][i]["cpu_seconds"] for v in lpf_limits)
        best.append(runs[lpf][i] | {"lpf_limit": lpf, "energy_pj_by_lpf": by_lpf, "cpu_seconds": fastest})
    return best


def clear_model_caches() -> None:
    """Empty the model's per-layer caches, as for a layer never seen (numba stays compiled)."""
    for module in (folds, gemm, layer_model, nm, search):
        for value in vars(module).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()


def one_mapping_seconds(profile, layer, dataflow) -> float:
    """Best process time of three cold fold-level evaluations of SCALE-Sim's mapping: what the
    estimator pays for the layer without a search (the scale of the search's cold time)."""
    best = float("inf")
    for _ in range(3):
        clear_model_caches()
        start = time.process_time()
        simulate_layer(profile, layer, dataflow, cycle_level=False)
        best = min(best, time.process_time() - start)
    return best


def search_seconds(profile, layer, dataflow, objective: str, cold: bool) -> tuple[float, list]:
    """Best process time of three searches of ``layer`` (see the module docstring) and what the last evaluated."""
    best = float("inf")
    for _ in range(3):
        if cold:
            clear_model_caches()
        start = time.process_time()
        _, evaluated = search_mapping(profile, layer, dataflow, objective)
        best = min(best, time.process_time() - start)
    return best, evaluated


def ours(layer, profile) -> dict:
    report = estimate_layer(layer, profile, cycle_level=False)
    levels = report.energy_by_level
    return {"energy_pj": report.energy, "cycles": report.cycles, "mapping": report.extra["mapping"]["name"], "accesses": report.accesses,
            "levels_pj": {k: levels[k] for k in ("rf", "buffer", "dram", "mac")}}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="edge-16x16")
    parser.add_argument("--objective", default="energy", choices=("energy", "latency", "edp"))
    parser.add_argument("--pe", default="systolic", choices=PES, help="ZigZag's PE description (see the module docstring)")
    parser.add_argument("--lpf-limit", default="6",
                        help="ZigZag's LOMA loop-prime-factor limit (its default: 6); several, comma-separated (e.g. 6,8), "
                             "run one search each and compare with the lowest energy found")  # fmt: skip
    parser.add_argument("--zigzag-cache", default=None, help="JSON file keeping ZigZag's results: layers found there are not rerun")
    parser.add_argument("--layers", default=None, help="comma-separated model:layer pairs (default: the built-in list)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    pairs = LAYERS if args.layers is None else [tuple(p.split(":", 1)) for p in args.layers.split(",")]
    before = load_profile(args.profile, DENSE)
    after = load_profile(args.profile, [*DENSE, f"mapping.search={args.objective}"])
    workloads = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model_name in dict.fromkeys(m for m, _ in pairs):
            model, shape = build_model(model_name)
            workloads[model_name] = extract_workload(model, shape)
    layers = [workloads[m].layer(name) for m, name in pairs]
    try:
        theirs = best_zigzag(zigzag_accelerator(before, args.pe), [zigzag_layer(l) for l in layers], args.objective,
                             [int(v) for v in args.lpf_limit.split(",")], args.zigzag_cache)  # fmt: skip
    except (OSError, ValueError) as err:
        print(f"bench_zigzag.py: error: {err}", file=sys.stderr)
        return 2
    rows = []
    dataflow = get_dataflow(before.array.dataflow)
    for layer, zz in zip(layers, theirs, strict=True):
        search_mapping(after, layer, dataflow, args.objective)  # compile
        cold, evaluated = search_seconds(after, layer, dataflow, args.objective, cold=True)
        warm, _ = search_seconds(after, layer, dataflow, args.objective, cold=False)
        single = one_mapping_seconds(before, layer, dataflow)
        space = mapping_space(layer, dataflow, after.array.rows, after.array.cols)
        rows.append({"layer": layer.name, "scalesim": ours(layer, before), "searched": ours(layer, after),
                     "search_seconds": cold, "search_seconds_warm": warm, "one_mapping_seconds": single,
                     "candidates": len(space),
                     "evaluated": len(evaluated), "zigzag": zz})  # fmt: skip
    head = f"{'layer':<22}{'uJ scalesim':>12}{'uJ ours':>9}{'uJ zigzag':>10}{'ours/zz':>8}" \
           f"{'cyc scalesim':>13}{'cyc ours':>10}{'cyc zigzag':>11}{'ms cold':>8}{'ms warm':>8}{'ms one':>7}{'s zigzag':>9}" \
           f"{'x cold':>7}{'x warm':>7}{'eval':>8}{'lpf':>4}  ours mapping"  # fmt: skip
    print(head)
    for r in rows:
        s, o, z = r["scalesim"], r["searched"], r["zigzag"]
        print(f"{r['layer']:<22}{s['energy_pj'] / 1e6:>12.1f}{o['energy_pj'] / 1e6:>9.1f}{z['energy_pj'] / 1e6:>10.1f}"
              f"{o['energy_pj'] / z['energy_pj'] - 1:>+8.1%}{s['cycles']:>13}{o['cycles']:>10}{int(z['cycles']):>11}"
              f"{r['search_seconds'] * 1e3:>8.1f}{r['search_seconds_warm'] * 1e3:>8.1f}{r['one_mapping_seconds'] * 1e3:>7.1f}{z['cpu_seconds']:>9.2f}"
              f"{z['cpu_seconds'] / r['search_seconds']:>7.0f}{z['cpu_seconds'] / r['search_seconds_warm']:>7.0f}"
              f"{r['evaluated']:>4}/{r['candidates']:<3}{z['lpf_limit']:>4}  {o['mapping']}")  # fmt: skip
    print("\nenergy by level, uJ (ours searched | zigzag): rf, buffer, dram, mac")
    for r in rows:
        o, z = r["searched"]["levels_pj"], r["zigzag"]["levels_pj"] | {"mac": r["zigzag"]["mac_pj"]}
        print(f"{r['layer']:<22}" + "  ".join(f"{k} {o[k] / 1e6:8.2f} | {z[k] / 1e6:8.2f}" for k in ("rf", "buffer", "dram", "mac")))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
