"""The linear-recurrent mixers (gla, gdn, deltanet, ssd): modes agree, hooks follow one schema,
and the state hook's patches replace and propagate."""

from __future__ import annotations

import copy

import pytest
import torch

from featlab.models import HookedHybrid, HybridConfig
from featlab.models.mixers import MIXERS, RECURRENT_HOOKS
from tests.numerics import assert_close

RECURRENT = ["gla", "gdn", "deltanet", "ssd"]
D_MODEL, HEADS, VOCAB, POS = 32, 2, 50, 29


def _terms(pos: int) -> int:
    """Rounded terms behind one mixer output: projections over d_model before and after a
    recurrence over ``pos`` steps."""
    return 2 * D_MODEL + pos


def _cfg(name: str, **kw) -> HybridConfig:
    base = dict(layers=[name, "attn"], d_model=D_MODEL, n_heads=HEADS, d_vocab=VOCAB,
                n_ctx=64, chunk_size=8)
    return HybridConfig(**{**base, **kw})


def _mixer(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return MIXERS[name](_cfg(name, **kw))


def _with_weights(name: str, source, **kw):
    mixer = MIXERS[name](_cfg(name, **kw))
    mixer.load_state_dict(source.state_dict())
    return mixer


def _tokens(seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, POS), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", RECURRENT)
def test_chunk_mode_equals_recurrent_mode(name: str) -> None:
    chunk = _mixer(name)
    recurrent = _with_weights(name, chunk, mixer_mode="recurrent")
    recurrent64 = _with_weights(name, chunk, mixer_mode="recurrent").double()
    state_hooked = _with_weights(name, chunk, use_state_hook=True)
    x = torch.randn(2, 37, D_MODEL, requires_grad=True)  # 37: not a multiple of chunk 8
    x64 = x.detach().double().requires_grad_()
    y_chunk, y_rec, y_rec64 = chunk(x), recurrent(x), recurrent64(x64)
    assert y_chunk.shape == x.shape
    assert_close("chunk mode", y_chunk, y_rec, y_rec64, reduction=_terms(37))
    assert_close("state-hooked", state_hooked(x), y_rec, y_rec64, reduction=_terms(37))
    (g_chunk,) = torch.autograd.grad(y_chunk.square().sum(), x)
    (g_rec,) = torch.autograd.grad(y_rec.square().sum(), x)
    (g_rec64,) = torch.autograd.grad(y_rec64.square().sum(), x64)
    assert_close("dx", g_chunk, g_rec, g_rec64, reduction=2 * _terms(37))  # there and back


@pytest.mark.parametrize("name", RECURRENT)
def test_causal(name: str) -> None:
    mixer = _mixer(name)
    x = torch.randn(1, 20, D_MODEL)
    x2 = x.clone()
    x2[:, 11] += 1.0
    d = (mixer(x2) - mixer(x)).abs().amax(dim=(0, 2))
    assert d[:11].max() == 0
    assert d[11] > 0


def test_every_recurrent_mixer_fires_the_same_hooks() -> None:
    names, shapes = {}, {}
    for name in RECURRENT:
        model = HookedHybrid(_cfg(name, use_state_hook=True))
        _, cache = model.run_with_cache(_tokens(0))
        prefix = "blocks.0.mixer."
        fired = {k[len(prefix):]: v.shape for k, v in cache.items() if k.startswith(prefix)}
        names[name] = set(fired)
        shapes[name] = fired
        assert set(fired) == set(RECURRENT_HOOKS), name
    d = D_MODEL // HEADS
    for name in RECURRENT:
        s = shapes[name]
        assert s["hook_q"] == s["hook_k"] == (2, POS, HEADS, d)
        assert s["hook_v"] == s["hook_out_gate"] == (2, POS, HEADS, d)
        assert s["hook_beta"] == (2, POS, HEADS)
        assert s["hook_state"] == (2, POS, HEADS, d, d)
        assert s["hook_state_final"] == (2, HEADS, d, d)
        want = (2, POS, HEADS, d) if name == "gla" else (2, POS, HEADS)
        assert s["hook_log_decay"] == want
    # Without the opt-in, only hook_state is missing.
    _, cache = HookedHybrid(_cfg("gdn")).run_with_cache(_tokens(0))
    fired = {k.split(".")[-1] for k in cache if k.startswith("blocks.0.mixer.")}
    assert fired == set(RECURRENT_HOOKS) - {"hook_state"}


def test_state_hook_matches_final_state_and_read_out() -> None:
    model = HookedHybrid(_cfg("gdn", use_state_hook=True))
    _, cache = model.run_with_cache(_tokens(1))
    states = cache["blocks.0.mixer.hook_state"]
    assert torch.equal(states[:, -1], cache["blocks.0.mixer.hook_state_final"])


@pytest.mark.parametrize("name", RECURRENT)
def test_state_patch_changes_outputs_from_t_on_and_propagates(name: str) -> None:
    model = HookedHybrid(_cfg(name, use_state_hook=True))
    hook_name, out_name = "blocks.0.mixer.hook_state", "blocks.0.hook_mixer_out"
    clean, other = _tokens(2), _tokens(3)
    _, other_cache = model.run_with_cache(other, names_filter=[hook_name])
    base_logits, base_cache = model.run_with_cache(clean, names_filter=[hook_name, out_name])
    t = 13

    def patch(act: torch.Tensor, hook) -> torch.Tensor:
        act[:, t] = other_cache[hook_name][:, t]
        return act

    def keep(act: torch.Tensor, hook) -> torch.Tensor:
        return act

    seen: dict[str, torch.Tensor] = {}

    def grab(act: torch.Tensor, hook) -> None:
        seen["out"] = act.detach().clone()

    logits = model.run_with_hooks(clean, fwd_hooks=[(hook_name, patch), (out_name, grab)])
    diff = (seen["out"] - base_cache[out_name]).abs().amax(dim=(0, 2))  # per position
    assert diff[:t].max() <= 1e-6
    assert diff[t] > 0
    # Propagation: layer 0's mixer reaches later positions only through its state.
    assert (diff[t + 1 :] > 0).all()
    assert (logits - base_logits).abs().amax(dim=(0, 2))[:t].max() <= 1e-5
    # Patching with its own value changes nothing.
    same = model.run_with_hooks(clean, fwd_hooks=[(hook_name, keep)])
    assert (same - base_logits).abs().max() <= 1e-6


def test_state_patch_in_one_batch_element_leaves_the_other() -> None:
    model = HookedHybrid(_cfg("gla", use_state_hook=True))
    hook_name = "blocks.0.mixer.hook_state"
    clean = _tokens(4)
    base = model(clean)

    def patch(act: torch.Tensor, hook) -> torch.Tensor:
        act[0, 5] = 0.0
        return act

    logits = model.run_with_hooks(clean, fwd_hooks=[(hook_name, patch)])
    assert (logits[1] - base[1]).abs().max() <= 1e-6
    assert (logits[0, 5:] - base[0, 5:]).abs().amax(-1).min() > 0


def test_state_hook_gradient_is_the_total_derivative() -> None:
    # The gradient reaching hook_state at step t must include the state's effect on later
    # steps, checked against a finite difference along a random direction (float64).
    mixer = _mixer("gdn", use_state_hook=True).double()
    x = torch.randn(1, 12, D_MODEL, dtype=torch.float64)
    w = torch.randn(1, 12, D_MODEL, dtype=torch.float64)
    t = 4
    direction = torch.randn(1, HEADS, D_MODEL // HEADS, D_MODEL // HEADS, dtype=torch.float64)
    store: dict[str, torch.Tensor] = {}

    def keep_grad(act: torch.Tensor, hook) -> torch.Tensor:
        act.retain_grad()
        store["act"] = act
        return act

    handle = mixer.hook_state.register_forward_hook(lambda m, i, o: keep_grad(o, None))
    (mixer(x) * w).sum().backward()
    handle.remove()
    analytic = (store["act"].grad[:, t] * direction).sum()

    def loss_with(eps: float) -> torch.Tensor:
        def shift(m, i, o):
            o = o.clone()
            o[:, t] += eps * direction
            return o

        h = mixer.hook_state.register_forward_hook(shift)
        with torch.no_grad():
            value = (mixer(x) * w).sum()
        h.remove()
        return value

    numeric = (loss_with(1e-6) - loss_with(-1e-6)) / 2e-6
    # A read-out-only gradient (no propagation to later steps) misses this by ~80% here.
    assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric.item()))


