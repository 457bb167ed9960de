"""A layer's operands in the GEMM view, per group: X (G, M, K) and W (G, K, N).

Convolutions are lowered by im2col: row ``m`` of X is output pixel ``(ho, wo)`` and
column ``k`` is the window position ``(c, i, j)`` with ``c`` the channel inside the
group, in the order of the torch weight ``(out, in/groups, kh, kw)``, so that
``W[g] = weight[g*N:(g+1)*N].reshape(N, K).T``. Padding positions are zeros: they are
never effective and never read from memory. A linear layer applied to input shape
``(..., F)`` is one GEMM with M = prod(...), K = F. A matmul of two activations,
input (G, M, K), is G GEMMs whose second operand takes the weight's place; its mask is
given transposed per product, (G, N, K), like a torch weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..workload import LayerSpec

__all__ = ["GemmOperands", "gemm_operands", "input_footprint", "input_index"]


@lru_cache(maxsize=256)
def input_index(layer: LayerSpec) -> np.ndarray:
    """Flat index into the per-sample input of every X entry, -1 for padding.

    Returns
    -------
    numpy.ndarray of int32, shape (G, M, K)
        Read-only; cached per layer (it does not depend on any mask).
    """
    if layer.kind in ("linear", "matmul"):
        m, k, _ = layer.gemm
        index = np.arange(layer.groups * m * k, dtype=np.int32).reshape(layer.groups, m, k)
    else:
        c_in, h, w = layer.input_shape
        _, h_out, w_out = layer.output_shape
        groups = layer.groups
        cg = c_in // groups
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel, layer.stride, layer.padding, layer.dilation
        rows = (np.arange(h_out) * sh - ph)[:, None] + np.arange(kh)[None, :] * dh  # (Ho, kh)
        cols = (np.arange(w_out) * sw - pw)[:, None] + np.arange(kw)[None, :] * dw  # (Wo, kw)
        # A padding row or column adds -size, which no channel offset (< size) brings back
        # to >= 0; twice -size still fits int32 for inputs of up to 2**30 elements.
        size = c_in * h * w
        dtype = np.int32 if size <= 2**30 else np.int64
        row_term = np.where((rows >= 0) & (rows < h), rows * w, -size).astype(dtype)
        col_term = np.where((cols >= 0) & (cols < w), cols, -size).astype(dtype)
        channel = ((np.arange(groups)[:, None] * cg + np.arange(cg)[None, :]) * (h * w)).astype(dtype)  # (G, Cg)
        spatial = (row_term[:, None, :, None] + col_term[None, :, None, :]).reshape(h_out * w_out, kh * kw)  # (Ho Wo, kh kw)
        # Tiled first, then one broadcast add: an add broadcasting over six axes with a
        # kw-long inner loop costs twice as much.
        flat = np.tile(spatial, (groups, 1, cg)).reshape(groups, h_out * w_out, cg, kh * kw)
        flat += channel[:, None, :, None]
        np.maximum(flat, -1, out=flat)
        index = flat.astype(np.int32, copy=False).reshape(groups, h_out * w_out, cg * kh * kw)
    index.setflags(write=False)
    return index


@dataclass(frozen=True)
class GemmOperands:
    """Nonzero masks of X (G, M, K) and W (G, K, N) as uint8.

    Attributes
    ----------
    x, w : numpy.ndarray of uint8
        1 where the operand is nonzero. Padding entries of X are 0. ``w`` may be a
        non-contiguous view of the torch-shaped mask.
    dense_inputs : bool
        Whether no input mask was given (X's nonzeros are then its valid, non-padding entries).
    """

    x: np.ndarray
    w: np.ndarray
    dense_inputs: bool


def gemm_operands(layer: LayerSpec, weight_mask: np.ndarray | None, input_mask: np.ndarray | None) -> GemmOperands:
    """Lower a layer and its masks to the per-group GEMM operands.

    Parameters
    ----------
    layer : LayerSpec
    weight_mask : numpy.ndarray of bool or None
        Shaped like the torch weight; None means dense.
    input_mask : numpy.ndarray of bool or None
        Shaped like one input sample ``layer.input_shape``; None means dense.

    Raises
    ------
    ValueError
        If a mask's shape does not match the layer.
    """
    for what, mask, shape in (("weight", weight_mask, layer.weight_shape), ("input", input_mask, layer.input_shape)):
        if mask is not None and tuple(np.shape(mask)) != tuple(shape):
            raise ValueError(f"layer {layer.name!r}: {what} mask has shape {tuple(np.shape(mask))}, expected {tuple(shape)}")
    index = input_index(layer)
    valid = index >= 0
    if input_mask is None:
        x = valid.view(np.uint8) if valid.dtype == np.bool_ else valid.astype(np.uint8)
    else:
        flat = np.asarray(input_mask, dtype=bool).reshape(-1)
        x = (flat[np.maximum(index, 0)] & valid).view(np.uint8)
    groups = index.shape[0]
    _, k, n = layer.gemm
    if weight_mask is None:
        # A constant view (all strides 0), never materialised: its block sums are closed form
        # (:func:`energysim.model.macs.weighted_block_sums`).
        w = np.broadcast_to(np.uint8(1), (groups, k, n))
    else:
        # A transposed view: copying a large weight tensor costs more than every later pass.
        w = np.asarray(weight_mask, dtype=bool).reshape(groups, n, k).transpose(0, 2, 1).view(np.uint8)
    return GemmOperands(x, w, input_mask is None)


@lru_cache(maxsize=256)
def input_footprint(layer: LayerSpec) -> np.ndarray:
    """Distinct input elements each group reads (padding excluded), int64 array (G,).

    Elements that no window touches (e.g. with stride > kernel) are not counted. A
    convolution's windows are products of a row range and a column range, so an element
    is read iff some window row covers its row and some window column its column: the
    footprint is channels x rows covered x columns covered (every entry of :func:`input_index`
    in closed form).
    """
    if layer.kind in ("linear", "matmul"):
        m, k, _ = layer.gemm
        footprint = np.full(layer.groups, m * k, np.int64)
    else:
        _, h, w = layer.input_shape
        _, h_out, w_out = layer.output_shape
        covered = []
        axes = zip((h, w), (h_out, w_out), layer.kernel, layer.stride, layer.padding, layer.dilation)
        for size, out, taps, stride, pad, dilation in axes:
            at = (np.arange(out) * stride - pad)[:, None] + np.arange(taps)[None, :] * dilation
            covered.append(np.unique(at[(at >= 0) & (at < size)]).size)
        footprint = np.full(layer.groups, layer.in_channels // layer.groups * covered[0] * covered[1], np.int64)
    footprint.setflags(write=False)
    return footprint
