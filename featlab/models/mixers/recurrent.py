"""What the linear-recurrent mixers (gla, gdn, deltanet, ssd) share: firing the recurrent hook
schema around an op from `featlab.models.ops`, choosing its chunked or recurrent form, and the
state hook's patch semantics.

State-hook semantics (``cfg.use_state_hook=True``):

1. The mixer runs the step-by-step form with every state materialised and passes the states
   ``[batch, pos, heads, d_k, d_v]`` through ``hook_state``.
2. If nothing is attached to ``hook_state`` this is all: outputs come from that run.
3. If a hook is attached, its output is compared with the computed states. Every *entry* the
   hook changed is a patch: the recurrence is replayed one step at a time, and at each step
   ``S_t = where(patched, hook_output_t, step(S_{t-1}))``. A patched state therefore takes
   the place of the computed one, is read out at t (``o_t = S_t^T q_t``) and *propagates*:
   later states are recomputed from it (they may differ from what the hook saw; the hook is
   not fired again). Outputs before the first patched step are unchanged. Entries the hook
   left alone are recomputed, so patching one head or one batch element touches only it.
4. Gradients. In the replay every state is ``step(S_{t-1}) + (H_t - H_t.detach())`` at
   unpatched entries (``H`` the hook output), a zero that routes to ``hook_state`` the total
   derivative of the loss with respect to ``S_t`` (its read-out at t and its effect on every
   later state), which is what attribution patching needs. The hook receives a detached copy,
   so parameters get their gradient once, through the replay.
5. ``hook_state_final`` always fires on the state after the last position (after any patch
   has propagated). Nothing inside the forward pass reads it, so patching it changes nothing.

Without the state hook the mixer calls the chunked op when ``cfg.mixer_mode == "chunk"`` and
the recurrent one when ``"recurrent"``; both give the same numbers (tested).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from featlab.models.config import HybridConfig
from featlab.models.mixers.base import RECURRENT_HOOKS, Mixer
from featlab.models.ops import OPS, RecurrentOp


class HeadRMSNorm(nn.Module):
    """RMSNorm over the last dim of ``[batch, pos, heads, d]`` with one gain shared by heads.

    Not `featlab.models.layers.RMSNorm`, on purpose: that one fires ``hook_normalized``, which
    would add a name to these mixers' hook schema that the other mixers lack.
    """

    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def inverse_softplus_dt(n: int, dt_min: float = 1e-3, dt_max: float = 0.1) -> torch.Tensor:
    """Mamba's ``dt_bias`` init: ``softplus(dt_bias)`` log-uniform in ``[dt_min, dt_max]``."""
    log_min, log_max = math.log(dt_min), math.log(dt_max)
    dt = torch.exp(torch.rand(n) * (log_max - log_min) + log_min).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))


class RecurrentMixer(Mixer):
    """Base of the linear-recurrent mixers. Subclasses compute ``q, k, v, log_decay, beta``
    and call `recur`, which fires the schema's hooks and returns ``o [batch, pos, heads, d_v]``.
    """

    hook_names = RECURRENT_HOOKS
    op_name: ClassVar[str] = ""

    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__(cfg)
        self.n_heads, self.d_k, self.d_v = cfg.n_heads, cfg.d_key, cfg.d_head
        self.op: RecurrentOp = OPS[self.op_name]

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, pos, heads * d] -> [batch, pos, heads, d]``."""
        return x.unflatten(-1, (self.n_heads, -1))

    def recur(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        log_decay: torch.Tensor,
        beta: torch.Tensor,
    ) -> torch.Tensor:
        """Fire ``hook_q .. hook_beta``, run the op, fire the state hooks; see module doc."""
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        log_decay, beta = self.hook_log_decay(log_decay), self.hook_beta(beta)
        if self.cfg.use_state_hook:
            o, final = self._recur_with_state_hook(q, k, v, log_decay, beta)
        elif self.cfg.mixer_mode == "chunk":
            o, final = self.op.chunk(q, k, v, log_decay, beta, chunk_size=self.cfg.chunk_size)
        else:
            o, final, _ = self.op.recurrent(q, k, v, log_decay, beta)
        self.hook_state_final(final)
        return o

    def _recur_with_state_hook(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor,
        beta: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return recur_with_state_hook(self.hook_state, self.op, q, k, v, log_decay, beta)


def recur_with_state_hook(
    hook: Any,
    op: RecurrentOp,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    beta: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `op` with its per-token states fired through `hook` (``hook_state``); a state a
    hook replaced at position t is carried on from t (see the module doc). Returns
    ``(o [batch, pos, heads, d_v], final state)``. Shared by featlab's mixers and the HF
    mixer adapters (`featlab.models.hf.mixers`)."""
    if not (hook._forward_hooks or hook._backward_hooks):
        o, final, states = op.recurrent(q, k, v, log_decay, beta, output_states=True)
        hook(states)
        return o, final
    with torch.no_grad():
        _, _, computed = op.recurrent(q, k, v, log_decay, beta, output_states=True)
    # A detached copy: the hook may edit it in place, and parameters then receive their
    # gradient once, through the replay below.
    seen = computed.clone().requires_grad_(torch.is_grad_enabled())
    hooked = hook(seen.clone())
    if hooked.shape != computed.shape:
        raise ValueError(
            f"{hook.name}: a hook returned shape {tuple(hooked.shape)}, but the state is "
            f"[batch, pos, heads, d_k, d_v] = {tuple(computed.shape)}; return a tensor of "
            "the same shape"
        )
    patched = hooked.detach() != computed
    if not (torch.is_grad_enabled() or patched.any()):
        final = computed[:, -1] if computed.shape[1] else computed.new_zeros(
            computed.shape[0], *computed.shape[2:])
        return torch.einsum("bthkv,bthk->bthv", computed, q), final
    return _replay(op, q, k, v, log_decay, beta, hooked, patched)


def _replay(
    op: RecurrentOp,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    beta: torch.Tensor,
    hooked: torch.Tensor,
    patched: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence with ``S_t`` taken from `hooked` wherever `patched`; see module doc."""
    b, t, h, d_k = q.shape
    state = q.new_zeros(b, h, d_k, v.shape[-1])
    outs = []
    for i in range(t):
        state = op.step(state, k[:, i], v[:, i], log_decay[:, i], beta[:, i])
        h_i = hooked[:, i]
        state = torch.where(patched[:, i], h_i, state + (h_i - h_i.detach()))
        outs.append(torch.einsum("bhkv,bhk->bhv", state, q[:, i]))
    o = torch.stack(outs, dim=1) if t else v.new_zeros(b, 0, h, v.shape[-1])
    return o, state


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit L2 norm over the last dim (the delta rule's keys and queries)."""
    return F.normalize(x, p=2.0, dim=-1, eps=1e-6)
