"""The HF layouts (`featlab.models.hf.architectures`) against real tiny models
(`featlab.models.hf.tiny`): paths, mixers, call conventions and, as the evidence that each
layout is right, the residual algebra the hooked wrapper relies on, captured with plain
PyTorch forward hooks:

    resid_pre[0]  = scales["embed"] * embed (+ pos_embed)
    resid_post[l] = resid_pre[l] + sum_m scales[m] * mixer_out_m[l] + mlp_out[l]
    final_norm input = resid_post[-1],   logits = scales["logits"] * unembed (soft-capped)

with every scale 1 unless the layout names one. Errors are normwise relative, fp32.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn

from featlab.models.hf.architectures import CALLS, LAYOUTS, layout_for
from featlab.models.hf.layout import Layout
from featlab.models.hf.tiny import TINY_TYPES, tiny_config

transformers = pytest.importorskip("transformers")

TOL = 1e-5
ATTENTION_KINDS = ("attn", "swa")
# The HF class each featlab kind must be (by name suffix): a kind on the wrong module fails.
CLASS_SUFFIX = {"attn": "Attention", "swa": "Attention", "gdn": "GatedDeltaNet", "ssd": "Mixer",
                "conv": "ShortConv", "rglru": "RecurrentBlock", "kda": "DeltaAttention"}


def _tokens() -> torch.Tensor:
    return torch.randint(3, 256, (2, 32), generator=torch.Generator().manual_seed(1))


def _build(model_type: str, seed: int = 0, **overrides: Any) -> nn.Module:
    torch.manual_seed(seed)
    cfg = tiny_config(model_type, **overrides)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def _path(root: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple | list) else out


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def _scale(model: nn.Module, layout: Layout, part: str) -> float:
    path = layout.scales.get(part)
    return 1.0 if path is None else float(_path(model, path))


def _mixers(layout: Layout, layer: nn.Module) -> list[str]:
    """The mixer attributes this layer runs: all of them for parallel mixers, else the first."""
    present = [attr for attr in layout.mixers if getattr(layer, attr, None) is not None]
    return present if layout.parallel_mixers else present[:1]


def _kind(layout: Layout, model: nn.Module, index: int, attr: str) -> str:
    kinds = layout.layer_kinds
    return kinds[model.config.layer_types[index]] if kinds else layout.mixers[attr]


def _mlp_out(layout: Layout, attr: str) -> str | None:
    if layout.mlp is None:
        return None
    return layout.mlp_out.get(attr, layout.mlp)


@contextmanager
def _hooks():
    handles: list[Any] = []
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def _capture(model: nn.Module, layout: Layout) -> dict[str, Any]:
    """One forward of `_tokens()` with every tensor the algebra needs recorded."""
    rec: dict[str, Any] = {"pre": {}, "post": {}, "mixer": {}, "mlp": {}, "calls": {}}

    def call(name: str):
        def pre(module, args, kwargs):
            rec["calls"].setdefault(name, set()).add("args[0]" if args else "hidden_states=")

        def post(module, args, out):
            rec["calls"].setdefault(name + "->", set()).add(
                "tuple" if isinstance(out, tuple) else "tensor")
        return pre, post

    with _hooks() as handles:
        def on(module: nn.Module, fn) -> None:
            handles.append(module.register_forward_hook(fn))

        on(_path(model, layout.embed), lambda m, a, out: rec.__setitem__("embed", out))
        if layout.pos_embed:
            on(_path(model, layout.pos_embed), lambda m, a, out: rec.__setitem__("pos", out))
        on(_path(model, layout.unembed), lambda m, a, out: rec.__setitem__("unembed", out))
        handles.append(_path(model, layout.final_norm).register_forward_pre_hook(
            lambda m, args: rec.__setitem__("final_in", args[0])))
        for i, layer in enumerate(_path(model, layout.layers)):
            pre, post = call(f"layer:{i}")
            handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
            on(layer, post)
            handles.append(layer.register_forward_pre_hook(
                lambda m, args, kwargs, i=i: rec["pre"].__setitem__(
                    i, args[0] if args else kwargs["hidden_states"]), with_kwargs=True))
            on(layer, lambda m, a, out, i=i: rec["post"].__setitem__(i, _first(out)))
            for attr in _mixers(layout, layer):
                kind = _kind(layout, model, i, attr)
                pre, post = call(kind)
                handles.append(getattr(layer, attr).register_forward_pre_hook(
                    pre, with_kwargs=True))
                on(getattr(layer, attr), post)
                out_module = getattr(layer, layout.mixer_out.get(attr, attr))
                on(out_module, lambda m, a, out, i=i, attr=attr: rec["mixer"].__setitem__(
                    (i, attr), _first(out)))
                if (mlp_out := _mlp_out(layout, attr)) is not None:
                    on(getattr(layer, mlp_out),
                       lambda m, a, out, i=i: rec["mlp"].__setitem__(i, _first(out)))
        with torch.no_grad():
            rec["logits"] = model(input_ids=_tokens()).logits
    return rec


def _algebra_errors(model: nn.Module, layout: Layout, rec: dict[str, Any]) -> dict[str, float]:
    """The normwise error of each relation in the module docstring, maximised over layers."""
    embed = _scale(model, layout, "embed") * rec["embed"]
    if layout.pos_embed:
        embed = embed + rec["pos"]
    errors = {"embed": _rel(embed, rec["pre"][0]), "layers": 0.0}
    layers = _path(model, layout.layers)
    for i, layer in enumerate(layers):
        contribution = sum(_scale(model, layout, attr) * rec["mixer"][(i, attr)]
                           for attr in _mixers(layout, layer))
        want = rec["pre"][i] + contribution
        if layout.mlp is not None:
            want = want + rec["mlp"][i]
        errors["layers"] = max(errors["layers"], _rel(want, rec["post"][i]))
    errors["final_norm"] = _rel(rec["final_in"], rec["post"][len(layers) - 1])
    logits = _scale(model, layout, "logits") * rec["unembed"]
    if (cap := getattr(model.config, "logits_soft_cap", None)) is not None:
        logits = cap * torch.tanh(logits / cap)
    errors["logits"] = _rel(logits, rec["logits"])
    return errors


# -- the registry and the tiny configs --------------------------------------------------------
def test_every_layout_has_a_tiny_config_and_a_call_record() -> None:
    assert set(TINY_TYPES) == set(LAYOUTS) == set(CALLS)
    for model_type, layout in LAYOUTS.items():
        assert layout.model_type == model_type


def test_layout_for_takes_a_config_a_model_or_a_type() -> None:
    cfg = tiny_config("llama")
    assert layout_for(cfg) is layout_for("llama") is LAYOUTS["llama"]
    assert layout_for(transformers.AutoModelForCausalLM.from_config(cfg)) is LAYOUTS["llama"]


def test_unknown_architectures_fail_clearly() -> None:
    with pytest.raises(ValueError, match="no layout for model_type 'bert'.*supported: bamba"):
        layout_for(transformers.BertConfig())
    with pytest.raises(ValueError, match="no tiny config for model_type 'bert'.*gpt2"):
        tiny_config("bert")


def test_imports_are_light() -> None:
    code = ("import sys, featlab.models.hf.architectures, featlab.models.hf.tiny; "
            "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the layouts pulled in {out.stdout.strip()}"


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_tiny_model_builds_and_runs_fast(model_type: str) -> None:
    model = _build(model_type)
    cfg = model.config
    assert cfg.vocab_size == 256 and getattr(cfg, "hidden_size", None) == 32
    assert 2 <= cfg.num_hidden_layers <= 4
    with torch.no_grad():
        model(input_ids=_tokens())  # warm-up: lazy imports, kernel-fallback warnings
        start = time.perf_counter()
        logits = model(input_ids=_tokens()).logits
        seconds = time.perf_counter() - start
    assert logits.shape == (2, 32, 256) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert seconds < 1.0, f"{model_type}: a [2, 32] forward took {seconds:.2f} s"


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_tiny_model_is_deterministic_under_the_seed(model_type: str) -> None:
    with torch.no_grad():
        first = _build(model_type, seed=0)(input_ids=_tokens()).logits
        again = _build(model_type, seed=0)(input_ids=_tokens()).logits
        other = _build(model_type, seed=1)(input_ids=_tokens()).logits
    assert torch.equal(first, again)
    assert not torch.allclose(first, other), "the seed does not reach the weights"


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_tiny_model_round_trips_through_a_folder(model_type: str, tmp_path) -> None:
    """Bit-identical with the same kernels. config.json does not keep the attention / experts
    implementation, so a plain `from_pretrained` picks its defaults (sdpa): equal to fp32
    rounding only."""
    model = _build(model_type)
    model.save_pretrained(tmp_path)
    load = transformers.AutoModelForCausalLM.from_pretrained
    loaded = load(tmp_path, attn_implementation="eager", experts_implementation="eager").eval()
    assert type(loaded) is type(model) and loaded.config.model_type == model_type
    with torch.no_grad():
        want = model(input_ids=_tokens()).logits
        assert torch.equal(loaded(input_ids=_tokens()).logits, want)
        assert _rel(load(tmp_path).eval()(input_ids=_tokens()).logits, want) < TOL


# -- the layouts against the real modules -------------------------------------------------------
@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_layout_paths_and_mixers_resolve(model_type: str) -> None:
    model, layout = _build(model_type), LAYOUTS[model_type]
    layers = _path(model, layout.layers)
    assert isinstance(layers, nn.ModuleList) and len(layers) == model.config.num_hidden_layers
    assert isinstance(_path(model, layout.embed), nn.Embedding)
    if layout.pos_embed:
        assert isinstance(_path(model, layout.pos_embed), nn.Embedding)
    assert isinstance(_path(model, layout.unembed), nn.Linear)
    assert isinstance(_path(model, layout.final_norm), nn.Module)
    for part in layout.scales:
        assert part in ("embed", "logits") or part in layout.mixers, part
        assert isinstance(_scale(model, layout, part), float)
    parallel = layout.parallel_mixers
    kinds_of_type: dict[str, set[str]] = {}
    for i, layer in enumerate(layers):
        present = [attr for attr in layout.mixers if getattr(layer, attr, None) is not None]
        want = len(layout.mixers) if parallel else 1
        assert len(present) == want, f"layer {i} has mixers {present}, expected {want}"
        for attr in present:
            kind = _kind(layout, model, i, attr)
            name = type(getattr(layer, attr)).__name__
            assert name.endswith(CLASS_SUFFIX[kind]), f"layer {i}: {kind} on a {name}"
            assert kind not in ATTENTION_KINDS or not name.endswith("DeltaAttention"), name
            assert isinstance(getattr(layer, layout.mixer_out.get(attr, attr)), nn.Module)
            if (mlp_out := _mlp_out(layout, attr)) is not None:
                assert isinstance(getattr(layer, layout.mlp), nn.Module)
                assert isinstance(getattr(layer, mlp_out), nn.Module), f"layer {i}: {mlp_out}"
            if layer_types := getattr(model.config, "layer_types", None):
                kinds_of_type.setdefault(layer_types[i], set()).add(kind)
        if layout.mlp is None:
            assert not any(hasattr(layer, name) for name in ("mlp", "feed_forward", "mlp_block"))
    # one HF layer type, one featlab kind (per mixer): the config and the layout agree
    width = len(layout.mixers) if parallel else 1
    assert all(len(kinds) == width for kinds in kinds_of_type.values()), kinds_of_type
    if kinds := layout.layer_kinds:
        assert set(model.config.layer_types) <= set(kinds)


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_residual_algebra_holds(model_type: str) -> None:
    model, layout = _build(model_type), LAYOUTS[model_type]
    errors = _algebra_errors(model, layout, _capture(model, layout))
    bad = {name: f"{err:.1e}" for name, err in errors.items() if not err < TOL}
    assert not bad, f"{model_type}: relations off by {bad}"


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_call_conventions_match_the_record(model_type: str) -> None:
    model, layout = _build(model_type), LAYOUTS[model_type]
    calls = _capture(model, layout)["calls"]
    seen: dict[str, set[str]] = {}
    for name, how in calls.items():
        base = name.split(":")[0].removesuffix("->")
        seen.setdefault(base + ("->" if name.endswith("->") else ""), set()).update(how)
    want = {}
    for part, record in CALLS[model_type].items():
        given, returned = record.split(" -> ")
        want[part], want[part + "->"] = {given}, {returned}
    assert seen == want


# The specials are what makes the algebra hold: without each, it is off by O(1).
@pytest.mark.parametrize(("model_type", "drop", "relation"), [
    ("olmo_hybrid", {"mlp_out": {}}, "layers"),
    ("olmo_hybrid", {"mixer_out": {}}, "layers"),
    ("falcon_h1", {"scales": {}}, "embed"),
    ("falcon_h1", {"scales": {}}, "layers"),
    ("falcon_h1", {"scales": {}}, "logits"),
    ("falcon_h1", {"parallel_mixers": False}, "layers"),
    ("recurrent_gemma", {"scales": {}}, "embed"),
    ("gpt2", {"pos_embed": None}, "embed"),
])
def test_each_special_is_needed(model_type: str, drop: dict, relation: str) -> None:
    from dataclasses import replace

    model, layout = _build(model_type), replace(LAYOUTS[model_type], **drop)
    errors = _algebra_errors(model, layout, _capture(model, layout))
    assert errors[relation] > 1e-2, f"{model_type} without {drop}: {errors}"


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_the_mlp_reads_the_mixed_residual(model_type: str) -> None:
    """The MLP branch reads resid_mid, so a change to layer 0's mixer contribution reaches
    the MLP's input (it would not in a GPT-J-style block, which `Layout` does not describe)."""
    model, layout = _build(model_type), LAYOUTS[model_type]
    if layout.mlp is None:
        pytest.skip(f"{model_type} has no MLP")
    layer = _path(model, layout.layers)[0]
    attr = _mixers(layout, layer)[0]
    seen: list[torch.Tensor] = []
    with _hooks() as handles, torch.no_grad():
        handles.append(getattr(layer, layout.mlp).register_forward_pre_hook(
            lambda m, args: seen.append(args[0].clone())))
        model(input_ids=_tokens())
        out_module = getattr(layer, layout.mixer_out.get(attr, attr))
        # random, not constant: a LayerNorm before the MLP would remove a constant shift
        noise = torch.randn(seen[0].shape, generator=torch.Generator().manual_seed(2))
        handles.append(out_module.register_forward_hook(
            lambda m, a, out: (_first(out) + noise, *out[1:]) if isinstance(out, tuple)
            else out + noise))
        model(input_ids=_tokens())
    assert _rel(seen[1], seen[0]) > 1e-3, f"{model_type}: the MLP did not see the change"
