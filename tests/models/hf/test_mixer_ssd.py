"""Hooks inside the SSD mixers of HF's Mamba2, Bamba and Falcon-H1
(`featlab.models.hf.mixers.ssd`): HF's output with no hook active, identity patches that
change nothing, a state patch that acts from its position on and propagates, per-token
states equal to HF's own decoding states, and an SAE on ``hook_v``.

The tiny configs' default init makes the recurrence almost invisible (Bamba's and Falcon-H1's
``dt_bias = 1`` and ``A = 1..H`` forget within a token, and B, C are ~1e-3, so the D skip is
the whole output: zeroing ``hook_v`` moves their logits by 4e-6 and 8e-8), which would let a
wrong recurrence pass a 1e-5 test. `redraw_ssd_mixers` re-draws the SSD parameters so the recurrence
carries over dozens of tokens and across chunks, and every test model asserts that it matters.
"""

from __future__ import annotations

import math

import pytest
import torch

from featlab.models.hf.tiny import redraw_ssd_mixers, tiny_config
from tests.numerics import normwise_error

pytestmark = pytest.mark.slow

# (model_type, config overrides): Falcon-H1 also with its optional gated norm, both placements
CASES = {
    "mamba2": ("mamba2", {}),
    "bamba": ("bamba", {}),
    "falcon_h1": ("falcon_h1", {}),
    "falcon_h1+norm": ("falcon_h1", {"mamba_rms_norm": True}),
    "falcon_h1+norm_after_gate": ("falcon_h1", {"mamba_rms_norm": True,
                                                "mamba_norm_before_gate": False}),
}
T = 32  # two chunks of the tiny configs' 16


def _tokens(n: int = 2, pos: int = T) -> torch.Tensor:
    return torch.randint(3, 256, (n, pos), generator=torch.Generator().manual_seed(1))


def _hf(case: str):
    from transformers import AutoModelForCausalLM

    model_type, overrides = CASES[case]
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(tiny_config(model_type, **overrides)).eval()
    redraw_ssd_mixers(hf)
    return hf


def _ssd_layers(model) -> list[int]:
    from featlab.models.hf.mixers.ssd import SSDAdapter

    return [i for i, b in enumerate(model.blocks) if isinstance(getattr(b, "mixer", None),
                                                                SSDAdapter)]


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    """(case, hf model wrapped twice: chunked op / per-token states, plain HF logits)."""
    from featlab.models import HookedHFModel

    hf = _hf(request.param)
    with torch.no_grad():
        ref = hf(input_ids=_tokens(), use_cache=False).logits
    chunked = HookedHFModel(hf)
    hf2 = _hf(request.param)
    stated = HookedHFModel(hf2, use_state_hook=True)
    return request.param, chunked, stated, ref


def _observed(model, tokens: torch.Tensor, **kwargs) -> torch.Tensor:
    """Logits with every mixer hook observed: featlab's path in every SSD layer."""
    logits, _ = model.run_with_cache(tokens, names_filter=lambda n: ".mixer." in n, **kwargs)
    return logits


def test_no_hook_gives_hf_output(case) -> None:
    name, chunked, stated, ref = case
    layers = _ssd_layers(chunked)
    assert layers == _ssd_layers(stated) == ([0] if name == "bamba" else [0, 1]), name
    with torch.no_grad():
        assert torch.equal(chunked(_tokens()), ref), name  # no hook: HF's own forward
        for logits in (_observed(chunked, _tokens()), stated(_tokens())):  # featlab's path
            err = (logits - ref).abs().max().item()
            assert err <= 1e-5 and normwise_error(logits, ref.double()) < 1e-6, (name, err)
        assert torch.equal(chunked(_tokens()), ref), f"{name}: the cache hooks stayed"
        # the mixer alone, on an input of order 1, against HF's own forward of that module
        u = torch.randn(2, T, chunked.cfg.d_model, generator=torch.Generator().manual_seed(2))
        for layer in layers:
            adapter = chunked.blocks[layer].mixer
            want = adapter.hf_forward(u)
            got = adapter.featlab_forward(u)
            assert (got - want).abs().max().item() <= 1e-5, (name, layer)
            assert normwise_error(got, want.double()) < 1e-6, (name, layer)
        # ... and the recurrence is not negligible in these models: zeroing v moves logits
        zeroed = chunked.run_with_hooks(
            _tokens(), fwd_hooks=[(f"blocks.{layers[0]}.mixer.hook_v", lambda x, hook: x * 0)])
        assert normwise_error(zeroed, ref.double()) > 0.1, name


