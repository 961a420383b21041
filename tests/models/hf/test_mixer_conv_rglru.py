"""Hooks inside LFM2's short convolution (`featlab.models.hf.mixers.short_conv`) and
RecurrentGemma's RG-LRU block (`featlab.models.hf.mixers.rglru`) on tiny random models: HF's
output with no hook and with every hook observed, identity patches, patches that act only
from their position on (and, for the RG-LRU state, propagate as HF's own recurrence does),
per-token states equal to HF's step-by-step decoding, and the documented hook values.

The tiny configs' default init hides both mixers: LFM2's ``in_proj`` is N(0, 0.02), so
``C * conv(B * x)`` is a product of three small numbers (zeroing ``hook_v`` moves the logits by
3e-4 normwise), and RecurrentGemma's small ``linear_x`` / ``linear_out`` leave the block at
9e-2. `_lively` re-draws those weights ~ N(0, 1/fan_in) and every test model asserts that
zeroing ``hook_v`` moves the logits by more than 0.1.
"""

from __future__ import annotations

import math

import pytest
import torch

from featlab.models.hf.tiny import tiny_config
from tests.numerics import normwise_error

pytestmark = pytest.mark.slow

TYPES = ["lfm2", "recurrent_gemma"]
LAYERS = {"lfm2": [0], "recurrent_gemma": [0, 2]}  # the layers with an adapter
HOOKS = {
    "lfm2": ["hook_in_gate", "hook_v", "hook_out_gate"],
    "recurrent_gemma": ["hook_out_gate", "hook_v", "hook_in_gate", "hook_log_decay",
                        "hook_beta", "hook_state_final"],
}
T = 40  # longer than RecurrentGemma's attention window (16) and LFM2's conv (3)
# HF's contract for adapters (max abs) and normwise: measured 0 (LFM2) and 2e-7 (RG-LRU)
TOL = 1e-5


def _tokens(n: int = 2, pos: int = T) -> torch.Tensor:
    return torch.randint(3, 256, (n, pos), generator=torch.Generator().manual_seed(1))


def _lively(hf: torch.nn.Module, seed: int = 0) -> None:
    """Weights of order 1 in the mixers (module doc): ~ N(0, 1/fan_in)."""
    g = torch.Generator().manual_seed(seed)
    names = {"Lfm2ShortConv": ("in_proj", "conv", "out_proj"),
             "RecurrentGemmaRecurrentBlock": ("linear_x", "linear_y", "conv_1d", "linear_out")}
    with torch.no_grad():
        for module in hf.modules():
            for name in names.get(type(module).__name__, ()):
                w = getattr(module, name).weight
                fan_in = w.shape[1] * (w.shape[2] if w.dim() == 3 else 1)
                w.copy_(torch.randn(w.shape, generator=g) / math.sqrt(fan_in))


