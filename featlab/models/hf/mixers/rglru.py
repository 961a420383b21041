"""Mixer hooks inside RecurrentGemma's recurrent block (`RecurrentGemmaRecurrentBlock` with its
`RecurrentGemmaRglru`, transformers 5.24): Griffin's RG-LRU, with its short convolution and
its gate branch.

The block is ``out = linear_out(rg_lru(conv_1d(linear_x(u))) * gelu(linear_y(u)))``. The
RG-LRU is a diagonal linear recurrence, one scalar state per channel of ``lru_width`` (W)::

    i_t = sigmoid(x_t W_i + b_i),  r_t = sigmoid(x_t W_a + b_a)   (block-diagonal over heads)
    log a_t = -8 r_t softplus(recurrent_param)
    h_t = a_t h_{t-1} + sqrt(1 - a_t^2) i_t x_t,       output h_t

so it fits featlab's schema with **heads = W channels, d_k = d_v = 1** and ``q = k = 1``, and
featlab's ``ssd`` op computes it (``S_t = exp(log_decay) S_{t-1} + beta k v``, ``o = S q``).
The adapter calls the HF module's own ``linear_x``, ``linear_y``, ``conv_1d``, ``linear_out``
and the RG-LRU's parameters, and fires, as ``blocks.{l}.mixer.*``::

    hook_out_gate   gelu(linear_y(u)), the gate branch                        [b, t, W, 1]
    hook_v          x = conv_1d(linear_x(u)), what the RG-LRU reads           [b, t, W, 1]
    hook_in_gate    i_t, the input gate                                       [b, t, W]
    hook_log_decay  log a_t = -8 r_t softplus(recurrent_param)  (< 0)         [b, t, W]
    hook_beta       i_t sqrt(1 - a_t^2): input gate times Griffin's
                    normalisation; i_t alone where the state resets           [b, t, W]
    hook_state      h_t, opt-in (use_state_hook)                        [b, t, W, 1, 1]
    hook_state_final h after the last position                            [b, W, 1, 1]

There is no ``hook_q`` or ``hook_k``: both are 1. ``hook_state[..., 0, 0]`` is HF's
``rg_lru.recurrent_states`` ``[b, W]`` after token t, and also the RG-LRU's output at t (the
read-out is the state itself). Hooks fire in HF's order and each value is computed from the
hooked ones before it, as TransformerLens's ``hook_q`` feeds its attention scores: the gates
read the hooked x, so a patch of ``hook_v`` at t also moves ``i_t`` and ``a_t``; ``beta`` reads
the hooked ``i`` and ``log a``, so a patched decay carries Griffin's normalisation with it (patch
``hook_beta`` to decouple them). ``i_t`` enters only through ``beta``, whose hook shows what the
recurrence uses.

Resets: HF restarts the state where ``position_ids == 0`` (``a = 0``, normalisation 1). At the
first position the state before is zero, so there the adapter keeps ``log a_t`` (it multiplies
nothing) and sets the normalisation to 1 (``beta = i``); position ids restarting later in a row
(packed sequences) go to HF's forward, as do a cache (``use_cache=True``: prefill into the
module's ``conv1d_state`` / ``recurrent_states``, decoding, ``generate``) and a call with no hook
of the adapter attached and ``use_state_hook`` off (so that without hooks the logits are HF's,
bit for bit). As HF does without a cache, the adapter leaves ``conv1d_state = None`` and the
final state on ``rg_lru.recurrent_states``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.recurrent_gemma.modeling_recurrent_gemma import SqrtBoundDerivative

from featlab.models.hf.mixers import MixerAdapter
from featlab.models.mixers.recurrent import recur_with_state_hook
from featlab.models.ops import OPS


def _block_diagonal(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """HF's gate projection: ``x [b, t, W]`` times one ``[W/H, W/H]`` block per head, plus
    ``bias [H, W/H]``, with HF's ``baddbmm`` (the same rounding)."""
    b, t, width = x.shape
    heads = weight.shape[0]
    blocks = x.reshape(b * t, heads, width // heads).permute(1, 0, 2)
    return torch.baddbmm(bias[:, None, :], blocks, weight).transpose(0, 1).reshape(b, t, width)


class RecurrentGemmaRglruAdapter(MixerAdapter):
    """`RecurrentGemmaRecurrentBlock`: ``forward(input_states [b, t, d], position_ids,
    attention_mask=None, use_cache=True, **kwargs) -> (out [b, t, d], None)``, HF's
    signature and result (the attention mask is unused, as in HF)."""

    op = OPS["ssd"]

    hooks = ("hook_out_gate", "hook_v", "hook_in_gate", "hook_log_decay", "hook_beta",
             "hook_state_final", "hook_state")
    def forward(self, input_states: torch.Tensor, position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, use_cache: bool = True,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
        length = input_states.shape[1]
        if position_ids is None:  # HF's model always passes them; count from 0 as it does
            position_ids = torch.arange(length, device=input_states.device)[None]
        restarts = bool((position_ids[:, 1:] == 0).any()) if length > 1 else False
        if use_cache or restarts or not self.needs_featlab_path():
            return self.hf_forward(input_states, position_ids, attention_mask,
                                   use_cache=use_cache, **kwargs)
        return self.featlab_forward(input_states, position_ids), None

    def featlab_forward(self, u: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """HF's forward without a cache, through featlab's ``ssd`` op, firing the hooks."""
        hf, lru = self.hf, self.hf.rg_lru
        b, length, _ = u.shape
        dtype = u.dtype
        gate = self.hook_out_gate(hf.act_fn(hf.linear_y(u)).unsqueeze(-1))
        x = hf.conv_1d(hf.linear_x(u).transpose(1, 2))[..., :length].transpose(1, 2)
        x = self.hook_v(x.unsqueeze(-1)).squeeze(-1)  # [b, t, W]
        in_gate = self.hook_in_gate(torch.sigmoid(
            _block_diagonal(x, lru.input_gate_weight, lru.input_gate_bias)))
        r = torch.sigmoid(_block_diagonal(x, lru.recurrent_gate_weight, lru.recurrent_gate_bias))
        log_decay = self.hook_log_decay(-8.0 * r * F.softplus(lru.recurrent_param))
        # HF's sqrt with its gradient clipped near a = 1 (SqrtBoundDerivative), so that
        # gradients through this path are HF's too
        norm = SqrtBoundDerivative.apply(1 - torch.exp(2 * log_decay))
        reset = (position_ids == 0)[:, :, None]
        norm = torch.where(reset, torch.ones_like(norm), norm)
        beta = self.hook_beta(in_gate * norm.to(dtype))

        # the recurrence in fp32 at least, as HF's _rnn_scan accumulates
        f = torch.promote_types(dtype, torch.float32)
        v, log_decay, beta = x.to(f).unsqueeze(-1), log_decay.to(f), beta.to(f)
        ones = v.new_ones(v.shape)  # q = k = 1: [b, t, W, 1]
        if self.use_state_hook:
            h, final = recur_with_state_hook(self.hook_state, self.op, ones, ones, v,
                                             log_decay, beta)
        else:
            # the step-by-step form, not the chunked one: with d_k = d_v = 1 the chunks' [c, c]
            # matrices per channel cost more than they save (measured 3-15x slower on CPU)
            h, final, _ = self.op.recurrent(ones, ones, v, log_decay, beta)
        self.hook_state_final(final)
        hf.conv1d_state = None  # HF's side effects without a cache
        lru.recurrent_states = final.reshape(b, -1).float()
        return hf.linear_out((h.to(dtype) * gate).squeeze(-1))
