"""The `Layout` of every Hugging Face architecture featlab wraps, and `layout_for`.

>>> layout_for(hf_model).layers        # "model.layers"

Read against transformers 5.24 (``transformers/models/<type>/modeling_<type>.py``); the
evidence that each entry is right is ``tests/models/hf/test_architectures.py``, which checks
the residual algebra on a tiny random model of each type (`featlab.models.hf.tiny`).
docs/models_hf.md has the table and, per linear-recurrent mixer, the map of HF tensors onto
featlab's mixer hooks.

Four architectures need more than a plain pre-norm stack: RecurrentGemma and Kimi Linear keep
different mixers under one attribute (``layer_kinds``), OLMo-Hybrid's attention layers are
post-norm (``mixer_out`` / ``mlp_out`` name the post-norms), Falcon-H1 runs two mixers side
by side (``parallel_mixers``) and, like RecurrentGemma, scales outside any module
(``scales``).

`CALLS` records how each decoder layer and mixer is called and what it returns, as
``"<input> -> <output>"``: input ``args[0]`` (``hidden_states`` is the first positional
argument) or ``hidden_states=`` (a keyword); output ``tensor`` or ``tuple`` (hidden states
first). The wrapper detects both at run time, so `Layout` needs no field for it; the test
checks these records against the real calls (phase 2's mixer pre-hooks read them).
"""

from __future__ import annotations

from typing import Any

from featlab.models.hf.layout import Layout

_HYBRID = {"layers": "model.layers", "embed": "model.embed_tokens", "unembed": "lm_head"}

