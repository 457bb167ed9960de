"""Every numba kernel of energysim. Arrays and scalars in, arrays out; no globals.

Kernels also run as plain Python (``NUMBA_DISABLE_JIT=1``), which the test suite
checks on a small subset. Parallel variants are built here, once, at import time;
they write disjoint slices of their outputs, so their results are identical to the
serial ones.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

__all__ = [
    "block_sums_2d",
    "fold_trace",
    "fold_trace_parallel",
    "nm_check",
    "nm_compress",
    "nm_slot_uses",
    "schedule_folds",
    "slice_elements",
    "slice_unique_counts",
    "window_fetch",
]


@njit(cache=True)
def _stationary_row(effective, start, stationary_row, stream_row, prefix):
    """Add one array row of a stationary-operand fold: PE c of the row adds ``stream_row[t]``
    to cycle ``start + c + t`` when ``stationary_row[c]`` is nonzero.

    A run of consecutive nonzero PEs ``[c1, c2)`` adds, at offset ``u``, the stream
    values ``t`` in ``(u - c2, u - c1]``: a difference of prefix sums, so a run costs
    O(length + stream) instead of O(length * stream). Isolated nonzeros go direct.
    """
    cols = stationary_row.size
    stream = stream_row.size
    nnz = 0
    runs = 0
    previous = False
    for c in range(cols):
        on = stationary_row[c] != 0
        nnz += on
        runs += on and not previous
        previous = on
    if nnz == 0:
        return
    if runs * (stream + cols) < nnz * stream:
        prefix[0] = 0
        for t in range(stream):
            prefix[t + 1] = prefix[t] + stream_row[t]
        c = 0
        while c < cols:
            if stationary_row[c] == 0:
                c += 1
                continue
            c1 = c
            while c < cols and stationary_row[c] != 0:
                c += 1
            for u in range(c1, c + stream - 1):
                effective[start + u] += prefix[min(u - c1 + 1, stream)] - prefix[max(u - c + 1, 0)]
    elif stream < cols:
        for t in range(stream):
            if stream_row[t] != 0:
                for c in range(cols):
                    effective[start + t + c] += stationary_row[c]
    else:
        for c in range(cols):
            if stationary_row[c] != 0:
                for t in range(stream):
                    effective[start + c + t] += stream_row[t]


@njit(cache=True)
def _trace_one_fold(
    f, stationary, row_stream, col_stream, has_stationary, has_row, has_col, dense,
    group, row_start, rows_used, col_start, cols_used, stream_start, fold_start, preload, stream, effective, active,
    select, select_origin, select_width,
):  # fmt: skip
    """Step fold ``f`` cycle by cycle: effective MACs and busy PEs per cycle into its slice."""
    g = group[f]
    r0 = row_start[f]
    c0 = col_start[f]
    ru = rows_used[f]
    cu = cols_used[f]
    s0 = stream_start[f]
    base = fold_start[f] + preload[f]
    # Busy PEs: the PEs on anti-diagonal d = r + c work in cycles [base + d, base + d + stream);
    # a difference array over the fold makes that O(R + C + T) instead of O(R*C*T).
    span = ru + cu - 1 + stream
    diff = np.zeros(span + 1, np.int32)
    for d in range(ru + cu - 1):
        on_diagonal = min(d, ru - 1) - max(0, d - cu + 1) + 1
        diff[d] += on_diagonal
        diff[d + stream] -= on_diagonal
    running = 0
    for i in range(span):
        running += diff[i]
        active[base + i] += running
        if dense[f]:
            # Every operand of the fold is nonzero: every busy PE does an effective MAC.
            effective[base + i] += running
    if dense[f]:
        return
    if select_width > 0:
        # N:M: PE (r, c) multiplies the input row it selects (one of select_width from
        # select_origin[r]), so every kept PE adds its own row: O(kept PEs * stream).
        for r in range(ru):
            for c in range(cu):
                if stationary[g, r0 + r, c0 + c] == 0:
                    continue
                row = row_stream[g, select[g, r0 + r, c0 + c]]
                start = base + r + c
                for t in range(stream):
                    effective[start + t] += row[s0 + t]
        return
    if has_stationary and has_row and not has_col:
        prefix = np.empty(stream + 1, np.int64)
        for r in range(ru):
            _stationary_row(
                effective, base + r, stationary[g, r0 + r, c0 : c0 + cu], row_stream[g, r0 + r, s0 : s0 + stream], prefix
            )
        return
    # PE (r, c) at stream step t lands in cycle base + r + c + t.
    for r in range(ru):
        for c in range(cu):
            if has_stationary and stationary[g, r0 + r, c0 + c] == 0:
                continue
            start = base + r + c
            if has_row and has_col:
                for t in range(stream):
                    effective[start + t] += row_stream[g, r0 + r, s0 + t] & col_stream[g, c0 + c, s0 + t]
            elif has_row:
                for t in range(stream):
                    effective[start + t] += row_stream[g, r0 + r, s0 + t]
            elif has_col:
                for t in range(stream):
                    effective[start + t] += col_stream[g, c0 + c, s0 + t]
            else:
                for t in range(stream):
                    effective[start + t] += 1


def _fold_trace(
    stationary, row_stream, col_stream, has_stationary, has_row, has_col, dense,
    group, row_start, rows_used, col_start, cols_used, stream_start, fold_start, preload, stream, effective, active,
    select, select_origin, select_width,
):  # fmt: skip
    """Per-cycle effective MACs and busy PEs of every fold.

    PE ``(r, c)`` of fold ``f`` does stream step ``t`` (of its tile, which starts at
    ``stream_start[f]``) in cycle ``fold_start[f] + preload[f] + r + c + t``; the MAC is
    effective when the present operands among ``stationary[g, r, c]``,
    ``row_stream[g, r, s0 + t]`` and ``col_stream[g, c, s0 + t]`` (uint8, 0/1) are all
    nonzero. ``dense[f]`` (bool) says
    that every operand of fold ``f`` is nonzero (then effective = busy, exactly).
    ``effective`` and ``active`` (int32, one entry per layer cycle) are accumulated
    in place. Folds own disjoint cycle ranges, so the ``prange`` over them needs no
    reduction; without ``parallel=True`` it is a plain ``range``.

    N:M arrays (``select_width`` = M > 0, WS only): the row stream holds the
    uncompressed input rows (G, K, T), and PE ``(r, c)`` multiplies row
    ``select[g, r, c]`` (int32, in ``[select_origin[r], select_origin[r] + M)``)
    instead of row ``r``. With ``select_width`` 0 the select arrays are not read.
    """
    for f in prange(group.size):
        _trace_one_fold(
            f, stationary, row_stream, col_stream, has_stationary, has_row, has_col, dense,
            group, row_start, rows_used, col_start, cols_used, stream_start, fold_start, preload, stream,
            effective, active, select, select_origin, select_width,
        )  # fmt: skip


def _named(body, name: str):
    """A copy of the function `body` (same code, so same docstring) named and qualified `name`."""
    copy = types.FunctionType(body.__code__, body.__globals__, name, body.__defaults__, body.__closure__)
    copy.__qualname__ = name
    return copy


# One body, two wraps, each under its own name: numba's on-disk cache keys a kernel by
# module, qualified name and first line, not by its njit options (numba issue 6845), so two
# wraps of one function share a cache entry: the parallel one then runs the serial code
# from the cache, or the serial one the parallel code (a segfault with numba 0.68).
fold_trace = njit(cache=True)(_named(_fold_trace, "fold_trace"))
fold_trace_parallel = njit(cache=True, parallel=True)(_named(_fold_trace, "fold_trace_parallel"))


@njit(cache=True)
def _window_state(folds, n_keys):
    """Empty refetch-window state: per key its executed folds in the window, and the history
    (fold, key, words) of the executed folds, room for ``folds``."""
    return (np.zeros(n_keys, np.int64), np.empty(folds, np.int64), np.empty(folds, np.int64),
            np.empty(folds, np.float64))


@njit(cache=True)
def _remember(count, hist_fold, hist_key, hist_words, f, key, words):
    """Append executed fold ``f`` (its slice ``key`` of ``words`` words) to the window history; the new length."""
    hist_fold[count] = f
    hist_key[count] = key
    hist_words[count] = words
    return count + 1


@njit(cache=True)
def _advance_window(count, start, total, hist_fold, hist_key, hist_words, in_window, window_words, f):
    """Slide the buffer window to just before fold ``f``; returns (start, total, first fold).

    The window is the most recent executed folds (``hist_*[start:count]``) whose distinct
    slices add up to at most ``window_words``. Adding the newest fold can only move its
    start forward (a longer suffix never holds fewer distinct words), so the window slides:
    O(1) amortized per fold. ``in_window`` counts each key's folds in the window.
    """
    if count > 0:
        key = hist_key[count - 1]
        if in_window[key] == 0:
            total += hist_words[count - 1]
        in_window[key] += 1
    while start < count and total > window_words:
        key = hist_key[start]
        in_window[key] -= 1
        if in_window[key] == 0:
            total -= hist_words[start]
        start += 1
    return start, total, hist_fold[start] if start < count else f


@njit(cache=True)
def window_fetch(keys, words, executed, window_words, n_keys):
    """Words each fold fetches of an operand whose slices are disjoint (weights).

    Before fold ``f`` the buffer holds the slices of the most recent executed folds
    whose words add up to at most ``window_words`` (half the buffer: the other half is
    filling); the fold fetches its slice unless an executed fold of that window used it.

    Returns
    -------
    int64 array (F,)
    """
    folds = keys.size
    fetched = np.zeros(folds, np.int64)
    last = np.full(n_keys, -1, np.int64)
    in_window, hist_fold, hist_key, hist_words = _window_state(folds, n_keys)
    count = 0
    begin = 0
    total = 0.0
    for f in range(folds):
        if not executed[f]:
            continue
        key = keys[f]
        begin, total, start = _advance_window(count, begin, total, hist_fold, hist_key, hist_words, in_window, window_words, f)
        if last[key] < 0 or last[key] < start:
            fetched[f] = words[f]
        last[key] = f
        count = _remember(count, hist_fold, hist_key, hist_words, f, key, words[f])
    return fetched


@njit(cache=True)
def slice_elements(index, group, m_start, m_stop, k_start, k_stop, n_elements, size):
    """The distinct valid input elements of each slice ``index[group, m_start:m_stop, k_start:k_stop]``.

    An im2col slice names an element once per tap that reads it (up to kh * kw times);
    the refetch kernel walks each slice's distinct elements instead, once per fold.
    ``size`` bounds the total (the slices' entries). Returns ``offsets`` (S + 1,) and
    ``elements`` (int32): slice ``s`` holds ``elements[offsets[s]:offsets[s + 1]]``.
    """
    slices = group.size
    offsets = np.zeros(slices + 1, np.int64)
    elements = np.empty(size, np.int32)
    mark = np.full(n_elements, -1, np.int64)
    count = 0
    for s in range(slices):
        g = group[s]
        for m in range(m_start[s], m_stop[s]):
            for k in range(k_start[s], k_stop[s]):
                i = index[g, m, k]
                if i < 0 or mark[i] == s:
                    continue
                mark[i] = s
                elements[count] = i
                count += 1
        offsets[s + 1] = count
    return offsets, elements[:count]


@njit(cache=True)
def slice_unique_counts(offsets, elements, slice_key, executed, n_elements, window_words):
    """Distinct input elements of each fold's X slice, the first-touched ones and the fetched ones.

    Parameters
    ----------
    offsets, elements : int64 (S + 1,), int32 arrays
        The distinct valid elements of slice ``s``: ``elements[offsets[s]:offsets[s + 1]]``
        (:func:`slice_elements`).
    slice_key : int64 array (F,)
        The fold's slice (equal keys are equal slices).
    executed : bool array (F,)
        Skipped folds read nothing.
    n_elements : int
        Size of the flat input.
    window_words : float
        Words of the buffer that keep earlier slices (see :func:`window_fetch`); an element
        is on chip when an executed fold of the window touched it.

    Returns
    -------
    unique, first, fetched : int64 arrays (F,)
        Distinct valid elements in the slice; of those, the ones no earlier executed
        fold touched (in fold order); and the ones not on chip (the fold fetches them).

    Notes
    -----
    A slice seen before needs no pass over its elements (none of it is first-touched)
    in two cases, which are exact:

    - ``window_words == 0`` (a resident operand): the window holds only folds that touch
      nothing, so every element of the slice is fetched, and ``last`` is read only for
      "ever touched" (< 0) and "not in the window" (true of every touched element),
      which a stale ``last`` (the fold of the slice's last pass) answers alike.
    - the previous executed fold had the same key: its elements were last touched by
      that fold, so the slice is fetched whole if the window lost that fold and not at
      all otherwise. Leaving ``last`` at the run's first fold is exact because the
      window never starts strictly inside a run of one key: dropping a fold whose key
      a later fold of the window still holds frees no words, so the loop in
      :func:`_advance_window` that dropped it drops the next one too.
    """
    folds = slice_key.size
    n_keys = offsets.size - 1
    unique = np.zeros(folds, np.int64)
    first = np.zeros(folds, np.int64)
    fetched = np.zeros(folds, np.int64)
    last = np.full(n_elements, -1, np.int64)
    seen = np.zeros(n_keys, np.bool_)
    in_window, hist_fold, hist_key, hist_words = _window_state(folds, n_keys)
    count = 0
    begin = 0
    total = 0.0
    previous = -1
    for f in range(folds):
        if not executed[f]:
            continue
        begin, total, start = _advance_window(count, begin, total, hist_fold, hist_key, hist_words, in_window, window_words, f)
        key = slice_key[f]
        u = offsets[key + 1] - offsets[key]
        unique[f] = u
        if seen[key] and (window_words == 0.0 or slice_key[previous] == key):
            if window_words == 0.0 or start > previous:
                fetched[f] = u
            count = _remember(count, hist_fold, hist_key, hist_words, f, key, u)
            previous = f
            continue
        fresh = 0
        fetch = 0
        for j in range(offsets[key], offsets[key + 1]):
            i = elements[j]
            if last[i] < 0:
                fresh += 1
                fetch += 1
            elif last[i] < start:
                fetch += 1
            last[i] = f
        first[f] = fresh
        fetched[f] = fetch
        seen[key] = True
        count = _remember(count, hist_fold, hist_key, hist_words, f, key, u)
        previous = f
    return unique, first, fetched


@njit(cache=True)
def schedule_folds(fold_cycles, read_cycles, write_cycles, final_write_cycles, overlap=True):
    """Start cycle of every fold under one shared DRAM channel.

    Double buffering (``overlap``): fold ``f``'s operands (``read_cycles[f]`` cycles of
    DRAM transfer) are fetched into the free half of the double buffer, which frees when
    fold ``f-1`` starts; the fold starts when fold ``f-1`` has ended and its operands have
    arrived. Its outputs (``write_cycles[f]``) are written back after it ends, on the same
    channel, queued behind the fetch of fold ``f+1``. Single buffering (not ``overlap``):
    the buffers hold the running fold's data, so after fold ``f-1`` ends its writes go out,
    then fold ``f``'s reads come in, and only then does fold ``f`` start (no transfer
    overlaps compute). ``final_write_cycles`` more (outputs no fold produced) go last.

    Returns
    -------
    start : int64 array (F,)
    total : int
        Cycle at which the last fold has ended and every write has completed.
    """
    folds = fold_cycles.size
    start = np.zeros(folds, np.int64)
    channel = 0
    prev_start = 0
    prev_end = 0
    for f in range(folds):
        if overlap:
            fetch_end = max(channel, prev_start) + read_cycles[f]
            channel = fetch_end
            if f > 0:
                channel = max(channel, prev_end) + write_cycles[f - 1]
        else:
            channel = max(channel, prev_end)
            if f > 0:
                channel += write_cycles[f - 1]
            channel += read_cycles[f]
            fetch_end = channel
        begin = max(prev_end, fetch_end)
        start[f] = begin
        prev_start = begin
        prev_end = begin + fold_cycles[f]
    pending = final_write_cycles
    if folds > 0:
        pending += write_cycles[folds - 1]
    if pending > 0:
        channel = max(channel, prev_end) + pending
    return start, max(prev_end, channel)


@njit(cache=True)
def block_sums_2d(array, block1, block2, weight1, weight2):
    """Weighted sums of ``array`` (G, A, B) over blocks of ``block1`` x ``block2``.

    ``out[g, i // block1, j // block2] += array[g, i, j] * weight1[g, i] * weight2[g, j]``,
    with the last axis innermost (pass a view whose last axis is the contiguous one).
    Each row block is first summed along its rows (weighted by ``weight1``) into one row,
    a loop over contiguous memory the compiler vectorises, then cut into column blocks.
    Returns int64 (G, ceil(A/block1), ceil(B/block2)).
    """
    groups, size1, size2 = array.shape
    blocks1 = (size1 + block1 - 1) // block1
    blocks2 = (size2 + block2 - 1) // block2
    out = np.zeros((groups, blocks1, blocks2), np.int64)
    summed = np.zeros(size2, np.int64)
    for g in range(groups):
        for b1 in range(blocks1):
            summed[:] = 0
            touched = False
            for i in range(b1 * block1, min(size1, (b1 + 1) * block1)):
                w1 = weight1[g, i]
                if w1 == 0:
                    continue
                touched = True
                row = array[g, i]
                for j in range(size2):
                    summed[j] += row[j] * w1
            if not touched:
                continue
            for b2 in range(blocks2):
                total = 0
                for j in range(b2 * block2, min(size2, (b2 + 1) * block2)):
                    total += summed[j] * weight2[g, j]
                out[g, b1, b2] = total
    return out


@njit(cache=True)
def nm_compress(w, n, m, slots):
    """N:M-compress weight masks along K (see :mod:`energysim.model.nm`).

    Parameters
    ----------
    w : uint8 array (G, N, K)
        Per group, one row per GEMM column (the torch weight's layout: K contiguous).

    Returns
    -------
    ok : bool
        Whether every group of ``m`` consecutive K of every column keeps at most ``n``
        nonzeros (when not, the arrays are incomplete).
    weights : uint8 array (G, N, slots)
        1 where a slot holds a nonzero weight.
    select : int32 array (G, N, slots)
        The K index each slot selects (an empty slot: its group's first).
    """
    groups, cols, k = w.shape
    weights = np.zeros((groups, cols, slots), np.uint8)
    select = np.zeros((groups, cols, slots), np.int32)
    for g in range(groups):
        for c in range(cols):
            slot = 0
            for start in range(0, k, m):
                stop = min(start + m, k)
                kept = 0
                for i in range(start, stop):
                    if w[g, c, i] != 0:
                        if kept == n:
                            return False, weights, select
                        weights[g, c, slot + kept] = 1
                        select[g, c, slot + kept] = i
                        kept += 1
                width = min(n, stop - start)
                for j in range(kept, width):
                    select[g, c, slot + j] = start
                slot += width
    return True, weights, select


@njit(cache=True)
def nm_check(w, n, m):
    """Whether weight masks ``w`` (G, N, K: one row per GEMM column) keep at most ``n`` of every ``m`` consecutive K."""
    groups, cols, k = w.shape
    for g in range(groups):
        for c in range(cols):
            for start in range(0, k, m):
                kept = 0
                for i in range(start, min(start + m, k)):
                    kept += w[g, c, i] != 0
                if kept > n:
                    return False
    return True


@njit(cache=True)
def nm_slot_uses(weights, select, per_k):
    """Per kept slot ``(g, s, c)`` of ``weights`` (G, K', N), ``per_k[g, select[g, s, c]]``; 0 for empty slots (int64)."""
    groups, slots, cols = weights.shape
    out = np.zeros((groups, slots, cols), np.int64)
    for g in range(groups):
        for s in range(slots):
            for c in range(cols):
                if weights[g, s, c] != 0:
                    out[g, s, c] = per_k[g, select[g, s, c]]
    return out
