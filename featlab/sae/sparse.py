"""The sparse inner loop shared by the TopK-style kinds, kept in three small functions.

A sparse code is held either as fixed-k rows (``idx``/``vals`` of shape ``[N, k]``, TopK) or
as row-sorted flat entries with ``offsets`` (``[nnz]`` plus ``[N]`` bag starts, BatchTopK and
Feature Choice). Nothing here builds a dense ``[N, d_sae]`` code:

- `topk_select`: dense pre-activations -> top-k values and indices.
- `sparse_decode`: values/indices -> ``sum_j v_j W_dec[j]`` through ``F.embedding_bag``.
- `selected_preacts`: re-attach autograd to pre-activations picked under ``no_grad`` so the
  backward pass touches only the chosen ``(token, latent)`` pairs instead of doing two dense
  ``[N, d_in] x [d_in, d_sae]`` products. This is where the speed over SAELens comes from.

The TopK and BatchTopK kinds train through `featlab.kernels` (`topk_encode`,
`sparse_decode`); the functions here serve the COO codes (Feature Choice, inference, AuxK of
the generic path) and reuse the same reductions, `featlab.kernels.segments`' torch
references, so there is one CPU code path for the sparse backward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from featlab import kernels
from featlab.kernels import segments


def topk_select(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k of each row of ``pre`` ``[N, d_sae]`` -> (values ``[N, k]``, indices ``[N, k]``)."""
    return pre.topk(k, dim=-1, sorted=False)


def sparse_decode(
    vals: Tensor, idx: Tensor, W_dec: Tensor, offsets: Tensor | None = None
) -> Tensor:
    """``sum_j vals_j * W_dec[idx_j]`` per row, without a dense code.

    vals, idx: ``[N, k]`` (fixed k per row) or ``[nnz]`` with ``offsets`` ``[N]`` (row starts of
    a row-sorted list; empty rows allowed). W_dec: ``[d_sae, d_in]``. Returns ``[N, d_in]``.
    """
    if offsets is None:  # fixed k: the kernels' op (sparse, deterministic backward)
        out = kernels.sparse_decode(vals, idx, W_dec)
        return out.to(torch.promote_types(vals.dtype, W_dec.dtype))
    return F.embedding_bag(idx, W_dec, offsets, per_sample_weights=vals, mode="sum")


class _SelectedPreacts(torch.autograd.Function):
    """Identity on the selected pre-activations with a sparse backward.

    pre[n, j] = (x[n] - b_dec) . W_enc[:, j] + b_enc[j], so for upstream grads g on the
    selected pairs: dW_enc[:, j] += g * (x[n] - b_dec), db_enc[j] += g,
    db_dec = -W_enc @ db_enc and dx[n] += g * W_enc[:, j].
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        b_dec: Tensor,
        W_enc: Tensor,
        b_enc: Tensor,
        rows: Tensor | None,
        cols: Tensor,
        pre_sel: Tensor,
    ) -> Tensor:
        ctx.save_for_backward(x, b_dec, W_enc, rows, cols)
        ctx.d_sae = W_enc.shape[1]
        return pre_sel.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        # The reductions are featlab.kernels.segments' torch references (sparse matmuls and
        # embedding_bag gathers, deterministic on CPU): no [nnz, d_in] rows are built.
        x, b_dec, W_enc, rows, cols = ctx.saved_tensors
        n = x.shape[0]
        flat_cols = cols.reshape(-1)
        flat_g = g.reshape(-1)
        if rows is None:  # fixed k per row: rows are implicit
            flat_rows = torch.arange(n, device=x.device).repeat_interleave(cols.shape[1])
        else:
            flat_rows = rows
        need_x, need_bdec, need_w, need_benc = ctx.needs_input_grad[:4]
        gx = gbdec = gw = gbenc = None
        if need_w:
            gw = segments.segment_sum(flat_rows, flat_cols, flat_g, x - b_dec, ctx.d_sae).t()
        if need_benc or need_bdec:
            gbenc_full = torch.bincount(flat_cols, weights=flat_g, minlength=ctx.d_sae)
            gbenc_full = gbenc_full.to(g.dtype)
            gbenc = gbenc_full if need_benc else None
            if need_bdec:
                gbdec = -(W_enc @ gbenc_full)
        if need_x:
            if rows is None:
                gx = segments.gather_rows(g, cols, W_enc, None, transposed=True, backend="torch")
            else:  # dx[n] = sum over entries of row n of g * W_enc[:, col]
                table = W_enc.t().contiguous()
                gx = segments.segment_sum(flat_cols, flat_rows, flat_g, table, n)
        return gx, gbdec, gw, gbenc, None, None, None


def selected_preacts(
    x: Tensor,
    b_dec: Tensor,
    W_enc: Tensor,
    b_enc: Tensor,
    cols: Tensor,
    pre_sel: Tensor,
    rows: Tensor | None = None,
) -> Tensor:
    """Attach gradients to ``pre_sel`` (pre-activations chosen under ``no_grad``).

    x: ``[N, d_in]``; cols/pre_sel: ``[N, k]`` (rows implicit) or ``[nnz]`` with ``rows``
    ``[nnz]``. Returns a tensor equal to ``pre_sel`` whose backward is sparse.
    """
    return _SelectedPreacts.apply(x, b_dec, W_enc, b_enc, rows, cols, pre_sel)


def row_offsets(rows: Tensor, n_rows: int) -> Tensor:
    """Start of each row in a row-sorted entry list ``rows`` ``[nnz]`` -> ``[n_rows]``."""
    return torch.searchsorted(rows, torch.arange(n_rows, device=rows.device))


def coo_entries(
    vals: Tensor, idx: Tensor, n_rows: int, d_sae: int, rows: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(rows, cols, vals) [nnz]``, sorted by row, of a fixed-k (``[N, k]``) or COO
    (``rows``, already one entry per pair) code: the entries of `to_dense`'s matrix, repeated
    indices of a fixed-k row added up as there (Matching Pursuit may pick an atom twice)."""
    cols, vals = idx.reshape(-1).to(torch.int64), vals.reshape(-1)
    if rows is not None:
        return rows, cols, vals
    k = idx.shape[1]
    rows = torch.arange(n_rows, device=idx.device).repeat_interleave(k)
    picked = idx.sort(dim=1).values
    if k > 1 and bool((picked[:, 1:] == picked[:, :-1]).any()):
        cell, where = torch.unique(rows * d_sae + cols, return_inverse=True)
        vals = vals.new_zeros(cell.numel()).index_add_(0, where, vals)
        rows, cols = cell // d_sae, cell % d_sae
    return rows, cols, vals


def to_dense(
    vals: Tensor, idx: Tensor, n_rows: int, d_sae: int, rows: Tensor | None = None
) -> Tensor:
    """Dense ``[n_rows, d_sae]`` code from fixed-k (``[N, k]``) or COO (``rows``) entries;
    repeated indices add up (Matching Pursuit may pick an atom twice)."""
    z = vals.new_zeros(n_rows, d_sae)
    if rows is None:
        return z.scatter_add(1, idx, vals)
    return z.index_put((rows, idx), vals, accumulate=True)
