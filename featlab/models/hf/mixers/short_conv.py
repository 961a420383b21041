"""Mixer hooks inside LFM2's short convolution (`Lfm2ShortConv`, transformers 5.24).

``y = out_proj(C * conv(B * x))`` with ``B, C, x = in_proj(u).chunk(3)``: a depthwise causal
convolution of width ``conv_L_cache``, no activation, gated on both sides, no skip. The adapter
calls the HF module's own ``in_proj``, ``conv`` and ``out_proj`` (the modules, not copies of
their weights) and fires, as ``blocks.{l}.mixer.*``::

    hook_in_gate   B, the input gate (multiplies x before the convolution)   [b, t, d]
    hook_v         conv(B * x), the convolved input, before the C gate        [b, t, d]
    hook_out_gate  C, the output gate (multiplies hook_v)                     [b, t, d]

``hook_in_gate`` is a name featlab's schema lacked: HookedHybrid's gated convolution
(`featlab.models.mixers.conv.BaseConv`, ``conv(u) * (W u + b) + u``) gates only the output.
Like that mixer, this one has no heads (the channels are the model's ``d``) and no recurrent
state in the SSM sense: what decoding carries is the last ``conv_L_cache - 1`` values of
``B * x`` (HF's conv cache), a window rather than a summary, so there is no ``hook_state`` or
``hook_state_final`` (HookedHybrid's conv mixer has none either) and ``use_state_hook`` changes
nothing here. Each hook is computed from the hooked values before it, in HF's order: a patch of
``hook_in_gate`` at position t reaches ``hook_v`` at t .. t + conv_L_cache - 1.

When HF's forward runs instead, unchanged and firing no mixer hook: with a cache (prefill into
a cache, decoding, ``generate``), for packed sequences (``seq_idx`` / ``cu_seq_lens_q``, which
only HF's hub kernel could honour), and when none of the adapter's hooks has anything attached.
The last keeps `HookedHFModel`'s promise that without hooks the logits are HF's, bit for bit;
with a hook attached (``run_with_cache`` too) the adapter's path runs, equal to HF's to fp32
rounding (``tests/models/hf/test_mixer_conv_rglru.py``).
"""

from __future__ import annotations

import torch

from featlab.models.hf.mixers import MixerAdapter


class Lfm2ShortConvAdapter(MixerAdapter):
    """`Lfm2ShortConv`: ``forward(hidden_states [b, t, d], cache=None, attention_mask=None,
    **kwargs) -> [b, t, d]``, HF's signature and result."""

    hooks = ("hook_in_gate", "hook_v", "hook_out_gate")
    packed_keys = ("seq_idx", "cu_seq_lens_q")
    cache_alias = "past_key_values"

    def featlab_forward(self, hidden_states: torch.Tensor,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """HF's forward without a cache, firing the hooks (module doc)."""
        hf = self.hf
        length, dtype = hidden_states.shape[1], hidden_states.dtype
        if attention_mask is not None:  # HF's apply_mask_to_padding_states (2-D mask)
            hidden_states = (hidden_states * attention_mask[:, :, None]).to(dtype)
        b_gate, c_gate, x = hf.in_proj(hidden_states).chunk(3, dim=-1)
        gated = self.hook_in_gate(b_gate) * x
        # the conv module itself (accelerate's offloading hooks fire on it), in its dtype as
        # HF's causal_conv1d_fn; its padding is kernel - 1 on both sides: keep the causal part
        conv = hf.conv(gated.transpose(1, 2).to(hf.conv.weight.dtype))[..., :length]
        v = self.hook_v(conv.transpose(1, 2).to(dtype))
        y = self.hook_out_gate(c_gate) * v
        return hf.out_proj(y.contiguous())
