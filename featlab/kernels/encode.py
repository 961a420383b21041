"""TopK encoder: ``ReLU(TopK_k(x @ W_enc + b_enc))`` without the ``[B, d_sae]`` matrix.

- :func:`topk_encode_reference`: plain torch (dense pre-activations, ``torch.topk``); it is
  differentiable by autograd and is the oracle of the tests.
- :class:`TopKEncode`: the ``autograd.Function``. Forward runs the fused Triton kernel
  (:mod:`featlab.kernels._triton_encode`) or the reference; backward is sparse and
  deterministic: gradients flow only into the selected latents (main and AuxK indices merged,
  so AuxK trains the encoder too), via :mod:`featlab.kernels.segments`.
- :func:`topk_encode`: checks the inputs, picks the backend, applies the Function.

Example::

    out = topk_encode(x, W_enc, b_enc, k=32, b_dec=b_dec, aux_k=256, dead_mask=dead)
    x_hat = sparse_decode(out.values, out.indices, W_dec, b_dec)
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import torch

from featlab.kernels import segments
from featlab.kernels._checks import (
    acc_dtype,
    check_dim,
    check_float,
    check_same_device,
    raise_mismatch,
)
from featlab.kernels.dispatch import (
    Backend,
    backend_for,
    cpu_kernels_for,
    load_triton,
    sync_numba_threads,
)


class TopKOutput(NamedTuple):
    """values [B, k] (fp32, or fp64 for fp64 inputs; >= 0, sorted descending), indices
    [B, k] int64; the AuxK fields hold the top ``aux_k`` among dead latents ([B, aux_k]) or
    ``None`` when ``aux_k == 0``."""

    values: torch.Tensor
    indices: torch.Tensor
    aux_values: torch.Tensor | None
    aux_indices: torch.Tensor | None


def topk_encode_reference(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    *,
    b_dec: torch.Tensor | None = None,
    aux_k: int = 0,
    dead_mask: torch.Tensor | None = None,
) -> TopKOutput:
    """Dense reference: ``pre [B, d_sae]`` in fp32 (fp64 for fp64), ``torch.topk``, ReLU."""
    return select_topk(preacts_reference(x, W_enc, b_enc, b_dec), k, aux_k, dead_mask)


def preacts_reference(
    x: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, b_dec: torch.Tensor | None
) -> torch.Tensor:
    """Dense ``pre [B, d_sae] = (x - b_dec) @ W_enc + b_enc`` in fp32 (fp64 for fp64)."""
    acc = acc_dtype(x, W_enc, b_enc)
    xc = x.to(acc) if b_dec is None else x.to(acc) - b_dec.to(acc)
    return torch.addmm(b_enc.to(acc), xc, W_enc.to(acc))


def select_topk(
    pre: torch.Tensor,
    k: int,
    aux_k: int = 0,
    dead_mask: torch.Tensor | None = None,
    *,
    cpu_kernel: bool = False,
) -> TopKOutput:
    """The selection from dense ``pre [B, d_sae]``: top-k, ReLU, AuxK.

    ``torch.topk`` (the reference), or with ``cpu_kernel`` the numba row top-k of
    :mod:`featlab.kernels._numba_sparse` (the same values; ties to the lower index), which
    selects the AuxK candidates in the same pass over each row.
    """
    aux_values = aux_indices = None
    if aux_k > 0:
        assert dead_mask is not None
    if cpu_kernel and pre.shape[0] > 0:
        values, indices, aux_values, aux_indices = _topk_numba(pre, k, aux_k, dead_mask)
    else:
        values, indices = _topk_torch(pre, k, None)
        if aux_k > 0:
            aux_values, aux_indices = _topk_torch(pre, aux_k, dead_mask.bool())
    if aux_values is not None:
        aux_values = aux_values.relu()
    return TopKOutput(values.relu(), indices, aux_values, aux_indices)


def _topk_torch(
    pre: torch.Tensor, k: int, allowed: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if allowed is not None:
        pre = pre.masked_fill(~allowed[None, :], float("-inf"))
    top = pre.topk(k, dim=1)
    return top.values, top.indices


def _topk_numba(
    pre: torch.Tensor, k: int, aux_k: int, dead_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    out = _empty_selection(pre.shape[0], k, aux_k, pre.dtype)
    cols = torch.arange(pre.shape[1])
    dead = _dead_columns(aux_k, dead_mask)
    _numba_select(pre.detach().contiguous(), cols, k, aux_k, dead, -1, *out)
    values, indices, aux_values, aux_indices = out
    if pre.requires_grad:
        # values gathered from pre keep its autograd graph (the reference is differentiable);
        # slots without a candidate stay -inf, as in a -inf-masked torch.topk
        values = torch.where(values == float("-inf"), values, pre.gather(1, indices))
        aux_values = torch.where(aux_values == float("-inf"), aux_values,
                                 pre.gather(1, aux_indices))  # fmt: skip
    if aux_k == 0:
        return values, indices, None, None
    return values, indices, aux_values, aux_indices


def _empty_selection(n: int, k: int, aux_k: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    return (
        torch.empty(n, k, dtype=dtype), torch.empty(n, k, dtype=torch.int64),
        torch.empty(n, aux_k, dtype=dtype), torch.empty(n, aux_k, dtype=torch.int64),
    )  # fmt: skip


def _dead_columns(aux_k: int, dead_mask: torch.Tensor | None) -> torch.Tensor:
    if aux_k == 0:
        return torch.empty(0, dtype=torch.int64)
    return dead_mask.bool().nonzero()[:, 0]


def _numba_select(
    pre: torch.Tensor, cols: torch.Tensor, k: int, aux_k: int, aux_cols: torch.Tensor,
    aux_from: int, values: torch.Tensor, indices: torch.Tensor, aux_values: torch.Tensor,
    aux_indices: torch.Tensor,
) -> None:
    """`_numba_sparse.topk_rows` on torch tensors (its arguments, in its order)."""
    from featlab.kernels import _numba_sparse as nb

    sync_numba_threads()
    nb.topk_rows(pre.numpy(), cols.numpy(), k, values.numpy(), indices.numpy(), aux_cols.numpy(),
                 aux_from, aux_k, aux_values.numpy(), aux_indices.numpy())  # fmt: skip


# Pre-activations are computed a block of rows at a time into one buffer of at most this many
# bytes: glibc serves larger allocations by fresh mmap pages, whose first-touch faults cost as
# much as the product itself at 16k latents (99 vs 55 ms per 1024 x 16k block, measured), and a
# block selected right after its product is still in cache.
_BLOCK_BYTES = 8 << 20
_MIN_BLOCK_ROWS = 64  # below this the product re-reads W_enc too often
# ...and the buffer is kept between calls, one per thread (the app and the store may encode
# from several): even a heap allocation of a few MiB faults its pages in again after glibc
# trims it, 0.4 of the product's 2.0 ms per step at 1024 latents.
_workspace = threading.local()


def _preact_buffer(n_rows: int, d_sae: int, dtype: torch.dtype) -> torch.Tensor:
    """A ``[n_rows, d_sae]`` view of this thread's scratch buffer (contents undefined)."""
    need = n_rows * d_sae
    if need * dtype.itemsize > 4 * _BLOCK_BYTES:  # very wide SAEs: not worth holding on to
        return torch.empty(n_rows, d_sae, dtype=dtype)
    buf = getattr(_workspace, "buf", None)
    if buf is None or buf.dtype != dtype or buf.numel() < need:
        buf = _workspace.buf = torch.empty(need, dtype=dtype)
    return buf[:need].view(n_rows, d_sae)