LAYOUTS: dict[str, Layout] = {
    "gpt2": Layout(
        model_type="gpt2", layers="transformer.h", embed="transformer.wte",
        pos_embed="transformer.wpe", final_norm="transformer.ln_f", unembed="lm_head",
        mixers={"attn": "attn"},
        notes="Pre-LN (ln_1, ln_2). resid_pre[0] = wte + wpe (then dropout: identity in "
              "eval). attn is GPT2Attention (fused c_attn, Conv1D weights stored [in, out]); "
              "lm_head tied to wte.",
    ),
    "llama": Layout(
        model_type="llama", final_norm="model.norm", mixers={"self_attn": "attn"}, **_HYBRID,
        notes="Pre-norm RMSNorm (input_layernorm, post_attention_layernorm). RoPE computed "
              "once in model.rotary_emb and passed to every layer as position_embeddings.",
    ),
    "qwen3_next": Layout(
        model_type="qwen3_next", final_norm="model.norm",
        mixers={"linear_attn": "gdn", "self_attn": "attn"}, **_HYBRID,
        notes="config.layer_types: linear_attention -> linear_attn (Gated DeltaNet, value "
              "heads grouped over key heads), full_attention -> self_attn (gated attention: "
              "q_proj also emits a per-channel gate, o_proj(attn * sigmoid(gate)); q_norm, "
              "k_norm; partial RoPE). Pre-norm; RMSNorms scale by (1 + weight), zero init. "
              "mlp is Qwen3NextSparseMoeBlock (softmax top-k router, experts as 3-D "
              "parameters, shared_expert gated by sigmoid(shared_expert_gate)) where "
              "num_experts > 0, (l + 1) % decoder_sparse_step == 0 and l not in "
              "mlp_only_layers, else a dense Qwen3NextMLP; hook_mlp_out is the whole block's "
              "output (routed + gated shared expert).",
    ),
    "olmo_hybrid": Layout(
        model_type="olmo_hybrid", final_norm="model.norm",
        mixers={"linear_attn": "gdn", "self_attn": "attn"}, **_HYBRID,
        mixer_out={"self_attn": "post_attention_layernorm"},
        mlp_out={"self_attn": "post_feedforward_layernorm"},
        notes="A real hybrid (config.layer_types, default 3 GDN : 1 attention) with two layer "
              "classes. GDN layers are pre-norm: x + linear_attn(input_layernorm(x)), then "
              "x + mlp(post_attention_layernorm(x)). Attention layers are OLMo-2 post-norm "
              "with no pre-norm: x + post_attention_layernorm(self_attn(x)), then "
              "x + post_feedforward_layernorm(mlp(x)). So the MLP's contribution depends on "
              "the layer (mlp_out), and post_attention_layernorm is a post-norm on "
              "attention layers but the MLP's pre-norm on GDN layers. Attention: q_norm/k_norm "
              "over all heads; RoPE only if config.rope_parameters has rope_theta (released "
              "checkpoints: none, NoPE). GDN: separate q/k/v/a/b/g projections, "
              "beta = 2 sigmoid(b) when linear_allow_neg_eigval (default).",
    ),
    "mamba2": Layout(
        model_type="mamba2", layers="backbone.layers", embed="backbone.embeddings",
        final_norm="backbone.norm_f", unembed="lm_head", mixers={"mixer": "ssd"}, mlp=None,
        notes="Every layer is x + mixer(norm(x)); no MLP (no hook_mlp_out, resid_post = "
              "resid_mid). residual_in_fp32 keeps the residual in fp32. In training mode "
              "without a cache the mixer first tries the fused mamba_ssm kernel (None "
              "without it, then the torch path).",
    ),
    "bamba": Layout(
        model_type="bamba", final_norm="model.final_layernorm",
        mixers={"mamba": "ssd", "self_attn": "attn"}, mlp="feed_forward", **_HYBRID,
        notes="config.layers_block_type (alias layer_types) from attn_layer_indices: "
              "linear_attention -> mamba (SSD), full_attention -> self_attn. Pre-norm "
              "(input_layernorm, pre_ff_layernorm). The decoder layer returns a tuple "
              "(hidden_states, attn_weights or None). Partial RoPE 0.5 (hard-coded).",
    ),
    "falcon_h1": Layout(
        model_type="falcon_h1", final_norm="model.final_layernorm",
        mixers={"mamba": "ssd", "self_attn": "attn"}, mlp="feed_forward", **_HYBRID,
        parallel_mixers=True,
        scales={"embed": "config.embedding_multiplier", "mamba": "config.ssm_out_multiplier",
                "self_attn": "config.attention_out_multiplier",
                "logits": "config.lm_head_multiplier"},
        notes="Every layer (type 'hybrid') runs mamba (SSD) and self_attn side by side on "
              "h = input_layernorm(x): x + ssm_out_multiplier * mamba(h) + "
              "attention_out_multiplier * self_attn(attention_in_multiplier * h)[0], then "
              "x + feed_forward(pre_ff_layernorm(x)). resid_pre[0] = embedding_multiplier * "
              "embed; logits = lm_head_multiplier * lm_head. The other muP factors sit inside "
              "modules (ssm_in_multiplier, mup_vector on in_proj's z/x/B/C/dt, key_multiplier, "
              "mlp_multipliers) and leave the residual algebra alone. The layer returns a "
              "1-tuple. Two mixers per layer, summed, scaled outside any module "
              "(parallel_mixers, scales).",
    ),
    "lfm2": Layout(
        model_type="lfm2", final_norm="model.embedding_norm",
        mixers={"conv": "conv", "self_attn": "attn"}, mlp="feed_forward", **_HYBRID,
        notes="config.layer_types: conv -> conv (Lfm2ShortConv: out_proj(C * conv(B * x)), "
              "no activation), full_attention -> self_attn (q_layernorm, k_layernorm). "
              "Pre-norm (operator_norm, ffn_norm). The final norm is named embedding_norm "
              "but runs after the last layer.",
    ),
    "recurrent_gemma": Layout(
        model_type="recurrent_gemma", final_norm="model.final_norm",
        mixers={"temporal_block": "rglru"}, mlp="mlp_block", **_HYBRID,
        layer_kinds={"linear_attention": "rglru", "sliding_attention": "swa"},
        scales={"embed": "model.normalizer"},
        notes="config.layers_block_type (alias layer_types; block_types repeated): "
              "linear_attention -> RG-LRU recurrent block, sliding_attention -> local "
              "attention (window attention_window_size), both at temporal_block, so the kind "
              "comes from the layer type (layer_kinds). resid_pre[0] = model.normalizer * "
              "embed, normalizer = sqrt(hidden_size) stored in bfloat16 (5.65625 for 32). "
              "Pre-norm (temporal_pre_norm, channel_pre_norm; RMSNorm (1 + weight)). The "
              "layer's first parameter is named activations (passed positionally). Logits "
              "are soft-capped: cap * tanh(lm_head / cap), cap = logits_soft_cap. The RG-LRU "
              "and conv states live on the modules (rg_lru.recurrent_states, conv1d_state), "
              "not in the Cache.",
    ),
    "kimi_linear": Layout(
        model_type="kimi_linear", final_norm="model.norm", mixers={"self_attn": "kda"},
        **_HYBRID, layer_kinds={"linear_attention": "kda", "full_attention": "attn"},
        notes="config.layer_types: linear_attention -> KDA (KimiLinearDeltaAttention), "
              "full_attention -> MLA (KimiLinearAttention: low-rank kv_a/kv_b, NoPE, the "
              "k_rot part shared across heads), both at self_attn, so the kind comes from the "
              "layer type (layer_kinds). Pre-norm. config.mlp_layer_types: dense -> "
              "KimiLinearMLP, sparse -> KimiLinearMoE (sigmoid router with "
              "e_score_correction_bias, group-limited top-k, routed_scaling_factor, plus an "
              "ungated shared_experts MLP); hook_mlp_out is the whole block's output.",
    ),
}

