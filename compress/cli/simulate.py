"""``ecc simulate``: per-layer energy (and cycles) of a model's sparsity pattern on a profile."""

from __future__ import annotations

import argparse

from ._common import add_json_arg, add_model_args, add_profile_args, format_table, model_from_args, profile_from_args, write_json

__all__ = ["register", "render", "si", "sparsity_from_args"]

_KIND = {"conv": "conv", "depthwise": "dw", "linear": "fc", "matmul": "mm"}


def register(sub: argparse._SubParsersAction) -> None:
    from energysim.estimators import ESTIMATORS
    from energysim.sparsity import PATTERNS

    parser = sub.add_parser(
        "simulate",
        help="energy and cycles per layer of a model on a hardware profile",
        description=(
            "Simulate a model's energy on a hardware profile, layer by layer. The sparsity pattern comes from the "
            "model's own weights (default), a checkpoint, or a synthetic pattern; input sparsity from input masks, "
            "real activations (--inputs-from) or --input-density."
        ),
    )
    add_model_args(parser)
    add_profile_args(parser)
    parser.add_argument(
        "--estimator", choices=list(ESTIMATORS), default="systolic",
        help="; ".join(f"{e.name}: {e.summary}" for e in ESTIMATORS.values()) + " (default: systolic)",
    )
    parser.add_argument("--checkpoint", metavar="PATH", help="state_dict file or `ecc train` run directory (its model.pt)")
    parser.add_argument("--weight-density", type=float, default=None, metavar="D", help="synthetic weight density in (0,1]")
    parser.add_argument("--input-density", type=float, default=None, metavar="D", help="synthetic input density in (0,1]")
    parser.add_argument(
        "--pattern", choices=PATTERNS, default="random",
        help="synthetic pattern (nm: N:M zeros along K, random among each group; inputs random)",
    )
    parser.add_argument(
        "--nm", metavar="N:M", default=None,
        help="N:M of --pattern nm, e.g. 2:4 (default: the profile's sparsity.nm)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic pattern and model initialisation")
    parser.add_argument(
        "--inputs-from", metavar="DATASET", default=None,
        help="input sparsity from the real activations of one sample of this dataset (e.g. digits)",
    )
    parser.add_argument("--data-root", default=None, help="dataset location for --inputs-from")
    parser.add_argument(
        "--trace", metavar="LAYER", default=None,
        help="also print the per-cycle utilization trace summary of LAYER (systolic) and, with --plot, draw it",
    )
    parser.add_argument(
        "--plot", metavar="PATH", default=None,
        help="write the per-layer energy figure stacked by memory level (PATH.png and PATH.svg)",
    )
    add_json_arg(parser, "the report")
    parser.set_defaults(run=run)


def si(value: float | None) -> str:
    """Compact engineering notation: 1234567 -> '1.23M'; None -> '-'."""
    if value is None:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _nm_from_args(args, profile) -> tuple[int, int] | None:
    """The (N, M) of ``--pattern nm``: ``--nm N:M``, else the profile's ``sparsity.nm``."""
    if args.nm is not None and args.pattern != "nm":
        raise ValueError(f"--nm is for --pattern nm, got --pattern {args.pattern}")
    if args.pattern != "nm":
        return None
    if args.weight_density is None:
        raise ValueError("--pattern nm needs --weight-density (at most N/M)")
    if args.nm is None:
        if not profile.sparsity.nm.enabled:
            raise ValueError(f"--pattern nm needs --nm N:M: profile {profile.name} has no sparsity.nm")
        return profile.sparsity.nm.n, profile.sparsity.nm.m
    n, sep, m = args.nm.partition(":")
    if not (sep and n.strip().isdigit() and m.strip().isdigit() and 0 < int(n) < int(m)):
        raise ValueError(f"--nm must be N:M with integers 0 < N < M, e.g. 2:4, got {args.nm!r}")
    return int(n), int(m)


def sparsity_from_args(args, model, shape, workload, profile):
    """The sparsity pattern the options ask for (see ``ecc simulate --help``)."""
    from compress.rundir import model_file
    from energysim.sparsity import Sparsity, load_checkpoint_state

    nm = _nm_from_args(args, profile)
    synthetic = args.weight_density is not None or args.input_density is not None
    if synthetic and args.checkpoint:
        raise ValueError("--checkpoint and synthetic densities are exclusive: choose one source of weights")
    if args.input_density is not None and args.inputs_from:
        raise ValueError("--input-density and --inputs-from are exclusive: choose one source of input sparsity")
    if args.checkpoint:
        path = model_file(args.checkpoint)  # a run folder means its model file
        state = load_checkpoint_state(path)
        sparsity = Sparsity.from_state_dict(state, workload, source=str(path))
        if args.inputs_from:
            # The activations must come from the checkpoint's weights (masks included), not the fresh model's.
            from compress.masks import load_masked_state_dict

            try:
                load_masked_state_dict(model, state)
            except RuntimeError as exc:
                raise ValueError(f"{path}: does not fit {args.model}: {str(exc).splitlines()[0]}") from None
    elif synthetic:
        sparsity = Sparsity.synthetic(
            workload,
            1.0 if args.weight_density is None else args.weight_density,
            1.0 if args.input_density is None else args.input_density,
            args.pattern,
            args.seed,
            nm,
        )
    else:
        sparsity = Sparsity.from_model(model, workload)
    if args.inputs_from:
        from compress.data import load_dataset

        data = load_dataset(args.inputs_from, args.data_root, input_shape=shape if len(shape) == 3 else None)
        x = data.test[0][0].unsqueeze(0).reshape(1, *shape)
        sparsity = sparsity.with_inputs_from(Sparsity.from_activations(model, workload, x))
    return sparsity