def test_padding_mask_as_hf(case) -> None:
    """HF zeroes padded positions before in_proj and after the conv; so does the adapter."""
    name, chunked, stated, _ = case
    mask = torch.ones(2, T, dtype=torch.long)
    mask[0, :5] = 0  # left padding
    with torch.no_grad():  # a plain HF model: chunked.hf runs the adapter now
        want = _hf(name)(input_ids=_tokens(), attention_mask=mask, use_cache=False).logits
        for got in (_observed(chunked, _tokens(), attention_mask=mask),
                    stated(_tokens(), attention_mask=mask)):
            assert (got - want).abs().max().item() <= 1e-5, name
        unmasked = stated(_tokens())
    assert (unmasked[0] - want[0]).abs().max() > 1e-3, f"{name}: the mask had no effect"


def test_hook_shapes_and_groups(case) -> None:
    name, chunked, stated, _ = case
    hf_mixer = chunked.blocks[0].mixer.hf
    h, p, n, g = hf_mixer.num_heads, hf_mixer.head_dim, hf_mixer.ssm_state_size, hf_mixer.n_groups
    assert g > 1 and h // g > 1, "the tiny configs group heads; this test needs that"
    with torch.no_grad():
        _, cache = stated.run_with_cache(_tokens())
    mix = "blocks.0.mixer."
    assert cache[mix + "hook_q"].shape == cache[mix + "hook_k"].shape == (2, T, h, n)
    assert cache[mix + "hook_v"].shape == cache[mix + "hook_out_gate"].shape == (2, T, h, p)
    assert cache[mix + "hook_log_decay"].shape == (2, T, h)
    assert (cache[mix + "hook_log_decay"] < 0).all()
    assert cache[mix + "hook_state"].shape == (2, T, h, n, p)
    assert cache[mix + "hook_state_final"].shape == (2, h, n, p)
    assert mix + "hook_beta" not in stated.hook_dict  # SSD has no write strength
    assert mix + "hook_state" not in chunked.hook_dict  # only with use_state_hook
    # heads 2i, 2i + 1 share group i's B and C (HF's repeat_interleave); groups differ
    for hook in ("hook_q", "hook_k"):
        x = cache[mix + hook].unflatten(2, (g, h // g))
        assert torch.equal(x[:, :, :, 0], x[:, :, :, 1]), (name, hook)
        assert not torch.allclose(x[:, :, 0], x[:, :, 1]), (name, hook)


@pytest.mark.parametrize("which", ["chunked", "stated"])
def test_identity_patches_change_nothing(case, which: str) -> None:
    name, chunked, stated, ref = case
    model = chunked if which == "chunked" else stated
    mixer_hooks = [n for n in model.hook_dict if ".mixer." in n]
    expected = 6 if which == "chunked" else 7
    assert len(mixer_hooks) == expected * len(_ssd_layers(model)), mixer_hooks
    with torch.no_grad():
        patched = model.run_with_hooks(
            _tokens(), fwd_hooks=[(n, lambda x, hook: x.clone()) for n in mixer_hooks])
    err = (patched - ref).abs().max().item()
    assert err <= 1e-5 and normwise_error(patched, ref.double()) < 1e-6, (name, which, err)


def test_state_patch_acts_from_its_position_on(case) -> None:
    name, _, stated, _ = case
    t = 13  # inside the first chunk, so the patch must cross the chunk boundary at 16
    seen: dict[str, torch.Tensor] = {}

    def bump(states: torch.Tensor, hook) -> torch.Tensor:
        noise = torch.randn(states[:, t].shape, generator=torch.Generator().manual_seed(3))
        states = states.clone()
        states[:, t] += noise * states[:, t].abs().mean()
        return states

    def keep(name_: str):
        def hook(x: torch.Tensor, hook) -> None:
            seen[name_] = x.clone()
        return hook

    observe = [("blocks.0.hook_mixer_out", keep("out")),
               ("blocks.0.mixer.hook_state_final", keep("final"))]
    with torch.no_grad():
        clean = stated.run_with_hooks(_tokens(), fwd_hooks=observe)
        out0, final0 = seen["out"], seen["final"]
        patched = stated.run_with_hooks(
            _tokens(), fwd_hooks=[("blocks.0.mixer.hook_state", bump), *observe])
    assert torch.equal(patched[:, :t], clean[:, :t]), f"{name}: the patch leaked backwards"
    assert (patched[:, t] - clean[:, t]).abs().max() > 1e-4, f"{name}: no effect at t"
    # layer 0's output at t + 1 and later depends on S_t only through the recurrence: it
    # changes only if the patched state propagated (and it must, across the chunk boundary)
    for later in (t + 1, 16, T - 1):
        assert (seen["out"][:, later] - out0[:, later]).abs().max() > 1e-4, (name, later)
    assert not torch.allclose(seen["final"], final0), f"{name}: hook_state_final unchanged"


def _decode_states(hf, tokens: torch.Tensor, layers: list[int]):
    """HF's own step-by-step decoding: the SSM state of each layer after every token (HF's
    orientation [b, H, P, N]) and the logits."""
    from transformers import DynamicCache

    cache = DynamicCache(config=hf.config)
    states: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    logits = []
    for i in range(tokens.shape[1]):
        # position_ids: Bamba otherwise takes 0 (its first layer's cache has no length)
        position = torch.full((tokens.shape[0], 1), i)
        out = hf(input_ids=tokens[:, i : i + 1], cache=cache, use_cache=True,
                 position_ids=position)
        logits.append(out.logits)
        for layer in layers:  # the cache updates its tensor in place: copy it
            states[layer].append(cache.get_recurrent_state(layer).clone())
    return {k: torch.stack(v, dim=1) for k, v in states.items()}, torch.cat(logits, dim=1)


def test_states_equal_hf_decoding_states(case) -> None:
    name, chunked, stated, _ = case
    layers = _ssd_layers(stated)
    fired: list[str] = []
    with torch.no_grad():
        _, cache = stated.run_with_cache(_tokens())
        _, chunk_cache = chunked.run_with_cache(_tokens())
        parallel = stated(_tokens())
        hf_states, hf_logits = _decode_states(_hf(name), _tokens(), layers)  # plain HF
        # decoding the wrapped model goes through HF's own forward: same numbers, no hooks
        stated.blocks[0].mixer.hook_v.add_hook(lambda x, hook: fired.append(hook.name))
        try:
            wrapped_states, wrapped_logits = _decode_states(stated.hf, _tokens(), layers)
        finally:
            stated.blocks[0].mixer.hook_v.remove_hooks()
    assert not fired, f"{name}: mixer hooks fired while decoding with a cache"
    assert torch.equal(wrapped_logits, hf_logits), name
    for layer in layers:
        assert torch.equal(wrapped_states[layer], hf_states[layer]), (name, layer)
        want = hf_states[layer].transpose(-1, -2).double()  # [b, t, H, N, P]
        mix = f"blocks.{layer}.mixer."
        assert normwise_error(cache[mix + "hook_state"], want) < 1e-5, (name, layer)
        for c in (cache, chunk_cache):
            assert normwise_error(c[mix + "hook_state_final"], want[:, -1]) < 1e-5, (name, layer)
    assert normwise_error(hf_logits, parallel.double()) < 1e-5, name


@pytest.mark.parametrize("name", ["mamba2", "falcon_h1"])  # without and with an MLP
def test_sae_trains_on_hook_v(name: str) -> None:
    from featlab.models import HookedHFModel
    from featlab.sae import train_sae
    from featlab.sae.activations import ActivationSource

    chunked = HookedHFModel(_hf(name))
    tokens = torch.randint(3, 256, (16, T), generator=torch.Generator().manual_seed(5))
    source = ActivationSource(chunked, "blocks.0.mixer.hook_v", tokens, batch_size=8,
                              buffer_size=256)
    hf_mixer = chunked.blocks[0].mixer.hf
    assert source.d_in == hf_mixer.num_heads * hf_mixer.head_dim  # heads concatenated
    fvus: list[float] = []
    sae = train_sae(source, kind="topk", d_sae=32, k=4, tokens=20 * 64, batch_size=64,
                    progress=False, callback=lambda step, saes, logs: fvus.append(logs[0]["fvu"]))
    assert sae.d_in == source.d_in and len(fvus) == 20
    assert all(math.isfinite(f) for f in fvus)
    assert sum(fvus[-5:]) < sum(fvus[:5]), (name, fvus)  # it learns something
