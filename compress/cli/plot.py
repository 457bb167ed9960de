"""``ecc plot``: figures of a sweep directory, or the utilization timeline of one layer."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plot",
        help="energy-accuracy curves and per-layer figures of a sweep",
        description=(
            "Write PNG and SVG figures of a sweep directory into DIR/figures: (a) accuracy vs relative energy "
            "per method (one curve per method and structure), (b) per-layer energy of the dense and a pruned model "
            "stacked by memory level, (c) per-layer density per method at one budget, and the share of array tiles "
            "each layer keeps where the array skips all-zero tiles; for a sweep with --latency-budgets, (e) accuracy over the "
            "(energy, latency) plane, one panel per method, and (f) per energy budget, accuracy vs relative latency per "
            "method. With --timeline RUN LAYER: (d) the cycle-level utilization timeline "
            "of one layer of a trained run."
        ),
    )
    parser.add_argument("dir", nargs="?", metavar="DIR", help="a sweep directory (written by `ecc sweep`)")
    parser.add_argument("--budget", type=float, default=None, help="budget of figures (b) and (c) (default: the lowest)")
    parser.add_argument("--method", default="ecc", help="pruned model of figure (b) (default: ecc)")
    parser.add_argument("--timeline", nargs=2, metavar=("RUN", "LAYER"), help="utilization timeline of LAYER in run RUN")
    parser.add_argument("--out", metavar="DIR", default=None, help="where to write the figures (default: DIR/figures)")
    parser.set_defaults(run=run)


def _sweep_figures(root: Path, out: Path, budget: float | None, method: str) -> list[Path]:
    """Figures (a)-(c) of a sweep directory; every input is read and checked before any figure is written."""
    from compress import plot
    from compress.rundir import RunFolder
    from compress.sweep import SweepFileError, read_results, read_settings, read_simulated, read_summary

    base = read_settings(root)["base"]
    summary = read_summary(root)
    results = read_results(root)
    if not results:
        raise SweepFileError(f"{root / 'results.csv'}: no cells; the sweep has not finished one yet")
    budgets = sorted({r["budget"] for r in results})
    chosen = min(budgets) if budget is None else budget
    if chosen not in budgets:
        raise ValueError(f"--budget {chosen:g} is not in the sweep; budgets: {', '.join(f'{b:g}' for b in budgets)}")
    rows = [r for r in summary if r["feasible_seeds"] > 0]
    dense = [r["dense_accuracy"] for r in results if r.get("dense_accuracy") is not None]
    shares = {prefix: _per_layer(results, chosen, prefix) for prefix in ("density:", "tiles:")}
    for prefix, per_method in shares.items():
        if len({frozenset(layers) for layers in per_method.values()}) > 1:
            given = "; ".join(f"{m}: {', '.join(layers)}" for m, layers in per_method.items())
            raise SweepFileError(f"{root / 'results.csv'}: the feasible cells at budget {chosen:g} give the "
                                 f"{prefix[:-1]} of different layers ({given})")
    densities, tiles = shares["density:"], shares["tiles:"]
    seed = min(r["seed"] for r in results)
    dense_path = RunFolder(root / "dense" / f"seed{seed}").simulated
    pruned_path = RunFolder(root / "cells" / method / f"b{chosen:g}_s{seed}").simulated
    reports = {}
    if dense_path.is_file() and pruned_path.is_file():
        reports = {"dense": read_simulated(dense_path), f"{method} @ {chosen:g}": read_simulated(pruned_path)}
        missing = [l["name"] for l in reports["dense"]["layers"]
                   if l["name"] not in {p["name"] for p in reports[f"{method} @ {chosen:g}"]["layers"]}]
        if missing:
            raise SweepFileError(f"{pruned_path}: lacks layer(s) {', '.join(missing)} of {dense_path}")

    title = f"{base['model']} on {base['dataset']}, {base['profile']} ({base['estimator']} estimator)"
    timed = [r for r in rows if r.get("latency_budget") is not None]
    # With latency budgets, one energy curve per method and latency budget.
    curves = [r | {"method": f"{r['method']} (latency {r['latency_budget']:g})"} if r in timed else r for r in rows]
    written = plot.energy_accuracy(
        curves, out / "energy_accuracy", dense_accuracy=sum(dense) / len(dense) if dense else None, title=title,
    )
    if timed:
        written += plot.energy_latency_accuracy(timed, out / "energy_latency_accuracy", title=title)
        for energy in sorted({r["budget"] for r in timed}):
            written += plot.latency_accuracy(timed, out / f"latency_accuracy_b{energy:g}", budget=energy,
                                             title=f"{title}: energy budget {energy:g}")
    if densities:
        written += plot.layer_density(_mean(densities), out / f"density_b{chosen:g}", budget=chosen)
    if tiles:
        written += plot.layer_density(_mean(tiles), out / f"tiles_b{chosen:g}", budget=chosen,
                                      quantity="tiles kept (% of the layer's array tiles)")
    if reports:
        written += plot.layer_energy(reports, out / f"layer_energy_{method}_b{chosen:g}")
    return written


def _per_layer(results: list[dict], budget: float, prefix: str) -> dict[str, dict[str, list[float]]]:
    """Per method, per layer, the values of the ``prefix<layer>`` columns of the feasible cells at ``budget``."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in results:
        if r["budget"] == budget and r["feasible"]:
            per_layer = out.setdefault(r["method"], {})
            for key, value in r.items():
                if key.startswith(prefix) and value is not None:
                    per_layer.setdefault(key[len(prefix):], []).append(value)
    return {m: layers for m, layers in out.items() if layers}


def _mean(values: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {m: {n: sum(v) / len(v) for n, v in layers.items()} for m, layers in values.items()}


def _timeline(run_dir: Path, layer: str, out: Path) -> list[Path]:
    from compress import plot
    from compress.rundir import load_run

    run = load_run(run_dir)
    from energysim.estimators.systolic import utilization_trace

    spec = run.workload.layer(layer)
    trace = utilization_trace(spec, run.profile, run.sparsity[layer])
    pes = run.profile.array.rows * run.profile.array.cols
    return plot.utilization_timeline(
        trace, out / f"timeline_{layer}", pes=pes,
        title=f"{layer} of {run.workload.model} on {run.profile.name}: PE activity per cycle",
    )


def run(args: argparse.Namespace) -> int:
    if args.timeline:
        run_dir, layer = Path(args.timeline[0]), args.timeline[1]
        written = _timeline(run_dir, layer, Path(args.out) if args.out else run_dir / "figures")
    else:
        if not args.dir:
            raise ValueError("give a sweep directory, or --timeline RUN LAYER")
        root = Path(args.dir)
        written = _sweep_figures(root, Path(args.out) if args.out else root / "figures", args.budget, args.method)
    for path in written:
        print(path)
    return 0