def run(args: argparse.Namespace) -> int:
    import torch

    from energysim.simulate import simulate

    torch.manual_seed(args.seed)
    profile = profile_from_args(args)
    model, shape, workload = model_from_args(args)
    sparsity = sparsity_from_args(args, model, shape, workload, profile)
    report = simulate(workload, profile, args.estimator, sparsity)
    trace = _trace(args, workload, profile, sparsity) if args.trace else None
    if args.json:
        write_json(report.to_dict() | ({"trace": {"layer": args.trace, "cycles": trace.tolist()}} if trace is not None else {}),
                   args.json)
    written = []
    if args.plot:
        from compress import plot

        written += plot.layer_energy({"model": report.to_dict()}, args.plot)
        if trace is not None:
            written += plot.utilization_timeline(
                trace, f"{args.plot}_timeline_{args.trace}", pes=profile.array.rows * profile.array.cols,
                title=f"{args.trace} of {workload.model} on {profile.name}: PE activity per cycle",
            )
    if args.json == "-":
        return 0
    print(render(report))
    if trace is not None:
        pes = profile.array.rows * profile.array.cols
        busy = trace.sum(axis=0)
        print(
            f"trace of {args.trace}: {len(trace)} cycles x {pes} PEs: effective {100 * busy[0] / busy.sum():.1f}%, "
            f"gated {100 * busy[1] / busy.sum():.1f}%, idle {100 * busy[2] / busy.sum():.1f}% of PE-cycles"
        )
    for path in written:
        print(f"figure: {path}")
    return 0


def _trace(args, workload, profile, sparsity):
    """The (cycles, 3) effective/gated/idle PE counts of ``--trace LAYER``."""
    if args.estimator != "systolic":
        raise ValueError("--trace needs --estimator systolic (the paper model has no notion of time)")
    from energysim.estimators.systolic import utilization_trace

    return utilization_trace(workload.layer(args.trace), profile, sparsity[args.trace])


def render(report) -> str:
    """The per-layer table and totals, readable in 100 columns."""
    from energysim.estimators import get_estimator

    total = report.energy
    rows = []
    for l in report.layers:
        split = [100 * l.energy_by_level[k] / l.energy if l.energy else 0.0 for k in ("dram", "buffer", "rf", "mac")]
        rows.append(
            [l.name, _KIND[l.kind], si(l.macs), si(l.effective_macs), si(l.cycles), si(l.energy)]
            + [f"{s:.0f}" for s in split]
            + [f"{100 * l.energy / total:.1f}" if total else "-"]
        )
    t = report.total()
    split = [100 * t["energy_by_level"][k] / total if total else 0.0 for k in ("dram", "buffer", "rf", "mac")]
    rows.append(["total", "", si(t["macs"]), si(t["effective_macs"]), si(t["cycles"]), si(total)]
                + [f"{s:.0f}" for s in split] + ["100.0"])
    unit = "pJ" if report.units == "pJ" else "norm."
    table = format_table(
        ["layer", "kind", "MACs", "eff.MACs", "cycles", f"energy {unit}", "DRAM%", "buf%", "RF%", "MAC%", "share%"],
        rows,
    )
    head = f"{report.model} on {report.profile} ({report.estimator} estimator, energy in {report.units})"
    lines = [head, table]
    if get_estimator(report.estimator).relaxed_bound:
        lines.append(f"relaxed energy (the paper's projection bound): {report.energy_relaxed:.6g}")
    if t["stall_cycles"]:
        lines.append(f"stall cycles (DRAM bandwidth): {si(t['stall_cycles'])} of {si(t['cycles'])}")
    status = {l.name: l.extra["nm"] for l in report.layers if "nm" in l.extra}
    if status:
        compressed = [name for name, nm in status.items() if nm]
        dense = [name for name, nm in status.items() if not nm]
        lines.append(
            f"N:M-compressed layers: {', '.join(compressed) or 'none'}; "
            f"run dense (weights violate N:M): {', '.join(dense) or 'none'}"
        )
    return "\n".join(lines)
