"""Skip groups: the weight sets whose all-zero state lets the array skip folds, and what each one costs.

With ``skip_zero_tiles`` the array skips a fold whose skip-operand slice is all zero. When
the skip operand is the weights, those slices are weight sets fixed by the mapping:

- WS: the stationary tile ``W[Kb, Nb]`` (one fold);
- OS: the slice ``W[:, Nb]`` (the folds of one column block, every row block ``Mb``).

IS skips on input tiles, which pruning does not control: it has no weight groups. A *skip
group* is one such weight set; its id is the weight-slice key of its folds
(``FoldPlan.slice_key(("K", "N"))``), so ids run over ``groups x K blocks x N blocks``.

On a profile with ``sparsity.nm`` everything here is the N:M-compressed mapping
(:mod:`energysim.model.nm`; pass the profile without the key for the dense one): a tile
is ``R`` slot rows, i.e. the weights of ``R/N`` groups of M, ``R·M/N`` consecutive K
indices, whatever the pattern, when N divides R (required here).

**What a group costs** comes from the model's own per-fold counts (no formula of its own):
the layer is counted once with every group holding exactly one nonzero weight (every fold
executes, with the least weight content) and once with no weight (every fold skipped). Each
executed fold's counts are its own (MAC slots, register files, the weight slice, the input
words it streams, its fold cycles), except for counts the model charges to one fold on
behalf of several, which are spread over the folds that share them:

- input words fetched from DRAM (and written into the buffer), per group of the layer, in
  proportion to the distinct input elements of each fold's slice (a slice kept from the
  previous fold is fetched by that fold only); resident inputs are fetched once per element,
  by the first kept group of a K block that reads it: the sets of :func:`_channel_items`;
- partial-sum and output traffic, per output tile, evenly over the tile's folds, less the
  write of zeros the tile needs when no fold produces it (that write is in the constant);
- cycles: each fold's steady-state cycles, and what the layer pays for its first fetch and
  last write-back, by nested items over the groups in execution order (:data:`ORDER_ITEMS`,
  :func:`_cycle_split`), the rest fitted to a few simulated patterns.

The spread counts of a group's folds, summed, are its counts; with the counts of the
all-skipped layer (the constant) they add up exactly to the one-weight-per-group layer.
Spreading is exact when either all or none of the sharing folds run; in between it is the
mean, which is where the table's error comes from (``ecc coeffs --verify`` measures it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..dataflow import Dataflow
from ..report import MEMORY_LEVELS, OPERANDS
from ..spec import Profile
from ..workload import LayerSpec
from .folds import FoldPlan, plan_folds
from .gemm import gemm_operands, input_index
from .macs import weighted_block_sums
from .layer import LayerCounts, dense_input_slices, simulate_layer
from .memory import rf_fold_accesses
from .nm import nm_slots, structure_mask, structure_view
from .search import layer_mapping

__all__ = [
    "SHARED",
    "GroupCounts",
    "group_counts",
    "group_ranks",
    "has_weight_groups",
    "kept_groups",
    "shared_incidence",
    "used_shared",
    "weight_groups",
]


def has_weight_groups(profile: Profile, dataflow: Dataflow) -> bool:
    """Whether pruning whole weight groups skips work on ``profile`` (tile skipping on, weights the skip operand)."""
    return bool(profile.sparsity.skip_zero_tiles) and dataflow.skip_operand == "weights"


def _plan(layer: LayerSpec, profile: Profile, dataflow: Dataflow) -> FoldPlan:
    """The layer's fold plan under its mapping: the compressed GEMM on an N:M profile."""
    m_size, k, n = layer.gemm
    nm = profile.sparsity.nm
    if nm.enabled:
        k = nm_slots(k, nm.n, nm.m)
    mapping = layer_mapping(profile, layer, dataflow)
    return plan_folds((m_size, k, n), layer.groups, dataflow, profile.array.rows, profile.array.cols, mapping)


