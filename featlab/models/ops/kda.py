"""Kimi Delta Attention (KDA; Kimi Team, 2025, "Kimi Linear"): the gated delta rule with a
per-key-channel decay.

    S'_t = Diag(exp(g_t)) S_{t-1},   S_t = S'_t + b_t k_t (v_t - S'_t^T k_t)^T,   o_t = S_t^T q_t

``g_t = log_decay[:, t] [batch, heads, d_k]`` (one decay per key channel, as GLA's) and
``b_t = beta[:, t] [batch, heads]``: "decay each key row of the memory, erase what it holds
under k_t, write v_t there", i.e. ``S_t = (I - b_t k_t k_t^T) Diag(exp(g_t)) S_{t-1} +
b_t k_t v_t^T``. A decay equal across channels is `delta_rule` (Gated DeltaNet); no delta
update is `gla`. This is HF's ``recurrent_kimi_delta_attention`` and flash-linear-attention's
``naive_recurrent_kda`` (the decay applied before the erase).

Chunked form: `delta_rule_chunk`'s WY / UT transform with GLA's pairwise per-channel decays
(flash-linear-attention's ``chunk_kda``). Inside a chunk with cumulative log decay ``G_i``
(a vector over d_k) and entering state ``S_0`` every state is

    S_i = Diag(e^{G_i}) S_0 + sum_{j<=i} Diag(e^{G_i - G_j}) k_j u_j^T

for pseudo-values ``u`` that solve the unit lower-triangular system
``(I + A) U = diag(b) V - diag(b) (K * e^G) S_0`` with
``A_ij = b_i sum_d k_id k_jd e^{G_id - G_jd}`` for ``j < i``. Then

    o_i = (q_i * e^{G_i})^T S_0 + sum_{j<=i} [sum_d q_id k_jd e^{G_id - G_jd}] u_j
    S_C = Diag(e^{G_C}) S_0 + sum_j (k_j * e^{G_C - G_j}) u_j^T.

Both decayed score matrices are GLA's `intra_chunk_scores` (exponents are differences
``G_i - G_j`` with ``j <= i``, masked before the exponential, so nothing overflows), the
system is one `torch.linalg.solve_triangular` for all chunks, and only ``U`` and the state
update run in the loop over chunks.
"""

from __future__ import annotations

import torch

from featlab.models.ops.common import (
    check_chunk_size,
    check_inputs,
    empty_result,
    from_chunks,
    scan,
    to_chunks,
)
from featlab.models.ops.gla import intra_chunk_scores


def kda_step(
    state: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    beta: torch.Tensor,
) -> torch.Tensor:
    """One step: ``state [b, h, d_k, d_v]``, ``k, log_decay [b, h, d_k]``, ``v [b, h, d_v]``,
    ``beta [b, h]`` -> the next state."""
    decayed = log_decay.exp().unsqueeze(-1) * state
    retrieved = torch.einsum("bhkv,bhk->bhv", decayed, k)  # the decay acts before the erase
    u = beta.unsqueeze(-1) * (v - retrieved)
    return decayed + k.unsqueeze(-1) * u.unsqueeze(-2)


def kda_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    beta: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    output_states: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Step-by-step KDA (the reference).

    ``q, k, log_decay [batch, pos, heads, d_k]`` (L2-normalised keys keep it stable),
    ``v [batch, pos, heads, d_v]``, ``beta [batch, pos, heads]`` (None: ones),
    ``initial_state [batch, heads, d_k, d_v]``. Returns ``o [batch, pos, heads, d_v]``, the
    final state and, if `output_states`, all states ``[batch, pos, heads, d_k, d_v]``.
    """
    beta = check_inputs(
        q, k, v, log_decay, beta, initial_state, per_channel_decay=True, op="kda_recurrent"
    )
    return scan(kda_step, q, k, v, log_decay, beta, initial_state, output_states)


def kda_chunk(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    beta: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked KDA, equal to `kda_recurrent` up to rounding; any length.

    Shapes as in `kda_recurrent`. Returns ``o [batch, pos, heads, d_v]`` and the final state
    ``[batch, heads, d_k, d_v]``.
    """
    beta = check_inputs(
        q, k, v, log_decay, beta, initial_state, per_channel_decay=True, op="kda_chunk"
    )
    check_chunk_size(chunk_size, "kda_chunk")
    if q.shape[1] == 0:
        return empty_result(q, v, initial_state)
    b, length, h, d_k = q.shape
    d_v = v.shape[-1]
    qc, kc, vc = (to_chunks(x, chunk_size) for x in (q, k, v))  # [b, h, n, c, d]
    bc = to_chunks(beta, chunk_size).unsqueeze(-1)  # [b, h, n, c, 1]; padding: beta = 0
    g = to_chunks(log_decay, chunk_size).cumsum(dim=-2)  # G_i per channel, [b, h, n, c, d_k]

    c = g.shape[-2]
    eye = torch.eye(c, dtype=q.dtype, device=q.device)
    kk = intra_chunk_scores(kc, kc, g) * (1 - eye)  # j < i
    system = eye + bc * kk
    rhs = torch.cat([bc * vc, bc * kc * g.exp()], dim=-1)
    solved = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    u_free, w = solved.split([d_v, d_k], dim=-1)  # T diag(b) V and T diag(b) (K * e^G)

    scores = intra_chunk_scores(qc, kc, g)  # [b, h, n, i, j], j <= i
    q_in = qc * g.exp()
    g_last = g[..., -1:, :]  # [b, h, n, 1, d_k]
    k_out = kc * (g_last - g).exp()
    chunk_decay = g_last.squeeze(-2).exp().unsqueeze(-1)  # [b, h, n, d_k, 1]

    state = q.new_zeros(b, h, d_k, d_v) if initial_state is None else initial_state
    outs = []
    for i in range(qc.shape[2]):
        u = u_free[:, :, i] - w[:, :, i] @ state  # [b, h, c, d_v]
        outs.append(q_in[:, :, i] @ state + scores[:, :, i] @ u)
        state = chunk_decay[:, :, i] * state + k_out[:, :, i].transpose(-1, -2) @ u
    o = torch.stack(outs, dim=2)
    return from_chunks(o, length), state
