"""Mixer hooks inside Kimi Linear's KDA layers (`KimiLinearDeltaAttention`, transformers 5.24).

The adapter runs the HF module's own projections, short convolution, forget gate and output
gate (its submodules, not copies of their weights), then the recurrence through featlab's
``kda`` op, firing HookedHybrid's hooks on what enters it::

    hook_q          l2norm(silu(conv(q_proj x))) * d_k**-0.5                   [b, t, H, d_k]
    hook_k          l2norm(silu(conv(k_proj x)))                               [b, t, H, d_k]
    hook_v          silu(conv(v_proj x))                                       [b, t, H, d_v]
    hook_log_decay  forget_gate(x) = -exp(A_log[h]) * softplus(f_b(f_a x) + dt_bias)  (<= 0),
                    one per key channel                                        [b, t, H, d_k]
    hook_beta       sigmoid(b_proj x)                                          [b, t, H]
    hook_state      S_t, opt-in (use_state_hook)                        [b, t, H, d_k, d_v]
    hook_state_final S after the last position                             [b, H, d_k, d_v]
    hook_out_gate   sigmoid(g_b(g_a x)), applied after the per-head RMS norm   [b, t, H, d_v]

``S_t = (I - beta_t k_t k_t^T) Diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T``, ``o_t = S_t^T q_t``
(`featlab.models.ops.kda`: the decay acts on the key rows first, then the delta update, as in
HF's ``recurrent_kimi_delta_attention``). Unlike the scalar-decay mixers (Gated DeltaNet,
SSD), ``hook_log_decay`` has a key-channel axis, as GLA's does: patching it per channel is
meaningful, and a patch must keep the shape ``[b, t, H, d_k]``. HF's state has featlab's
orientation ``[b, H, d_k, d_v]``, so ``hook_state`` is HF's decode-cache state. KDA has one
set of heads (no grouped value heads); ``d_k = d_v = linear_head_dim``. The L2 norm is HF's
``x / sqrt(sum x^2 + 1e-6)`` (the kernel's ``use_qk_l2norm_in_kernel``), computed in fp32
after the conv, as HF does. Everything from the conv output to the norm runs in fp32 at least
(a float64 model stays float64 here; HF's own forward would drop it to fp32).

When HF's forward runs instead, unchanged and firing no mixer hook: with a cache (prefill into
a cache, step-by-step decoding, ``generate``), for packed sequences (``cu_seq_lens_q``), and
when no hook of the adapter is active and the state hook is off. The last keeps
HookedHFModel's promise that with no hook the logits are HF's own, bit for bit; once any mixer
hook is attached (``run_with_cache`` included) featlab's op runs, equal to HF's to fp32
rounding (measured in ``tests/models/hf/test_mixer_kda.py``). With ``use_state_hook``
featlab's path always runs, so a clean and a patched run are computed alike and positions
before a patch match exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from featlab.models.hf.mixers import MixerAdapter
from featlab.models.mixers.base import RECURRENT_HOOKS
from featlab.models.mixers.recurrent import recur_with_state_hook
from featlab.models.ops import OPS

# HF's chunk_kimi_delta_attention uses chunks of 64. featlab's chunked form never multiplies
# decays beyond a difference G_i - G_j <= 0 (see featlab.models.ops.kda), so the length does
# not change its numerics, only its cost: its per-channel scores grow as chunk^2 * d_k, and 16
# is the fastest on CPU (hidden 256, 8 heads x 64, 4 x 256 tokens, one thread: the mixer takes
# 274 ms at 16, 500 ms at 64, HF's own forward 1.0-1.2 s).
CHUNK_SIZE = 16


def hf_l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Kimi Linear's (and flash-linear-attention's) L2 norm over the last dim."""
    return x / torch.sqrt((x * x).sum(dim=-1, keepdim=True) + eps)


class KimiDeltaAttentionAdapter(MixerAdapter):
    """``forward(hidden_states [b, t, d_model], cache=None, attention_mask=None, **kwargs)``
    -> ``[b, t, d_model]``, HF's signature and result; featlab's path only where a hook needs
    it (module doc)."""

    hooks = RECURRENT_HOOKS
    op = OPS["kda"]

    def featlab_forward(self, hidden_states: torch.Tensor,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """HF's forward without a cache, through featlab's op, firing the hooks."""
        hf = self.hf
        x = hidden_states
        if attention_mask is not None:  # HF's apply_mask_to_padding_states (2-D mask)
            x = (x * attention_mask[:, :, None]).to(x.dtype)
        batch, length, _ = x.shape
        mixed = torch.cat([hf.q_proj(x), hf.k_proj(x), hf.v_proj(x)], dim=-1).transpose(1, 2)
        # the conv module itself (HF's causal_conv1d_fn is the same F.conv1d on its weight);
        # calling it fires accelerate's offloading hooks, as HF's force_accelerate_hooks does
        conv = hf.conv1d(mixed.to(hf.conv1d.weight.dtype))[..., :length]
        mixed = ACT2FN[hf.activation](conv).to(x.dtype).transpose(1, 2)
        q, k, v = (y.unflatten(-1, (-1, hf.head_dim))
                   for y in mixed.split([hf.qkv_dim] * 3, dim=-1))
        f = torch.promote_types(x.dtype, torch.float32)
        q = hf_l2norm(q.to(f)) * hf.head_dim**-0.5
        k = hf_l2norm(k.to(f))
        log_decay = hf.forget_gate(x).to(f)  # [b, t, H, d_k], fp32 in HF
        beta = torch.sigmoid(hf.b_proj(x)).to(f)

        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v.to(f))
        log_decay, beta = self.hook_log_decay(log_decay), self.hook_beta(beta)
        if self.use_state_hook:
            o, final = recur_with_state_hook(self.hook_state, self.op, q, k, v, log_decay, beta)
        else:
            o, final = self.op.chunk(q, k, v, log_decay, beta, chunk_size=CHUNK_SIZE)
        self.hook_state_final(final)
        o = o.to(x.dtype)  # HF's kernel returns the input dtype

        gate = hf.g_b_proj(hf.g_a_proj(x)).unflatten(-1, (-1, hf.head_dim))
        gate = self.hook_out_gate(torch.sigmoid(gate.to(f)))
        out = _gated_norm(hf.o_norm, o, gate)
        return hf.o_proj(out.reshape(batch, length, -1))


def _gated_norm(norm: nn.Module, o: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """HF's `KimiLinearRMSNormGated` with the gate's activation taken out, so that
    ``hook_out_gate`` sees ``sigmoid(g)``: the per-head RMS norm of ``o [b, t, H, d_v]`` and
    the weight in the gate's dtype (HF's strict fp32), times the gate, back to ``o``'s dtype."""
    hidden = o.to(gate.dtype)
    hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    hidden = norm.weight.to(gate.dtype) * hidden
    return (hidden * gate).to(o.dtype)
