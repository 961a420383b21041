"""Hooks inside KDA on a tiny random Kimi Linear (`featlab.models.hf.mixers.kda`): HF's output
with and without observing hooks (and its core output before the norm), identity patches,
state patches that propagate forward only (and agree with editing HF's own decode cache),
per-token states equal to HF's step-by-step decoding, the per-channel decay's shape and range.

80 tokens: five of featlab's chunks (16) and two of HF's (64), so both chunk loops run. The tiny
config's default init keeps the recurrence alive (decays 0.33-0.99 a token, so a state
reaches dozens of tokens on) and the mixer visible (zeroing ``hook_v`` moves the logits by
0.17 normwise): both are asserted, so no weights are re-drawn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featlab.models.hf.tiny import tiny_config
from tests.models.hf.decoding import decode_with_cache
from tests.numerics import normwise_error

pytestmark = pytest.mark.slow

POS = 80
MIX = "blocks.0.mixer."
# HF's contract for adapters (max abs) and, normwise, the same number: measured errors are
# 1e-7 to 4e-7 (fp32 rounding); featlab's own L2 norm in place of HF's gives 4e-3 (below).
TOL = 1e-5


def _hf():
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config("kimi_linear")).eval()


def _hooked(use_state_hook: bool = False):
    """A fresh HF model (seed 0) wrapped with mixer hooks."""
    from featlab.models import HookedHFModel

    return HookedHFModel(_hf(), use_state_hook=use_state_hook)


def _tokens(n: int = 2, pos: int = POS) -> torch.Tensor:
    return torch.randint(3, 256, (n, pos), generator=torch.Generator().manual_seed(1))


def _mixer_hooks(model) -> list[str]:
    return [name for name in model.hook_dict if ".mixer." in name]


def _close(name: str, got: torch.Tensor, want: torch.Tensor, relative: bool = False) -> None:
    """Normwise error and max abs difference both below TOL; `relative`: max abs relative to
    ``max |want|`` (states and gradients are O(1e-3), where 1e-5 absolute would be loose)."""
    err, diff = normwise_error(got, want.double()), (got - want).abs().max().item()
    scale = want.abs().max().item() if relative else 1.0
    assert err < TOL and diff < TOL * scale, (
        f"{name}: normwise {err:.2e}, max abs {diff:.2e} (of max |want| {scale:.2e})")


@pytest.fixture(scope="module")
def ref() -> torch.Tensor:
    with torch.no_grad():
        return _hf()(input_ids=_tokens(), use_cache=False).logits


def test_hooks_installed_with_featlab_names() -> None:
    model = _hooked()
    assert model.cfg.mixer_kinds == ("kda", "attn")
    assert _mixer_hooks(model) == [MIX + h for h in (
        "hook_q", "hook_k", "hook_v", "hook_log_decay", "hook_beta", "hook_out_gate",
        "hook_state_final")]  # hook_state only with use_state_hook; layer 1 is MLA
    assert MIX + "hook_state" in _hooked(use_state_hook=True).hook_dict


def test_no_hook_is_hf_and_hooked_path_equals_hf(ref, monkeypatch) -> None:
    """(a) No hook: HF's forward, bit for bit. Observing every hook (featlab's op runs):
    HF's logits and mixer output to fp32 rounding; with the state hook on as well; and the
    mixer alone on an input of order 1."""
    from featlab.models.hf.mixers import kda

    model = _hooked()
    out = "blocks.0.hook_mixer_out"
    with torch.no_grad():
        assert torch.equal(model(_tokens()), ref)
        _, hf_cache = model.run_with_cache(_tokens(), names_filter=out)  # HF's path
        logits, cache = model.run_with_cache(_tokens())  # mixer hooks observed: featlab's op
        _close("logits", logits, ref)
        _close("mixer output", cache[out], hf_cache[out])
        assert torch.equal(model(_tokens()), ref), "the cache's hooks stayed"
        _close("logits, use_state_hook", _hooked(use_state_hook=True)(_tokens()), ref)
        adapter = model.blocks[0].mixer
        u = torch.randn(2, POS, model.cfg.d_model, generator=torch.Generator().manual_seed(2))
        _close("mixer alone", adapter.featlab_forward(u), adapter.hf_forward(u))
        # the tolerance separates: featlab's own l2_normalize (F.normalize) in place of HF's
        monkeypatch.setattr(kda, "hf_l2norm", lambda x: F.normalize(x, dim=-1, eps=1e-6))
        wrong = model.run_with_cache(_tokens())[1][out]
    assert normwise_error(wrong, hf_cache[out].double()) > 1e-3


def test_core_output_before_the_norm_equals_hf() -> None:
    """The per-head RMS norm after the recurrence cancels a per-head scale of ``o`` (a missing
    ``d_k**-0.5`` would hide behind it), so ``o_t = S_t^T q_t`` from the hooks is compared with
    what enters HF's ``o_norm``."""
    hf = _hf()  # a plain HF model; the wrapped one's use_state_hook always runs featlab's op
    seen: list[torch.Tensor] = []
    norm = hf.model.layers[0].self_attn.o_norm
    handle = norm.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            hf(input_ids=_tokens(), use_cache=False)
    finally:
        handle.remove()
    with torch.no_grad():
        _, cache = _hooked(use_state_hook=True).run_with_cache(_tokens())
    o = torch.einsum("bthkv,bthk->bthv", cache[MIX + "hook_state"], cache[MIX + "hook_q"])
    assert len(seen) == 1 and o.shape == seen[0].shape
    _close("o = S^T q vs HF's core output", o, seen[0], relative=True)


