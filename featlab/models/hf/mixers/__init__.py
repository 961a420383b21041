"""Hooks *inside* the linear-recurrent and convolutional mixers of HF models.

An adapter takes over one HF mixer module's forward and computes the same output through
featlab's ops (`featlab.models.ops`), firing featlab's mixer hooks on the way with
HookedHybrid's names and meaning: ``hook_q``, ``hook_k``, ``hook_v`` (what enters the
recurrence), ``hook_log_decay``, ``hook_beta``, ``hook_out_gate``, the opt-in per-token
``hook_state`` ``[batch, pos, heads, d_k, d_v]`` and ``hook_state_final``. Each adapter lives
in its own module and registers itself in `ADAPTERS` under (HF model_type, featlab kind).

`HookedHFModel(..., mixer_hooks=True)` installs one per layer it has an adapter for: the
adapter becomes ``blocks.{l}.mixer`` (so its hooks are ``blocks.{l}.mixer.hook_q`` ...) and
the HF module's ``forward`` is replaced on that instance only. The HF module keeps its
parameters; the adapter holds a reference to it, not a copy.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformer_lens.hook_points import HookPoint

# (model_type, featlab kind) -> "module:Class"; loaded on first use
ADAPTERS: dict[tuple[str, str], str] = {
    ("qwen3_next", "gdn"):
        "featlab.models.hf.mixers.gated_deltanet:Qwen3NextGatedDeltaNetAdapter",
    ("olmo_hybrid", "gdn"):
        "featlab.models.hf.mixers.gated_deltanet:OlmoHybridGatedDeltaNetAdapter",
    ("mamba2", "ssd"): "featlab.models.hf.mixers.ssd:SSDAdapter",
    ("bamba", "ssd"): "featlab.models.hf.mixers.ssd:SSDAdapter",
    ("falcon_h1", "ssd"): "featlab.models.hf.mixers.ssd:FalconH1SSDAdapter",
    ("lfm2", "conv"): "featlab.models.hf.mixers.short_conv:Lfm2ShortConvAdapter",
    ("recurrent_gemma", "rglru"): "featlab.models.hf.mixers.rglru:RecurrentGemmaRglruAdapter",
    ("kimi_linear", "kda"): "featlab.models.hf.mixers.kda:KimiDeltaAttentionAdapter",
}


class MixerAdapter(nn.Module):
    """Base of the adapters: holds the HF mixer without registering it as a submodule (its
    parameters stay where HF put them), HF's own forward, and the hook points a subclass
    names in `hooks` (``hook_state`` among them is created only with `use_state_hook`, so
    that a cache of every hook lists no name that never fires).

    `forward` takes the signature most HF mixers share, ``(hidden_states, cache=None,
    attention_mask=None, **kwargs)``, and runs HF's own forward with a cache (prefill into
    one, decoding, ``generate``), for packed sequences (any of `packed_keys`, which only HF's
    kernels honour) and when no hook needs featlab's path (`needs_featlab_path`); otherwise
    the subclass's `featlab_forward`, whose result must equal HF's to fp32 rounding (tested
    per architecture). A mixer with another signature overrides `forward`."""

    hooks: tuple[str, ...] = ()
    packed_keys: tuple[str, ...] = ("cu_seq_lens_q",)
    cache_alias = "cache_params"  # HF's older name for `cache`, still accepted

    def __init__(self, hf_mixer: nn.Module, config: Any, use_state_hook: bool = False) -> None:
        super().__init__()
        object.__setattr__(self, "hf", hf_mixer)  # not a submodule: no duplicate parameters
        self.config = config
        self.use_state_hook = use_state_hook
        # The class's forward bound to this instance: HF's own even once the instance's
        # `forward` is replaced by ours (or a model is wrapped twice); decoding with a cache
        # still runs it.
        self.hf_forward = type(hf_mixer).forward.__get__(hf_mixer)
        for name in self.hooks:
            if name != "hook_state" or use_state_hook:
                setattr(self, name, HookPoint())

    def forward(self, hidden_states: Any, cache: Any = None, attention_mask: Any = None,
                **kwargs: Any) -> Any:
        cache = kwargs.pop(self.cache_alias, cache)
        packed = any(kwargs.get(key) is not None for key in self.packed_keys)
        if cache is not None or packed or not self.needs_featlab_path():
            return self.hf_forward(hidden_states, cache=cache, attention_mask=attention_mask,
                                   **kwargs)
        return self.featlab_forward(hidden_states, attention_mask)

    def featlab_forward(self, hidden_states: Any, attention_mask: Any = None) -> Any:
        """HF's forward without a cache, through featlab's ops, firing the hooks."""
        raise NotImplementedError

    def needs_featlab_path(self) -> bool:
        """Whether featlab's path must run: the state hook is on, or a hook of this adapter
        has something attached. Otherwise HF's forward runs, so that without hooks the logits
        are HF's, bit for bit."""
        return self.use_state_hook or any(
            hook._forward_hooks or hook._forward_pre_hooks or hook._backward_hooks
            or hook._backward_pre_hooks
            for hook in self.children() if isinstance(hook, HookPoint))


def adapter_for(model_type: str, kind: str) -> type[MixerAdapter] | None:
    """The adapter class for this (model_type, kind), or None when there is none yet."""
    import importlib

    entry = ADAPTERS.get((model_type, kind))
    if entry is None:
        return None
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)
