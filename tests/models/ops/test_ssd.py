"""SSD op: the Mamba-2 block decomposition equals the step-by-step reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from featlab.models.ops import gla_recurrent, ssd_chunk, ssd_recurrent
from tests.numerics import assert_close, to_float64

B, H, DK, DV = 2, 2, 8, 6


def _inputs(t: int, seed: int, with_state: bool) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    dt = F.softplus(torch.randn(B, t, H, generator=gen) - 1)
    a = -torch.rand(H, generator=gen) - 0.5
    return {
        "q": torch.randn(B, t, H, DK, generator=gen) * 0.5,  # C
        "k": torch.randn(B, t, H, DK, generator=gen) * 0.5,  # B
        "v": dt.unsqueeze(-1) * torch.randn(B, t, H, DV, generator=gen),  # dt * x
        "log_decay": dt * a,  # dt * A
        "beta": None,
        "initial_state": torch.randn(B, H, DK, DV, generator=gen) if with_state else None,
    }


@pytest.mark.parametrize("t", [1, 5, 16, 37, 64])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("chunk_size", [8, 16])
def test_chunk_equals_recurrent(t: int, with_state: bool, chunk_size: int) -> None:
    x = _inputs(t, seed=t, with_state=with_state)
    o_ref, s_ref, _ = ssd_recurrent(**x)
    o_ref64, s_ref64, _ = ssd_recurrent(**to_float64(x))
    o, s = ssd_chunk(**x, chunk_size=chunk_size)
    assert o.shape == (B, t, H, DV) and s.shape == (B, H, DK, DV)
    assert_close("output", o, o_ref, o_ref64, reduction=t + DK)
    assert_close("final state", s, s_ref, s_ref64, reduction=t)


@pytest.mark.parametrize("t", [13, 40])
def test_gradients_match(t: int) -> None:
    x = _inputs(t, seed=100 + t, with_state=True)
    x["beta"] = torch.rand(B, t, H)
    gen = torch.Generator().manual_seed(7)
    w_o, w_s = torch.randn(B, t, H, DV, generator=gen), torch.randn(B, H, DK, DV, generator=gen)

    def grads(fn, inputs, **kw):
        leaves = {n: a.clone().requires_grad_() for n, a in inputs.items()}
        out = fn(**leaves, **kw)
        ((out[0] * w_o).sum() + (out[1] * w_s).sum()).backward()  # fp32 weights promote
        return {n: a.grad for n, a in leaves.items()}

    g_chunk = grads(ssd_chunk, x, chunk_size=16)
    g_ref, g_ref64 = grads(ssd_recurrent, x), grads(ssd_recurrent, to_float64(x))
    for name in x:  # a gradient runs the recurrence backwards over all t steps
        assert_close(f"d{name}", g_chunk[name], g_ref[name], g_ref64[name], reduction=t + DK)


def test_equals_quadratic_dual_form() -> None:
    # The "attention" side of the duality over the whole sequence: Y = (C B^T * L) X with
    # L_ij = exp(sum_{j < s <= i} dt_s A), an independent check of both forms.
    t = 23
    x = _inputs(t, seed=11, with_state=False)

    def quadratic(q, k, v, log_decay, **_):
        cum = log_decay.cumsum(1)  # [b, t, h]
        diff = cum[:, :, None] - cum[:, None, :]  # [b, i, j, h]
        mask = torch.ones(t, t, dtype=torch.bool).tril()[None, :, :, None]
        decay = diff.masked_fill(~mask, float("-inf")).exp()
        scores = torch.einsum("bihd,bjhd->bijh", q, k) * decay
        return torch.einsum("bijh,bjhv->bihv", scores, v)

    expected, expected64 = quadratic(**x), quadratic(**to_float64(x))
    for form, o in (("chunk", ssd_chunk(**x, chunk_size=8)[0]),
                    ("recurrent", ssd_recurrent(**x)[0])):
        assert_close(f"{form} output", o, expected, expected64, reduction=t + DK)


def test_is_gla_with_broadcast_decay() -> None:
    x = _inputs(19, seed=12, with_state=True)
    gla = dict(x, log_decay=x["log_decay"].unsqueeze(-1).expand(-1, -1, -1, DK))
    o_gla, o_gla64 = gla_recurrent(**gla)[0], gla_recurrent(**to_float64(gla))[0]
    assert_close("output", ssd_recurrent(**x)[0], o_gla, o_gla64, reduction=19 + DK)


def test_hand_checked_tiny_case() -> None:
    # A = -1, d = 1. Step 1: dt = 1, x = 2, B = C = 1 -> S1 = 2, y1 = 2.
    # Step 2: dt = 0.5, x = 4, B = 2, C = 3 -> S2 = e^-0.5 * 2 + 2 * (0.5 * 4), y2 = 3 * S2.
    dt = torch.tensor([1.0, 0.5])
    xs = torch.tensor([2.0, 4.0])
    q = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)
    k = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    v = (dt * xs).view(1, 2, 1, 1)
    g = (-dt).view(1, 2, 1)
    s2 = math.exp(-0.5) * 2 + 4
    expected = torch.tensor([2.0, 3 * s2])
    assert torch.allclose(ssd_recurrent(q, k, v, g)[0].flatten(), expected)
    assert torch.allclose(ssd_chunk(q, k, v, g)[0].flatten(), expected)


def test_bad_decay_shape_is_explained() -> None:
    x = _inputs(4, seed=0, with_state=False)
    x["log_decay"] = x["log_decay"].unsqueeze(-1).expand(-1, -1, -1, DK)
    with pytest.raises(ValueError, match=r"log_decay must be \[batch, pos, heads\]"):
        ssd_chunk(**x)