_ATTN = "hidden_states= -> tuple"
_KW_TENSOR = "hidden_states= -> tensor"
CALLS: dict[str, dict[str, str]] = {
    "gpt2": {"layer": "args[0] -> tensor", "attn": "args[0] -> tuple"},
    "llama": {"layer": "args[0] -> tensor", "attn": _ATTN},
    "qwen3_next": {"layer": "args[0] -> tensor", "gdn": _KW_TENSOR, "attn": _ATTN},
    "olmo_hybrid": {"layer": "args[0] -> tensor", "gdn": _KW_TENSOR, "attn": _ATTN},
    "mamba2": {"layer": "args[0] -> tensor", "ssd": "args[0] -> tensor"},
    "bamba": {"layer": "args[0] -> tuple", "ssd": _KW_TENSOR, "attn": _ATTN},
    "falcon_h1": {"layer": "args[0] -> tuple", "ssd": _KW_TENSOR, "attn": _ATTN},
    "lfm2": {"layer": "args[0] -> tensor", "conv": _KW_TENSOR, "attn": _ATTN},
    "recurrent_gemma": {"layer": "args[0] -> tensor", "rglru": "args[0] -> tuple",
                        "swa": "args[0] -> tuple"},
    "kimi_linear": {"layer": "args[0] -> tensor", "kda": _KW_TENSOR, "attn": _ATTN},
}


def layout_for(config_or_model: Any) -> Layout:
    """The `Layout` of an HF config, a model holding one (``.config``) or a model_type string;
    a clear error naming the supported types for any other architecture."""
    config = getattr(config_or_model, "config", config_or_model)
    model_type = config if isinstance(config, str) else getattr(config, "model_type", None)
    if model_type not in LAYOUTS:
        raise ValueError(
            f"featlab has no layout for model_type {model_type!r}; supported: "
            f"{', '.join(sorted(LAYOUTS))}. Describe the architecture with a "
            "featlab.models.hf.layout.Layout and pass it in, or add it to "
            "featlab/models/hf/architectures.py"
        )
    return LAYOUTS[model_type]
