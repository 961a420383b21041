"""Where a Hugging Face causal LM keeps the parts featlab hooks: one `Layout` per
`model_type`.

Paths are attribute paths from the `*ForCausalLM` object (``"model.layers"``,
``"lm_head"``); a decoder layer's parts are attribute names on that layer. A layer holds
one sequence mixer (the first of `mixers` it has: hybrids put ``"self_attn"`` on some layers
and ``"linear_attn"`` / ``"mamba"`` / ``"conv"`` on others) and optionally an MLP.

`mixer_out` / `mlp_out` name the module whose *output is what the layer adds to the
residual stream*: the mixer itself for a plain pre-norm layer (``x + mixer(norm(x))``), a
post-norm module where the architecture normalises the branch before adding it
(Gemma-style ``x + post_norm(mixer(norm(x)))``). featlab's ``hook_mixer_out`` /
``hook_mlp_out`` fire on those outputs, so ``resid_mid = resid_pre + mixer_out`` and
``resid_post = resid_mid + mlp_out`` hold on every architecture that has this shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Layout:
    """The module layout of one HF architecture (see the module docstring).

    model_type: the HF config's ``model_type``. layers: path of the ``ModuleList`` of
    decoder layers. embed: path of the token embedding (``nn.Embedding``); pos_embed: of a
    learned position embedding added to it (GPT-2), if any. final_norm, unembed: paths of
    the final norm and the LM head. mixers: {layer attribute: featlab mixer kind} in the
    order they are looked for ("attn", "swa", "gdn", "ssd", "conv", "rglru", "kda").
    layer_kinds: {HF layer type (``config.layer_types[l]``): featlab kind}, for architectures
    whose one mixer attribute holds different mixers; where set, it decides the kind.
    mixer_out: {mixer attribute: the layer attribute whose output is added to the residual
    for that mixer} when it is not the mixer itself (a post-norm). mlp: the MLP's layer
    attribute (None: no MLP). mlp_out: as mixer_out, for the MLP on layers with that mixer.
    parallel_mixers: every mixer in `mixers` runs on each layer, on the same normed input,
    in the listed order, and their (scaled) outputs are summed (Falcon-H1).
    scales: {part: dotted path from the ``*ForCausalLM`` to a scalar} for factors applied
    outside any module: "embed" (layer 0 reads scale * embed), a mixer attribute (the
    residual adds scale * mixer output), "logits". notes: what is special.
    """

    model_type: str
    layers: str
    embed: str
    final_norm: str
    unembed: str
    mixers: dict[str, str]
    mlp: str | None = "mlp"
    layer_kinds: dict[str, str] = field(default_factory=dict)
    mixer_out: dict[str, str] = field(default_factory=dict)
    mlp_out: dict[str, str] = field(default_factory=dict)
    pos_embed: str | None = None
    parallel_mixers: bool = False
    scales: dict[str, str] = field(default_factory=dict)
    notes: str = ""


ATTENTION_KINDS = ("attn", "swa")  # layers whose mixer is attention also fire hook_attn_out