def test_gated_deltanet_with_gate_one_is_deltanet() -> None:
    delta = _mixer("deltanet", seed=5)
    gated = MIXERS["gdn"](_cfg("gdn"))
    missing, unexpected = gated.load_state_dict(delta.state_dict(), strict=False)
    assert set(missing) == {"W_a.weight", "A_log", "dt_bias"} and not unexpected
    with torch.no_grad():
        gated.A_log.fill_(float("-inf"))  # -exp(A_log) = 0: decay exactly 1
    x = torch.randn(2, 21, D_MODEL)
    with torch.no_grad():
        want64 = copy.deepcopy(delta).double()(x.double())
        assert_close("gate one", gated(x), delta(x), want64, reduction=_terms(21))
    assert not hasattr(delta, "A_log")


def test_backward_hook_on_state_fires_through_transformer_lens() -> None:
    model = HookedHybrid(_cfg("ssd", use_state_hook=True))
    grads: list[torch.Tensor] = []

    def grab(grad: torch.Tensor, hook) -> None:
        grads.append(grad.detach().clone())

    loss = model.run_with_hooks(
        _tokens(6), return_type="loss",
        bwd_hooks=[("blocks.0.mixer.hook_state", grab)], reset_hooks_end=False,
    )
    loss.backward()
    model.reset_hooks()
    assert len(grads) == 1 and grads[0].shape == (2, POS, HEADS, 16, 16)
    assert grads[0].abs().sum() > 0
