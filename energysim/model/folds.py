"""Folds: how a GEMM is cut into array-sized pieces, and SCALE-Sim's dense timing.

The (rows extent) x (cols extent) operand of a dataflow is split into
``ceil(rows/R) * ceil(cols/C)`` folds per group. Loop order (SCALE-Sim's): groups one
after the other; inside a group the column block is the outer loop and the row block
the inner loop; each fold streams the whole third dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..dataflow import DIMS, Dataflow

__all__ = ["FoldPlan", "plan_folds"]


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
        Stream length T of every fold.
    group, row_block, col_block, rows_used, cols_used : numpy.ndarray of int64
        Per fold. Row block ``b`` covers rows-dimension indices ``[b*R, b*R + rows_used)``.
    fold_cycles : int
        Cycles of every fold: fill + stream + drain (identical for all folds).
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
        return np.zeros_like(self.row_block)

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
        return np.zeros_like(self.row_block)

    def block_size_of(self, dim: str) -> int:
        """Block size along ``dim``: R, C, or the whole extent for the streamed dimension."""
        place = self.dataflow.place_of(dim)
        if place == "rows":
            return self.array_rows
        if place == "cols":
            return self.array_cols
        return max(1, dict(zip(DIMS, self.gemm))[dim])

    def slice_key(self, dims: tuple[str, str]) -> np.ndarray:
        """Per fold, an int identifying the fold's slice of the operand spanning ``dims``."""
        blocks = [self.block_of(d) for d in dims]
        counts = [-(-dict(zip(DIMS, self.gemm))[d] // self.block_size_of(d)) for d in dims]
        return (self.group * counts[0] + blocks[0]) * counts[1] + blocks[1]


@lru_cache(maxsize=1024)
def plan_folds(gemm: tuple[int, int, int], groups: int, dataflow: Dataflow, array_rows: int, array_cols: int) -> FoldPlan:
    """Cut ``groups`` GEMMs of shape ``gemm`` = (M, K, N) into folds for an R x C array.

    Examples
    --------
    >>> from energysim.dataflow import get_dataflow
    >>> plan = plan_folds((16, 18, 7), 1, get_dataflow("ws"), 4, 5)
    >>> plan.row_blocks, plan.col_blocks, plan.fold_cycles
    (5, 2, 27)
    """
    rows, cols, stream = dataflow.dim_sizes(gemm)
    row_blocks = -(-rows // array_rows)
    col_blocks = -(-cols // array_cols)
    g, cb, rb = np.meshgrid(np.arange(groups), np.arange(col_blocks), np.arange(row_blocks), indexing="ij")
    g, cb, rb = (a.reshape(-1).astype(np.int64) for a in (g, cb, rb))
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
    )
    for array in (g, rb, cb, rows_used, cols_used):
        array.setflags(write=False)
    return plan
