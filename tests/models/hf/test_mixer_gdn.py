"""Hooks inside Gated DeltaNet on tiny random Qwen3-Next and OLMo-Hybrid models
(`featlab.models.hf.mixers.gated_deltanet`): HF's output with and without observing hooks,
identity patches, state patches that propagate forward only (and agree with editing HF's own
decode cache), per-token states equal to HF's step-by-step decoding, the documented ranges,
and an SAE trained on ``hook_v``.

80 tokens: featlab's chunked form (chunks of 64, as HF's) runs its chunk loop twice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featlab.models.hf.tiny import tiny_config
from tests.models.hf.decoding import decode_with_cache
from tests.numerics import normwise_error

pytestmark = pytest.mark.slow

TYPES = ["qwen3_next", "olmo_hybrid"]
POS = 80
# HF's contract for adapters (max abs) and, normwise, the same number: measured errors are
# 1e-7 to 3e-7 (fp32 rounding), a wrong L2 norm gives 1e-2 (asserted below).
TOL = 1e-5


def _hf(model_type: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(model_type)).eval()


def _hooked(model_type: str, use_state_hook: bool = False):
    """A fresh HF model (seed 0) wrapped with mixer hooks; fresh because a second wrapper of
    the same HF model would take over its mixers' forward."""
    from featlab.models import HookedHFModel

    return HookedHFModel(_hf(model_type), use_state_hook=use_state_hook)


def _tokens(n: int = 2, pos: int = POS) -> torch.Tensor:
    return torch.randint(3, 256, (n, pos), generator=torch.Generator().manual_seed(1))


def _mixer_hooks(model) -> list[str]:
    return [name for name in model.hook_dict if ".mixer." in name]


def _close(name: str, got: torch.Tensor, want: torch.Tensor, tol: float = TOL) -> None:
    err, diff = normwise_error(got, want.double()), (got - want).abs().max().item()
    assert err < tol and diff < tol, f"{name}: normwise {err:.2e}, max abs {diff:.2e}"


@pytest.fixture(scope="module", params=TYPES)
def case(request):
    with torch.no_grad():
        ref = _hf(request.param)(input_ids=_tokens(), use_cache=False).logits
    return request.param, ref


def test_hooks_installed_with_featlab_names(case) -> None:
    model_type, _ = case
    model = _hooked(model_type)
    gdn = [i for i, kind in enumerate(model.cfg.mixer_kinds) if kind == "gdn"]
    assert gdn == [0]
    assert _mixer_hooks(model) == [f"blocks.0.mixer.{h}" for h in (
        "hook_q", "hook_k", "hook_v", "hook_log_decay", "hook_beta", "hook_out_gate",
        "hook_state_final")]  # hook_state only with use_state_hook
    assert "blocks.0.mixer.hook_state" in _hooked(model_type, use_state_hook=True).hook_dict


def test_no_hook_is_hf_and_hooked_path_equals_hf(case, monkeypatch) -> None:
    """(a) No hook: HF's forward, bit for bit. Observing every hook (featlab's op runs):
    HF's logits and mixer output to fp32 rounding; with the state hook on as well."""
    from featlab.models.hf.mixers import gated_deltanet

    model_type, ref = case
    model = _hooked(model_type)
    mixer_out = "blocks.0.hook_mixer_out"
    with torch.no_grad():
        assert torch.equal(model(_tokens()), ref)
        _, hf_cache = model.run_with_cache(_tokens(), names_filter=mixer_out)  # HF's path
        logits, cache = model.run_with_cache(_tokens())  # mixer hooks observed: featlab's op
        _close(f"{model_type} logits", logits, ref)
        _close(f"{model_type} mixer output", cache[mixer_out], hf_cache[mixer_out])
        _close(f"{model_type} logits, use_state_hook",
               _hooked(model_type, use_state_hook=True)(_tokens()), ref)
        # the tolerance separates: featlab's own l2_normalize (F.normalize) in place of HF's
        monkeypatch.setattr(gated_deltanet, "hf_l2norm", lambda x: F.normalize(x, dim=-1))
        wrong = model.run_with_cache(_tokens())[1][mixer_out]
    assert normwise_error(wrong, hf_cache[mixer_out].double()) > 1e-3


