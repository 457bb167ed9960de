"""N:M structured sparsity: a layer's GEMM as an N:M array runs it (compressed along K).

A weight GEMM column ``W[:, n]`` satisfies N:M when every group of M consecutive
weights along K (``k`` in ``[q*M, q*M + M)``, the last group possibly shorter) holds at
most N nonzeros. An N:M array (profile key ``sparsity.nm``, weight-stationary) stores
such a column compressed: N *slots* per group, slot ``j`` holding the group's ``j``-th
nonzero (in K order) and its index inside the group (``ceil(log2 M)`` bits), an empty
slot holding a zero. The compressed GEMM is ``(M, K', N)`` with
``K' = (K // M) * N + min(K % M, N)`` (K·N/M when M divides K): the array maps K' to
its rows, so a layer runs ``ceil(K'/R)`` row folds instead of ``ceil(K/R)``.

Inputs are streamed dense: the N array rows of group ``q`` all see the group's M input
streams ``X[:, q*M : q*M + M]``, and each PE selects its operand by the stored index
(one *selection* per MAC slot, priced by ``compute.nm_select``). So a fold whose rows
are slots ``[r0, r0 + ru)`` reads the input columns ``[origin(r0), origin(r0+ru-1) + M)``
(clipped to K), and a PE's MAC is effective when its slot holds a weight and the input
it selects is nonzero. A layer that violates N:M in any column runs dense.

Worked case (2:4, K = 6, one column with nonzeros at k = 1, 3, 4): groups ``{0..3}``
and ``{4, 5}``; K' = 1·2 + min(2, 2) = 4 slots: ``[1, 3]`` and ``[4, empty]``; the empty
slot selects k = 4 (its group's first) and is a gated MAC slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import _kernels
from ..spec import Profile, with_overrides
from ..spec.profile import NMSupport
from ..workload import LayerSpec
from .folds import FoldPlan
from .gemm import input_index
from .macs import weighted_block_sums
from .memory import slice_elements

__all__ = ["NMView", "nm_compliant", "nm_slots", "nm_view", "structure_mask", "structure_view", "without_nm"]


def nm_slots(k: int, n: int, m: int) -> int:
    """Compressed length K' of a K-long column: N slots per full group, min(K % M, N) for the last.

    Examples
    --------
    >>> nm_slots(25, 2, 4), nm_slots(8, 2, 4), nm_slots(6, 1, 4)
    (13, 4, 2)
    """
    return (k // m) * n + min(k % m, n)


def nm_compliant(w: np.ndarray, n: int, m: int) -> bool:
    """Whether every group of ``m`` consecutive entries along K of every column of ``w`` (G, K, N) has at most ``n`` nonzeros.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[1, 1, 0, 0, 1, 0, 0, 0]], np.uint8).T[None]
    >>> nm_compliant(w, 2, 4), nm_compliant(w, 1, 4)
    (True, False)
    """
    return bool(_kernels.nm_check(w.transpose(0, 2, 1), n, m))


@dataclass(frozen=True)
class NMView:
    """A layer as an N:M array runs it.

    Attributes
    ----------
    n, m : int
    k : int
        K of the uncompressed GEMM.
    weights : numpy.ndarray of uint8 (G, K', N)
        1 where a slot holds a nonzero weight.
    select : numpy.ndarray of int32 (G, K', N)
        The uncompressed K index each slot's PE selects (an empty slot: its group's first).
    origin : numpy.ndarray of int64 (K',)
        First K index of each slot row's group.
    """

    n: int
    m: int
    k: int
    weights: np.ndarray
    select: np.ndarray
    origin: np.ndarray

    @property
    def slots(self) -> int:
        return self.weights.shape[1]

    def k_range(self, plan: FoldPlan) -> tuple[np.ndarray, np.ndarray]:
        """Per fold, the uncompressed input columns ``[k_lo, k_hi)`` its slot rows (along K') select from."""
        first = plan.start_of("K")
        last = first + plan.extent_of("K") - 1
        return self.origin[first], np.minimum(self.origin[last] + self.m, self.k)

    @staticmethod
    def _tile_sums(plan: FoldPlan, x: np.ndarray) -> np.ndarray:
        """``x`` (G, M, K) summed over each stream tile of M (the mapping's ``stream_tiles``): (G, tiles, K) int64."""
        groups, m_size, k_size = x.shape
        tiles = plan.mapping.stream_tiles
        return x.reshape(groups, tiles, m_size // tiles, k_size).sum(axis=2, dtype=np.int64)

    def input_slice_sums(self, plan: FoldPlan, x: np.ndarray) -> np.ndarray:
        """Per fold, the sum of ``x`` (G, M, K) over the fold's input slice ``X[m tile, k_lo:k_hi]`` (int64)."""
        per_tile = self._tile_sums(plan, x)
        per_k = np.zeros((*per_tile.shape[:2], per_tile.shape[2] + 1), np.int64)
        np.cumsum(per_tile, axis=2, out=per_k[:, :, 1:])
        k_lo, k_hi = self.k_range(plan)
        tile = plan.block_of("M")
        return per_k[plan.group, tile, k_hi] - per_k[plan.group, tile, k_lo]

    def input_slices(
        self, layer: LayerSpec, plan: FoldPlan, executed: np.ndarray, window_words: float = 0.0
    ) -> tuple[np.ndarray, ...]:
        """Keys, valid words, distinct, first-touch and fetched elements of each fold's input slice (as for a dense layer).

        The slice of a fold is its stream tile of M by the K range its slots select from;
        ``window_words`` is the input buffer window of the mapping-aware memory model.
        """
        index = input_index(layer)
        keys = plan.slice_key(("M", "K"))
        valid_words = self.input_slice_sums(plan, (index >= 0).view(np.uint8))
        k_lo, k_hi = self.k_range(plan)
        m_start = plan.start_of("M")
        n_elements = int(np.prod(layer.input_shape))
        offsets, elements = slice_elements(index, n_elements, keys, plan.group, m_start, m_start + plan.extent_of("M"), k_lo, k_hi)
        unique, first, fetched = _kernels.slice_unique_counts(offsets, elements, keys, executed, n_elements, float(window_words))
        return keys, valid_words, unique, first, fetched

    def stored_words(self, plan: FoldPlan, word_bits: int) -> np.ndarray:
        """Stored words of each fold's weight slice: every slot's value plus ``ceil(log2 M)`` index bits per slot."""
        slots = plan.rows_used * plan.cols_used
        return (slots + -(-(slots * (self.m - 1).bit_length()) // word_bits)).astype(np.int64)

    def fold_effective_macs(self, plan: FoldPlan, x: np.ndarray) -> np.ndarray:
        """Effective MACs of every fold in closed form: per kept slot, the nonzeros of the input column it selects (in the fold's stream tile)."""
        per_tile = self._tile_sums(plan, x)
        blocks = np.stack(
            [
                weighted_block_sums(
                    _kernels.nm_slot_uses(self.weights, self.select, np.ascontiguousarray(per_tile[:, t])),
                    plan.array_rows,
                    plan.array_cols,
                )
                for t in range(per_tile.shape[1])
            ],
            axis=-1,
        )
        return blocks[plan.group, plan.row_block, plan.col_block, plan.stream_block]


@lru_cache(maxsize=256)
def structure_view(layer: LayerSpec, nm: NMSupport) -> NMView:
    """The compressed view of ``layer`` with every slot kept: what does not depend on the pattern (slots, origins, K ranges)."""
    groups, (_, k, n_cols) = layer.groups, layer.gemm
    full = np.zeros((groups, -(-k // nm.m), nm.m, n_cols), np.uint8)
    full[:, :, : nm.n] = 1
    return nm_view(full.reshape(groups, -1, n_cols)[:, :k], nm)


def structure_mask(layer: LayerSpec, nm: NMSupport) -> np.ndarray:
    """Torch-shaped bool mask keeping the first N weights of every group of M along K: every N:M slot filled."""
    out = layer.weight_shape[0]
    k = layer.weight_count // out
    return np.broadcast_to(np.arange(k) % nm.m < nm.n, (out, k)).reshape(layer.weight_shape).copy()


def without_nm(profile: Profile) -> Profile:
    """``profile`` without ``sparsity.nm``: how its array runs a layer that violates N:M."""
    if not profile.sparsity.nm.enabled:
        return profile
    return with_overrides(profile, {"sparsity.nm.n": None, "sparsity.nm.m": None})


def nm_view(w: np.ndarray, nm: NMSupport) -> NMView | None:
    """The compressed view of weights ``w`` (G, K, N) on an array with ``nm``, or None when they violate N:M."""
    n, m = nm.n, nm.m
    k = w.shape[1]
    slots = nm_slots(k, n, m)
    # Compressed in the torch weight's layout (K contiguous), kept as (G, K', N) views.
    ok, weights, select = _kernels.nm_compress(w.transpose(0, 2, 1), n, m, slots)
    if not ok:
        return None
    weights, select = weights.transpose(0, 2, 1), select.transpose(0, 2, 1)
    origin = np.arange(slots, dtype=np.int64) // n * m
    for array in (weights, select, origin):
        array.setflags(write=False)
    return NMView(n, m, k, weights, select, origin)