def _k_block(layer: LayerSpec, profile: Profile, plan: FoldPlan) -> int:
    """K indices of the torch weight per skip-group row block (R, or R·M/N compressed)."""
    nm = profile.sparsity.nm
    if not nm.enabled:
        return plan.block_size_of("K")
    if profile.array.rows % nm.n:
        raise ValueError(
            f"profile {profile.name!r}: N:M skip groups need sparsity.nm.n ({nm.n}) to divide array.rows "
            f"({profile.array.rows}), so that a tile holds whole groups of M"
        )
    return profile.array.rows * nm.m // nm.n


def _input_unique(layer: LayerSpec, profile: Profile, dataflow: Dataflow, plan: FoldPlan) -> np.ndarray:
    """Distinct input elements of every fold's input slice (all folds executed, the plan's mapping)."""
    if not profile.sparsity.nm.enabled:
        return dense_input_slices(layer, dataflow, profile.array.rows, profile.array.cols, plan.mapping)[2]
    return structure_view(layer, profile.sparsity.nm).input_slices(layer, plan, np.ones(plan.count, bool))[2]


def _check_groups(profile: Profile, dataflow: Dataflow) -> None:
    if dataflow.skip_operand != "weights":
        raise ValueError(f"dataflow {dataflow.name!r} skips on its {dataflow.skip_operand}, not on weight groups")
    if not profile.sparsity.skip_zero_tiles:
        raise ValueError(f"profile {profile.name!r} has sparsity.skip_zero_tiles: false, so no fold is ever skipped")


