"""The analytic energy model of Yang, Zhu and Liu (ICLR 2019), as their public code computes it.

Reproduces ``energy_eval2`` (exact) and ``energy_eval2_relax`` (relaxed) of the
authors' ``sa_energy_model.py`` on a profile: m = array rows, n = array cols,
s1 = ifmap buffer words, s2 = filter buffer words (both the shared capacity when the
buffer is shared), e_MAC = compute.mac (3 in the paper: it includes the RF read and
write), e_RF = rf.read, e_buf = buffer.read, e_DRAM = dram.read (dram.write for the
outputs written back). With the ``eyeriss-iclr19`` profile the numbers are the paper's.

For a conv layer with input c x h x w, output d x h' x w' (hw = h'w') and groups g:

- weights: the first s2 nonzero weights cost e_DRAM + ceil(hw/m) e_buf + hw e_RF each
  (they stay in the weight buffer); each one beyond costs ceil(hw/m)(e_DRAM + e_buf) + hw e_RF
  (refetched once per row fold);
- computation: e_MAC per effective MAC; the relaxed bound counts hw MACs per nonzero weight;
- inputs and outputs: e_DRAM (nnz(X) + nnz of rows refetched because the input does not fit
  s1) + e_DRAM d hw (outputs) + nnz(unfold(X)) (ceil((d/g)/n) e_buf + ceil(d/g) e_RF), padding
  excluded from nnz(unfold(X)).

A linear layer (c -> d) costs e_DRAM + e_buf + e_RF per nonzero weight, e_MAC per MAC, and
nnz(x)(ceil(d/n) e_buf + d e_RF) + e_DRAM (min(nnz(x), s1) + ceil(d/n) max(0, nnz(x) - s1))
+ d e_DRAM for inputs and outputs (the authors' code uses nnz(x) where the paper's text writes c).
A linear layer applied to R rows (e.g. a sequence) costs R times the input, output and MAC
terms, with the weights fetched once. A matmul of two activations (Q K^T, attention x V) is,
per product, the linear formula with its second operand in the weight's place but counted as
an input: its DRAM, buffer and RF reads are input reads, and the layer has no weights. The model has no notion of time: cycles are ``None``.

Both energies are typed counts priced by :func:`energysim.estimators.pricing.energy_breakdown`,
like every estimator's: the weight and input terms above are DRAM, buffer and RF reads
of the weights and inputs, the outputs are DRAM writes, and the MACs are the effective
ones (exact) or ``relaxed_macs`` (relaxed); the model has no writes into the buffer or
the RF, no gated MACs and no leakage, so those counts are 0. The decomposition is exact:
no term of the closed form lies outside counts x per-access energies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..report import LayerReport, empty_accesses
from ..sparsity import LayerSparsity, Sparsity
from ..spec import Profile
from ..workload import LayerSpec, Workload
from .pricing import AccessCounts, energy_breakdown

__all__ = [
    "PaperConstants",
    "access_counts",
    "coefficients",
    "estimate",
    "estimate_layer",
    "paper_constants",
    "pattern_counts",
    "refetched_input_nnz",
]


@dataclass(frozen=True)
class PaperConstants:
    """The paper's symbols, read from a profile."""

    m: int
    n: int
    s1: int
    s2: int
    e_mac: float
    e_rf: float
    e_buf: float
    e_dram: float
    e_dram_write: float


def paper_constants(profile: Profile) -> PaperConstants:
    """Map a profile onto the paper's symbols (see the module docstring)."""
    buf = profile.memory.buffer
    return PaperConstants(
        m=profile.array.rows,
        n=profile.array.cols,
        s1=buf.shared_words if buf.is_shared else buf.ifmap_words,
        s2=buf.shared_words if buf.is_shared else buf.filter_words,
        e_mac=profile.compute.mac,
        e_rf=profile.memory.rf.read,
        e_buf=profile.memory.buffer.read,
        e_dram=profile.memory.dram.read,
        e_dram_write=profile.memory.dram.write,
    )