def encode_select_blocked(
    x: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, b_dec: torch.Tensor | None,
    k: int, aux_k: int, dead_mask: torch.Tensor | None,
) -> TopKOutput:
    """`topk_encode_reference` by the numba selection, a block of rows at a time, without the
    ``[B, d_sae]`` matrix (the CPU forward of :class:`TopKEncode`)."""
    acc = acc_dtype(x, W_enc, b_enc)
    xc = x.to(acc) if b_dec is None else x.to(acc) - b_dec.to(acc)
    W, b = W_enc.detach().to(acc), b_enc.detach().to(acc)
    n, d_sae = x.shape[0], W_enc.shape[1]
    if aux_k > 0:
        # The encoder's columns reordered live, then dead: AuxK's candidates are then the tail
        # of each row of pre-activations rather than a gather from it (27 % of the selection
        # among 3000 dead of 4096 latents), for the price of one copy of W_enc.
        live = (~dead_mask.bool()).nonzero()[:, 0]
        cols = torch.cat([live, _dead_columns(aux_k, dead_mask)])
        W, b = W.index_select(1, cols), b.index_select(0, cols)  # 4x faster than W[:, cols]
        aux_from = live.numel()
    else:
        cols, aux_from = torch.arange(d_sae), 0
    rows = max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (d_sae * W.element_size()))
    buf = _preact_buffer(min(rows, n), d_sae, acc)
    out = _empty_selection(n, k, aux_k, acc)
    no_cols = cols[:0]
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        pre = torch.addmm(b, xc[start:stop].detach(), W, out=buf[: stop - start])
        _numba_select(pre, cols, k, aux_k, no_cols, aux_from, *(t[start:stop] for t in out))
    values, indices, aux_values, aux_indices = out
    if aux_k == 0:
        return TopKOutput(values.relu(), indices, None, None)
    return TopKOutput(values.relu(), indices, aux_values.relu(), aux_indices)


