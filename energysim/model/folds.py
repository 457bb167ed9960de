"""Folds: how a GEMM is cut into array-sized pieces under a :class:`Mapping`, and the dense timing.

The (rows extent) x (cols extent) operand of a dataflow is split into
``ceil(rows/R) * ceil(cols/C)`` blocks per group, and the streamed dimension (length T)
into ``stream_tiles`` equal tiles; a fold is one (row block, col block, stream tile).
Groups run one after the other; inside a group the three fold loops run in the
mapping's ``order`` (outer to inner). SCALE-Sim's mapping (:data:`SCALESIM`): one stream
tile, the column block outer and the row block inner, double-buffered.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..dataflow import DIMS, Dataflow

__all__ = ["BUFFERINGS", "LOOPS", "SCALESIM", "FoldPlan", "Mapping", "plan_folds"]

#: The fold loops, named by where their dimension goes: array rows, array cols, time.
LOOPS = ("rows", "cols", "time")

#: How the buffers are used: ``double`` (half of each keeps live data while the other half
#: is filled and drained, so transfers overlap compute) or ``single`` (all of it keeps live
#: data; transfers wait for the array, docs/systolic-model.md §4b).
BUFFERINGS = ("double", "single")


@dataclass(frozen=True)
class Mapping:
    """The temporal part of a mapping (the spatial part is the :class:`Dataflow`).

    Attributes
    ----------
    order : tuple of str
        The fold loops ``"rows"``, ``"cols"`` and ``"time"`` (the stream tiles), outer to
        inner.
    stream_tiles : int
        Equal tiles the streamed dimension is cut into (a divisor of T): the DRAM-level
        tiling. Each tile is a fold of its own (its own fill and drain); fewer stream
        steps per fold make smaller operand slices and output tiles, so more of them stay
        on chip across the loops that reuse them.
    buffering : {"double", "single"}
        ``double``: every buffer keeps live data in half its words and fills (or drains)
        the other half while the array computes. ``single``: the whole buffer keeps live
        data, so no transfer overlaps a fold (:data:`BUFFERINGS`).

    Examples
    --------
    >>> Mapping(("time", "rows", "cols"), 4).name
    'time>rows>cols/4'
    >>> Mapping(("time", "rows", "cols"), 4, "single").name
    'time>rows>cols/4/single'
    """

    order: tuple[str, str, str] = ("time", "cols", "rows")
    stream_tiles: int = 1
    buffering: str = "double"

    def __post_init__(self) -> None:
        if sorted(self.order) != sorted(LOOPS):
            raise ValueError(f"mapping order must be a permutation of {LOOPS}, got {self.order!r}")
        if not isinstance(self.stream_tiles, int) or self.stream_tiles < 1:
            raise ValueError(f"mapping stream_tiles must be a positive int, got {self.stream_tiles!r}")
        if self.buffering not in BUFFERINGS:
            raise ValueError(f"mapping buffering must be one of {', '.join(BUFFERINGS)}, got {self.buffering!r}")

    @property
    def single(self) -> bool:
        """Whether the buffers are single-buffered."""
        return self.buffering == "single"

    @property
    def name(self) -> str:
        """``order`` joined by ``>``, then ``/stream_tiles``, then ``/single`` when single-buffered."""
        return ">".join(self.order) + f"/{self.stream_tiles}" + ("/single" if self.single else "")

    def to_dict(self) -> dict:
        return {"order": list(self.order), "stream_tiles": self.stream_tiles, "buffering": self.buffering}


#: SCALE-Sim's fixed mapping: whole stream per fold, column block outer, row block inner, double-buffered.
SCALESIM = Mapping()


@dataclass(frozen=True)
class FoldPlan:
    """Every fold of a layer, in execution order, as parallel arrays.

    Attributes
    ----------
    dataflow : Dataflow
    array_rows, array_cols : int
    gemm : tuple of int
        (M, K, N) of one group.
    groups : int
    row_blocks, col_blocks : int
        Folds along the array rows and columns, per group (SCALE-Sim's row and col folds).
    stream : int
        Stream length of every fold: T / ``mapping.stream_tiles``.
    group, row_block, col_block, stream_block, rows_used, cols_used : numpy.ndarray of int64
        Per fold. Row block ``b`` covers rows-dimension indices ``[b*R, b*R + rows_used)``;
        stream tile ``s`` covers stream steps ``[s*stream, (s+1)*stream)``.
    fold_cycles : int
        Cycles of every fold: fill + stream + drain (identical for all folds).
    mapping : Mapping
    """

    dataflow: Dataflow
    array_rows: int
    array_cols: int
    gemm: tuple[int, int, int]
    groups: int
    row_blocks: int
    col_blocks: int
    stream: int
    group: np.ndarray
    row_block: np.ndarray
    col_block: np.ndarray
    rows_used: np.ndarray
    cols_used: np.ndarray
    fold_cycles: int
    stream_block: np.ndarray
    mapping: Mapping

    @property
    def count(self) -> int:
        """Number of folds (all groups)."""
        return self.group.size

    @property
    def row_start(self) -> np.ndarray:
        return self.row_block * self.array_rows

    @property
    def col_start(self) -> np.ndarray:
        return self.col_block * self.array_cols

    @property
    def mac_slots(self) -> np.ndarray:
        """MACs performed by each fold when executed: rows_used * cols_used * stream."""
        return self.rows_used * self.cols_used * self.stream

    @property
    def mapping_efficiency(self) -> np.ndarray:
        """Fraction of PEs each fold maps (SCALE-Sim's per-fold mapping efficiency)."""
        return self.rows_used * self.cols_used / (self.array_rows * self.array_cols)

    def block_of(self, dim: str) -> np.ndarray:
        """Per fold, the block index along GEMM dimension ``dim`` (0 for the streamed one)."""
        place = self.dataflow.place_of(dim)
        if place == "rows":
            return self.row_block
        if place == "cols":
            return self.col_block
        return self.stream_block

    def extent_of(self, dim: str) -> np.ndarray:
        """Per fold, how many indices of GEMM dimension ``dim`` the fold covers."""
        place = self.dataflow.place_of(dim)
        if place == "rows":
            return self.rows_used
        if place == "cols":
            return self.cols_used
        return np.full_like(self.rows_used, self.stream)

    def start_of(self, dim: str) -> np.ndarray:
        """Per fold, the first index of GEMM dimension ``dim`` the fold covers."""
        place = self.dataflow.place_of(dim)
        if place == "rows":
            return self.row_start
        if place == "cols":
            return self.col_start
        return self.stream_block * self.stream

    def block_size_of(self, dim: str) -> int:
        """Block size along ``dim``: R, C, or the stream tile for the streamed dimension."""
        place = self.dataflow.place_of(dim)
        if place == "rows":
            return self.array_rows
        if place == "cols":
            return self.array_cols
        return max(1, self.stream)

    def slice_key(self, dims: tuple[str, str]) -> np.ndarray:
        """Per fold, an int identifying the fold's slice of the operand spanning ``dims``."""
        blocks = [self.block_of(d) for d in dims]
        counts = [-(-dict(zip(DIMS, self.gemm))[d] // self.block_size_of(d)) for d in dims]
        return (self.group * counts[0] + blocks[0]) * counts[1] + blocks[1]


@lru_cache(maxsize=4096)
def plan_folds(
    gemm: tuple[int, int, int], groups: int, dataflow: Dataflow, array_rows: int, array_cols: int, mapping: Mapping = SCALESIM
) -> FoldPlan:
    """Cut ``groups`` GEMMs of shape ``gemm`` = (M, K, N) into folds for an R x C array.

    Raises
    ------
    ValueError
        If ``mapping.stream_tiles`` does not divide the stream length.

    Examples
    --------
    >>> from energysim.dataflow import get_dataflow
    >>> plan = plan_folds((16, 18, 7), 1, get_dataflow("ws"), 4, 5)
    >>> plan.row_blocks, plan.col_blocks, plan.fold_cycles
    (5, 2, 27)
    >>> plan_folds((16, 18, 7), 1, get_dataflow("ws"), 4, 5, Mapping(("time", "cols", "rows"), 4)).fold_cycles
    15
    """
    rows, cols, length = dataflow.dim_sizes(gemm)
    if length % mapping.stream_tiles:
        raise ValueError(f"mapping {mapping.name}: stream_tiles must divide the stream length {length}")
    stream = length // mapping.stream_tiles
    row_blocks = -(-rows // array_rows)
    col_blocks = -(-cols // array_cols)
    counts = {"rows": row_blocks, "cols": col_blocks, "time": mapping.stream_tiles}
    grids = np.meshgrid(np.arange(groups), *(np.arange(counts[loop]) for loop in mapping.order), indexing="ij")
    g, *loops = (a.reshape(-1).astype(np.int64) for a in grids)
    by_loop = dict(zip(mapping.order, loops))
    rb, cb, sb = by_loop["rows"], by_loop["cols"], by_loop["time"]
    rows_used = np.minimum(array_rows, rows - rb * array_rows)
    cols_used = np.minimum(array_cols, cols - cb * array_cols)
    plan = FoldPlan(
        dataflow=dataflow,
        array_rows=array_rows,
        array_cols=array_cols,
        gemm=tuple(gemm),
        groups=groups,
        row_blocks=row_blocks,
        col_blocks=col_blocks,
        stream=stream,
        group=g,
        row_block=rb,
        col_block=cb,
        rows_used=rows_used,
        cols_used=cols_used,
        fold_cycles=dataflow.fold_cycles(array_rows, array_cols, stream),
        stream_block=sb,
        mapping=mapping,
    )
    for array in (g, rb, cb, sb, rows_used, cols_used):
        array.setflags(write=False)
    return plan
