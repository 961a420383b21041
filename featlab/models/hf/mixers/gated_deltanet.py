"""Mixer hooks inside Gated DeltaNet: Qwen3-Next (`Qwen3NextGatedDeltaNet`) and OLMo-Hybrid
(`OlmoHybridGatedDeltaNet`), transformers 5.24.

The adapter runs the HF module's own projections and short convolution (its submodules, not
copies of their weights), then the recurrence through featlab's ``delta_rule`` op, firing
HookedHybrid's hooks on what enters it::

    hook_q          l2norm(silu(conv(q))) * d_k**-0.5, repeated to value heads  [b, t, H_v, d_k]
    hook_k          l2norm(silu(conv(k))), repeated to value heads              [b, t, H_v, d_k]
    hook_v          silu(conv(v))                                               [b, t, H_v, d_v]
    hook_log_decay  g = -exp(A_log) * softplus(a + dt_bias)   (<= 0)            [b, t, H_v]
    hook_beta       sigmoid(b); OLMo-Hybrid: 2 sigmoid(b) in [0, 2]             [b, t, H_v]
    hook_state      S_t, opt-in (use_state_hook)                        [b, t, H_v, d_k, d_v]
    hook_state_final S after the last position                             [b, H_v, d_k, d_v]
    hook_out_gate   silu(z) (Qwen3-Next) / silu(g_proj x) (OLMo), after the norm [b, t, H_v, d_v]

``S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T``, ``o_t = S_t^T q_t``: HF's
state has this orientation (``[b, H_v, d_k, d_v]``), so ``hook_state`` is HF's decode-cache state.
Value heads are grouped over key heads: value head ``h`` reads key head ``h // (H_v / H_k)``
(HF's ``repeat_interleave``). The hooks see q and k already repeated, one copy per value head,
so a patch of ``hook_k`` at head ``h`` changes head ``h``'s recurrence only. The L2 norm is
HF's ``x * rsqrt(sum x^2 + 1e-6)``, not `featlab.models.mixers.recurrent.l2_normalize`: the
two differ by up to 3e-2 on small activations.

When HF's forward runs instead: with a cache (``cache`` not None: prefill into a cache and
step-by-step decoding), for packed sequences (``cu_seq_lens_q``), and when no hook of the
adapter is active and the state hook is off. The last keeps HookedHFModel's promise that with
no hook the logits are HF's own, bit for bit; as soon as any mixer hook is attached
(``run_with_cache`` included) featlab's op runs, equal to HF's to fp32 rounding (measured in
``tests/models/hf/test_mixer_gdn.py``). With ``use_state_hook`` featlab's path always runs, so a
clean and a patched run are computed the same way and positions before a patch match exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from featlab.models.hf.mixers import MixerAdapter
from featlab.models.mixers.base import RECURRENT_HOOKS
from featlab.models.mixers.recurrent import recur_with_state_hook
from featlab.models.ops import OPS

# HF's torch_chunk_gated_delta_rule uses chunks of 64 (not configurable); the same length keeps
# featlab's chunked form in the same numerical regime (decays multiplied within one chunk).
CHUNK_SIZE = 64


def hf_l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """HF's (and flash-linear-attention's) L2 norm over the last dim."""
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


class GatedDeltaNetAdapter(MixerAdapter):
    """Shared forward; subclasses say how their HF module projects its input (`_project`).

    ``forward(hidden_states [b, t, d_model], cache=None, attention_mask=None, **kwargs)``
    -> ``[b, t, d_model]``, HF's signature and result."""

    norm_name = ""  # the HF module's gated output norm
    out_name = ""  # and its output projection
    hooks = RECURRENT_HOOKS
    op = OPS["delta_rule"]

    def __init__(self, hf_mixer: nn.Module, config: Any, use_state_hook: bool = False) -> None:
        super().__init__(hf_mixer, config, use_state_hook)
        self.n_rep = hf_mixer.num_v_heads // hf_mixer.num_k_heads

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        """``x [b, t, d_model]`` -> ``mixed_qkv [b, t, 2 key_dim + value_dim]`` (before the
        convolution), ``a, b [b, t, H_v]`` (decay and beta logits), ``z [b, t, H_v, d_v]``
        (the output gate before its activation)."""
        raise NotImplementedError

    def _beta(self, b: torch.Tensor) -> torch.Tensor:
        return b.sigmoid()

    def featlab_forward(self, hidden_states: torch.Tensor,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hf = self.hf
        x = hidden_states
        if attention_mask is not None:  # as HF's apply_mask_to_padding_states (2-D mask)
            x = (x * attention_mask[:, :, None]).to(x.dtype)
        batch, length, _ = x.shape
        mixed, a, b, z = self._project(x)
        conv = hf.conv1d(mixed.transpose(1, 2).to(hf.conv1d.weight.dtype))[..., :length]
        mixed = ACT2FN[hf.activation](conv).transpose(1, 2).to(x.dtype)
        q, k, v = mixed.split([hf.key_dim, hf.key_dim, hf.value_dim], dim=-1)
        # HF's kernel: L2 norm, q scaled by d_k**-0.5, q/k repeated to the value heads, all in
        # fp32 at least (HF casts half precision up; a float64 model stays float64 here)
        f = torch.promote_types(x.dtype, torch.float32)
        q = hf_l2norm(q.unflatten(-1, (-1, hf.head_k_dim)).to(f)) * hf.head_k_dim**-0.5
        k = hf_l2norm(k.unflatten(-1, (-1, hf.head_k_dim)).to(f))
        if self.n_rep > 1:
            q = q.repeat_interleave(self.n_rep, dim=2)
            k = k.repeat_interleave(self.n_rep, dim=2)
        v = v.unflatten(-1, (-1, hf.head_v_dim)).to(f)
        beta = self._beta(b).to(f)
        log_decay = -hf.A_log.to(f).exp() * F.softplus(a.to(f) + hf.dt_bias)
        o = self._recur(q, k, v, log_decay, beta).to(x.dtype)
        gate = self.hook_out_gate(F.silu(z.to(f)))
        out = _gated_norm(getattr(hf, self.norm_name), o, gate)
        return getattr(hf, self.out_name)(out.reshape(batch, length, -1))

    def _recur(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               log_decay: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Fire hook_q .. hook_beta, run the op, fire the state hooks; ``o [b, t, H_v, d_v]``."""
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        log_decay, beta = self.hook_log_decay(log_decay), self.hook_beta(beta)
        if self.use_state_hook:
            o, final = recur_with_state_hook(self.hook_state, self.op, q, k, v, log_decay, beta)
        else:
            o, final = self.op.chunk(q, k, v, log_decay, beta, chunk_size=CHUNK_SIZE)
        self.hook_state_final(final)
        return o


def _gated_norm(norm: nn.Module, o: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """HF's RMSNormGated (``Qwen3NextRMSNormGated`` / ``OlmoHybridRMSNormGated``) with the
    gate's activation taken out, so that ``hook_out_gate`` sees ``silu(z)``; HF's operations in
    HF's order, computed in the gate's dtype (HF's fp32, or float64 for a float64 model).
    ``o [b, t, H, d_v]``, ``gate`` (activated) the same."""
    dtype = o.dtype
    hidden = o.to(gate.dtype)
    hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    hidden = norm.weight * hidden.to(dtype)
    return (hidden * gate).to(dtype)


class Qwen3NextGatedDeltaNetAdapter(GatedDeltaNetAdapter):
    """Qwen3-Next: fused ``in_proj_qkvz`` / ``in_proj_ba``, reordered by HF's own
    ``fix_query_key_value_ordering``; ``norm``, ``out_proj``."""

    norm_name, out_name = "norm", "out_proj"

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hf = self.hf
        q, k, v, z, b, a = hf.fix_query_key_value_ordering(hf.in_proj_qkvz(x), hf.in_proj_ba(x))
        mixed = torch.cat([t.flatten(2) for t in (q, k, v)], dim=-1)
        return mixed, a, b, z


class OlmoHybridGatedDeltaNetAdapter(GatedDeltaNetAdapter):
    """OLMo-Hybrid: separate ``q/k/v/a/b/g_proj``; ``beta = 2 sigmoid(b)`` when
    ``linear_allow_neg_eigval`` (eigenvalues of ``I - beta k k^T`` down to -1); ``o_norm``,
    ``o_proj``."""

    norm_name, out_name = "o_norm", "o_proj"

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hf = self.hf
        mixed = torch.cat([hf.q_proj(x), hf.k_proj(x), hf.v_proj(x)], dim=-1)
        z = hf.g_proj(x).unflatten(-1, (-1, hf.head_v_dim))
        return mixed, hf.a_proj(x), hf.b_proj(x), z

    def _beta(self, b: torch.Tensor) -> torch.Tensor:
        beta = b.sigmoid()
        return beta * 2.0 if self.hf.allow_neg_eigval else beta
