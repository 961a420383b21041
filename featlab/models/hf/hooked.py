"""A Hugging Face causal LM with TransformerLens hook names: `HookedHFModel`.

The HF model runs its own forward, unchanged; featlab attaches PyTorch forward hooks to
the submodules a `Layout` names and routes each tensor through a `HookPoint`:

    embed output                      -> hook_embed (+ hook_pos_embed)
    layer input hidden_states         -> blocks.{l}.hook_resid_pre
    mixer's residual contribution     -> blocks.{l}.hook_attn_out (attention) -> hook_mixer_out
    resid_pre + mixer contribution    -> blocks.{l}.hook_resid_mid
    MLP's residual contribution       -> blocks.{l}.hook_mlp_out
    layer output hidden_states        -> blocks.{l}.hook_resid_post
    final norm output                 -> ln_final.hook_normalized

so `run_with_cache`, `run_with_hooks`, SAELens, featlab's SAE trainer, `analyze` and the
circuits code see the same names as on a `HookedHybrid` or a `HookedTransformer`. A hook that
returns a new tensor replaces the HF tensor, so patches propagate. `hook_resid_mid` is
computed (one addition, equal to the layer's own sum), and a patch of it is applied as the
mixer contribution ``patched_mid - resid_pre``. Without any hook the logits are HF's own.

Where an architecture scales a branch outside any module (Falcon-H1's muP multipliers), the
hooks see the scaled contribution, the one the residual stream adds; where two mixers run side
by side (Falcon-H1), ``hook_attn_out`` is the attention's part and ``hook_mixer_out`` their
sum. ``hook_embed`` is the token embedding before any scale.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedRootModule import HookedRootModule

from featlab.models.hf.layout import ATTENTION_KINDS, Layout


class _StopForward(Exception):
    """Raised inside the HF forward to end it at a layer (``stop_at_layer``)."""

    def __init__(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden


@dataclass
class HFModelConfig:
    """The TransformerLens-like `cfg` featlab reads (sizes, names), taken from the HF config."""

    model_type: str
    model_name: str
    d_model: int
    n_layers: int
    d_vocab: int
    n_ctx: int
    mixer_kinds: tuple[str, ...]
    device: str = "cpu"


def _path(root: nn.Module, dotted: str) -> nn.Module:
    obj: Any = root
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple | list) else out


def _replace_first(out: Any, value: torch.Tensor) -> Any:
    if isinstance(out, tuple):
        return (value, *out[1:])
    if isinstance(out, list):
        return [value, *out[1:]]
    return value


class _BlockHooks(nn.Module):
    """The hook points of one decoder layer (``blocks.{l}.*``)."""

    def __init__(self, attention: bool, has_mlp: bool) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        if attention:
            self.hook_attn_out = HookPoint()
        self.hook_mixer_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        if has_mlp:
            self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()


class _FinalNormHooks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hook_normalized = HookPoint()


class HookedHFModel(HookedRootModule):
    """`hf_model` (a ``*ForCausalLM``) with featlab's hook schema; see the module docstring.

    >>> model = HookedHFModel(AutoModelForCausalLM.from_pretrained("path/to/folder"))
    >>> logits, cache = model.run_with_cache(tokens)      # cache["blocks.0.hook_resid_post"]

    mixer_hooks: install the hooks inside linear-recurrent mixers where featlab has an
    adapter for them (`featlab.models.hf.mixers`); use_state_hook: materialise their per-token
    states (``hook_state``, memory pos * heads * d_k * d_v per layer).
    """

    def __init__(self, hf_model: nn.Module, layout: Layout | None = None,
                 tokenizer: Any = None, *, mixer_hooks: bool = True,
                 use_state_hook: bool = False) -> None:
        super().__init__()
        if wrapper_of(hf_model) is not None:
            raise ValueError(
                "this HF model is already wrapped by a HookedHFModel, whose hooks sit on its "
                "modules; use that wrapper (featlab.models.load_model(model) returns it), or "
                "wrap a copy (copy.deepcopy(model))")
        if layout is None:
            from featlab.models.hf.architectures import layout_for

            layout = layout_for(hf_model.config)
        self.hf = hf_model.eval()
        self.layout = layout
        self.tokenizer = tokenizer
        layers = _path(hf_model, self.layout.layers)
        self._mixers = [self._mixers_of(layer, i) for i, layer in enumerate(layers)]
        kinds = tuple("+".join(kind for _, kind in mixers) for mixers in self._mixers)
        self.cfg = _config_of(hf_model, kinds)
        self.hook_embed = HookPoint()
        if self.layout.pos_embed:
            self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(
            _BlockHooks(any(kind in ATTENTION_KINDS for _, kind in mixers),
                        self.layout.mlp is not None and hasattr(layer, self.layout.mlp))
            for mixers, layer in zip(self._mixers, layers, strict=True))
        self.ln_final = _FinalNormHooks()
        if mixer_hooks:
            self._install_mixer_hooks(layers, use_state_hook)
        self._resid_pre: dict[int, torch.Tensor] = {}
        self._partial: dict[int, torch.Tensor] = {}  # parallel mixers' sum so far
        self._stop_at: int | None = None
        self._handles = self._attach(layers)
        object.__setattr__(hf_model, "_featlab_wrapper", weakref.ref(self))
        self.setup()

    # -- wiring ------------------------------------------------------------------------------
    def _mixers_of(self, layer: nn.Module, index: int) -> list[tuple[str, str]]:
        """[(attribute, featlab kind)] of the mixers layer `index` runs, in order."""
        present = [attr for attr in self.layout.mixers if getattr(layer, attr, None) is not None]
        if not present:
            raise ValueError(f"layer {index} of this {self.layout.model_type} model has none of "
                             f"the mixers its layout names ({list(self.layout.mixers)})")
        if self.layout.parallel_mixers:
            return [(attr, self.layout.mixers[attr]) for attr in present]
        attr = present[0]
        kind = self.layout.mixers[attr]
        if self.layout.layer_kinds:
            types = _layer_types(self.hf.config)
            kind = self.layout.layer_kinds.get(types[index], kind)
        return [(attr, kind)]

    def _install_mixer_hooks(self, layers: nn.ModuleList, use_state_hook: bool) -> None:
        """`featlab.models.hf.mixers` adapters, where one exists for a layer's mixer."""
        from featlab.models.hf.mixers import adapter_for

        for index, layer in enumerate(layers):
            for attr, kind in self._mixers[index]:
                cls = adapter_for(self.layout.model_type, kind)
                if cls is None:
                    continue
                module = getattr(layer, attr)
                adapter = cls(module, self.hf.config, use_state_hook)
                self.blocks[index].mixer = adapter
                module.forward = adapter.forward  # this instance only

    def _scale(self, part: str) -> float | None:
        path = self.layout.scales.get(part)
        return None if path is None else float(_path(self.hf, path))

    def _attach(self, layers: nn.ModuleList) -> list[Any]:
        handles = [_path(self.hf, self.layout.embed).register_forward_hook(
            lambda m, i, out: self.hook_embed(out))]
        if self.layout.pos_embed:
            handles.append(_path(self.hf, self.layout.pos_embed).register_forward_hook(
                lambda m, i, out: self.hook_pos_embed(out)))
        for index, layer in enumerate(layers):
            mixers = self._mixers[index]
            handles.append(layer.register_forward_pre_hook(self._pre_layer(index),
                                                           with_kwargs=True))
            handles.append(layer.register_forward_hook(self._post_layer(index)))
            for position, (attr, kind) in enumerate(mixers):
                module = getattr(layer, self.layout.mixer_out.get(attr, attr))
                last = position == len(mixers) - 1
                handles.append(module.register_forward_hook(
                    self._post_mixer(index, kind, self._scale(attr), last)))
            if self.layout.mlp is not None and hasattr(layer, self.layout.mlp):
                mlp_name = self.layout.mlp_out.get(mixers[0][0], self.layout.mlp)
                handles.append(getattr(layer, mlp_name).register_forward_hook(
                    self._post_mlp(index)))
        final = _path(self.hf, self.layout.final_norm)
        handles.append(final.register_forward_pre_hook(self._pre_final))
        handles.append(final.register_forward_hook(
            lambda m, i, out: self.ln_final.hook_normalized(out)))
        return handles

    def _pre_layer(self, index: int) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
            from_kwargs = not args
            hidden = kwargs["hidden_states"] if from_kwargs else args[0]
            if self._stop_at == index:
                raise _StopForward(hidden)
            hidden = self.blocks[index].hook_resid_pre(hidden)
            self._resid_pre[index] = hidden
            if from_kwargs:
                return args, {**kwargs, "hidden_states": hidden}
            return (hidden, *args[1:]), kwargs
        return hook

    def _post_layer(self, index: int) -> Any:
        def hook(module: nn.Module, inputs: Any, out: Any) -> Any:
            return _replace_first(out, self.blocks[index].hook_resid_post(_first(out)))
        return hook

    def _post_mixer(self, index: int, kind: str, scale: float | None, last: bool) -> Any:
        """Hooks on a mixer's residual contribution (``scale * output`` where the layer
        scales it). With parallel mixers the earlier ones only add to the running sum; the
        last fires hook_mixer_out / hook_resid_mid on the total and folds a patch of either
        into its own output."""
        def hook(module: nn.Module, inputs: Any, out: Any) -> Any:
            block = self.blocks[index]
            raw = _first(out)
            seen = raw if scale is None else raw * scale
            own = block.hook_attn_out(seen) if kind in ATTENTION_KINDS else seen
            earlier = self._partial.pop(index, None)
            if not last:
                self._partial[index] = own if earlier is None else earlier + own
            else:
                total = own if earlier is None else earlier + own
                patched = block.hook_mixer_out(total)
                delta = None if patched is total else patched - total
                pre = self._resid_pre[index]
                mid = pre + patched
                patched_mid = block.hook_resid_mid(mid)
                if patched_mid is not mid:
                    step = patched_mid - mid
                    delta = step if delta is None else delta + step
                if delta is not None:  # a sum or resid_mid patch, carried by this mixer
                    own = own + delta
            if own is seen:  # no hook changed anything: HF's own tensor goes on, bit for bit
                return out
            # as a difference, so positions a patch left alone keep HF's values exactly
            new = own if scale is None else raw + (own - seen) / scale
            return _replace_first(out, new)
        return hook

    def _post_mlp(self, index: int) -> Any:
        def hook(module: nn.Module, inputs: Any, out: Any) -> Any:
            return _replace_first(out, self.blocks[index].hook_mlp_out(_first(out)))
        return hook

    def setup(self) -> None:
        """TransformerLens's `setup`, over featlab's own modules only: it stamps a `name` on
        every module it walks, and the HF model's modules are not featlab's to rename."""
        self.mod_dict, self.hook_dict = {}, {}
        for name, module in self.named_modules():
            if not name or name == "hf" or name.startswith("hf."):
                continue
            module.name = name
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                self.hook_dict[name] = module

    def _pre_final(self, module: nn.Module, args: tuple) -> None:
        if self._stop_at == self.cfg.n_layers:
            raise _StopForward(args[0])

    # -- TransformerLens-style API ---------------------------------------------------------
    @property
    def W_U(self) -> torch.Tensor:
        """``[d_model, d_vocab]`` (TransformerLens orientation)."""
        return _path(self.hf, self.layout.unembed).weight.T

    @property
    def W_E(self) -> torch.Tensor:
        return _path(self.hf, self.layout.embed).weight

    @property
    def device(self) -> torch.device:
        return self.W_E.device

    def to_tokens(self, text: str | list[str], prepend_bos: bool | None = None) -> torch.Tensor:
        """Token ids ``[batch, pos]`` of `text` with the model's tokenizer (its own special
        tokens; `prepend_bos` adds BOS where the tokenizer did not)."""
        from featlab.models.tokenize import to_tokens

        return to_tokens(self.tokenizer, text, prepend_bos, self.device, self.cfg.model_type)

    def forward(self, tokens: torch.Tensor, return_type: str | None = "logits",
                loss_per_token: bool = False, stop_at_layer: int | None = None,
                attention_mask: torch.Tensor | None = None, prepend_bos: bool | None = None,
                padding_side: str | None = None) -> Any:
        """``tokens [batch, pos]`` -> logits ``[batch, pos, d_vocab]`` (TransformerLens's
        arguments: return_type "logits" / "loss" / "both" / None; `stop_at_layer` returns the
        residual stream entering that layer). prepend_bos / padding_side are accepted for
        SAELens and ignored: token ids are used as given."""
        from featlab.models.hybrid import lm_output

        del prepend_bos, padding_side
        if isinstance(tokens, str | list):
            tokens = self.to_tokens(tokens)
        tokens = torch.as_tensor(tokens).long().to(self.device)
        if tokens.ndim == 1:
            tokens = tokens[None]
        if stop_at_layer is not None and not 0 <= stop_at_layer <= self.cfg.n_layers:
            raise ValueError(f"stop_at_layer={stop_at_layer} is outside 0..{self.cfg.n_layers}")
        self._stop_at = stop_at_layer
        try:
            out = self.hf(input_ids=tokens, attention_mask=attention_mask, use_cache=False)
        except _StopForward as stop:
            return stop.hidden
        finally:
            self._stop_at = None
            self._resid_pre.clear()
        return lm_output(out.logits, tokens, return_type, loss_per_token)


def wrapper_of(hf_model: nn.Module) -> HookedHFModel | None:
    """The live `HookedHFModel` wrapping `hf_model`, if any."""
    ref = getattr(hf_model, "_featlab_wrapper", None)
    return ref() if ref is not None else None


def _layer_types(config: Any) -> list[str]:
    types = getattr(config, "layer_types", None) or getattr(config, "layers_block_type", None)
    if not types:
        raise ValueError(f"{config.model_type}'s config names no layer_types; its layout's "
                         "layer_kinds cannot be applied")
    return list(types)


def _config_of(hf_model: nn.Module, kinds: tuple[str, ...]) -> HFModelConfig:
    cfg = hf_model.config
    d_model = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
    n_ctx = (getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
             or 2048)  # recurrent models have no limit; 2048 is what SAELens assumes
    return HFModelConfig(
        model_type=str(cfg.model_type),
        model_name=str(getattr(cfg, "_name_or_path", "") or cfg.model_type),
        d_model=int(d_model), n_layers=len(kinds), d_vocab=int(cfg.vocab_size),
        n_ctx=int(n_ctx), mixer_kinds=kinds,
    )
