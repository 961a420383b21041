"""Tiny random Hugging Face configs, one per architecture featlab wraps, for tests and demos.

>>> from transformers import AutoModelForCausalLM
>>> model = AutoModelForCausalLM.from_config(tiny_config("qwen3_next")).eval()

Every config has a 256-token vocabulary, hidden size 32, two or three layers that cover every
layer type the architecture has (each mixer kind, dense and MoE MLPs), and the smallest
head / state sizes the code accepts, with grouping left on where the architecture groups
(GQA, Gated DeltaNet's value heads per key head, SSD's ``n_groups``). Everything runs on the
pure-torch paths: eager attention, eager experts, no cache, no dropout. The SSD chunk (16) is
shorter than the 32-token test batch, so its chunk loop runs twice (HF's delta-rule kernels use
a fixed chunk of 64). The attention / experts implementation is not saved by
`save_pretrained`: load with ``attn_implementation="eager"`` for bit-identical logits.
Falcon-H1's muP multipliers are set away from 1 on purpose: the released checkpoints use such
values, and a multiplier of 1 would hide a residual-algebra mistake.
"""

from __future__ import annotations

from typing import Any

_COMMON: dict[str, Any] = {
    "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 128,
    "use_cache": False, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
}
_MAMBA: dict[str, Any] = {  # Bamba's and Falcon-H1's SSD, as small as it gets
    "mamba_n_heads": 4, "mamba_d_state": 8, "mamba_n_groups": 2, "mamba_d_conv": 4,
    "mamba_expand": 2, "mamba_chunk_size": 16,
}

_SETTINGS: dict[str, dict[str, Any]] = {
    "gpt2": {
        "vocab_size": 256, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 128,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "use_cache": False,
        "bos_token_id": 1, "eos_token_id": 2,
    },
    "llama": {**_COMMON},
    "qwen3_next": {
        **_COMMON, "head_dim": 16, "layer_types": ["linear_attention", "full_attention"],
        "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 8,
        "linear_value_head_dim": 8, "linear_conv_kernel_dim": 4,
        "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
        "shared_expert_intermediate_size": 16, "decoder_sparse_step": 1, "mlp_only_layers": [0],
    },
    "olmo_hybrid": {
        **_COMMON, "layer_types": ["linear_attention", "full_attention"],
        "linear_num_key_heads": 2, "linear_num_value_heads": 2, "linear_key_head_dim": 8,
        "linear_value_head_dim": 16, "linear_conv_kernel_dim": 4,
    },
    "mamba2": {
        "vocab_size": 256, "hidden_size": 32, "num_hidden_layers": 2, "num_heads": 4,
        "head_dim": 16, "expand": 2, "state_size": 8, "n_groups": 2, "conv_kernel": 4,
        "chunk_size": 16, "use_cache": False, "pad_token_id": 0, "bos_token_id": 1,
        "eos_token_id": 2,
    },
    "bamba": {**_COMMON, **_MAMBA, "attn_layer_indices": [1]},
    "falcon_h1": {
        **_COMMON, **_MAMBA, "mamba_d_ssm": 64, "embedding_multiplier": 2.0,
        "lm_head_multiplier": 0.5, "attention_in_multiplier": 1.5, "attention_out_multiplier": 0.75,
        "ssm_in_multiplier": 1.25, "ssm_out_multiplier": 0.5, "key_multiplier": 0.9,
        "mlp_multipliers": [1.1, 0.9], "ssm_multipliers": [1.0, 0.8, 1.2, 0.7, 1.3],
    },
    "lfm2": {
        **_COMMON, "layer_types": ["conv", "full_attention"], "conv_L_cache": 3,
        "block_auto_adjust_ff_dim": False,
    },
    "recurrent_gemma": {
        **_COMMON, "num_hidden_layers": 3, "num_key_value_heads": 1, "lru_width": 32,
        "attention_window_size": 16, "conv1d_width": 4,
        "block_types": ["recurrent", "attention", "recurrent"],
    },
    "kimi_linear": {
        **_COMMON, "num_key_value_heads": 2, "layer_types": ["linear_attention", "full_attention"],
        "mlp_layer_types": ["dense", "sparse"], "num_local_experts": 4,
        "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1, "moe_intermediate_size": 16,
        "n_shared_experts": 1, "kv_lora_rank": 16, "q_lora_rank": None, "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8, "v_head_dim": 16, "linear_head_dim": 8, "linear_num_heads": 2,
        "linear_conv_kernel_dim": 4,
    },
}

TINY_TYPES: tuple[str, ...] = tuple(_SETTINGS)


def tiny_config(model_type: str, **overrides: Any):
    """A tiny random `transformers.PretrainedConfig` of `model_type` (one of `TINY_TYPES`);
    `overrides` replace or add config fields."""
    if model_type not in _SETTINGS:
        raise ValueError(f"no tiny config for model_type {model_type!r}; "
                         f"tiny configs exist for: {', '.join(TINY_TYPES)}")
    from transformers import AutoConfig

    settings = {**_SETTINGS[model_type], **overrides}
    settings.setdefault("attn_implementation", "eager")
    settings.setdefault("experts_implementation", "eager")
    return AutoConfig.for_model(model_type, **settings)


def redraw_ssd_mixers(model: Any, seed: int = 0) -> None:
    """Re-draw every SSD mixer's ``in_proj`` and ``conv1d`` ~ N(0, 1/fan_in) (x, B, C, z and
    dt logits of order 1), ``dt_bias = -2`` (dt ~ 0.05-0.3) and ``A`` in [0.5, 2]: decays of
    0.97-0.6 per token, in place.

    HF's own init of Bamba and Falcon-H1 hides the recurrence in a tiny model: the D skip is
    the whole output (zeroing what enters the state moves the logits by 4e-6 and 8e-8), so a
    test or a measurement of the state path would see nothing at all without this."""
    import math

    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not (hasattr(module, "A_log") and hasattr(module, "in_proj")
                    and hasattr(module, "conv1d")):
                continue
            for w in (module.in_proj.weight, module.conv1d.weight):
                fan_in = w.shape[1] * w.shape[2] if w.dim() == 3 else w.shape[1]
                w.copy_(torch.randn(w.shape, generator=g) / math.sqrt(fan_in))
            log_a = torch.empty(module.A_log.shape).uniform_(math.log(0.5), math.log(2.0),
                                                             generator=g)
            module.A_log.copy_(log_a)
            module.dt_bias.fill_(-2.0)