def test_gradients_equal_hf(case) -> None:
    """Attribution patching differentiates through the adapter: the loss's gradient with
    respect to layer 0's projections is HF's (measured 3e-7 / 6e-7)."""
    model_type, _ = case
    model = _hooked(model_type)
    gdn = model.hf.model.layers[0].linear_attn
    weights = [gdn.in_proj_qkvz.weight, gdn.in_proj_ba.weight] if model_type == "qwen3_next" \
        else [gdn.q_proj.weight, gdn.b_proj.weight]
    grads = []
    for observe in (False, True):  # HF's forward, then featlab's op (a hook is attached)
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
            observed, _ = model.run_with_cache(_tokens())
        _close(f"{model_type} identity patches (state hook {use_state_hook})", patched, ref)
        if not use_state_hook:  # same path, same numbers: a copy changes no bit
            assert torch.equal(patched, observed)


def _noise(state: torch.Tensor) -> torch.Tensor:
    """What a patch adds to S_t ``[b, H_v, d_k, d_v]``: O(1), the states are O(1e-2)."""
    return torch.randn(state.shape, generator=torch.Generator().manual_seed(3))


def _bump_state(t: int):
    def bump(states: torch.Tensor, hook) -> torch.Tensor:
        states = states.clone()
        states[:, t] += _noise(states[:, t])
        return states
    return bump


def test_state_patch_propagates_forward_only(case) -> None:
    """(c) a patch of S_t: logits before t unchanged (exactly), every position from t changed;
    hook_state_final is the patched state carried to the end by the recurrence."""
    from featlab.models.ops import delta_rule_recurrent

    model_type, _ = case
    model = _hooked(model_type, use_state_hook=True)
    t = 40
    with torch.no_grad():
        clean = model(_tokens())
        patched = model.run_with_hooks(_tokens(),
                                       fwd_hooks=[("blocks.0.mixer.hook_state", _bump_state(t))])
    assert torch.equal(patched[:, :t], clean[:, :t]), f"{model_type}: the patch leaked backwards"
    changed = (patched - clean).abs().amax(dim=(0, 2))[t:]
    assert changed.min() > 1e-4, f"{model_type}: positions {t}.. changed by {changed.min():.1e}"

    # near the end, where Qwen3-Next's fast decays (down to exp(-20) a step) leave it visible
    t, names = POS - 3, [f"blocks.0.mixer.hook_{h}" for h in ("q", "k", "v", "log_decay", "beta")]
    final = "blocks.0.mixer.hook_state_final"
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(_tokens(), names_filter=final)
        with model.hooks(fwd_hooks=[("blocks.0.mixer.hook_state", _bump_state(t))]):
            _, cache = model.run_with_cache(_tokens())  # caching after the patch: S_t patched
    q, k, v, log_decay, beta = (cache[name][:, t + 1:] for name in names)
    start = cache["blocks.0.mixer.hook_state"][:, t]
    _, want, _ = delta_rule_recurrent(q, k, v, log_decay, beta, initial_state=start)
    _close(f"{model_type} final state after a patch at {t}", cache[final], want)
    assert (cache[final] - clean_cache[final]).abs().max() > 1e-3


def _decode(hf, tokens: torch.Tensor, patch_at: int | None = None, patch=None):
    return decode_with_cache(hf, hf.model.layers[0].linear_attn, tokens, patch_at, patch)


def test_states_equal_hf_decoding(case) -> None:
    """(d) hook_state of the parallel forward = HF's decode-cache state after each token (same
    orientation [H_v, d_k, d_v]); decoding, which the adapter hands to HF's forward, gives the
    parallel logits, and fires no mixer hook."""
    model_type, ref = case
    model = _hooked(model_type, use_state_hook=True)
    with torch.no_grad():
        _, cache = model.run_with_cache(_tokens())
        fired: list[str] = []
        with model.hooks(fwd_hooks=[("blocks.0.mixer.hook_v",
                                     lambda x, hook: fired.append(hook.name))]):
            logits, _, states = _decode(model.hf, _tokens())
    assert fired == [], "a mixer hook fired while decoding with a cache"
    ours = cache["blocks.0.mixer.hook_state"]
    assert ours.shape == states.shape
    _close(f"{model_type} per-token states", ours, states)
    assert torch.equal(cache["blocks.0.mixer.hook_state_final"], ours[:, -1])
    _close(f"{model_type} decode logits", logits, ref)


