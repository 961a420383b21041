"""CPU kernels of the sparse SAE step, compiled by numba: the per-latent segment sums, the
gathered dot products and a row-wise top-k.

- :func:`segment_sum`: ``out[j] = sum over entries e with cols[e] = j of w[e] * src[rows[e]]``,
  the gradient of W_enc / W_dec. A counting sort groups the entries by output row (in entry
  order), then each output row is reduced by one thread in that fixed order: deterministic,
  no atomics, no ``[nnz, d]`` intermediate. torch's sparse product (the reference) spends
  most of its time coalescing. :func:`segment_outer` does the same straight from an SAE
  step's ``[B, S]`` weights and indices, skipping zero weights, and writes W_enc's layout
  (``[d, n]``) directly.
- :func:`gather_dot`: ``out[b, s] = <grad[b], W[idx[b, s]]>``, the gradient of the sparse
  code's values (torch's reference is embedding_bag's per-sample-weight backward).
- :func:`topk_rows`: the k largest entries of each row, sorted descending, ties to the lower
  column, and in the same visit of the row AuxK's top k_aux among the dead latents: either
  the tail of the row (the encoder's columns ordered live, then dead, by the caller) or a
  gather of listed columns. A value enters the sorted k-list only if it beats the current
  k-th, so the kernel first finds a few candidates without branches: the maximum of each
  block of up to 16 entries (computed vectorised), a floor that k of those maxima reach
  (bisection on counts, which vectorise; the row's k-th largest is then at least the floor),
  the entries at or above it of the blocks that reach it, and a second floor by bisection
  over those candidates, which leaves about k + k/8 for the k-list. A block is a stripe of
  columns ``b, b + n, ..., b + 15 n`` (``n`` = width // 16), not 16 neighbours: its maxima
  are then 16 vertical maxima over contiguous runs, which vectorise without a horizontal
  reduction; rows with fewer than 8 blocks per entry kept take shallower stripes (fewer
  loads per block that reaches the floor). Candidates arrive out of column order, so the
  k-list breaks ties by column. Measured on one thread, the same selection, ties included:
  the striped blocks and the first floor against the kernel of contiguous blocks and a floor
  from a k-list over the first 64 blocks (1024 superposition rows times a random encoder),
  2x at 1024 latents and 4x at 4096 (k 8), 3x at k 32-64; the second floor, block
  compaction and shallower stripes on top (1024 rows through a trained SAE's encoder), 1.2x
  at k 8 and 1.25-1.9x at k 32-64; AuxK's tail instead of its gather saves a quarter of the
  selection among 3000 dead of 4096 latents. ``torch.topk`` on CPU is
  slower still. (Tried and dropped: a heap for k = 32, slower than the sorted list;
  binary-search inserts, slower; replacing the minimum of an unsorted k-list, and ranking
  the candidates by counting, both slower: numba does not vectorise the count, and the
  branches of both mispredict; AuxK's candidates above the previous row's k-th, no faster:
  rows differ too much; adding the bias in the kernel rather than by ``addmm``, slower.)

Rows are independent (``prange``); like :mod:`featlab.kernels._numba_pursuit`, the kernels
run on torch's OpenMP team, compile on first use and are cached on disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

_JIT = dict(nogil=True, cache=True, boundscheck=False)
_BLOCK = 16  # entries topk_rows compares against the k-th at once
_FLOOR_STEPS = 12  # bisection steps of _floor_reached at most
_BLOCKS_PER_K = 8  # blocks per selected entry at least: fewer blocks reach the floor


@njit(**_JIT)
def _counting_sort(cols: Any, n_out: int) -> tuple[Any, Any]:
    """(offsets ``[n_out + 1]``, order ``[nnz]``): entry positions grouped by ``cols``, each
    group in entry order."""
    offsets = np.zeros(n_out + 1, np.int64)
    for e in range(cols.shape[0]):
        offsets[cols[e] + 1] += 1
    for j in range(n_out):
        offsets[j + 1] += offsets[j]
    fill = offsets[:-1].copy()
    order = np.empty(cols.shape[0], np.int64)
    for e in range(cols.shape[0]):
        c = cols[e]
        order[fill[c]] = e
        fill[c] += 1
    return offsets, order


@njit(**_JIT, parallel=True)
def segment_sum(rows: Any, cols: Any, w: Any, src: Any, out: Any) -> None:
    """``out [n_out, d]`` (overwritten) from COO entries ``rows, cols, w [nnz]`` and ``src
    [B, d]``."""
    n_out, d = out.shape
    offsets, order = _counting_sort(cols, n_out)
    for j in prange(n_out):
        o = out[j]
        o[:] = 0
        for p in range(offsets[j], offsets[j + 1]):
            e = order[p]
            we = w[e]
            s = src[rows[e]]
            for f in range(d):
                o[f] += we * s[f]


_LATENTS_PER_TASK = 64  # latents sharing one accumulator in segment_outer


@njit(**_JIT, parallel=True)
def segment_outer(
    src: Any, w: Any, idx: Any, out: Any, transposed: bool, sums: Any, with_sum: bool
) -> None:
    """Per-latent weighted sums of rows of ``src [B, d]`` for ``w, idx [B, S]``: ``out
    [n, d]`` (``[d, n]`` when ``transposed``; overwritten, zero for latents never indexed) and,
    with ``with_sum``, ``sums [n]`` of the weights. Entries of weight 0 (unselected BatchTopK
    candidates, ReLU zeros) are skipped. Each latent is reduced in entry order by one thread,
    as `segment_sum`, straight from the ``[B, S]`` layout (no COO copies)."""
    B, S = w.shape
    d = src.shape[1]
    n_out = sums.shape[0]
    flat_w = w.reshape(-1)
    flat_idx = idx.reshape(-1)
    offsets = np.zeros(n_out + 1, np.int64)
    for e in range(B * S):
        if flat_w[e] != 0:
            offsets[flat_idx[e] + 1] += 1
    for j in range(n_out):
        offsets[j + 1] += offsets[j]
    fill = offsets[:-1].copy()
    order = np.empty(offsets[n_out], np.int64)
    for e in range(B * S):
        if flat_w[e] != 0:
            c = flat_idx[e]
            order[fill[c]] = e
            fill[c] += 1
    n_tasks = (n_out + _LATENTS_PER_TASK - 1) // _LATENTS_PER_TASK
    for t in prange(n_tasks):
        j0 = t * _LATENTS_PER_TASK
        j1 = min(n_out, j0 + _LATENTS_PER_TASK)
        # a task's latents are accumulated together so that W_enc's [d, n] layout is written
        # in runs of _LATENTS_PER_TASK rather than one strided entry at a time
        acc = np.zeros((j1 - j0, d), out.dtype)
        for j in range(j0, j1):
            a = acc[j - j0]
            total = 0.0
            for p in range(offsets[j], offsets[j + 1]):
                e = order[p]
                we = flat_w[e]
                row = src[e // S]
                total += we
                for f in range(d):
                    a[f] += we * row[f]
            if with_sum:
                sums[j] = total
        if transposed:
            for f in range(d):
                for j in range(j0, j1):
                    out[f, j] = acc[j - j0, f]
        else:
            out[j0:j1] = acc


@njit(**_JIT, parallel=True, fastmath={"reassoc", "contract"})
def gather_dot(grad: Any, idx: Any, W: Any, out: Any) -> None:
    """``out [B, S] = <grad[b], W[idx[b, s]]>`` for ``grad [B, d]``, ``W [n, d]``. The dot
    products may be reassociated (vectorised); the compiled order is fixed, so deterministic."""
    B, S = idx.shape
    d = grad.shape[1]
    zero = np.zeros(1, out.dtype)[0]  # of out's dtype: a float literal would accumulate in fp64
    for b in prange(B):
        g = grad[b]
        for s in range(S):
            r = W[idx[b, s]]
            acc = zero
            for f in range(d):  # the whole run from 0, not 1 to d: vectorises, 2.3x faster
                acc += g[f] * r[f]
            out[b, s] = acc


@njit(**_JIT, inline="always")
def _push(v: Any, ix: Any, last: int, x: Any, f: int) -> None:
    """Insert ``(x, f)`` into the descending list ``v, ix`` whose slot ``last`` is the one
    given up (the k-th once the list is full, the first free slot before); an equal value
    goes behind those of lower index and ahead of the others, so ties go to the lower index
    whatever order the entries come in."""
    s = last
    while s > 0 and (v[s - 1] < x or (v[s - 1] == x and ix[s - 1] > f)):
        v[s] = v[s - 1]
        ix[s] = ix[s - 1]
        s -= 1
    v[s] = x
    ix[s] = f


@njit(**_JIT, fastmath={"nnan", "reassoc"})
def _block_maxima(row: Any, depth: int, maxima: Any) -> int:
    """``maxima[b]``, b < n: the maximum of block ``b``, the stripe ``b, b + n, ..., b + (depth
    - 1) n`` of ``row`` (``n = len(row) // depth``, returned). Striped rather than contiguous
    blocks make this ``depth`` vertical maxima over contiguous runs, which vectorise without
    a horizontal reduction (3x faster than contiguous blocks of 16 at 1024 latents)."""
    n = row.shape[0] // depth
    for b in range(n):
        maxima[b] = row[b]
    for j in range(1, depth):
        run = row[j * n : (j + 1) * n]
        for b in range(n):
            maxima[b] = max(maxima[b], run[b])
    return n


@njit(**_JIT, fastmath={"nnan", "reassoc"})
def _floor_reached(vals: Any, n: int, k: int, most: int) -> Any:
    """A value that at least ``k`` of ``vals[:n]`` (n >= k) reach, close to the k-th largest of
    them. Bisection on counts, which vectorise, rather than a k-list over the values, whose
    inserts do not; it stops once at most ``most`` values reach it (or after _FLOOR_STEPS)."""
    lo = vals[0]
    hi = vals[0]
    for b in range(1, n):
        lo = min(lo, vals[b])
        hi = max(hi, vals[b])
    if not -np.inf < lo < hi < np.inf:  # one value, or infinities: mid would be inf or NaN
        return lo
    for _ in range(_FLOOR_STEPS):
        mid = lo + (hi - lo) * 0.5
        if not lo < mid < hi:
            break
        c = 0
        for b in range(n):
            c += vals[b] >= mid
        if c < k:
            hi = mid
            continue
        lo = mid
        if c <= most:
            break
    return lo


@njit(**_JIT, inline="always")
def _row_topk(
    row: Any, cols: Any, k: int, v: Any, ix: Any, maxima: Any, blocks: Any, cand_v: Any,
    cand_i: Any,
) -> None:
    """``v, ix [k]``: the top ``k`` of ``row``, descending, as the columns ``cols[p]`` of its
    positions ``p``, ties to the lower column; slots without a candidate hold ``-inf`` / ``-1``.
    Scratch: ``maxima, blocks, cand_v, cand_i`` of ``len(row) + 1`` (the blocks' maxima, see
    `_block_maxima`, those reaching the floor, and the candidates)."""
    width = row.shape[0]
    v[:] = -np.inf
    ix[:] = -1
    # blocks of 16, or shallower ones where 16 would leave fewer than _BLOCKS_PER_K blocks per
    # entry kept (AuxK's 32 among a few thousand dead latents): about k blocks reach the floor
    # and each costs `depth` strided loads, so many shallow blocks beat few deep ones (1.2-1.8x
    # for k 32-64 against "more blocks than k", the same maxima pass either way)
    depth = _BLOCK
    while depth > 1 and width // depth < _BLOCKS_PER_K * k:
        depth //= 2
    n_full = _block_maxima(row, depth, maxima)
    # Blocks below the floor hold none of the top k; the entries at or above it of the 2k
    # or fewer blocks that reach it are gathered without a branch...
    floor = _floor_reached(maxima, n_full, k, 2 * k) if n_full > k else -np.inf
    n_up = 0
    for b in range(n_full):  # compacted first: a branch per block mispredicts (2-3x slower)
        blocks[n_up] = b
        n_up += maxima[b] >= floor
    m = 0
    for q in range(n_up):
        b = blocks[q]
        for f in range(b, depth * n_full, n_full):
            x = row[f]
            cand_v[m] = x
            cand_i[m] = cols[f]
            m += x >= floor
    # ...and cut down by a second floor, over the candidates themselves, to about k + k/8:
    # each entry of the k-list moves up to k slots, so the list must see few beyond the top k
    if m > k:
        cut = _floor_reached(cand_v, m, k, k + k // 8 + 1)
        kept = 0
        for c in range(m):
            x = cand_v[c]
            cand_v[kept] = x
            cand_i[kept] = cand_i[c]
            kept += x >= cut
        m = kept
    # until the list is full an entry shifts only past the filled slots (the insertion sort
    # of the first k), not past all k
    filled = 0
    for c in range(m):  # stripes interleave columns: a tie goes to the lower column
        filled += _offer(v, ix, k, cand_v[c], cand_i[c], filled)
    for f in range(n_full * depth, width):
        filled += _offer(v, ix, k, row[f], cols[f], filled)


@njit(**_JIT, inline="always")
def _offer(v: Any, ix: Any, k: int, x: Any, col: int, filled: int) -> int:
    """Enter ``(x, col)`` into the top-k list ``v, ix`` holding ``filled`` entries if it beats
    the k-th (ties: the lower column); 1 if it entered."""
    if x > v[k - 1] or (x == v[k - 1] and col < ix[k - 1]):
        _push(v, ix, min(filled, k - 1), x, col)
        return 1
    return 0


@njit(**_JIT, inline="always")
def _fill_unused(ix: Any, k: int) -> None:
    """Give slots without a candidate (``-1``) the lowest columns not already in ``ix``."""
    f = 0
    for s in range(k):
        if ix[s] >= 0:
            continue
        while True:
            used = False
            for q in range(k):
                if ix[q] == f:
                    used = True
                    break
            if not used:
                break
            f += 1
        ix[s] = f
        f += 1


_ROWS_PER_TASK = 16  # rows sharing one scratch allocation


@njit(**_JIT, parallel=True)
def topk_rows(
    pre: Any, cols: Any, k: int, vals: Any, idx: Any, aux_cols: Any, aux_from: int, k_aux: int,
    aux_vals: Any, aux_idx: Any,
) -> None:
    """``vals, idx [N, k]``: the top ``k`` of each row of ``pre [N, F]``, descending, as columns
    ``cols[p]`` of its positions ``p`` (``cols [F]``; pass ``arange(F)`` for a plain row). With
    ``k_aux > 0`` also ``aux_vals, aux_idx [N, k_aux]``: the top ``k_aux`` among AuxK's
    candidates (the dead latents), which are either the positions from ``aux_from`` on (``aux_from
    >= 0``: the encoder's columns were ordered live, then dead, so they need no gather) or the
    positions ``aux_cols`` (ascending; ``cols`` must then be the identity). Slots beyond the
    candidates hold ``-inf`` at the lowest unused columns (``torch.topk`` of a row masked with
    ``-inf`` also returns ``-inf`` there, at unspecified columns)."""
    n, width = pre.shape
    n_pick = aux_cols.shape[0] if aux_from < 0 else 0
    n_tasks = (n + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK
    for t in prange(n_tasks):
        picked = np.empty(n_pick, pre.dtype)
        maxima = np.empty(width + 1, pre.dtype)
        cand_v = np.empty(width + 1, pre.dtype)
        cand_i = np.empty(width + 1, np.int64)
        blocks = np.empty(width + 1, np.int64)
        for i in range(t * _ROWS_PER_TASK, min(n, (t + 1) * _ROWS_PER_TASK)):
            row = pre[i]
            _row_topk(row, cols, k, vals[i], idx[i], maxima, blocks, cand_v, cand_i)
            _fill_unused(idx[i], k)
            if k_aux == 0:
                continue
            if aux_from >= 0:
                _row_topk(row[aux_from:], cols[aux_from:], k_aux, aux_vals[i], aux_idx[i],
                          maxima, blocks, cand_v, cand_i)  # fmt: skip
            else:
                for c in range(n_pick):  # the dead latents' entries, in column order
                    picked[c] = row[aux_cols[c]]
                _row_topk(picked, aux_cols, k_aux, aux_vals[i], aux_idx[i], maxima, blocks,
                          cand_v, cand_i)  # fmt: skip
            _fill_unused(aux_idx[i], k_aux)


@njit(**_JIT)
def pair_sums(offsets: Any, cols: Any, vals: Any, gram: Any) -> None:
    """``gram [n, n] += Z^T Z`` for a row-sorted sparse ``Z`` (row ``r``'s entries at
    ``offsets[r]:offsets[r + 1]`` of ``cols, vals``): every pair of a row's entries, n L0^2
    products in all. Serial, in entry order, so deterministic; at L0 8 a batch of 2048 rows is
    131k products, 0.7 ms."""
    for r in range(offsets.shape[0] - 1):
        for a in range(offsets[r], offsets[r + 1]):
            ga = gram[cols[a]]
            va = vals[a]
            for b in range(offsets[r], offsets[r + 1]):
                ga[cols[b]] += va * vals[b]
