"""GLA op: the chunked form equals the step-by-step reference (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featlab.models.ops import gla_chunk, gla_recurrent
from tests.numerics import assert_close, to_float64

B, H, DK, DV = 2, 2, 8, 6


def _inputs(t: int, seed: int, with_state: bool) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "q": torch.randn(B, t, H, DK, generator=gen) * 0.5,
        "k": torch.randn(B, t, H, DK, generator=gen) * 0.5,
        "v": torch.randn(B, t, H, DV, generator=gen),
        "log_decay": F.logsigmoid(torch.randn(B, t, H, DK, generator=gen) + 2),
        "beta": torch.rand(B, t, H, generator=gen),
        "initial_state": torch.randn(B, H, DK, DV, generator=gen) if with_state else None,
    }


@pytest.mark.parametrize("t", [1, 5, 16, 37, 64])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("chunk_size", [8, 16])
def test_chunk_equals_recurrent(t: int, with_state: bool, chunk_size: int) -> None:
    x = _inputs(t, seed=t, with_state=with_state)
    o_ref, s_ref, _ = gla_recurrent(**x)
    o_ref64, s_ref64, _ = gla_recurrent(**to_float64(x))
    o, s = gla_chunk(**x, chunk_size=chunk_size)
    assert o.shape == (B, t, H, DV) and s.shape == (B, H, DK, DV)
    assert_close("output", o, o_ref, o_ref64, reduction=t + DK)
    assert_close("final state", s, s_ref, s_ref64, reduction=t)


@pytest.mark.parametrize("t", [13, 40])
def test_gradients_match(t: int) -> None:
    x = _inputs(t, seed=100 + t, with_state=True)
    gen = torch.Generator().manual_seed(7)
    w_o, w_s = torch.randn(B, t, H, DV, generator=gen), torch.randn(B, H, DK, DV, generator=gen)

    def grads(fn, inputs, **kw):
        leaves = {n: a.clone().requires_grad_() for n, a in inputs.items()}
        out = fn(**leaves, **kw)
        ((out[0] * w_o).sum() + (out[1] * w_s).sum()).backward()  # fp32 weights promote
        return {n: a.grad for n, a in leaves.items()}

    g_chunk = grads(gla_chunk, x, chunk_size=16)
    g_ref, g_ref64 = grads(gla_recurrent, x), grads(gla_recurrent, to_float64(x))
    for name in x:  # a gradient runs the recurrence backwards over all t steps
        assert_close(f"d{name}", g_chunk[name], g_ref[name], g_ref64[name], reduction=t + DK)


def test_gate_one_is_causal_linear_attention() -> None:
    x = _inputs(29, seed=3, with_state=False)
    x["log_decay"] = torch.zeros_like(x["log_decay"])

    def linear_attention(q, k, v, beta, **_):
        scores = torch.einsum("bihd,bjhd->bhij", q, k * beta.unsqueeze(-1))
        scores = scores * torch.ones(29, 29, dtype=q.dtype).tril()
        return torch.einsum("bhij,bjhv->bihv", scores, v)

    expected, expected64 = linear_attention(**x), linear_attention(**to_float64(x))
    for form, o in (("recurrent", gla_recurrent(**x)[0]),
                    ("chunk", gla_chunk(**x, chunk_size=8)[0])):
        assert_close(f"{form} output", o, expected, expected64, reduction=29 + DK)


def test_hand_checked_tiny_case() -> None:
    # S1 = 3, o1 = 1*3; S2 = 0.5*3 + 4 = 5.5, o2 = 2*5.5.
    q = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    k = torch.ones(1, 2, 1, 1)
    v = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    g = torch.full((1, 2, 1, 1), 0.5).log()
    o, s, states = gla_recurrent(q, k, v, g, output_states=True)
    assert torch.allclose(o.flatten(), torch.tensor([3.0, 11.0]))
    assert torch.allclose(states.flatten(), torch.tensor([3.0, 5.5]))
    assert torch.allclose(gla_chunk(q, k, v, g)[0].flatten(), torch.tensor([3.0, 11.0]))


def test_output_states_read_out() -> None:
    x = _inputs(21, seed=5, with_state=True)
    o, s, states = gla_recurrent(**x, output_states=True)
    assert states.shape == (B, 21, H, DK, DV)
    assert torch.equal(states[:, -1], s)
    read_out = torch.einsum("bthkv,bthk->bthv", states, x["q"])
    assert_close("read-out", read_out, o, gla_recurrent(**to_float64(x))[0], reduction=21 + DK)


def test_strong_decay_stays_finite() -> None:
    # Cumulative log decays of -30 per step reach -480 inside a 16-chunk: a factorised
    # q*e^G / k*e^-G form would overflow; the masked pairwise form must not.
    x = _inputs(40, seed=9, with_state=True)
    x["log_decay"] = torch.full_like(x["log_decay"], -30.0)
    o, s = gla_chunk(**x, chunk_size=16)
    o_ref, _, _ = gla_recurrent(**x)
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
    assert_close("output", o, o_ref, gla_recurrent(**to_float64(x))[0], reduction=40 + DK)


def test_bad_shapes_name_both_sides() -> None:
    x = _inputs(4, seed=0, with_state=False)
    x["log_decay"] = x["log_decay"][..., 0]
    with pytest.raises(ValueError, match=r"log_decay must be \[batch, pos, heads, d_k\]"):
        gla_chunk(**x)