def test_state_patch_equals_editing_hf_decode_cache(case) -> None:
    """(c, d) the patch propagates as HF's own recurrence would: decoding with S_t replaced
    in HF's cache gives layer 0's patched mixer output from t + 1 on (at t featlab also reads
    the patched state out; HF's output at t was computed before the edit, and through
    attention that difference reaches later logits, so the mixer output is compared)."""
    model_type, _ = case
    model = _hooked(model_type, use_state_hook=True)
    t = 40
    with torch.no_grad():
        with model.hooks(fwd_hooks=[("blocks.0.mixer.hook_state", _bump_state(t))]):
            _, cache = model.run_with_cache(_tokens(), names_filter="blocks.0.hook_mixer_out")
        _, decoded, _ = _decode(model.hf, _tokens(), patch_at=t, patch=lambda s: s + _noise(s))
        _, clean, _ = _decode(model.hf, _tokens())
    patched = cache["blocks.0.hook_mixer_out"]
    _close(f"{model_type} patched mixer output vs edited cache", patched[:, t + 1:],
           decoded[:, t + 1:])
    assert (decoded[:, t + 1] - clean[:, t + 1]).abs().max() > 1e-3  # the edit mattered


def test_hook_values_in_their_ranges(case) -> None:
    """(e) k = HF's l2norm of the convolved key, norm sqrt(s / (s + 1e-6)) for s = |k_raw|^2
    (1 up to that eps), q the same times d_k**-0.5; value heads sharing a key head see equal
    q, k; log_decay < 0; beta in (0, 1), OLMo-Hybrid's in (0, 2) and above 1 somewhere."""
    model_type, _ = case
    model = _hooked(model_type)
    gdn = model.hf.model.layers[0].linear_attn
    raw: list[torch.Tensor] = []
    handle = gdn.conv1d.register_forward_hook(lambda m, i, out: raw.append(out))
    try:
        with torch.no_grad():
            _, cache = model.run_with_cache(_tokens())
    finally:
        handle.remove()
    conv = F.silu(raw[0][..., :POS]).transpose(1, 2)
    q_raw, k_raw, _ = conv.split([gdn.key_dim, gdn.key_dim, gdn.value_dim], dim=-1)
    rep = gdn.num_v_heads // gdn.num_k_heads
    for name, x, scale in (("q", q_raw, gdn.head_k_dim ** -0.5), ("k", k_raw, 1.0)):
        s = x.unflatten(-1, (-1, gdn.head_k_dim)).pow(2).sum(-1).repeat_interleave(rep, dim=2)
        hooked = cache[f"blocks.0.mixer.hook_{name}"]
        norm = hooked.norm(dim=-1) / scale
        assert (norm <= 1 + 1e-6).all(), name
        assert (norm - (s / (s + 1e-6)).sqrt()).abs().max() < 1e-5, name
        assert (norm[s > 1e-4] > 0.995).all(), name
        if rep > 1:
            assert torch.equal(hooked[:, :, 0::rep], hooked[:, :, 1::rep]), name
    log_decay, beta = cache["blocks.0.mixer.hook_log_decay"], cache["blocks.0.mixer.hook_beta"]
    assert log_decay.shape == beta.shape == (2, POS, gdn.num_v_heads)
    assert (log_decay < 0).all()
    top = 2.0 if model_type == "olmo_hybrid" else 1.0
    assert (beta > 0).all() and (beta < top).all()
    assert (beta.max() > 1) == (model_type == "olmo_hybrid")


def test_sae_trains_on_hook_v(case) -> None:
    """(f) smoke: hook_v's activations train an SAE that explains more than their mean."""
    from featlab.sae import evaluate, train_sae

    model_type, _ = case
    model = _hooked(model_type)
    with torch.no_grad():
        _, cache = model.run_with_cache(_tokens(), names_filter="blocks.0.mixer.hook_v")
    acts = cache["blocks.0.mixer.hook_v"].flatten(2).flatten(0, 1)  # [b * t, H_v * d_v]
    # hook_v of a random-init model has std ~2e-3; Adam's steps are absolute, so the default
    # lr (fitted on order-one activations) moves b_dec past the data: a lower lr is given
    sae = train_sae(acts, kind="topk", d_sae=32, k=4, tokens=4096, batch_size=64, seed=0,
                    progress=False, lr=4e-3)
    fvu = evaluate(sae, acts).fvu
    assert 0 < fvu < 0.9, f"{model_type}: FVU {fvu:.3f}"
