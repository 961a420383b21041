"""Matching Pursuit's kernels: the pick, the Gram pick loop, and the value replay.

A pursuit step picks ``j = argmax_j <r, W_dec[j]>``, takes ``v = ReLU(<r, W_dec[j]>)`` and
updates ``r -= v W_dec[j]``. Training splits a k-step pursuit in two:

- *choose* the atoms without gradient (the choice is not differentiable). With the Gram
  matrix ``G = W_dec W_dec^T`` the correlations update as ``c -= v G[j]`` instead of being
  recomputed by an ``[N, d_in] x [d_in, d_sae]`` product per step: :func:`gram_select`;
- *replay* the values on ``[N, d_in]`` residuals with autograd: :func:`pursuit_replay`.

Each op has a pure-torch reference (``*_reference``, the test oracle and the GPU path) and a
numba kernel on CPU (:mod:`featlab.kernels._numba_pursuit`): as torch ops the Gram loop
streams the ``[N, d_sae]`` correlations through memory several times per step, and the
replay is ~6 tiny autograd nodes per step; the kernels keep one row in cache for all steps.
:func:`featlab.kernels.dispatch.cpu_kernels_for` picks the path; ``FEATLAB_KERNELS=torch``
forces the references.

:func:`pursuit_pick` is the single-step pick on its own: on the GPU the fused TopK encoder
with k = 1 (it streams over latent tiles keeping a running maximum and never writes
``[N, d_sae]``), on CPU ``mm`` + ``argmax``. Ties go to the lower index everywhere, as
``argmax`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from featlab.kernels._checks import check_dim, check_index
from featlab.kernels.dispatch import backend_for, cpu_kernels_for, sync_numba_threads
from featlab.kernels.encode import topk_encode
from featlab.kernels.segments import segment_sum


@torch.no_grad()
def pursuit_pick(r: Tensor, W_dec: Tensor) -> tuple[Tensor, Tensor]:
    """Best atom per row: ``r [N, d_in]``, ``W_dec [d_sae, d_in]`` (unit-norm atoms) ->
    ``(j [N] int64, ReLU(<r, W_dec[j]>) [N])``. No gradient (the choice is not differentiable;
    recompute the value from the gathered atom where a gradient is needed)."""
    if backend_for(r, W_dec) == "torch":  # reference: argmax takes the first of tied maxima
        c = r @ W_dec.t()
        j = c.argmax(1)
        return j, c.gather(1, j[:, None])[:, 0].relu()
    zero = torch.zeros(W_dec.shape[0], dtype=W_dec.dtype, device=W_dec.device)
    out = topk_encode(r, W_dec.t(), zero, 1)
    return out.indices[:, 0], out.values[:, 0]


def argmax_rows(c: Tensor, block: int = 64) -> Tensor:
    """First index of the maximum of each row of ``c`` ``[N, F]`` -> ``[N]``.

    Same result as ``c.argmax(1)`` but about 3x faster on CPU, where argmax is not vectorised
    and amax is: block maxima first, then an argmax over the winning block only.
    """
    n, f = c.shape
    if f % block or f < 4 * block:
        return c.argmax(1)
    blocks = c.view(n, f // block, block)
    b = blocks.amax(-1).argmax(1)
    inner = blocks[torch.arange(n, device=c.device), b].argmax(1)
    return b * block + inner


# ---------------------------------------------------------------------------- choose atoms


@torch.no_grad()
def gram_select_reference(c: Tensor, G: Tensor, steps: int, chunk: int = 256) -> Tensor:
    """Torch reference of :func:`gram_select` (``c`` is overwritten).

    Rows are handled in chunks of ``chunk`` so that a chunk's correlations stay in cache over
    all steps.
    """
    n, d_sae = c.shape
    chosen = torch.empty(n, steps, dtype=torch.long, device=c.device)
    buf = torch.empty(min(chunk, n), d_sae, dtype=c.dtype, device=c.device)
    for lo in range(0, n, chunk):
        cc = c[lo : lo + chunk]
        b = buf[: cc.shape[0]]
        for t in range(steps):
            j = argmax_rows(cc)
            chosen[lo : lo + chunk, t] = j
            if t + 1 == steps:  # the last update would never be read
                break
            v = cc.gather(1, j[:, None]).clamp_(min=0)
            torch.index_select(G, 0, j, out=b)
            cc.addcmul_(v, b, value=-1.0)
    return chosen


@torch.no_grad()
def gram_select(c: Tensor, G: Tensor, steps: int) -> Tensor:
    """Atoms chosen by ``steps`` pursuit steps -> ``[N, steps]`` int64.

    c: the initial correlations ``r0 W_dec^T`` ``[N, d_sae]``, used as scratch (its contents
    are undefined afterwards). G: the Gram matrix ``W_dec W_dec^T`` ``[d_sae, d_sae]``.
    Each step: ``j = argmax c``, ``v = ReLU(c_j)``, ``c -= v G[j]`` (the residual update seen
    through W_dec). Inputs must be finite.
    """
    check_dim("c", c, 2, "[N, d_sae] correlations")
    if G.shape != (c.shape[1], c.shape[1]):
        raise ValueError(
            f"G must be the [d_sae, d_sae] Gram matrix W_dec @ W_dec.T for c of shape "
            f"{tuple(c.shape)}, got shape {tuple(G.shape)}."
        )
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    if not cpu_kernels_for(c, G) or c.shape[1] == 0:
        return gram_select_reference(c, G, steps)
    from featlab.kernels import _numba_pursuit as nb

    scratch = c if c.is_contiguous() else c.contiguous()
    chosen = torch.empty(c.shape[0], steps, dtype=torch.long)
    sync_numba_threads()
    nb.select(scratch.numpy(), G.contiguous().numpy(), steps, chosen.numpy())
    return chosen


# ------------------------------------------------------------------------- replay values


def pursuit_replay_reference(r0: Tensor, W_dec: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
    """Torch reference of :func:`pursuit_replay` (differentiable by autograd)."""
    r = r0
    vals = []
    for t in range(chosen.shape[1]):
        atom = W_dec.index_select(0, chosen[:, t])
        v = (r * atom).sum(-1).relu()
        r = r - v[:, None] * atom
        vals.append(v)
    if not vals:
        return r0.new_zeros(r0.shape[0], 0), r0
    return torch.stack(vals, 1), r


class PursuitReplay(torch.autograd.Function):
    """The numba replay with its hand-written backward (see ``_numba_pursuit.replay_backward``).

    The decoder gradient is summed per atom by :func:`featlab.kernels.segments.segment_sum`
    in a fixed order: two runs give bit-identical gradients.
    """

    @staticmethod
    def forward(ctx: Any, r0: Tensor, W_dec: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        from featlab.kernels import _numba_pursuit as nb

        W = W_dec.detach().contiguous()
        r = r0.detach().clone(memory_format=torch.contiguous_format)
        idx = chosen.contiguous()
        vals = torch.empty(idx.shape, dtype=r.dtype)  # torch.empty: the tests poison it
        sync_numba_threads()
        nb.replay(r.numpy(), W.numpy(), idx.numpy(), vals.numpy())
        ctx.save_for_backward(W, idx, vals, r)
        return vals, r

    @staticmethod
    def backward(ctx: Any, g_vals: Tensor | None, g_r: Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        from featlab.kernels import _numba_pursuit as nb

        W, idx, vals, r_end = ctx.saved_tensors
        (n, d), steps = r_end.shape, idx.shape[1]
        g = torch.zeros(n, d, dtype=W.dtype) if g_r is None else g_r.to(W.dtype).clone()
        gv = torch.zeros_like(vals) if g_vals is None else g_vals.to(W.dtype).clone()
        g_atoms = torch.empty(n, steps, d, dtype=W.dtype)
        sync_numba_threads()
        nb.replay_backward(
            g.numpy(), gv.numpy(), W.numpy(), idx.numpy(), vals.numpy(), r_end.clone().numpy(),
            g_atoms.numpy(),
        )  # fmt: skip
        g_W = None
        if ctx.needs_input_grad[1]:
            uses = torch.arange(n * steps)
            g_W = segment_sum(uses, idx.reshape(-1), torch.ones(n * steps, dtype=W.dtype),
                              g_atoms.view(n * steps, d), W.shape[0])  # fmt: skip
        return g, g_W, None


def pursuit_replay(r0: Tensor, W_dec: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
    """Replay the pursuit whose atoms are ``chosen`` ``[N, T]`` from residuals ``r0``
    ``[N, d_in]``: per step ``v = ReLU(<r, W_dec[j]>)``, ``r -= v W_dec[j]``.

    Returns (values ``[N, T]``, final residual ``[N, d_in]``), both differentiable with
    respect to ``r0`` and ``W_dec`` (the choices carry no gradient).
    """
    check_dim("r0", r0, 2, "[N, d_in] residuals")
    check_dim("chosen", chosen, 2, "[N, steps] atom indices")
    if W_dec.dim() != 2 or W_dec.shape[1] != r0.shape[1] or chosen.shape[0] != r0.shape[0]:
        raise ValueError(
            f"pursuit_replay needs r0 [N, d_in], W_dec [d_sae, d_in] and chosen [N, steps]; "
            f"got {tuple(r0.shape)}, {tuple(W_dec.shape)} and {tuple(chosen.shape)}."
        )
    check_index("chosen", chosen, W_dec.shape[0])
    if not cpu_kernels_for(r0, W_dec) or chosen.shape[1] == 0 or r0.shape[0] == 0:
        return pursuit_replay_reference(r0, W_dec, chosen.long())
    return PursuitReplay.apply(r0, W_dec, chosen.long())