def _hf(model_type: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(tiny_config(model_type)).eval()
    _lively(hf)
    return hf


def _hooked(model_type: str, use_state_hook: bool = False):
    """A fresh model: a second wrapper of the same HF model would take over its mixers."""
    from featlab.models import HookedHFModel

    return HookedHFModel(_hf(model_type), use_state_hook=use_state_hook)


def _mixer_hooks(model) -> list[str]:
    return [name for name in model.hook_dict if ".mixer." in name]


def _close(name: str, got: torch.Tensor, want: torch.Tensor, tol: float = TOL) -> None:
    err, diff = normwise_error(got, want.double()), (got - want).abs().max().item()
    assert err < tol and diff < tol, f"{name}: normwise {err:.2e}, max abs {diff:.2e}"


def _mixer(hf, layer: int) -> torch.nn.Module:
    block = hf.model.layers[layer]
    return block.conv if hasattr(block, "conv") else block.temporal_block


@pytest.fixture(scope="module", params=TYPES)
def case(request):
    with torch.no_grad():
        ref = _hf(request.param)(input_ids=_tokens(), use_cache=False).logits
    return request.param, ref


def test_hooks_installed_with_featlab_names(case) -> None:
    model_type, _ = case
    model, stated = _hooked(model_type), _hooked(model_type, use_state_hook=True)
    want = [f"blocks.{layer}.mixer.{h}" for layer in LAYERS[model_type]
            for h in HOOKS[model_type]]
    assert _mixer_hooks(model) == want
    # hook_state only with use_state_hook, and only where there is a recurrent state
    extra = [n for n in _mixer_hooks(stated) if n not in want]
    assert extra == ([] if model_type == "lfm2" else
                     [f"blocks.{layer}.mixer.hook_state" for layer in LAYERS[model_type]])


def test_no_hook_is_hf_and_hooked_path_equals_hf(case) -> None:
    """(a) no hook: HF's forward, bit for bit; every mixer hook observed (featlab's path):
    HF's logits and each mixer's output to fp32 rounding; (e) the mixer matters."""
    model_type, ref = case
    model = _hooked(model_type)
    outs = [f"blocks.{layer}.hook_mixer_out" for layer in LAYERS[model_type]]
    with torch.no_grad():
        assert torch.equal(model(_tokens()), ref)
        _, hf_cache = model.run_with_cache(_tokens(), names_filter=outs)  # HF's path
        logits, cache = model.run_with_cache(_tokens())
        _close(f"{model_type} logits", logits, ref)
        for out in outs:
            _close(f"{model_type} {out}", cache[out], hf_cache[out])
        _close(f"{model_type} logits, use_state_hook",
               _hooked(model_type, use_state_hook=True)(_tokens()), ref)
        assert torch.equal(model(_tokens()), ref), "the cache's hooks stayed"
        # each mixer alone on an input of order 1, against its HF forward
        u = torch.randn(2, T, 32, generator=torch.Generator().manual_seed(2))
        positions = torch.arange(T)[None].expand(2, T)
        for layer in LAYERS[model_type]:
            adapter = model.blocks[layer].mixer
            if model_type == "lfm2":
                want, got = adapter.hf_forward(u), adapter.featlab_forward(u)
            else:
                want = adapter.hf_forward(u, positions, None, use_cache=False)[0]
                got = adapter.featlab_forward(u, positions)
            _close(f"{model_type} layer {layer} alone", got, want)
        zeroed = model.run_with_hooks(_tokens(), fwd_hooks=[
            (f"blocks.{LAYERS[model_type][0]}.mixer.hook_v", lambda x, hook: x * 0)])
    assert normwise_error(zeroed, ref.double()) > 0.1, f"{model_type}: the mixer is invisible"


def test_gradients_equal_hf(case) -> None:
    """Attribution patching differentiates through the adapter: layer 0's weight gradients
    are HF's (RG-LRU: through HF's clipped sqrt, SqrtBoundDerivative)."""
    model_type, _ = case
    model = _hooked(model_type)
    mixer = _mixer(model.hf, 0)
    weights = ([mixer.in_proj.weight, mixer.conv.weight] if model_type == "lfm2" else
               [mixer.linear_x.weight, mixer.rg_lru.recurrent_param,
                mixer.rg_lru.input_gate_weight])
    grads = []
    for observe in (False, True):
        model.zero_grad()
        hooks = [("blocks.0.mixer.hook_v", lambda x, hook: None)] if observe else []
        with model.hooks(fwd_hooks=hooks):
            model(_tokens(), return_type="loss").backward()
        grads.append([w.grad.clone() for w in weights])
    for hf_grad, ours in zip(*grads, strict=True):
        _close(f"{model_type} gradient", ours, hf_grad)


def test_identity_patches_change_nothing(case) -> None:
    """(b) every mixer hook (hook_state included) returning a copy of its input."""
    model_type, ref = case
    for use_state_hook in (False, True):
        model = _hooked(model_type, use_state_hook)
        hooks = [(name, lambda x, hook: x.clone()) for name in _mixer_hooks(model)]
        with torch.no_grad():
            patched = model.run_with_hooks(_tokens(), fwd_hooks=hooks)
        _close(f"{model_type} identity patches (state hook {use_state_hook})", patched, ref)


def _bump(t: int, scale: float = 1.0):
    """Add noise of order 1 (the hooked values are O(0.1-1)) at position t."""
    def hook(x: torch.Tensor, hook) -> torch.Tensor:
        x = x.clone()
        x[:, t] += scale * torch.randn(x[:, t].shape, generator=torch.Generator().manual_seed(3))
        return x
    return hook


def _keep(seen: dict, key: str):
    def hook(x: torch.Tensor, hook) -> None:
        seen[key] = x.clone()
    return hook


def test_conv_patches_act_from_their_position_on() -> None:
    """(c) LFM2: a patch of hook_v at t changes nothing before t (exactly) and the output at
    t; a patch of the input gate B at t reaches the conv output at t .. t + L - 1 only."""
    model = _hooked("lfm2")
    width = model.hf.config.conv_L_cache
    t, seen = 17, {}
    observe = [("blocks.0.mixer.hook_v", _keep(seen, "v"))]
    with torch.no_grad():
        clean = model.run_with_hooks(_tokens(), fwd_hooks=observe)
        v0 = seen["v"]
        patched = model.run_with_hooks(_tokens(), fwd_hooks=[("blocks.0.mixer.hook_v", _bump(t))])
        model.run_with_hooks(_tokens(), fwd_hooks=[("blocks.0.mixer.hook_in_gate", _bump(t)),
                                                   *observe])
    assert torch.equal(patched[:, :t], clean[:, :t]), "a hook_v patch leaked backwards"
    assert (patched[:, t] - clean[:, t]).abs().max() > 1e-3
    moved = (seen["v"] - v0).abs().amax(dim=(0, 2))
    assert (moved[t:t + width] > 1e-3).all(), moved
    assert torch.equal(seen["v"][:, :t], v0[:, :t]) and torch.equal(seen["v"][:, t + width:],
                                                                     v0[:, t + width:])


def test_rglru_state_patch_propagates_forward_only() -> None:
    """(c) RG-LRU: a patch of h_t changes no logit before t (exactly), every logit from t on;
    layer 0's output at t + 1, t + 3 and at the end changes only through the recurrence, and
    hook_state_final follows."""
    model = _hooked("recurrent_gemma", use_state_hook=True)
    t, seen = 13, {}
    observe = [("blocks.0.hook_mixer_out", _keep(seen, "out")),
               ("blocks.0.mixer.hook_state_final", _keep(seen, "final"))]
    with torch.no_grad():
        clean = model.run_with_hooks(_tokens(), fwd_hooks=observe)
        out0, final0 = seen["out"], seen["final"]
        patched = model.run_with_hooks(
            _tokens(), fwd_hooks=[("blocks.0.mixer.hook_state", _bump(t)), *observe])
    assert torch.equal(patched[:, :t], clean[:, :t]), "the patch leaked backwards"
    changed = (patched - clean).abs().amax(dim=(0, 2))[t:]
    assert changed.min() > 1e-4, f"positions {t}.. changed by {changed.min():.1e}"
    for later in (t + 1, t + 3, T - 1):
        assert (seen["out"][:, later] - out0[:, later]).abs().max() > 1e-4, later
    assert not torch.allclose(seen["final"], final0)


def _decode(hf, tokens: torch.Tensor, patch_at: int | None = None, patch=None):
    """HF's own step-by-step decoding with a cache: logits, layer 0's mixer output and (for
    RecurrentGemma) its RG-LRU state after every token ``[b, t, W]``; ``patch(state)``
    replaces that state after token `patch_at`."""
    from transformers import DynamicCache

    b = tokens.shape[0]
    mixer, outputs = _mixer(hf, 0), []
    handle = mixer.register_forward_hook(
        lambda m, i, out: outputs.append(out[0] if isinstance(out, tuple) else out))
    cache, logits, states = DynamicCache(config=hf.config), [], []
    if hasattr(hf.model, "_setup_cache"):  # RecurrentGemma keeps its state on the modules
        hf.model._setup_cache(hf.config, b, tokens.device, torch.float32)
    try:
        for i in range(tokens.shape[1]):
            out = hf(input_ids=tokens[:, i:i + 1], cache=cache, use_cache=True,
                     position_ids=torch.full((b, 1), i))
            logits.append(out.logits)
            lru = getattr(mixer, "rg_lru", None)
            if lru is not None:
                if i == patch_at:
                    lru.recurrent_states = patch(lru.recurrent_states)
                states.append(lru.recurrent_states.clone())
    finally:
        handle.remove()
    return (torch.cat(logits, dim=1), torch.cat(outputs, dim=1),
            torch.stack(states, dim=1) if states else None)


def test_decoding_is_hf_and_states_equal_hf_decoding(case) -> None:
    """(d) hook_state[..., 0, 0] of the parallel forward = HF's rg_lru.recurrent_states after
    each token of step-by-step decoding, and hook_state_final (chunked and per-token) its last;
    decoding the wrapped model goes to HF's forward (bit for bit, no mixer hook fires) and gives
    the parallel logits."""
    model_type, ref = case
    model = _hooked(model_type, use_state_hook=True)
    fired: list[str] = []
    with torch.no_grad():
        _, cache = model.run_with_cache(_tokens())
        _, chunk_cache = _hooked(model_type).run_with_cache(_tokens())
        want_logits, _, want_states = _decode(_hf(model_type), _tokens())  # plain HF
        with model.hooks(fwd_hooks=[("blocks.0.mixer.hook_v",
                                     lambda x, hook: fired.append(hook.name))]):
            logits, _, states = _decode(model.hf, _tokens())
    assert fired == [], "a mixer hook fired while decoding with a cache"
    assert torch.equal(logits, want_logits)
    _close(f"{model_type} decode logits vs parallel", logits, ref)
    if model_type == "lfm2":
        return
    assert torch.equal(states, want_states)
    ours = cache["blocks.0.mixer.hook_state"]
    assert ours.shape == (*states.shape, 1, 1)
    _close("per-token states", ours[..., 0, 0], states)
    for c in (cache, chunk_cache):
        _close("final state", c["blocks.0.mixer.hook_state_final"][..., 0, 0], states[:, -1])


def test_rglru_state_patch_equals_editing_hf_state() -> None:
    """(c, d) the patch propagates as HF's recurrence does: decoding with h_t edited on the
    module gives layer 0's patched block output from t + 1 on (at t featlab also reads the
    patched state out; HF's output at t was computed before the edit)."""
    model = _hooked("recurrent_gemma", use_state_hook=True)
    t = 13
    noise = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        with model.hooks(fwd_hooks=[("blocks.0.mixer.hook_state", _bump(t))]):
            _, cache = model.run_with_cache(_tokens(), names_filter="blocks.0.hook_mixer_out")
        _, decoded, _ = _decode(_hf("recurrent_gemma"), _tokens(), patch_at=t,
                                patch=lambda s: s + noise)
        _, clean, _ = _decode(_hf("recurrent_gemma"), _tokens())
    _close("patched mixer output vs edited HF state", cache["blocks.0.hook_mixer_out"][:, t + 1:],
           decoded[:, t + 1:])
    assert (decoded[:, t + 1] - clean[:, t + 1]).abs().max() > 1e-3  # the edit mattered


def test_rglru_hook_values() -> None:
    """The documented values: log a < 0; beta = i sqrt(1 - a^2), = i at the first position
    (HF's reset); a patched decay carries the normalisation with it, a patched x the gates; the
    state is the RG-LRU's output (linear_out(h * gate) is the block's output)."""
    model = _hooked("recurrent_gemma", use_state_hook=True)
    mix, t = "blocks.0.mixer.", 17
    gates = [mix + h for h in ("hook_in_gate", "hook_log_decay", "hook_beta")]
    with torch.no_grad():
        _, cache = model.run_with_cache(_tokens())
        half = torch.full((2, T, 32), math.log(0.5))
        with model.hooks(fwd_hooks=[(mix + "hook_log_decay", lambda x, hook: half)]):
            _, patched = model.run_with_cache(_tokens(), names_filter=mix + "hook_beta")
        with model.hooks(fwd_hooks=[(mix + "hook_v", _bump(t))]):
            _, moved = model.run_with_cache(_tokens(), names_filter=gates)
    for name in gates:  # the gates read the hooked x: a patch of x at t moves them at t only
        diff = (moved[name] - cache[name]).abs().amax(dim=(0, 2))
        assert diff[t] > 1e-3 and diff[:t].max() == 0 and diff[t + 1:].max() == 0, name
    i, log_a, beta = (cache[mix + h] for h in ("hook_in_gate", "hook_log_decay", "hook_beta"))
    assert i.shape == log_a.shape == beta.shape == (2, T, 32)
    assert (log_a < 0).all() and (i > 0).all() and (i < 1).all()
    torch.testing.assert_close(beta[:, 1:], i[:, 1:] * (1 - (2 * log_a[:, 1:]).exp()).sqrt())
    assert torch.equal(beta[:, 0], i[:, 0])
    torch.testing.assert_close(patched[mix + "hook_beta"][:, 1:], i[:, 1:] * math.sqrt(0.75))
    block = model.hf.model.layers[0].temporal_block
    h, gate = cache[mix + "hook_state"][..., 0, 0], cache[mix + "hook_out_gate"][..., 0]
    _close("block output from the state", block.linear_out(h * gate),
           cache["blocks.0.hook_mixer_out"])


def test_lfm2_padding_mask_as_hf() -> None:
    """HF zeroes padded positions before in_proj; so does the adapter."""
    mask = torch.ones(2, T, dtype=torch.long)
    mask[0, :5] = 0  # left padding
    model = _hooked("lfm2")
    with torch.no_grad():
        want = _hf("lfm2")(input_ids=_tokens(), attention_mask=mask, use_cache=False).logits
        got, _ = model.run_with_cache(_tokens(), attention_mask=mask)
        unmasked, _ = model.run_with_cache(_tokens())
    _close("lfm2 padded logits", got, want)
    assert (unmasked[0] - want[0]).abs().max() > 1e-3, "the mask had no effect"