class TopKEncode(torch.autograd.Function):
    """Forward: fused encoder + top-k. Backward: sparse, deterministic."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        b_dec: torch.Tensor | None,
        k: int,
        aux_k: int,
        dead_mask: torch.Tensor | None,
        backend: Backend,
        pre: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if backend == "triton":
            mod = load_triton("_triton_encode", x, W_enc)
            vals, idx, avals, aidx = mod.topk_encode_fwd(
                x, W_enc, b_enc, b_dec, k, aux_k, dead_mask
            )
        else:
            cpu_kernel = cpu_kernels_for(x, W_enc)
            if pre is None and cpu_kernel and x.shape[0] > 0:
                ref = encode_select_blocked(x, W_enc, b_enc, b_dec, k, aux_k, dead_mask)
            else:
                if pre is None:  # otherwise the dense pre-activations are already at hand
                    pre = preacts_reference(x, W_enc, b_enc, b_dec)
                ref = select_topk(pre, k, aux_k, dead_mask, cpu_kernel=cpu_kernel)
            vals, idx = ref.values, ref.indices
            if aux_k > 0:
                avals, aidx = ref.aux_values, ref.aux_indices
            else:
                avals = vals.new_empty(vals.shape[0], 0)
                aidx = idx.new_empty(idx.shape[0], 0)
        ctx.save_for_backward(x, W_enc, b_dec, vals, idx, avals, aidx)
        ctx.backend = backend
        ctx.b_dtype = b_enc.dtype
        ctx.mark_non_differentiable(idx, aidx)
        return vals, idx, avals, aidx

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        d_vals: torch.Tensor,
        _d_idx: torch.Tensor | None,
        d_avals: torch.Tensor,
        _d_aidx: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        x, W_enc, b_dec, vals, idx, avals, aidx = ctx.saved_tensors
        backend = ctx.backend
        need_x, need_w, need_benc, need_bdec = ctx.needs_input_grad[:4]
        # Gradient of the pre-activations at the selected latents; ReLU passes where v > 0.
        grad = d_vals.to(vals.dtype) * (vals > 0)
        if avals.shape[1] > 0:
            grad = torch.cat([grad, d_avals.to(vals.dtype) * (avals > 0)], dim=1)
            idx = torch.cat([idx, aidx], dim=1)
        n_latents = W_enc.shape[1]
        dx = dW = db = d_bdec = None
        if need_x:
            dx = segments.gather_rows(grad, idx, W_enc, None, transposed=True, backend=backend)
            dx = dx.to(x.dtype)
        if need_w or need_benc or need_bdec:
            xc = x if b_dec is None else x - b_dec
            if need_w:
                dW, db = segments.segment_outer(
                    xc, grad, idx, n_latents, transposed=True, backend=backend,
                    out_dtype=W_enc.dtype, with_sum=True,
                )
            else:  # the per-latent sums alone
                db = torch.bincount(idx.reshape(-1), weights=grad.reshape(-1),
                                    minlength=n_latents).to(grad.dtype)
            if need_bdec:
                # pre = (x - b_dec) W_enc + b_enc: d b_dec = -sum_b dx_b = -W_enc d b_enc, a
                # [d_in, d_sae] mat-vec instead of a [B, d_in] gather.
                d_bdec = -(W_enc.to(db.dtype) @ db).to(b_dec.dtype)
            db = db.to(ctx.b_dtype) if need_benc else None
        return dx, dW, db, d_bdec, None, None, None, None, None


def _check(x, W_enc, b_enc, b_dec, k, aux_k, dead_mask) -> None:
    check_float("x", x)
    check_float("W_enc", W_enc)
    check_float("b_enc", b_enc)
    check_dim("x", x, 2, "[batch, d_in]")
    check_dim("W_enc", W_enc, 2, "[d_in, d_sae]")
    check_dim("b_enc", b_enc, 1, "[d_sae]")
    if x.shape[1] != W_enc.shape[0]:
        raise_mismatch("x [batch, d_in] @ W_enc [d_in, d_sae]", "x", x, "W_enc", W_enc)
    if b_enc.shape[0] != W_enc.shape[1]:
        raise_mismatch("b_enc [d_sae] vs W_enc [d_in, d_sae]", "b_enc", b_enc, "W_enc", W_enc)
    if b_dec is not None:
        check_float("b_dec", b_dec)
        if b_dec.shape != (x.shape[1],):
            raise_mismatch("b_dec [d_in] vs x [batch, d_in]", "b_dec", b_dec, "x", x)
    d_sae = W_enc.shape[1]
    if not 1 <= k <= d_sae:
        raise ValueError(f"k={k} must lie in [1, d_sae={d_sae}]; lower k or widen the SAE.")
    if not 0 <= aux_k <= d_sae:
        raise ValueError(f"aux_k={aux_k} must lie in [0, d_sae={d_sae}].")
    if aux_k > 0:
        if dead_mask is None:
            raise ValueError("aux_k > 0 needs dead_mask [d_sae] (bool: which latents are dead).")
        if dead_mask.shape != (d_sae,):
            raise_mismatch("dead_mask [d_sae] vs W_enc", "dead_mask", dead_mask, "W_enc", W_enc)
        if dead_mask.dtype != torch.bool:
            raise TypeError(f"dead_mask has dtype {dead_mask.dtype}; pass a bool tensor.")
    check_same_device(x=x, W_enc=W_enc, b_enc=b_enc, b_dec=b_dec, dead_mask=dead_mask)


def topk_encode(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    *,
    b_dec: torch.Tensor | None = None,
    aux_k: int = 0,
    dead_mask: torch.Tensor | None = None,
) -> TopKOutput:
    """``ReLU(TopK_k((x - b_dec) @ W_enc + b_enc))`` as sparse ``(values, indices)``.

    Args:
        x: ``[B, d_in]``.
        W_enc: ``[d_in, d_sae]``; b_enc: ``[d_sae]``.
        k: latents kept per row.
        b_dec: optional ``[d_in]`` subtracted from ``x`` first (the SAE's input centring);
            passing it here rather than ``x - b_dec`` saves a ``[B, d_in]`` gather in backward
            (its gradient is ``-W_enc @ d b_enc``).
        aux_k: AuxK candidates per row, the top ``aux_k`` pre-activations among latents with
            ``dead_mask`` set (``dead_mask [d_sae]`` bool); rows with fewer dead latents get
            zero values there. Their gradient reaches W_enc and b_enc as well.

    Gradients reach ``x``, ``W_enc`` (columns of selected latents only), ``b_enc``, ``b_dec``.
    Ties: the Triton path keeps the lower latent index; ``torch.topk`` (the torch path) does
    not promise an order among exactly equal pre-activations.
    """
    _check(x, W_enc, b_enc, b_dec, k, aux_k, dead_mask)
    backend = backend_for(x, W_enc, b_enc, b_dec)
    vals, idx, avals, aidx = TopKEncode.apply(
        x, W_enc, b_enc, b_dec, k, aux_k, dead_mask, backend
    )
    if aux_k == 0:
        return TopKOutput(vals, idx, None, None)
    return TopKOutput(vals, idx, avals, aidx)