def weight_groups(layer: LayerSpec, profile: Profile, dataflow: Dataflow) -> tuple[np.ndarray, int]:
    """The skip group of every weight of ``layer``, and the number of groups.

    Returns
    -------
    groups : numpy.ndarray of int64, shape ``layer.weight_shape``
        Group id of each weight of the torch-shaped weight, ``0 <= id < count``.
    count : int

    Examples
    --------
    >>> from energysim.dataflow import get_dataflow
    >>> from energysim.spec import load_profile
    >>> fc = LayerSpec("fc", "linear", (40,), (20,), 40, 20, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    >>> ids, count = weight_groups(fc, load_profile("edge-16x16"), get_dataflow("ws"))
    >>> count, ids[0, 0], ids[0, 16], ids[16, 0], ids[19, 39]
    (6, 0, 1, 3, 5)
    """
    _check_groups(profile, dataflow)
    plan = _plan(layer, profile, dataflow)
    _, k, n = layer.gemm
    bk, bn = _k_block(layer, profile, plan), plan.block_size_of("N")
    k_blocks, n_blocks = -(-k // bk), -(-n // bn)
    out = np.arange(layer.groups * n)
    by_row = (out // n) * (k_blocks * n_blocks) + (out % n) // bn
    by_k = (np.arange(k) // bk) * n_blocks
    ids = by_row[:, None] + by_k[None, :]
    return ids.reshape(layer.weight_shape), layer.groups * k_blocks * n_blocks


def kept_groups(layer: LayerSpec, profile: Profile, dataflow: Dataflow, weight_mask: np.ndarray | None) -> np.ndarray:
    """Bool per skip group: whether the torch-shaped ``weight_mask`` (None: dense) keeps any of its weights."""
    _check_groups(profile, dataflow)
    plan = _plan(layer, profile, dataflow)
    ops = gemm_operands(layer, weight_mask, None)
    summed = weighted_block_sums(ops.w, _k_block(layer, profile, plan), plan.block_size_of("N"))
    nonzero = summed[plan.group, plan.block_of("K"), plan.block_of("N")]
    count = _group_count(layer, plan)
    return np.bincount(plan.slice_key(("K", "N")), weights=nonzero, minlength=count) > 0


def _group_count(layer: LayerSpec, plan: FoldPlan) -> int:
    _, k, n = plan.gemm
    return layer.groups * -(-k // plan.block_size_of("K")) * -(-n // plan.block_size_of("N"))


#: What several groups can share, each counted once whichever of its groups runs first:
#: an input slice ``X`` of a fold, a set of resident input elements (resident inputs come
#: once per element: the elements of one channel read by the same K blocks), an output tile
#: (its partial sums) and the layer itself (its first fetch and last write-back, which no
#: computation hides).
SHARED = ("inputs", "channels", "outputs", "first", "last", "layer")

#: The cycles of the first executed fold's fetch and of the last one's write-back, which no
#: fold hides, depend on *which* group runs first and last. They are priced by nested items
#: over the groups in the order of their first (last) fold: item j of ``first`` is used when
#: one of the first j+1 groups is kept, so the items a pattern uses telescope to the value of
#: its first kept group (:func:`_ordered_sizes`). Groups past this many share their mean.
ORDER_ITEMS = 64

#: Layers of at most this many groups are also counted with every group alone, and each group's
#: cycles get a fitted correction of their own (:func:`_cycle_split`).
FIT_EACH_GROUP = 16


@lru_cache(maxsize=256)
def _channel_items(layer: LayerSpec, bk: int, n_blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The resident-input items: per input channel, its elements grouped by the K blocks that read them.

    A resident input element is fetched once, by the first executed fold that reads it, and
    a fold of K block ``kb`` reads exactly the elements its taps' windows cover, so the
    elements of one channel read by the same set of K blocks are fetched together as soon
    as a kept group of one of those blocks runs (any N block): one item each. On a linear
    layer a channel is one K index (read by one block).

    Returns
    -------
    item : numpy.ndarray of int64, shape (input elements,)
        Each element's item, -1 outside the footprint (never read: strides, padding).
    groups, keys : numpy.ndarray of int64
        The (group id, item) incidence pairs.
    count : int
        Items.
    """
    size = int(np.prod(layer.input_shape))
    k = layer.gemm[1]
    k_blocks = -(-k // bk)
    if layer.kind in ("linear", "matmul"):
        flat = np.arange(size)
        item = (flat // (size // layer.groups)) * k + flat % k
        count = layer.groups * k
        channel, first, codes = np.arange(count), np.arange(count) % k // bk, np.ones(count, np.int64)
    else:
        taps = layer.kernel[0] * layer.kernel[1]
        per_group = layer.in_channels // layer.groups
        positions = int(np.prod(layer.input_shape[1:]))
        # Which positions of a channel each tap reads: channel 0's taps are K indices 0..taps-1.
        spatial = input_index(layer)[0][:, :taps]
        reads = np.zeros((taps, positions), bool)
        valid = spatial >= 0
        reads[np.broadcast_to(np.arange(taps), spatial.shape)[valid], spatial[valid]] = True
        # A channel's taps start at K index c*taps: the bit of tap t is its block's offset from
        # the channel's first block, which depends on c only through (c*taps) mod bk.
        offset = np.arange(per_group) * taps % bk
        if (bk - 1 + taps) // bk + 1 > 62:
            raise ValueError(f"layer {layer.name!r}: a channel's {taps} taps span more than 62 blocks of {bk} array "
                             "rows; the resident-input sets of the coefficient table need fewer (a taller array)")
        distinct, which = np.unique(offset, return_inverse=True)
        code = np.zeros((distinct.size, positions), np.int64)
        for i, o in enumerate(distinct):
            bit = np.left_shift(1, (o + np.arange(taps)) // bk).astype(np.int64)
            code[i] = np.bitwise_or.reduce(np.where(reads, bit[:, None], 0), axis=0)
        element = np.tile(code[which], (layer.groups, 1)).reshape(-1)  # (channels * positions,)
        width = int(element.max(initial=0)).bit_length()
        key = np.where(element > 0, np.repeat(np.arange(layer.in_channels), positions) << width | element, -1)
        used, item = np.unique(key, return_inverse=True)
        item = item - int(used[0] < 0)
        used = used[used >= 0]
        count = used.size
        channel, codes = used >> width, used & ((1 << width) - 1)
        first = channel % per_group * taps // bk
        item = item.reshape(-1)
    # Each item is read by the K blocks of its code's bits, in its group, under every N block.
    bits = (codes[:, None] >> np.arange(int(codes.max(initial=0)).bit_length())) & 1
    which_item, bit = np.nonzero(bits)
    per_layer_group = (layer.in_channels // layer.groups) if layer.kind not in ("linear", "matmul") else k
    g = channel[which_item] // per_layer_group
    base = (g * k_blocks + first[which_item] + bit) * n_blocks
    groups = (base[:, None] + np.arange(n_blocks)[None, :]).reshape(-1)
    keys = np.repeat(which_item, n_blocks)
    for array in (item, groups, keys):
        array.setflags(write=False)
    return item, groups, keys, count


def _group_order(plan: FoldPlan, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each group's first and last fold, and the groups in the order they start and (backwards) end."""
    fold_group, folds = plan.slice_key(("K", "N")), np.arange(plan.count)
    first, last = np.full(count, plan.count), np.full(count, -1)
    np.minimum.at(first, fold_group, folds)
    np.maximum.at(last, fold_group, folds)
    return first, last, np.argsort(first, kind="stable"), np.argsort(-last, kind="stable")


def group_ranks(layer: LayerSpec, profile: Profile, dataflow: Dataflow) -> tuple[np.ndarray, np.ndarray]:
    """Each group's rank in the order of its first fold and in the backward order of its last fold
    (the orders of the nested ``first`` / ``last`` items of :func:`shared_incidence`)."""
    plan = _plan(layer, profile, dataflow)
    _, _, by_first, by_last = _group_order(plan, _group_count(layer, plan))
    return np.argsort(by_first), np.argsort(by_last)


def _ordered_items(rank: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Nested items over the groups in ``rank`` order: item j holds the first j+1 (the proper prefixes, at most ORDER_ITEMS - 1)."""
    items = max(min(rank.size, ORDER_ITEMS) - 1, 0)
    sizes = np.arange(1, items + 1)
    keys = np.repeat(np.arange(items), sizes)
    return rank[np.arange(keys.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)], keys, items


def _ordered_sizes(values: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Per nested item of :func:`_ordered_items`, the drop of ``values`` past it, so that the items a
    pattern uses add up to its first group's value less the mean of the groups past the items."""
    ordered = values[rank]
    items = max(min(rank.size, ORDER_ITEMS) - 1, 0)
    nxt = ordered[1:items + 1].copy()
    if items:
        nxt[-1] = ordered[items:].mean()
    return ordered[:items] - nxt


def shared_incidence(layer: LayerSpec, profile: Profile, dataflow: Dataflow) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Which groups read which shared item (:data:`SHARED`), as (group ids, item keys, item count) pairs.

    An input slice or output tile is read by the groups of the folds that stream it; a
    resident-input item (:func:`_channel_items`) by the groups of the K blocks that read it;
    ``first`` and ``last`` are the nested items of :data:`ORDER_ITEMS`.
    """
    _check_groups(profile, dataflow)
    plan = _plan(layer, profile, dataflow)
    fold_group = plan.slice_key(("K", "N"))
    out = {}
    for kind, dims in (("inputs", ("M", "K")), ("outputs", ("M", "N"))):
        keys = plan.slice_key(dims)
        out[kind] = (fold_group, keys, int(keys.max(initial=-1)) + 1)
    _, groups, keys, items = _channel_items(layer, _k_block(layer, profile, plan), -(-layer.gemm[2] // plan.block_size_of("N")))
    out["channels"] = (groups, keys, items)
    _, _, by_first, by_last = _group_order(plan, _group_count(layer, plan))
    out["first"], out["last"] = _ordered_items(by_first), _ordered_items(by_last)
    out["layer"] = (fold_group, np.zeros(plan.count, np.int64), 1)
    return out


def used_shared(incidence: tuple[np.ndarray, np.ndarray, int], kept_groups: np.ndarray) -> np.ndarray:
    """Bool per shared item: whether any kept group reads it."""
    groups, keys, count = incidence
    return np.bincount(keys[kept_groups[groups]], minlength=count) > 0


@dataclass(frozen=True)
class GroupCounts:
    """What the model counts for one layer: a constant, a share per kept group and per used shared slice.

    Attributes
    ----------
    constant : LayerCounts
        The layer with every group skipped (no weight).
    groups : dict
        Per group, float64 arrays (G,): ``accesses[level][operand][kind]`` for dram, buffer
        and rf, ``effective_macs``, ``gated_macs``, ``selections`` (N:M) and ``cycles``. The groups are counted
        with one nonzero weight each: their ``effective_macs`` are that weight's.
    slices : dict of str to dict
        For each kind of :data:`SHARED` the model needs here, the same counts per shared
        item (arrays sized by :func:`shared_incidence`'s item count): what the item costs
        once, whichever of its groups runs first. Negative where the first fold is the
        cheaper one (a tile's first partial sums are not read back).
    latency : dict
        The cycles for the latency coefficients, counted with the kept groups dense:
        ``groups`` (G,) and ``slices`` (per kind of ``slices``, item arrays).
    """

    constant: LayerCounts
    groups: dict
    slices: dict
    latency: dict


def _spread(values: np.ndarray, keys: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Each key's total of ``values`` redistributed over its members in proportion to ``shares``."""
    total = np.bincount(keys, weights=values)
    share_sum = np.bincount(keys, weights=shares)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total[keys] * shares / share_sum[keys]
    return np.where(share_sum[keys] > 0, out, 0.0)


def _empty_counts(size: int) -> dict:
    zeros = lambda: np.zeros(size)  # noqa: E731
    return {
        "accesses": {lv: {op: {"reads": zeros(), "writes": zeros()} for op in OPERANDS} for lv in MEMORY_LEVELS},
        "effective_macs": zeros(),
        "gated_macs": zeros(),
        "selections": zeros(),
        "cycles": zeros(),
    }


def _first_weights(layer: LayerSpec, plan: FoldPlan, bk: int, groups: np.ndarray) -> np.ndarray:
    """A weight mask with one nonzero weight, the first of its block (``bk`` K indices), in each of ``groups``."""
    _, k, n = layer.gemm
    bn = plan.block_size_of("N")
    k_blocks, n_blocks = -(-k // bk), -(-n // bn)
    nb = groups % n_blocks
    kb = (groups // n_blocks) % k_blocks
    g = groups // (n_blocks * k_blocks)
    mask = np.zeros((layer.groups * n, k), bool)
    mask[g * n + nb * bn, kb * bk] = True
    return mask.reshape(layer.weight_shape)


def _whole_groups(layer: LayerSpec, profile: Profile, dataflow: Dataflow, groups: np.ndarray) -> np.ndarray:
    """A weight mask keeping every weight of ``groups`` (and none of the others).

    On an N:M profile "every weight" is every slot kept (the first N of each group of M along
    K, :func:`energysim.model.nm.structure_mask`), so the layer still runs compressed.
    """
    ids, count = weight_groups(layer, profile, dataflow)
    mask = np.isin(ids, groups) if groups.size < count else np.ones(ids.shape, bool)
    if profile.sparsity.nm.enabled:
        mask &= structure_mask(layer, profile.sparsity.nm)
    return mask


def _first_per_slice(fold_group: np.ndarray, fold_slice: np.ndarray, count: int) -> np.ndarray:
    """Groups that are, for every fold of theirs, the lowest group reading that fold's slice."""
    lowest = np.full(int(fold_slice.max(initial=-1)) + 1, count)
    np.minimum.at(lowest, fold_slice, fold_group)
    chosen = np.ones(count, bool)
    np.logical_and.at(chosen, fold_group, lowest[fold_slice] == fold_group)
    return chosen


def group_counts(layer: LayerSpec, profile: Profile, dataflow: Dataflow) -> GroupCounts:
    """Split the model's counts of ``layer`` into a constant and shares per group and per shared slice.

    See the module docstring. Raises ValueError if the profile does not skip folds or the
    dataflow does not skip on weights.
    """
    _check_groups(profile, dataflow)
    plan = _plan(layer, profile, dataflow)
    count = _group_count(layer, plan)
    fold_group = plan.slice_key(("K", "N"))
    incidence = shared_incidence(layer, profile, dataflow)

    bk = _k_block(layer, profile, plan)

    counted: dict[tuple[bool, bytes], LayerCounts] = {}

    def count_with(groups: np.ndarray, whole: bool = False) -> LayerCounts:
        key = (whole, np.asarray(groups, np.int64).tobytes())
        if key not in counted:
            mask = _whole_groups(layer, profile, dataflow, groups) if whole else _first_weights(layer, plan, bk, groups)
            counted[key] = simulate_layer(profile, layer, dataflow, mask, None, cycle_level=False, mapping=plan.mapping)
        return counted[key]

    every = np.arange(count)
    probe, none = count_with(every), count_with(every[:0])
    by_group = lambda values: np.bincount(fold_group, weights=values, minlength=count)  # noqa: E731
    g = _empty_counts(count)
    for level, ops in probe.traffic.fold_accesses.items():
        for op, rw in ops.items():
            for kind, values in rw.items():
                g["accesses"][level][op][kind] = by_group(values.astype(np.float64))
    for op, rw in rf_fold_accesses(plan, probe.executed, probe.effective).items():
        for kind, values in rw.items():
            g["accesses"]["rf"][op][kind] = by_group(values.astype(np.float64))

    unique = _input_unique(layer, profile, dataflow, plan).astype(np.float64)
    tile_words = (plan.extent_of("M") * plan.extent_of("N")).astype(np.float64)
    slices = {}
    shared = ["outputs"]
    if probe.traffic.resident["inputs"]:
        # Resident inputs come from DRAM once per element, at its first touch: an item's
        # elements are fetched as soon as any group of a K block reading them runs.
        words = _channel_words(layer, profile, plan)
        c = _empty_counts(words.size)
        for level, kind in (("dram", "reads"), ("buffer", "writes")):
            c["accesses"][level]["inputs"][kind] = words
            g["accesses"][level]["inputs"][kind] = np.zeros(count)
        slices["channels"] = c
    else:
        shared.insert(0, "inputs")
    for op in shared:
        _, keys, keys_count = incidence[op]
        folds = np.bincount(keys, minlength=keys_count).astype(np.float64)
        lone = count_with(every[_first_per_slice(fold_group, keys, count)])

        def slice_words(counts: LayerCounts, level: str, kind: str) -> np.ndarray:
            """Per fold: the operand's words at ``level``, as the slice's share of what the layer moves."""
            words = counts.traffic.fold_accesses[level][op][kind].astype(np.float64)
            if op == "inputs":
                # A slice kept from the previous fold was fetched by that fold only: share by distinct elements.
                words = _spread(words, plan.group, unique * counts.executed)
            elif level == "dram" and kind == "writes":
                # A tile no fold produces is written anyway (zeros): that write is the constant's.
                words = words - np.where(counts.executed, tile_words, 0) / np.maximum(
                    np.bincount(keys, weights=counts.executed, minlength=keys_count)[keys], 1
                )
            return words

        s = _empty_counts(keys_count)
        for level in ("dram", "buffer"):
            for kind in ("reads", "writes"):
                total = np.bincount(keys, weights=slice_words(probe, level, kind), minlength=keys_count)
                alone = np.bincount(keys, weights=slice_words(lone, level, kind), minlength=keys_count)
                # Linear in the running folds through "all" and "one": the slice pays the intercept, each fold the slope.
                many = folds > 1
                slope = np.where(many, (total - alone) / np.maximum(folds - 1, 1), total / np.maximum(folds, 1))
                s["accesses"][level][op][kind] = np.where(many, alone - slope, 0.0)
                g["accesses"][level][op][kind] = by_group(slope[keys])
        slices[op] = s

    effective = probe.effective.astype(np.float64)
    g["effective_macs"] = by_group(effective)
    g["gated_macs"] = by_group(plan.mac_slots - effective)
    if probe.nm is not None:
        g["selections"] = by_group(plan.mac_slots.astype(np.float64))
    # Cycles, twice, by the one split (:func:`_cycle_split`): with one weight per group (the
    # probe of every other count: the cycles the energy's leakage is priced on) and with the
    # kept groups dense, for the latency coefficients (a compressed weight format moves fewer
    # words for a sparser tile, so its stalls can only be fewer: exact for whole tiles, the
    # dense tiles' stalls for weights pruned inside them). On an N:M profile "dense" is every
    # slot kept (:func:`_whole_groups`).
    bandwidth = profile.memory.dram.bandwidth_words_per_cycle
    per_word = 0.0 if math.isinf(bandwidth) else 1.0 / bandwidth
    resident = probe.traffic.resident["inputs"]
    energy_cycles = _cycle_split(layer, profile, plan, incidence, none, per_word, resident, count_with)
    g["cycles"] = energy_cycles["groups"]
    for kind, cycles in energy_cycles["slices"].items():
        slices.setdefault(kind, _empty_counts(cycles.size))["cycles"] = cycles
    latency = _cycle_split(layer, profile, plan, incidence, none, per_word, resident,
                           lambda groups: count_with(groups, whole=True))
    return GroupCounts(constant=none, groups=g, slices=slices, latency=latency)


def _fold_lengths(profile: Profile, plan: FoldPlan) -> np.ndarray:
    """Each fold's own cycles with every fold executed: with preload_overlap only the first pays the preload."""
    lengths = np.full(plan.count, plan.fold_cycles, np.float64)
    lengths[1:] -= int(plan.dataflow.preload and profile.array.preload_overlap) * plan.array_rows
    return lengths


def _channel_words(layer: LayerSpec, profile: Profile, plan: FoldPlan) -> np.ndarray:
    """Input elements per resident-input item (:func:`_channel_items`)."""
    item, _, _, count = _channel_items(layer, _k_block(layer, profile, plan), -(-layer.gemm[2] // plan.block_size_of("N")))
    return np.bincount(item[item >= 0], minlength=count).astype(np.float64)


def _item_sizes(layer: LayerSpec, profile: Profile, plan: FoldPlan, kind: str, items: int) -> np.ndarray:
    """Words per shared item: an input slice's or output tile's extent, a resident-input item's elements."""
    if kind == "channels":
        return _channel_words(layer, profile, plan)
    dims = ("M", "K") if kind == "inputs" else ("M", "N")
    size = np.zeros(items)
    size[plan.slice_key(dims)] = plan.extent_of(dims[0]) * plan.extent_of(dims[1])
    return size


def _cycle_split(
    layer: LayerSpec,
    profile: Profile,
    plan: FoldPlan,
    incidence: dict[str, tuple[np.ndarray, np.ndarray, int]],
    none: LayerCounts,
    per_word: float,
    resident_inputs: bool,
    run: Callable[[np.ndarray], LayerCounts],
) -> dict:
    """The cycles of a layer split into a share per kept group, per used shared item and once.

    ``run(groups)`` counts the layer with those groups kept (dense for the latency
    coefficients, one weight each for the energy's leakage). A group pays its folds'
    steady-state cycles, ``max(fold cycles, DRAM words / bandwidth)`` per fold (the next fold's
    data arrives while one computes), where a fold's words are its weight tile plus the *slope*
    of each shared operand: what one more fold of an input slice or output tile adds, from the
    layer with every fold and with one fold per item (a fold that happens to be its item's first
    in the dense pattern pays the slope too, since in a sparse pattern any kept fold can be
    first). The first executed fold's fetch (its weight tile and input slice) and the last one's
    write-back (its output tile) are exposed: the nested ``first`` / ``last`` items price them at
    the bandwidth for the group that runs first and last (:func:`_ordered_sizes`). What an item
    saves or adds when it is used (zeros not written for an output tile some fold produces, a
    first fold's partial sums not read back, a resident set's one fetch) and what the layer pays
    once beyond that (the last fold's compute on a bandwidth-bound array) are not per-fold quantities of one simulation: they are
    fitted, one scalar per kind times each item's words and one for the layer, by least squares
    on the relative error of the simulated cycles of five patterns (every group; group 0 alone;
    the middle group alone; one group per item of each kind). What the dense pattern still misses is spread over
    the groups by their steady words, so the table is exact on the dense pattern and on every
    group skipped (``none``, the constant).
    """
    count = _group_count(layer, plan)
    every = np.arange(count)
    fold_group = plan.slice_key(("K", "N"))
    full = run(every)

    def words(counts: LayerCounts, op: str) -> np.ndarray:
        dram = counts.traffic.fold_accesses["dram"][op]
        return (dram["reads"] + dram["writes"]).astype(np.float64)

    kinds = ["channels" if resident_inputs else "inputs", "outputs"]
    lone = {kind: every[_first_per_slice(*incidence[kind][:2], count)] for kind in kinds}
    patterns = [(every, full), (every[:1], run(every[:1]))]
    patterns += [(ids, run(ids)) for ids in (every[count // 2: count // 2 + 1], *lone.values())]
    # A layer of few groups: every group alone and random halves too, each group with a
    # correction of its own in the fit (seeded: the table is deterministic).
    own = count <= FIT_EACH_GROUP
    if own:
        draws = np.random.default_rng(count).random((2 * count, count)) < 0.5
        extra = [every[g:g + 1] for g in every if g not in (0, count // 2)] + [every[d] for d in draws if d.any()]
        patterns += [(ids, run(ids)) for ids in extra]
    # What the first fold fetches with nothing on chip (its weight tile and input slice) and
    # what the last one writes back (its output tile), per group.
    first_fold, last_fold, by_first, by_last = _group_order(plan, count)
    fetch = full.traffic.fold_accesses["dram"]["weights"]["reads"] + _input_unique(layer, profile, plan.dataflow, plan)
    ends = {"first": (fetch[first_fold].astype(np.float64), by_first),
            "last": ((plan.extent_of("M") * plan.extent_of("N"))[last_fold].astype(np.float64), by_last)}
    steady = words(full, "weights")
    for kind, (ids, counts) in zip(kinds, patterns[3:5]):
        if kind == "channels":
            continue  # a resident input element is fetched once: its channel's cost, not a fold's
        _, keys, items = incidence[kind]
        op = "outputs" if kind == "outputs" else "inputs"
        folds = np.bincount(keys, minlength=items).astype(np.float64)
        total = np.bincount(keys, weights=words(full, op), minlength=items)
        alone = np.bincount(keys, weights=words(counts, op), minlength=items)
        slope = np.where(folds > 1, (total - alone) / np.maximum(folds - 1, 1), total / np.maximum(folds, 1))
        steady = steady + slope[keys]
    groups = np.bincount(fold_group, weights=np.maximum(_fold_lengths(profile, plan), steady * per_word),
                         minlength=count)
    sizes = {kind: _item_sizes(layer, profile, plan, kind, incidence[kind][2]) for kind in kinds}
    # The first fetch and the last write-back are exposed: their words move at the bandwidth.
    exposed = {kind: per_word * _ordered_sizes(values, rank) for kind, (values, rank) in ends.items()}
    rows, rhs, scale = [], [], []
    for ids, counts in patterns:
        kept = np.zeros(count, bool)
        kept[ids] = True
        rows.append([sizes[kind][used_shared(incidence[kind], kept)].sum() for kind in kinds] + [1.0]
                    + (list(kept.astype(np.float64)) if own else []))
        fixed = sum(c[used_shared(incidence[kind], kept)].sum() for kind, c in exposed.items())
        rhs.append(float(counts.cycles - none.cycles) - groups[kept].sum() - fixed)
        scale.append(1.0 / max(counts.cycles, 1))
    # Relative errors: a pattern of one group weighs as much as the dense one.
    weight = np.array(scale)[:, None]
    fit = np.linalg.lstsq(np.array(rows) * weight, np.array(rhs) * weight[:, 0], rcond=None)[0]
    fixed_kinds = len(kinds) + 1
    slices = {kind: fit[i] * sizes[kind] for i, kind in enumerate(kinds)} | exposed | {"layer": fit[fixed_kinds - 1:fixed_kinds]}
    if own:
        groups = groups + fit[fixed_kinds:]
    rest = rhs[0] - float(np.dot(rows[0], fit))
    spread = np.bincount(fold_group, weights=steady, minlength=count)
    groups = groups + (rest * spread / spread.sum() if spread.sum() else rest / count)
    return {"groups": groups, "slices": slices}
