"""How close can ANY coefficient table of the table's form get? A lower bound per layer (issues 13, 14).

The coefficient table prices a layer's pattern as a linear function of its features
(:func:`energysim.coeffs.pattern_features`): a constant, one term per kept skip group, one per
used shared item, and the scalar counts (weights, inputs, input uses and refetches, effective
MACs); its cycles as a constant, one term per kept group and one per used shared item
(:meth:`energysim.coeffs.LayerCoefficients.predict`, ``predict_cycles``). For a set of
simulated patterns with features ``A`` (one row per pattern) and simulated values ``s``, the
minimax relative-error fit

    t* = min over x of max_i |A_i x - s_i| / s_i        (a linear programme, scipy's HiGHS)

is a **lower bound** on the worst error of every table of that form on those patterns: ours is
one such ``x``. For the energy the per-weight term is relaxed to any piecewise-linear function of
the number of nonzero weights with knots at ``KNOTS`` quantiles of the drawn counts (the table's
own term is linear: the systolic rows have no breakpoint). t* means something only where the
patterns far outnumber the rank of ``A`` (``RATIO``): elsewhere the layer is *undetermined*, and
a layer with more than ``--max-columns`` columns is skipped with that word. A second fit on half
the patterns, scored on the other half (``held-out``), tells a bound that generalises from one
that only interpolates.

A *witness* is four patterns C, C∪A, C∪B, C∪A∪B (A, B, C disjoint sets of groups) whose
features add up, ``F(C∪A∪B) + F(C) - F(C∪A) - F(C∪B) = 0`` in every column of a form, while
their simulated values do not: ``d = s(C∪A∪B) + s(C) - s(C∪A) - s(C∪B)``. Any table of the form
predicts an interaction of 0, so it errs by at least ``|d| / Σ s`` on one of the four. Two forms
(:data:`FORMS`): ``plain``, the issues' own (a constant, kept groups, a linear weight term), for
which any four such patterns qualify; and ``table``, ours, with the nested first / last items
taken at every depth (not only the :data:`~energysim.model.groups.ORDER_ITEMS` the table keeps).
Single groups ``a``, ``b`` with C = every other group, one group between them in the groups'
order, a random half of the others, or none (``plain`` only), dense inputs, are searched; the
strongest per quantity and form is printed. ``--witnesses-only`` skips the fit, so large layers
get a bound too.

Patterns are :func:`energysim.coeffs.verify_table`'s (:func:`energysim.coeffs.draw_pattern`):
whole tiles (``tiles``) and tiles with half their weights zero (``mixed``), every pair of
``VERIFY_DENSITIES`` per round, at least ``MIN_ROUNDS``, until the patterns reach ``RATIO`` times the rank of ``A``
or ``--max-patterns``. Cycles are fitted on the whole-tile patterns only (the table's cycles are
an upper bound inside kept tiles by design).

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/additive_bound.py lenet5 edge-16x16
    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/additive_bound.py alexnet tpu-like-128 --layers features.0

Tile skipping is switched on (``sparsity.skip_zero_tiles=true``) where the profile has it off.
Prints one line per layer and quantity; ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import qr
from scipy.optimize import linprog

from energysim import build_model, extract_workload, load_profile
from energysim.coeffs import VERIFY_DENSITIES, LayerCoefficients, coefficient_table, draw_pattern, pattern_features
from energysim.dataflow import get_dataflow
from energysim.estimators.systolic import estimate_layer
from energysim.files import atomic_write_json
from energysim.model.groups import group_counts, group_ranks, weight_groups
from energysim.sparsity import LayerSparsity

SCALARS = ("inputs", "input_overflow", "input_uses", "input_refetch", "effective_macs")
"""The scalar counts of :func:`pattern_features` the energy prices (besides the weights)."""

KNOTS = 12
"""Interior knots of the piecewise-linear weight term (quantiles of the drawn weight counts)."""

RATIO = 10
"""Patterns per unit of rank for a determined bound."""

MIN_ROUNDS = 3
"""Rounds of patterns at least (36 patterns each)."""


def energy_features(row: LayerCoefficients, features: dict, weight_columns: np.ndarray) -> np.ndarray:
    """The energy design row of one pattern: constant, kept groups, used items (the table's kinds), scalars, weights."""
    items = [features["used_slices"][kind] for kind in row.slice_cost]
    scalars = [features[name] for name in SCALARS]
    return np.concatenate([[1.0], features["kept_groups"], *items, scalars, weight_columns]).astype(np.float64)


def cycle_features(row: LayerCoefficients, features: dict) -> np.ndarray:
    """The cycle design row of one pattern: constant, kept groups, used items (the table's kinds)."""
    items = [features["used_slices"][kind] for kind in row.slice_cycles]
    return np.concatenate([[1.0], features["kept_groups"], *items]).astype(np.float64)


def hat_basis(values: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights of ``values`` on sorted ``knots`` (one column per knot)."""
    eye = np.eye(knots.size)
    return np.stack([np.interp(values, knots, eye[j]) for j in range(knots.size)], axis=1)


def minimax_fit(a: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray]:
    """(t*, x): the least worst relative error ``max |a x - s| / s`` over x, and an optimal x.

    A linear programme in (x, t): minimise t subject to ``-t <= (a x - s) / s <= t``. Duplicate
    columns are merged and columns of the row-scaled matrix scaled to a unit maximum (the optimum is unchanged:
    only the column space of ``a`` matters).
    """
    scale = np.maximum(np.abs(s), 1.0)
    unique, first, inverse = np.unique(a, axis=1, return_index=True, return_inverse=True)
    relative = unique / scale[:, None]
    norm = np.abs(relative).max(axis=0)  # after the row scaling: HiGHS' tolerances are absolute
    norm[norm == 0] = 1.0
    b = relative / norm
    target = s / scale
    rows, cols = b.shape
    ones = np.ones((rows, 1))
    result = linprog(
        c=np.r_[np.zeros(cols), 1.0],
        A_ub=np.block([[b, -ones], [-b, -ones]]),
        b_ub=np.r_[target, -target],
        bounds=[(None, None)] * cols + [(0, None)],
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"linprog: {result.message}")
    x = np.zeros(a.shape[1])
    x[first] = result.x[:cols] / norm  # one column of each duplicate set carries the coefficient
    return float(result.x[-1]), x


def column_rank(a: np.ndarray) -> int:
    """Rank of ``a`` (duplicate columns merged, columns scaled to a unit maximum; pivoted QR)."""
    unique = np.unique(a, axis=1)
    unique = unique / np.maximum(np.abs(unique).max(axis=0), 1e-300)
    r = qr(unique, mode="r", pivoting=True)[0]
    diagonal = np.abs(np.diag(r))
    return int((diagonal > diagonal.max(initial=0) * max(unique.shape) * 1e-12).sum())


def relative_errors(predicted: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Signed relative errors (relative to one where the simulated value is 0, as the verify)."""
    return (predicted - s) / np.maximum(np.abs(s), 1.0)


def signed_worst(errors: np.ndarray) -> float:
    return float(errors[np.argmax(np.abs(errors))]) if errors.size else 0.0


def interaction(values: list[float]) -> float:
    """``v(C∪A∪B) + v(C) - v(C∪A) - v(C∪B)`` for values in the order C, C∪A, C∪B, C∪A∪B."""
    base, with_a, with_b, both = values
    return both + base - with_a - with_b


@dataclass
class Witness:
    """Four patterns whose features add up and whose simulated values do not (module docstring)."""

    base: int
    a: int
    b: int
    d: float
    total: float
    values: list[float]

    @property
    def bound(self) -> float:
        return abs(self.d) / self.total if self.total else 0.0


NEAR = 4
"""Places apart in the groups' order at most, for the near trials of :func:`candidate`."""

FORMS = ("plain", "table")
"""The forms a witness is for: ``plain``, issue 13's and 14's (a constant, one term per kept group,
a linear weight term; any four such patterns qualify), and ``table``, ours (shared items, nested
first / last items of *any* depth, per-group corrections, scalar counts; the features must add up)."""


def nested_items_add_up(ranks: tuple[np.ndarray, np.ndarray], base: np.ndarray, a: int, b: int) -> bool:
    """Whether the nested first / last items of every depth add up over C, C∪{a}, C∪{b}, C∪{a,b}.

    Item j of an order is used when a kept group has rank <= j, so a pattern uses the items from its
    least rank on; the four patterns' indicators cancel unless both a and b come before all of C.
    The table keeps :data:`~energysim.model.groups.ORDER_ITEMS` of them (a subset of these columns).
    """
    return base.size > 0 and all(max(r[a], r[b]) > r[base].min() for r in ranks)


def candidate(trial: int, order: np.ndarray, rng) -> tuple[int, int, np.ndarray]:
    """(a, b, C) of one trial, by ``trial % 4``: C every other group; one group c between a and b in
    ``order`` (every other such trial a, c, b within :data:`NEAR` places of each other, where folds
    hide one another's transfers and share inputs); a random half of the others; or none."""
    count = order.size
    if trial % 4 == 1:
        near = trial % 8 == 5
        i = rng.integers(0, count - 2)
        j = rng.integers(i + 2, min(i + 2 * NEAR, count - 1) + 1 if near else count)
        return int(order[i]), int(order[j]), np.array([order[rng.integers(i + 1, j)]])
    a, b = rng.choice(count, 2, replace=False)
    others = np.setdiff1d(np.arange(count), [a, b])
    return int(a), int(b), {0: others, 2: others[rng.random(others.size) < 0.5], 3: others[:0]}[trial % 4]


def find_witnesses(layer, profile, row, ids, count, rng, candidates: int) -> dict[str, Witness | None]:
    """The strongest witness per quantity and form (:data:`FORMS`) among ``candidates`` trials (dense inputs)."""
    best: dict[str, Witness | None] = {f"{q}_{form}": None for q in ("energy", "cycles") for form in FORMS}
    if count < 3:
        return best
    ranks = group_ranks(layer, profile, get_dataflow(profile.array.dataflow))
    order = np.argsort(ranks[0])
    for trial in range(candidates):
        a, b, base = candidate(trial, order, rng)
        rows: dict[str, list] = {"energy": [], "cycles": []}
        values: dict[str, list] = {"energy": [], "cycles": []}
        for kept in (base, np.r_[base, a], np.r_[base, b], np.r_[base, a, b]):
            ls = LayerSparsity(np.isin(ids, kept), None)
            f = pattern_features(layer, ls, profile)
            report = estimate_layer(layer, profile, ls, cycle_level=False)
            rows["energy"].append(energy_features(row, f, np.array([f["weights"]])))
            rows["cycles"].append(cycle_features(row, f))
            values["energy"].append(float(report.energy_relaxed))
            values["cycles"].append(float(report.cycles))
        nested = nested_items_add_up(ranks, base, a, b)
        for quantity in ("energy", "cycles"):
            found = Witness(int(base.size), a, b, interaction(values[quantity]), float(np.sum(values[quantity])),
                            values[quantity])
            table = nested and not np.any(interaction(rows[quantity]))
            for form in FORMS if table else FORMS[:1]:
                key = f"{quantity}_{form}"
                if best[key] is None or found.bound > best[key].bound:
                    best[key] = found
    return best


def draw(layer, profile, row, kind, ids, count, rng, rounds: int) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """``rounds`` rounds of verify patterns of ``kind``: features (with the pattern, ``ls``), energies, cycles."""
    feats, energy, cycles = [], [], []
    for _ in range(rounds):
        for wd in VERIFY_DENSITIES:
            for xd in VERIFY_DENSITIES:
                ls = draw_pattern(layer, kind, wd, xd, rng, (ids, count))
                report = estimate_layer(layer, profile, ls, cycle_level=False)
                feats.append(pattern_features(layer, ls, profile) | {"ls": ls})
                energy.append(report.energy_relaxed)
                cycles.append(report.cycles)
    return feats, np.array(energy, np.float64), np.array(cycles, np.float64)


def energy_matrix(row: LayerCoefficients, feats: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(design matrix, our table's x in it) for the energy: the weight term on :data:`KNOTS` hats."""
    weights = np.array([f["weights"] for f in feats], np.float64)
    knots = np.unique(np.r_[0.0, np.quantile(weights, np.linspace(0, 1, KNOTS)), row.weight_count])
    hats = hat_basis(weights, knots)
    a = np.stack([energy_features(row, f, hats[i]) for i, f in enumerate(feats)])
    items = [np.asarray(row.slice_cost[kind]) for kind in row.slice_cost]
    scalars = [row.per_input, row.per_input_overflow, row.per_input_use, row.per_input_refetch, row.per_effective_mac]
    ours = np.concatenate([[row.constant], row.group_cost, *items, scalars, row.per_weight * knots])
    return a, ours


def cycle_matrix(row: LayerCoefficients, feats: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(design matrix, our table's x in it) for the cycles."""
    a = np.stack([cycle_features(row, f) for f in feats])
    items = [np.asarray(row.slice_cycles[kind]) for kind in row.slice_cycles]
    return a, np.concatenate([[row.cycles_constant], row.group_cycles, *items])


def bound(a: np.ndarray, s: np.ndarray, ours: np.ndarray, predicted: np.ndarray, kept: np.ndarray) -> dict:
    """Our worst error, t*, the held-out worst of a half fit, patterns and rank, for one design."""
    # The columns are exactly the table's features: our table is a point of the space.
    assert np.allclose(a @ ours, predicted, rtol=1e-9, atol=1e-6 * np.abs(predicted).max()), "columns != features"
    rank = column_rank(a)
    t_star, _ = minimax_fit(a, s)
    half = np.arange(len(s)) % 2 == 0
    _, x_half = minimax_fit(a[half], s[half])
    errors = relative_errors(predicted, s)
    worst = int(np.argmax(np.abs(errors)))
    return {
        "ours": float(errors[worst]),
        "ours_worst_pattern": {"kept_groups": int(kept[worst]), "simulated": float(s[worst]),
                               "predicted": float(predicted[worst])},
        "t_star": t_star,
        "held_out": signed_worst(relative_errors(a[~half] @ x_half, s[~half])),
        "patterns": int(len(s)),
        "columns": int(a.shape[1]),
        "rank": rank,
        "determined": bool(len(s) >= RATIO * rank),
        "worst_index": worst,
    }


def layer_bounds(layer, profile, row, rng, max_patterns: int, witnesses: int) -> dict:
    """Every figure of one layer: energy on tiles and mixed patterns, cycles on tiles, witnesses."""
    dataflow = get_dataflow(profile.array.dataflow)
    ids, count = weight_groups(layer, profile, dataflow)
    per_round = len(VERIFY_DENSITIES) ** 2
    out: dict = {"groups": count}
    for kind in ("tiles", "mixed"):
        feats, energy, cycles = draw(layer, profile, row, kind, ids, count, rng, MIN_ROUNDS)
        while True:
            a, ours = energy_matrix(row, feats)
            rank = column_rank(a)
            rounds = min(-(-RATIO * rank // per_round), max_patterns // per_round) - len(feats) // per_round
            if rounds <= 0:
                break
            more = draw(layer, profile, row, kind, ids, count, rng, rounds)
            feats, energy, cycles = feats + more[0], np.r_[energy, more[1]], np.r_[cycles, more[2]]
        kept = np.array([f["kept_groups"].sum() for f in feats])
        out[f"energy_{kind}"] = bound(a, energy, ours, np.array([row.predict(f) for f in feats]), kept)
        worst = feats[out[f"energy_{kind}"].pop("worst_index")]["ls"]
        out[f"energy_{kind}"]["diagnosis"] = diagnose(layer, profile, worst)
        if kind == "tiles":
            a, ours = cycle_matrix(row, feats)
            out["cycles_tiles"] = bound(a, cycles, ours, np.array([row.predict_cycles(f) for f in feats]), kept)
            out["cycles_tiles"].pop("worst_index")
    return out | witnesses_of(layer, profile, row, ids, count, rng, witnesses)


def witnesses_of(layer, profile, row, ids, count, rng, candidates: int) -> dict:
    """``witness_<quantity>_<form>``: the strongest witnesses as plain dicts (None: none found)."""
    found = find_witnesses(layer, profile, row, ids, count, rng, candidates)
    return {f"witness_{key}": None if w is None else vars(w) | {"bound": w.bound} for key, w in found.items()}


def diagnose(layer, profile, ls: LayerSparsity) -> dict:
    """Where the table's energy of ``ls`` goes wrong: the split's counts against the simulated ones.

    The table's energy is the split (:func:`energysim.model.groups.group_counts`: constant + kept
    groups + used items) priced, plus per-weight and per-MAC terms. For the input and output
    words at DRAM and buffer, and the cycles (priced at the leakage), returns (split, simulated,
    energy of the difference) wherever they differ; what remains of the error is in the
    weights, register files and MACs.
    """
    split = group_counts(layer, profile, get_dataflow(profile.array.dataflow))
    features = pattern_features(layer, ls, profile)
    kept, used = features["kept_groups"], features["used_slices"]
    report = estimate_layer(layer, profile, ls, cycle_level=False)

    def predicted(get) -> float:
        return float(get(split.constant) + get(split.groups)[kept].sum()
                     + sum(get(c)[used[kind]].sum() for kind, c in split.slices.items()))

    out = {}
    for level, memory in (("dram", profile.memory.dram), ("buffer", profile.memory.buffer)):
        for op in ("inputs", "outputs"):
            for kind in ("reads", "writes"):
                price = memory.read if kind == "reads" else memory.write
                get = lambda c: (c.accesses if hasattr(c, "accesses") else c["accesses"])[level][op][kind]  # noqa: E731
                mine, truth = predicted(get), float(report.accesses[level][op][kind])
                if mine != truth:
                    out[f"{level} {op} {kind}"] = (mine, truth, (mine - truth) * price)
    per_cycle = profile.leakage_mw / profile.clock_mhz * 1e3 if profile.units == "pJ" else 0.0
    mine = predicted(lambda c: c.cycles if hasattr(c, "cycles") else c["cycles"])
    if mine != report.cycles:
        out["cycles (leakage)"] = (mine, float(report.cycles), (mine - report.cycles) * per_cycle)
    return out


def columns_upper_bound(layer, profile, row) -> int:
    """Columns of the energy design before any pattern is drawn (groups, items, scalars, knots)."""
    items = sum(len(cost) for cost in row.slice_cost.values())
    return 1 + len(row.group_cost) + items + len(SCALARS) + KNOTS + 2


def _percent(value: float) -> str:
    return f"{100 * value:+7.2f} %"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("profile")
    parser.add_argument("--layers", default=None, help="comma-separated layer names (default: every weighted layer)")
    parser.add_argument("--max-columns", type=int, default=700, help="columns beyond which a layer is undetermined")
    parser.add_argument("--max-patterns", type=int, default=2500, help="patterns per kind at most")
    parser.add_argument("--witnesses", type=int, default=60, help="witness trials per layer (4 patterns each)")
    parser.add_argument("--witnesses-only", action="store_true",
                        help="search the witnesses only (no fit, so no column limit): a fast bound on large layers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile, ["sparsity.skip_zero_tiles=true"])
    model, shape = build_model(args.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workload = extract_workload(model, shape)
    table = coefficient_table(workload, profile)
    wanted = None if args.layers is None else set(args.layers.split(","))
    rng = np.random.default_rng(args.seed)
    results = {}
    for layer in workload.layers:
        if not layer.has_weights or (wanted is not None and layer.name not in wanted):
            continue
        row = table.layer(layer.name)
        if row.group_cost is None:
            continue
        start = time.process_time()
        if args.witnesses_only:
            ids, count = weight_groups(layer, profile, get_dataflow(profile.array.dataflow))
            res = {"groups": count} | witnesses_of(layer, profile, row, ids, count, rng, args.witnesses)
        else:
            columns = columns_upper_bound(layer, profile, row)
            if columns > args.max_columns:
                results[layer.name] = {"groups": len(row.group_cost), "undetermined": f"{columns} columns"}
                print(f"{layer.name:26s} groups {len(row.group_cost):6d}  undetermined ({columns} columns)", flush=True)
                continue
            res = layer_bounds(layer, profile, row, rng, args.max_patterns, args.witnesses)
            _print_bounds(layer.name, res)
        res["cpu_s"] = time.process_time() - start
        results[layer.name] = res
        for key in (f"{q}_{form}" for q in ("energy", "cycles") for form in FORMS):
            w = res[f"witness_{key}"]
            if w is not None:
                print(f"{layer.name:26s} witness {key:13s} groups {res['groups']:5d} |C|={w['base']} a={w['a']} "
                      f"b={w['b']}  values {', '.join(f'{v:.6g}' for v in w['values'])}  d={w['d']:.6g}  "
                      f"bound {100 * w['bound']:.3f} %", flush=True)
    if args.json:
        atomic_write_json(args.json, {"model": args.model, "profile": args.profile, "seed": args.seed, "layers": results})


def _print_bounds(name: str, res: dict) -> None:
    """The fit's lines of one layer: ours, t* and held-out per design, and the split's misses on ours' worst."""
    for key in ("energy_tiles", "energy_mixed", "cycles_tiles"):
        r = res[key]
        state = "" if r["determined"] else "  undetermined"
        print(f"{name:26s} {key:13s} groups {res['groups']:5d}  ours {_percent(r['ours'])}  "
              f"t* {_percent(r['t_star'])}  held-out {_percent(r['held_out'])}  "
              f"patterns {r['patterns']:5d} rank {r['rank']:4d}  (ours worst at {r['ours_worst_pattern']['kept_groups']} "
              f"kept){state}", flush=True)
    for kind in ("tiles", "mixed"):
        for item, (mine, truth, energy) in res[f"energy_{kind}"]["diagnosis"].items():
            print(f"{'':26s} ours' worst {kind:5s}: {item:22s} split {mine:12.6g}  simulated {truth:12.6g}  "
                  f"energy {energy:+.6g}", flush=True)


if __name__ == "__main__":
    main()