def refetched_input_nnz(row_nnz: np.ndarray, padding: int, kernel: int, stride: int, s1: int, layer: str) -> int:
    """Nonzeros of input rows fetched from DRAM a second time because the input does not fit s1.

    The buffer is filled with as many whole (padded) rows as fit ``s1`` nonzeros; the
    output rows those rows allow are computed, and the window slides to the first row
    still needed. Rows loaded again are counted once per reload. Worked case: 10 rows of
    4 nonzeros, kernel 3, stride 1, s1 = 20: rows 0-4 fit (20), outputs 0-2 computed, the
    next batch starts at row 3, so rows 3-4 (8 nonzeros) are refetched, and so on.
    """
    rows = np.concatenate([np.zeros(padding), np.asarray(row_nnz, float), np.zeros(padding)])
    total_rows = len(rows)
    refetched = 0.0
    begin, end = 0, None
    while begin + kernel - 1 < total_rows:
        if end is not None and begin < end:
            refetched += rows[begin:end].sum()
        held = 0.0
        end = total_rows
        for i in range(begin, total_rows):
            if held + rows[i] > s1:
                end = i
                break
            held += rows[i]
        if end - begin < kernel:
            raise ValueError(
                f"layer {layer}: {kernel} input rows ({rows[begin:begin + kernel].sum():.0f} nonzeros) do not fit "
                f"the ifmap buffer of {s1} words, which the paper model assumes"
            )
        begin += ((end - begin - kernel) // stride + 1) * stride
    return int(refetched)


def _conv_terms(layer: LayerSpec, ls: LayerSparsity, c: PaperConstants) -> dict:
    d, g = layer.out_channels, layer.groups
    hw = int(np.prod(layer.output_shape[1:]))
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel, layer.stride, layer.padding, layer.dilation
    x = torch.from_numpy(ls.inputs(layer)).to(torch.float64).unsqueeze(0)
    w = torch.from_numpy(ls.weights(layer)).to(torch.float64)
    n_w = ls.weight_nnz(layer)
    n_x = ls.input_nnz(layer)
    # nnz(unfold(X)): for every output pixel, the nonzero inputs in its window (all channels).
    window = torch.ones(1, 1, kh, kw, dtype=torch.float64)
    unfold_nnz = int(F.conv2d(x.sum(1, keepdim=True), window, None, (sh, sw), (ph, pw), (dh, dw)).sum().item())
    effective = int(F.conv2d(x, w, None, (sh, sw), (ph, pw), (dh, dw), g).sum().item())
    row_nnz = x[0].sum(dim=(0, 2)).numpy()
    refetch = refetched_input_nnz(row_nnz, ph, kh, sh, c.s1, layer.name)
    row_folds = math.ceil(hw / c.m)
    in_buffer = min(c.s2, n_w)
    return {
        "w_dram": in_buffer + row_folds * (n_w - in_buffer),
        "w_buf": row_folds * n_w,
        "w_rf": hw * n_w,
        "x_dram": n_x + refetch,
        "x_buf": unfold_nnz * math.ceil((d / g) / c.n),
        "x_rf": unfold_nnz * math.ceil(d / g),
        "o_dram": d * hw,
        "effective_macs": effective,
        "relaxed_macs": hw * n_w,
        "extra": {"unfold_nnz": unfold_nnz, "refetched_input_nnz": refetch, "weight_nnz": n_w, "input_nnz": n_x},
    }


def _linear_terms(layer: LayerSpec, ls: LayerSparsity, c: PaperConstants) -> dict:
    d = layer.out_channels
    rows = layer.gemm[0]
    x = ls.inputs(layer).reshape(rows, -1).astype(np.float64)
    w = ls.weights(layer).astype(np.float64)
    n_w = ls.weight_nnz(layer)
    per_row_nnz = np.count_nonzero(x, axis=1)
    x_dram = sum(min(k, c.s1) + math.ceil(d / c.n) * max(0, k - c.s1) for k in per_row_nnz.tolist())
    return {
        "w_dram": n_w,
        "w_buf": n_w,
        "w_rf": n_w,
        "x_dram": int(x_dram),
        "x_buf": int(per_row_nnz.sum()) * math.ceil(d / c.n),
        "x_rf": int(per_row_nnz.sum()) * d,
        "o_dram": d * rows,
        "effective_macs": int((x @ w.T).sum()),
        "relaxed_macs": rows * n_w,
        "extra": {
            "weight_nnz": n_w,
            "input_nnz": int(per_row_nnz.sum()),
            "input_overflow_nnz": int(np.maximum(per_row_nnz - c.s1, 0).sum()),
        },
    }


def _matmul_terms(layer: LayerSpec, ls: LayerSparsity, c: PaperConstants) -> dict:
    """The linear formula per product, the second operand's reads counted as input reads."""
    g = layer.groups
    m, k, d = layer.gemm
    x = ls.inputs(layer).reshape(g, m, k)
    w = ls.weights(layer).reshape(g, d, k)
    one = LayerSpec(layer.name, "linear", (m, k), (m, d), k, d, (1, 1), (1, 1), (0, 0), (1, 1), 1, False)
    total = {key: 0 for key in ("w_dram", "w_buf", "w_rf", "x_dram", "x_buf", "x_rf", "o_dram",
                                "effective_macs", "relaxed_macs")}
    extra = {"weight_nnz": 0, "input_nnz": 0, "input_overflow_nnz": 0}
    for i in range(g):
        t = _linear_terms(one, LayerSparsity(w[i], x[i]), c)
        for key in total:
            total[key] += t[key]
        extra["input_nnz"] += t["extra"]["input_nnz"] + t["extra"]["weight_nnz"]
        extra["input_overflow_nnz"] += t["extra"]["input_overflow_nnz"]
    for level in ("dram", "buf", "rf"):
        total[f"x_{level}"] += total.pop(f"w_{level}")
        total[f"w_{level}"] = 0
    return total | {"extra": extra}


def pattern_counts(layer: LayerSpec, ls: LayerSparsity, c: PaperConstants) -> dict:
    """Access and MAC counts of the paper model for one layer's pattern.

    Keys: ``w_dram, w_buf, w_rf, x_dram, x_buf, x_rf, o_dram`` (accesses),
    ``effective_macs``, ``relaxed_macs`` and ``extra`` (``weight_nnz``, ``input_nnz``,
    ``unfold_nnz`` and ``refetched_input_nnz`` for convs, ``input_overflow_nnz`` for
    linear layers: nonzeros past s1 in each row).
    """
    if layer.kind == "matmul":
        return _matmul_terms(layer, ls, c)
    return _conv_terms(layer, ls, c) if layer.kind in ("conv", "depthwise") else _linear_terms(layer, ls, c)


def _access_counts(t: dict) -> AccessCounts:
    """The typed counts of :func:`pattern_counts`' terms."""
    acc = empty_accesses()
    acc["dram"]["weights"]["reads"] = t["w_dram"]
    acc["buffer"]["weights"]["reads"] = t["w_buf"]
    acc["rf"]["weights"]["reads"] = t["w_rf"]
    acc["dram"]["inputs"]["reads"] = t["x_dram"]
    acc["buffer"]["inputs"]["reads"] = t["x_buf"]
    acc["rf"]["inputs"]["reads"] = t["x_rf"]
    acc["dram"]["outputs"]["writes"] = t["o_dram"]
    return AccessCounts(acc, t["effective_macs"], relaxed_macs=t["relaxed_macs"])


def access_counts(layer: LayerSpec, profile: Profile, layer_sparsity: LayerSparsity) -> AccessCounts:
    """The paper model's typed counts for one layer (no gated MACs, no cycles; see the module docstring)."""
    return _access_counts(pattern_counts(layer, layer_sparsity, paper_constants(profile)))


def estimate_layer(layer: LayerSpec, profile: Profile, ls: LayerSparsity) -> LayerReport:
    """The paper model's report for one layer (see the module docstring)."""
    t = pattern_counts(layer, ls, paper_constants(profile))
    counts = _access_counts(t)
    energy, by_level, by_operand = energy_breakdown(profile, counts)
    return LayerReport(
        name=layer.name,
        kind=layer.kind,
        macs=layer.macs,
        effective_macs=t["effective_macs"],
        energy=energy,
        energy_relaxed=energy_breakdown(profile, counts.relaxed())[0],
        energy_by_level=by_level,
        energy_by_operand=by_operand,
        accesses=counts.accesses,
        extra=t["extra"] | {"relaxed_macs": t["relaxed_macs"]},
    )


def coefficients(layer: LayerSpec, profile: Profile) -> dict[str, Any]:
    """Closed-form coefficients of the relaxed energy (see :mod:`energysim.coeffs`).

    The relaxed energy is exactly the table's expression: per-weight costs with the
    weight-buffer kink at s2, a cost per nonzero input fetched from DRAM, per nonzero
    *use* of an input in a window (buffer and RF reads), per refetched input row, and
    the outputs as a constant; a linear layer's inputs past s1 are refetched per column fold.
    """
    c = paper_constants(profile)
    if layer.kind == "linear":
        rows, _, d = layer.gemm
        col_folds = -(-d // c.n)
        return dict(
            constant=c.e_dram_write * d * rows,
            per_weight=c.e_dram + c.e_buf + c.e_rf + c.e_mac * rows,
            per_weight_overflow=c.e_dram + c.e_buf + c.e_rf + c.e_mac * rows,
            weight_breakpoint=None,
            per_input=c.e_dram + col_folds * c.e_buf + d * c.e_rf,
            per_input_overflow=(col_folds - 1) * c.e_dram,
            input_breakpoint=c.s1,
            per_input_use=0.0,
            per_input_refetch=0.0,
            per_effective_mac=0.0,
            group_cost=None,
            slice_cost=None,
            upper_bound=False,
        )
    d, g = layer.out_channels, layer.groups
    hw = int(np.prod(layer.output_shape[1:]))
    row_folds = -(-hw // c.m)
    mac = c.e_mac * hw  # the relaxed bound: every output position of a nonzero weight
    return dict(
        constant=c.e_dram_write * d * hw,
        per_weight=c.e_dram + row_folds * c.e_buf + hw * c.e_rf + mac,
        per_weight_overflow=row_folds * (c.e_dram + c.e_buf) + hw * c.e_rf + mac,
        weight_breakpoint=c.s2,
        per_input=c.e_dram,
        per_input_overflow=0.0,
        input_breakpoint=None,
        per_input_use=-(-d // g // c.n) * c.e_buf + -(-d // g) * c.e_rf,
        per_input_refetch=c.e_dram,
        per_effective_mac=0.0,
        group_cost=None,
            slice_cost=None,
        upper_bound=False,
    )


def estimate(workload: Workload, profile: Profile, sparsity: Sparsity) -> list[LayerReport]:
    """Per-layer reports of the paper model for every layer of ``workload``."""
    return [estimate_layer(layer, profile, sparsity[layer.name]) for layer in workload.layers]