def test_gradients_equal_hf() -> None:
    """Attribution patching differentiates through the adapter: the loss's gradient with
    respect to layer 0's projections is HF's (measured 3e-7 to 8e-7 normwise)."""
    model = _hooked()
    kda = model.hf.model.layers[0].self_attn
    # (dt_bias is left out: its gradient, a sum over every position with cancellation, is
    # 3.6e-6 off normwise between two fp32 runs, too close to 1e-5 to be portable)
    weights = [kda.q_proj.weight, kda.v_proj.weight, kda.forget_gate.f_b_proj.weight,
               kda.b_proj.weight, kda.g_b_proj.weight]
    grads = []
    for observe in (False, True):  # HF's forward, then featlab's op (a hook is attached)
        model.zero_grad()
        hooks = [(MIX + "hook_v", lambda x, hook: None)] if observe else []
        with model.hooks(fwd_hooks=hooks):
            model(_tokens(), return_type="loss").backward()
        grads.append([w.grad.clone() for w in weights])
    for i, (hf_grad, ours) in enumerate(zip(*grads, strict=True)):
        assert hf_grad.abs().max() > 0, i
        _close(f"gradient {i}", ours, hf_grad, relative=True)


def test_identity_patches_change_nothing(ref) -> None:
    """(b) every mixer hook (hook_state included) returning a copy of its input."""
    for use_state_hook in (False, True):
        model = _hooked(use_state_hook)
        hooks = [(name, lambda x, hook: x.clone()) for name in _mixer_hooks(model)]
        with torch.no_grad():
            patched = model.run_with_hooks(_tokens(), fwd_hooks=hooks)
            observed, _ = model.run_with_cache(_tokens())
        _close(f"identity patches (state hook {use_state_hook})", patched, ref)
        if not use_state_hook:  # same path, same numbers: a copy changes no bit
            assert torch.equal(patched, observed)


def _noise(state: torch.Tensor) -> torch.Tensor:
    """What a patch adds to S_t ``[b, H, d_k, d_v]``: O(1), the states are O(1e-3)."""
    return torch.randn(state.shape, generator=torch.Generator().manual_seed(3))


def _bump_state(t: int):
    def bump(states: torch.Tensor, hook) -> torch.Tensor:
        states = states.clone()
        states[:, t] += _noise(states[:, t])
        return states
    return bump


def test_state_patch_propagates_forward_only() -> None:
    """(c) a patch of S_t: logits before t unchanged (exactly), every position from t changed,
    layer 0's output 20 and 26 tokens later too (through the recurrence, across chunk
    boundaries); hook_state_final is the patched state carried to the end by the recurrence."""
    from featlab.models.ops import kda_recurrent

    model = _hooked(use_state_hook=True)
    t, out, final = 40, "blocks.0.hook_mixer_out", MIX + "hook_state_final"
    with torch.no_grad():
        clean_logits, clean = model.run_with_cache(_tokens())
        with model.hooks(fwd_hooks=[(MIX + "hook_state", _bump_state(t))]):
            patched, cache = model.run_with_cache(_tokens())  # cached after the patch
    assert torch.equal(patched[:, :t], clean_logits[:, :t]), "the patch leaked backwards"
    changed = (patched - clean_logits).abs().amax(dim=(0, 2))[t:]
    assert changed.min() > 1e-4, f"positions {t}.. changed by {changed.min():.1e}"
    later = (cache[out] - clean[out]).abs().amax(dim=(0, 2))
    assert later[t + 20] > 1e-3 and later[66] > 1e-4, later[t + 1:].tolist()

    names = [MIX + f"hook_{h}" for h in ("q", "k", "v", "log_decay", "beta")]
    q, k, v, log_decay, beta = (cache[name][:, t + 1:] for name in names)
    start = cache[MIX + "hook_state"][:, t]
    _, want, _ = kda_recurrent(q, k, v, log_decay, beta, initial_state=start)
    _close(f"final state after a patch at {t}", cache[final], want)
    assert (cache[final] - clean[final]).abs().max() > 1e-4


def _decode(hf, tokens: torch.Tensor, patch_at: int | None = None, patch=None):
    return decode_with_cache(hf, hf.model.layers[0].self_attn, tokens, patch_at, patch)


