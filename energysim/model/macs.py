"""Exact effective and clock-gated MAC counts of each fold, for the real sparsity pattern.

A MAC slot of a fold is *effective* when both its weight and its input are nonzero,
and *gated* (clock-gated: the PE idles for that cycle at reduced energy) otherwise.
With the operands in array coordinates (see :meth:`Dataflow.arrange`), the effective
MACs of a fold are sums of block-summed masks, never per-element Python:

- stationary ``P`` and row stream ``A`` (WS, IS):
  ``sum_{r in fold rows} (sum_{c in fold cols} P[r, c]) * (sum_t A[r, t])``;
- row stream ``A`` and column stream ``B`` (OS):
  ``sum_t (sum_{r in fold rows} A[r, t]) * (sum_{c in fold cols} B[c, t])``, one batched
  matrix product of block sums.
"""

from __future__ import annotations

import numpy as np

from .. import _kernels
from .folds import FoldPlan

__all__ = [
    "block_effective_macs",
    "block_sums",
    "fold_effective_macs",
    "fold_slice_sums",
    "slice_block_sums",
    "weighted_block_sums",
]


def block_sums(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Sum ``array`` over consecutive blocks of ``size`` along ``axis`` (last block may be short), as int64."""
    n = array.shape[axis]
    if size >= n:
        return array.sum(axis=axis, dtype=np.int64, keepdims=True)
    return np.add.reduceat(array, np.arange(0, n, size), axis=axis, dtype=np.int64)


def weighted_block_sums(
    array: np.ndarray, size1: int, size2: int, weight1: np.ndarray | None = None, weight2: np.ndarray | None = None
) -> np.ndarray:
    """``sum array[g, i, j] * weight1[g, i] * weight2[g, j]`` over ``size1 x size2`` blocks (int64).

    One pass in memory order (numba), whatever the strides of ``array``; weights
    default to 1. A constant ``array`` (every stride 0, e.g. the dense weights of
    :func:`~energysim.model.gemm.gemm_operands`) needs no pass: its block sum is
    ``value * (block sum of weight1) * (block sum of weight2)``.
    """
    groups, n1, n2 = array.shape
    weight1 = np.ones((groups, n1), np.int64) if weight1 is None else weight1
    weight2 = np.ones((groups, n2), np.int64) if weight2 is None else weight2
    if array.size and not any(array.strides):
        value = int(array.flat[0])
        return value * block_sums(weight1, 1, size1)[:, :, None] * block_sums(weight2, 1, size2)[:, None, :]
    if array.strides[1] < array.strides[2]:
        flipped = _kernels.block_sums_2d(array.transpose(0, 2, 1), size2, size1, weight2, weight1)
        return flipped.transpose(0, 2, 1)
    return _kernels.block_sums_2d(array, size1, size2, weight1, weight2)


def fold_slice_sums(plan: FoldPlan, array: np.ndarray, dims: tuple[str, str], summed: np.ndarray | None = None) -> np.ndarray:
    """Per fold, the sum of ``array`` (G, dims[0], dims[1]) over the fold's slice.

    The slice covers the fold's block along each mapped dimension and its stream tile
    of the streamed one. ``summed`` (optional) is :func:`slice_block_sums` of ``array``,
    when the caller keeps it.
    """
    if summed is None:
        summed = slice_block_sums(plan, array, dims)
    return summed[plan.group, plan.block_of(dims[0]), plan.block_of(dims[1])]


def slice_block_sums(plan: FoldPlan, array: np.ndarray, dims: tuple[str, str]) -> np.ndarray:
    """Sums of ``array`` (G, dims[0], dims[1]) over the blocks of ``plan`` (its loop order does not matter)."""
    return weighted_block_sums(array, plan.block_size_of(dims[0]), plan.block_size_of(dims[1]))


def fold_effective_macs(plan: FoldPlan, arranged: dict[str, np.ndarray], per_block: np.ndarray | None = None) -> np.ndarray:
    """Effective MACs of every fold (int64), exactly, from the arranged operand masks.

    Parameters
    ----------
    plan : FoldPlan
    arranged : dict
        Output of ``plan.dataflow.arrange(x, w)`` (uint8 masks).
    per_block : numpy.ndarray, optional
        :func:`block_effective_macs` of the same operands and tiling, when the caller keeps it.
    """
    if per_block is None:
        per_block = block_effective_macs(arranged, plan.array_rows, plan.array_cols, plan.mapping.stream_tiles)
    return per_block[plan.group, plan.row_block, plan.col_block, plan.stream_block]


def block_effective_macs(arranged: dict[str, np.ndarray], R: int, C: int, tiles: int) -> np.ndarray:
    """Effective MACs per (group, row block, col block, stream tile) on an R x C array, int64
    (what every loop order of that tiling indexes; see :func:`fold_effective_macs`)."""
    p = arranged.get("stationary")
    a = arranged.get("row_stream")
    b = arranged.get("col_stream")
    stream = (a if a is not None else b).shape[2] // tiles

    def per_tile(stream_op: np.ndarray) -> np.ndarray:
        """Stream sums per stream tile: (G, n, tiles)."""
        groups, n, _ = stream_op.shape
        return stream_op.reshape(groups, n, tiles, stream).sum(axis=3, dtype=np.int64)

    if p is not None:
        # One stream besides the stationary operand: sum P over the fold's other array
        # dimension first, then weight each array line by its stream sum per tile.
        if a is not None:
            lines = weighted_block_sums(p, 1, C)  # (G, rows, col blocks)
            weighted = lines[..., None] * per_tile(a)[:, :, None, :]  # (G, rows, col blocks, tiles)
            return block_sums(weighted, 1, R)
        lines = weighted_block_sums(p, R, 1)  # (G, row blocks, cols)
        weighted = lines.transpose(0, 2, 1)[..., None] * per_tile(b)[:, :, None, :]  # (G, cols, row blocks, tiles)
        return block_sums(weighted, 1, C).transpose(0, 2, 1, 3)
    # float64 products are exact: every count is far below 2**53.
    rows = block_sums(a, 1, R).astype(np.float64)  # (G, row blocks, T)
    cols = block_sums(b, 1, C).astype(np.float64)  # (G, col blocks, T)
    g, rb, cb = rows.shape[0], rows.shape[1], cols.shape[1]
    rows = rows.reshape(g, rb, tiles, stream).transpose(0, 2, 1, 3)  # (G, tiles, rb, stream)
    cols = cols.reshape(g, cb, tiles, stream).transpose(0, 2, 3, 1)  # (G, tiles, stream, cb)
    return np.rint(rows @ cols).astype(np.int64).transpose(0, 2, 3, 1)
