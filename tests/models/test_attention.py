"""Causal and sliding-window attention: parallel form vs step-by-step reference, masks, RoPE."""

from __future__ import annotations

import copy

import pytest
import torch

from featlab.models import HookedHybrid, HybridConfig
from featlab.models.layers import apply_rotary, rotary_cos_sin
from featlab.models.mixers.attention import Attention, SlidingWindowAttention
from tests.numerics import assert_close


def cfg(**kw: object) -> HybridConfig:
    return HybridConfig(layers=("attn",), d_model=16, n_heads=2, d_vocab=32, n_ctx=40, **kw)


@pytest.mark.parametrize("cls", [Attention, SlidingWindowAttention])
@pytest.mark.parametrize("pos", [1, 7, 16, 33])
def test_parallel_equals_recurrent(cls: type[Attention], pos: int) -> None:
    mixer = cls(cfg(window=5))
    mixer64 = copy.deepcopy(mixer).double()
    x = torch.randn(2, pos, 16)
    with torch.no_grad():
        want, want64 = mixer.recurrent_forward(x), mixer64.recurrent_forward(x.double())
        # projections over d_model = 16 around a softmax over pos of dots over d_head = 8
        assert_close("parallel", mixer(x), want, want64, reduction=2 * 16 + pos + 8)


def test_pattern_is_causal_and_windowed() -> None:
    model = HookedHybrid(cfg(window=3).replace(layers=("attn", "swa")))
    _, cache = model.run_with_cache(torch.randint(0, 32, (2, 12)))
    for layer, window in [(0, 12), (1, 3)]:
        pattern = cache[f"blocks.{layer}.mixer.hook_pattern"]
        scores = cache[f"blocks.{layer}.mixer.hook_attn_scores"]
        assert pattern.shape == (2, 2, 12, 12)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 2, 12))
        q = torch.arange(12)[:, None]
        k = torch.arange(12)[None, :]
        visible = (k <= q) & (k > q - window)
        assert torch.all(pattern[..., ~visible] == 0)
        assert torch.all(pattern[..., visible] > 0)
        assert torch.all(torch.isneginf(scores[..., ~visible]))
    assert cache["blocks.0.mixer.hook_z"].shape == (2, 12, 2, 8)
    assert cache["blocks.0.mixer.hook_q"].shape == (2, 12, 2, 8)


def test_swa_window_defaults_to_quarter_context() -> None:
    assert SlidingWindowAttention(cfg()).window == 10


def test_rope_scores_depend_on_relative_position_only() -> None:
    cos, sin = rotary_cos_sin(20, 8, 10_000.0, torch.device("cpu"), torch.float32)
    q, k = torch.randn(8), torch.randn(8)
    x = torch.stack([q, k]).expand(20, 2, 8).transpose(0, 1)  # [2, pos, 8]
    rot = apply_rotary(x[:, :, None, :], cos, sin)[:, :, 0]  # [2, pos, 8]
    a = rot[0, 9] @ rot[1, 4]
    b = rot[0, 15] @ rot[1, 10]
    c = rot[0, 15] @ rot[1, 4]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_patching_pattern_changes_output() -> None:
    """Uniform attention patched into the pattern hook reaches the logits."""
    model = HookedHybrid(cfg()).eval()
    toks = torch.randint(0, 32, (1, 10))

    def uniform(pattern: torch.Tensor, hook: object) -> torch.Tensor:
        causal = torch.tril(torch.ones(10, 10))
        return (causal / causal.sum(-1, keepdim=True)).expand_as(pattern)

    base = model(toks)
    patched = model.run_with_hooks(toks, fwd_hooks=[("blocks.0.mixer.hook_pattern", uniform)])
    torch.testing.assert_close(patched[:, 0], base[:, 0])  # position 0 only sees itself
    assert not torch.allclose(patched[:, 1:], base[:, 1:])