def test_states_equal_hf_decoding(ref) -> None:
    """(d) hook_state of the parallel forward = HF's decode-cache state after each token (same
    orientation [H, d_k, d_v]), and the chunked path's hook_state_final its last one; decoding,
    which the adapter hands to HF's forward, gives the parallel logits and fires no mixer
    hook."""
    model = _hooked(use_state_hook=True)
    with torch.no_grad():
        _, cache = model.run_with_cache(_tokens())
        _, chunk_cache = _hooked().run_with_cache(_tokens(), names_filter=lambda n: "final" in n)
        fired: list[str] = []
        with model.hooks(fwd_hooks=[(MIX + "hook_v", lambda x, hook: fired.append(hook.name))]):
            logits, _, states = _decode(model.hf, _tokens())
    assert fired == [], "a mixer hook fired while decoding with a cache"
    ours = cache[MIX + "hook_state"]
    assert ours.shape == states.shape == (2, POS, 2, 8, 8)
    _close("per-token states", ours, states, relative=True)
    assert torch.equal(cache[MIX + "hook_state_final"], ours[:, -1])
    _close("chunked final state", chunk_cache[MIX + "hook_state_final"], states[:, -1],
           relative=True)
    _close("decode logits", logits, ref)


def test_state_patch_equals_editing_hf_decode_cache() -> None:
    """(c, d) the patch propagates as HF's own recurrence would: decoding with S_t replaced
    in HF's cache gives layer 0's patched mixer output from t + 1 on."""
    model = _hooked(use_state_hook=True)
    t = 40
    with torch.no_grad():
        with model.hooks(fwd_hooks=[(MIX + "hook_state", _bump_state(t))]):
            _, cache = model.run_with_cache(_tokens(), names_filter="blocks.0.hook_mixer_out")
        _, decoded, _ = _decode(model.hf, _tokens(), patch_at=t, patch=lambda s: s + _noise(s))
        _, clean, _ = _decode(model.hf, _tokens())
    patched = cache["blocks.0.hook_mixer_out"]
    _close("patched mixer output vs edited cache", patched[:, t + 1:], decoded[:, t + 1:])
    assert (decoded[:, t + 1] - clean[:, t + 1]).abs().max() > 1e-3  # the edit mattered


def test_padding_mask_as_hf() -> None:
    """HF zeroes padded positions before the projections; so does the adapter."""
    mask = torch.ones(2, POS, dtype=torch.long)
    mask[0, :5] = 0  # left padding
    model = _hooked(use_state_hook=True)
    with torch.no_grad():
        want = _hf()(input_ids=_tokens(), attention_mask=mask, use_cache=False).logits
        got = model(_tokens(), attention_mask=mask)
        _close("left-padded logits", got, want)
        assert (model(_tokens())[0] - want[0]).abs().max() > 1e-3, "the mask had no effect"


def test_hook_shapes_ranges_and_that_the_mixer_matters(ref) -> None:
    """(e) shapes; per-channel decays (<= 0, different across channels, slow enough to carry
    over dozens of tokens); k = HF's l2norm of the convolved key, norm sqrt(s / (s + 1e-6))
    for s = |k_raw|^2, q the same times d_k**-0.5; beta and the out gate in (0, 1); zeroing
    hook_v moves the logits."""
    model = _hooked()
    hf_kda = model.hf.model.layers[0].self_attn
    h, d = hf_kda.num_heads, hf_kda.head_dim
    raw: list[torch.Tensor] = []
    handle = hf_kda.conv1d.register_forward_hook(lambda m, i, out: raw.append(out))
    try:
        with torch.no_grad():
            _, cache = model.run_with_cache(_tokens())
    finally:
        handle.remove()
    with torch.no_grad():
        zeroed = model.run_with_hooks(_tokens(), fwd_hooks=[(MIX + "hook_v",
                                                             lambda x, hook: x * 0)])
    log_decay = cache[MIX + "hook_log_decay"]
    assert log_decay.shape == (2, POS, h, d)
    assert (log_decay < 0).all()
    assert (log_decay.amax(-1) - log_decay.amin(-1)).min() > 1e-3  # one decay per channel
    assert log_decay.max() > -0.05 and log_decay.min() > -3
    conv = F.silu(raw[0][..., :POS]).transpose(1, 2)
    q_raw, k_raw, _ = conv.split([hf_kda.qkv_dim] * 3, dim=-1)
    for name, x, scale in (("q", q_raw, d ** -0.5), ("k", k_raw, 1.0)):
        s = x.unflatten(-1, (h, d)).pow(2).sum(-1)
        hooked = cache[MIX + f"hook_{name}"]
        assert hooked.shape == (2, POS, h, d)
        norm = hooked.norm(dim=-1) / scale
        assert (norm <= 1 + 1e-6).all(), name
        assert (norm - (s / (s + 1e-6)).sqrt()).abs().max() < 1e-5, name
    assert cache[MIX + "hook_v"].shape == cache[MIX + "hook_out_gate"].shape == (2, POS, h, d)
    for name in ("hook_beta", "hook_out_gate"):
        x = cache[MIX + name]
        assert ((x > 0) & (x < 1)).all(), name
    assert cache[MIX + "hook_beta"].shape == (2, POS, h)
    assert cache[MIX + "hook_state_final"].shape == (2, h, d, d)
    assert normwise_error(zeroed, ref.double()) > 0.1
