"""GLA's optional short convolution (`HybridConfig.gla_use_short_conv`): shapes, causality,
equality with flash-linear-attention's layer written out in float64, the shared hook schema,
and the option surviving JSON and save_model / load_model.

fla itself needs Triton, so it is not installed here; `_fla_layer` restates
`fla.layers.gla.GatedLinearAttention.forward` (fla commit bc3b101, ``use_short_conv=True``,
``conv_bias=False``: q, k, v = SiLU(causal depthwise conv(proj x)); ``gk = logsigmoid(.) /
16``; fused RMSNorm * swish gate; o_proj) on the mixer's weights, with the convolution as an
explicit sum over taps and the recurrence as the plain loop `gla_recurrent`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featlab.models import HookedHybrid, HybridConfig, load_model, save_model
from featlab.models.mixers import MIXERS, RECURRENT_HOOKS
from featlab.models.mixers.gla import GATE_NORMALIZER
from featlab.models.ops import gla_recurrent
from tests.numerics import assert_close, normwise_error

D_MODEL, HEADS, VOCAB = 32, 2, 50


def _cfg(conv: bool = True, **kw) -> HybridConfig:
    base = dict(layers=["gla", "attn"], d_model=D_MODEL, n_heads=HEADS, d_vocab=VOCAB,
                n_ctx=64, chunk_size=8, gla_use_short_conv=conv)
    return HybridConfig(**{**base, **kw})


def _mixer(conv: bool = True, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return MIXERS["gla"](_cfg(conv, **kw))


def _causal_conv_silu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """fla's ShortConvolution without bias: ``y_t = silu(sum_i w_i x_{t-K+1+i})``, zeros
    before the start; ``x [b, t, c]``, ``weight [c, K]``."""
    kernel, t = weight.shape[-1], x.shape[1]
    y = torch.zeros_like(x)
    for i in range(kernel):
        shift = kernel - 1 - i  # tap i reads the input `shift` steps back
        y[:, shift:] += x[:, : t - shift] * weight[:, i]
    return F.silu(y)


def _fla_layer(mixer, x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """fla's GatedLinearAttention forward (see module doc) on `mixer`'s weights."""
    m = {k: v.detach().to(dtype) for k, v in mixer.state_dict().items()}
    x = x.to(dtype)
    heads = lambda t: t.unflatten(-1, (HEADS, -1))  # noqa: E731
    q, k, v = x @ m["W_q.weight"].T, x @ m["W_k.weight"].T, x @ m["W_v.weight"].T
    if mixer.use_short_conv:
        q, k, v = (_causal_conv_silu(t, m[f"conv_{n}.conv.weight"][:, 0])
                   for t, n in ((q, "q"), (k, "k"), (v, "v")))
    gk = (x @ m["W_g1.weight"].T) @ m["W_g2.weight"].T + m["W_g2.bias"]
    gk = F.logsigmoid(heads(gk)) / GATE_NORMALIZER
    q, k, v = heads(q), heads(k), heads(v)
    o, _, _ = gla_recurrent(q * q.shape[-1] ** -0.5, k, v, gk)  # fla scales q inside its op
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + mixer.cfg.norm_eps) * m["norm.w"]
    o = o * F.silu(heads(x @ m["W_r.weight"].T))
    return o.flatten(-2) @ m["W_o.weight"].T


def test_conv_path_has_fla_shapes_and_the_default_has_none() -> None:
    mixer = _mixer()
    d_k = D_MODEL // HEADS
    for name in ("conv_q", "conv_k", "conv_v"):
        # depthwise [channels, 1, conv_kernel], no bias, as fla's conv_bias=False default
        assert getattr(mixer, name).conv.weight.shape == (HEADS * d_k, 1, 4)
        assert getattr(mixer, name).conv.bias is None
    x = torch.randn(2, 19, D_MODEL)
    assert mixer(x).shape == x.shape
    plain = _mixer(conv=False)
    assert not any("conv" in k for k in plain.state_dict()), "default GLA gained parameters"
    assert HybridConfig().gla_use_short_conv is False  # fla's use_short_conv default
    wide = _mixer(conv_kernel=6)
    assert wide.conv_v.conv.weight.shape[-1] == 6


@pytest.mark.parametrize("conv", [True, False])
@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_equals_fla_layer_reference(conv: bool, mode: str) -> None:
    mixer = _mixer(conv, seed=3, mixer_mode=mode)
    x = torch.randn(2, 37, D_MODEL)  # 37: not a multiple of chunk 8
    with torch.no_grad():
        assert_close(f"gla ({mode}) vs fla layer", mixer(x), _fla_layer(mixer, x, torch.float32),
                     _fla_layer(mixer, x), reduction=2 * D_MODEL + 37)


def test_reference_is_sensitive_to_the_conv() -> None:
    # Guard on the test itself: the reference must see the conv (else it would pass vacuously).
    mixer = _mixer(seed=4)
    x = torch.randn(1, 12, D_MODEL)
    with torch.no_grad():
        before = _fla_layer(mixer, x)
        mixer.conv_k.conv.weight.mul_(1.5)
        assert normwise_error(mixer(x), before) > 0.1
        assert_close("after edit", mixer(x), _fla_layer(mixer, x, torch.float32),
                     _fla_layer(mixer, x), reduction=2 * D_MODEL + 12)


def test_conv_path_is_causal_and_reaches_back_only_through_conv_and_state() -> None:
    mixer = _mixer(seed=1)
    x = torch.randn(1, 20, D_MODEL)
    x2 = x.clone()
    x2[:, 11] += 1.0
    with torch.no_grad():
        d = (mixer(x2) - mixer(x)).abs().amax(dim=(0, 2))
    assert d[:11].max() == 0
    assert (d[11:] > 0).all()


def test_conv_path_modes_agree_with_gradients() -> None:
    chunk = _mixer(seed=2)
    state_hooked = MIXERS["gla"](_cfg(use_state_hook=True))
    state_hooked.load_state_dict(chunk.state_dict())
    x = torch.randn(2, 21, D_MODEL, requires_grad=True)
    y = chunk(x)
    with torch.no_grad():
        want, want64 = _fla_layer(chunk, x, torch.float32), _fla_layer(chunk, x)
    assert_close("chunk", y.detach(), want, want64, reduction=2 * D_MODEL + 21)
    assert_close("state-hooked", state_hooked(x), want, want64, reduction=2 * D_MODEL + 21)
    (g,) = torch.autograd.grad(y.square().sum(), x)
    x32, x64 = x.detach().clone().requires_grad_(), x.detach().double().requires_grad_()
    (g32,) = torch.autograd.grad(_fla_layer(chunk, x32, torch.float32).square().sum(), x32)
    (g64,) = torch.autograd.grad(_fla_layer(chunk, x64).square().sum(), x64)
    assert_close("dx", g, g32, g64, reduction=2 * (2 * D_MODEL + 21))  # there and back


def test_hooks_keep_the_recurrent_schema_and_see_the_conv_output() -> None:
    torch.manual_seed(0)
    model = HookedHybrid(_cfg(use_state_hook=True))
    tokens = torch.randint(0, VOCAB, (2, 17), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens)
    prefix = "blocks.0.mixer."
    fired = {k[len(prefix):] for k in cache if k.startswith(prefix)}
    assert fired == set(RECURRENT_HOOKS)  # the same names as gdn's, conv or not
    mixer, seen = _mixer(seed=5), {}
    mixer.hook_v.add_hook(lambda act, hook: seen.setdefault("v", act.detach().clone()))
    x = torch.randn(1, 9, D_MODEL)
    with torch.no_grad():
        mixer(x)
        weight = mixer.conv_v.conv.weight[:, 0].double()
        want64 = _causal_conv_silu(x.double() @ mixer.W_v.weight.double().T, weight)
    assert_close("hook_v is silu(conv(W_v x))", seen["v"], mixer.split_heads(want64),
                 reduction=D_MODEL + 4)


def test_option_round_trips_through_json_and_save_load(tmp_path) -> None:
    cfg = _cfg()
    assert HybridConfig.from_dict(cfg.to_dict()).gla_use_short_conv is True
    cfg.to_json(tmp_path / "cfg.json")
    assert HybridConfig.from_json(tmp_path / "cfg.json") == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "gla_use_short_conv"}
    assert HybridConfig.from_dict(old).gla_use_short_conv is False  # configs saved before it
    torch.manual_seed(0)
    model = HookedHybrid(cfg)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.cfg.gla_use_short_conv is True
    tokens = torch.randint(0, VOCAB, (2, 15), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))


def test_bad_option_value_names_the_field() -> None:
    with pytest.raises(ValueError, match="gla_use_short_conv"):
        HybridConfig(layers=["gla"], gla_use_short_conv="yes")
