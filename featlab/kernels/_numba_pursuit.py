"""Matching Pursuit's CPU kernels, compiled by numba: the Gram pick loop and the value replay.

Why not torch ops: a pursuit step touches every ``[N, d_sae]`` correlation, and as a chain of
torch ops (argmax, index_select, addcmul) it streams the whole matrix through memory several
times per step, with torch's CPU argmax unvectorised on top. Here one row's correlations
(``d_sae`` floats, a few KB) stay in L1 cache for all ``k`` steps; only the Gram rows of the
chosen atoms are read. Rows are independent, so each kernel is a ``prange`` over rows.

Threads: numba's OpenMP layer resolves ``libgomp.so.1`` to the copy torch already loaded, so
the kernels run on torch's own OpenMP team. Plain Python threads would not: torch's workers
keep spinning for milliseconds after each parallel op and take the second core from them.
Callers match numba's thread count to torch's with
:func:`featlab.kernels.dispatch.sync_numba_threads`.

The kernels work in place on contiguous NumPy views of torch tensors. They compile on the
first call (a few seconds) and are cached on disk by numba afterwards.
The semantics equal the torch references in :mod:`featlab.kernels.pursuit`: ``argmax`` takes
the first of tied maxima, and the correlation update is ``c -= v * G[j]`` with one rounding
per product and per subtraction, as ``addcmul_`` does, so the picks match it exactly.
"""

from __future__ import annotations

from typing import Any

from numba import njit, prange

_JIT = dict(nogil=True, cache=True, boundscheck=False, parallel=True)
# reassociation lets the d_in-long dot products vectorise; the inputs are finite (the trainer
# rejects NaN batches), so nothing else about IEEE semantics is given up
_JIT_DOT = dict(_JIT, fastmath={"reassoc"})


@njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _argmax(row: Any) -> tuple[int, Any]:
    """First index of the maximum of ``row`` and the maximum.

    Eight independent running maxima (a lane keeps its first maximum) give the CPU
    instruction-level parallelism that numba's float max reduction lacks; lanes are merged
    preferring the lower index, so ties resolve as ``torch.argmax`` does.
    """
    n = row.shape[0]
    n8 = n - n % 8
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]  # (row[0], 0) is a true candidate
    i0 = i1 = i2 = i3 = i4 = i5 = i6 = i7 = 0
    for f in range(0, n8, 8):
        x = row[f]
        if x > m0:
            m0, i0 = x, f
        x = row[f + 1]
        if x > m1:
            m1, i1 = x, f + 1
        x = row[f + 2]
        if x > m2:
            m2, i2 = x, f + 2
        x = row[f + 3]
        if x > m3:
            m3, i3 = x, f + 3
        x = row[f + 4]
        if x > m4:
            m4, i4 = x, f + 4
        x = row[f + 5]
        if x > m5:
            m5, i5 = x, f + 5
        x = row[f + 6]
        if x > m6:
            m6, i6 = x, f + 6
        x = row[f + 7]
        if x > m7:
            m7, i7 = x, f + 7
    best, top = i0, m0
    for m, i in ((m1, i1), (m2, i2), (m3, i3), (m4, i4), (m5, i5), (m6, i6), (m7, i7)):
        if m > top or (m == top and i < best):
            best, top = i, m
    for f in range(n8, n):
        if row[f] > top:
            best, top = f, row[f]
    return best, top


@njit(**_JIT)
def select(c: Any, G: Any, steps: int, chosen: Any) -> None:
    """``chosen[i, t]``: the atom of pursuit step ``t`` for row ``i``, from the initial
    correlations ``c`` ``[N, d_sae]`` (overwritten) and the Gram matrix ``G``."""
    width = c.shape[1]
    for i in prange(c.shape[0]):
        row = c[i]
        for t in range(steps):
            j, top = _argmax(row)
            chosen[i, t] = j
            if t + 1 < steps and top > 0:  # the last step's update is never read
                g = G[j]
                for f in range(width):
                    row[f] -= top * g[f]


@njit(**_JIT_DOT)
def replay(r: Any, W: Any, chosen: Any, vals: Any) -> None:
    """Replay the chosen atoms on residuals ``r`` ``[N, d]`` (in place, ending at r_T):
    ``vals[i, t] = ReLU(<r, W[j]>)``, ``r -= vals[i, t] * W[j]``."""
    d = r.shape[1]
    steps = chosen.shape[1]
    for i in prange(r.shape[0]):
        ri = r[i]
        for t in range(steps):
            a = W[chosen[i, t]]
            s = 0.0  # fp64 accumulator
            for f in range(d):
                s += ri[f] * a[f]
            vals[i, t] = max(s, 0.0)
            v = vals[i, t]  # rounded to the storage dtype, as the torch reference's value
            for f in range(d):
                ri[f] -= v * a[f]


@njit(**_JIT_DOT)
def replay_backward(
    g: Any, g_vals: Any, W: Any, chosen: Any, vals: Any, r: Any, g_atoms: Any
) -> None:
    """Backward of :func:`replay`.

    In: ``g`` ``[N, d]`` = dL/dr_T, ``g_vals`` ``[N, T]`` = dL/dvals, ``r`` = r_T. Out: ``g``
    becomes dL/dr_0, ``g_atoms[i, t]`` = dL/dW[chosen[i, t]] from this use; ``g_vals`` and
    ``r`` are scratch (``r`` ends near r_0). With r_t = r_{t-1} - v_t a_t and
    v_t = ReLU(<r_{t-1}, a_t>), walking t backwards: r_{t-1} = r_t + v_t a_t (rebuilt rather
    than stored: one rounding per step, far below the gradient's own error);
    dv = g_vals_t - <g, a_t> (0 where v_t = 0); dL/da_t = -v_t g + dv r_{t-1}; g += dv a_t.
    """
    d = g.shape[1]
    steps = chosen.shape[1]
    for i in prange(g.shape[0]):
        gi = g[i]
        rb = r[i]
        for t in range(steps - 1, -1, -1):
            a = W[chosen[i, t]]
            v = vals[i, t]
            s = 0.0
            for f in range(d):
                s += gi[f] * a[f]
            # g_vals is scratch: storing dv there rounds it to the arrays' dtype, so the loops
            # below run in that dtype
            g_vals[i, t] = g_vals[i, t] - s if v > 0 else 0.0
            dv = g_vals[i, t]
            ga = g_atoms[i, t]
            for f in range(d):
                rb[f] += v * a[f]
                ga[f] = dv * rb[f] - v * gi[f]
            for f in range(d):
                gi[f] += dv * a[f]
