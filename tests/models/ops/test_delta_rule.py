"""Gated delta rule op: chunked (WY / UT transform) equals the step-by-step reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featlab.models.ops import delta_rule_chunk, delta_rule_recurrent
from tests.numerics import assert_close, to_float64

B, H, DK, DV = 2, 2, 8, 6


def _inputs(t: int, seed: int, with_state: bool) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "q": F.normalize(torch.randn(B, t, H, DK, generator=gen), dim=-1),
        # L2-normalised keys and beta in (0, 1), as the mixers feed them: the update is then
        # a contraction and the reference itself is well conditioned.
        "k": F.normalize(torch.randn(B, t, H, DK, generator=gen), dim=-1),
        "v": torch.randn(B, t, H, DV, generator=gen),
        "log_decay": F.logsigmoid(torch.randn(B, t, H, generator=gen) + 2),
        "beta": torch.rand(B, t, H, generator=gen),
        "initial_state": torch.randn(B, H, DK, DV, generator=gen) if with_state else None,
    }


def _plain_delta_rule(q, k, v, beta, state):
    """DeltaNet written the classic way, independently of the op: S += b k (v - S^T k)^T."""
    outs = []
    for t in range(q.shape[1]):
        kt, vt, bt = k[:, t], v[:, t], beta[:, t, :, None]
        pred = torch.einsum("bhkv,bhk->bhv", state, kt)
        state = state + torch.einsum("bhk,bhv->bhkv", kt, bt * (vt - pred))
        outs.append(torch.einsum("bhkv,bhk->bhv", state, q[:, t]))
    return torch.stack(outs, 1), state


@pytest.mark.parametrize("t", [1, 5, 16, 37, 64])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("chunk_size", [8, 16])
def test_chunk_equals_recurrent(t: int, with_state: bool, chunk_size: int) -> None:
    x = _inputs(t, seed=t, with_state=with_state)
    o_ref, s_ref, _ = delta_rule_recurrent(**x)
    o_ref64, s_ref64, _ = delta_rule_recurrent(**to_float64(x))
    o, s = delta_rule_chunk(**x, chunk_size=chunk_size)
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

    g_chunk = grads(delta_rule_chunk, x, chunk_size=16)
    g_ref, g_ref64 = grads(delta_rule_recurrent, x), grads(delta_rule_recurrent, to_float64(x))
    for name in x:  # a gradient runs the recurrence backwards over all t steps
        assert_close(f"d{name}", g_chunk[name], g_ref[name], g_ref64[name], reduction=t + DK)


def test_gate_one_is_deltanet() -> None:
    x = _inputs(29, seed=4, with_state=True)
    x["log_decay"] = torch.zeros_like(x["log_decay"])
    plain_args = [x[n] for n in ("q", "k", "v", "beta", "initial_state")]
    o_plain, s_plain = _plain_delta_rule(*plain_args)
    o_plain64, s_plain64 = _plain_delta_rule(*to_float64(plain_args))
    for form, (o, s) in (("recurrent", delta_rule_recurrent(**x)[:2]),
                         ("chunk", delta_rule_chunk(**x, chunk_size=8))):
        assert_close(f"{form} output", o, o_plain, o_plain64, reduction=29 + DK)
        assert_close(f"{form} state", s, s_plain, s_plain64, reduction=29)


def test_hand_checked_tiny_case() -> None:
    # d_k = 2, d_v = 1, q = (1, 1). Step 1: k = e1, v = 2, b = 1 -> S1 = [2, 0], o1 = 2.
    # Step 2: a = 0.5, k = e1, v = 5, b = 0.5 -> S' = [1, 0], u = 0.5 (5 - 1) = 2,
    # S2 = [3, 0], o2 = 3. (With a = 1: S2 = [3.5, 0].)
    q = torch.ones(1, 2, 1, 2)
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 2, 1, 2)
    v = torch.tensor([2.0, 5.0]).view(1, 2, 1, 1)
    beta = torch.tensor([1.0, 0.5]).view(1, 2, 1)
    g = torch.tensor([1.0, 0.5]).log().view(1, 2, 1)
    for o, s in (delta_rule_recurrent(q, k, v, g, beta)[:2], delta_rule_chunk(q, k, v, g, beta)):
        assert torch.allclose(o.flatten(), torch.tensor([2.0, 3.0]))
        assert torch.allclose(s.flatten(), torch.tensor([3.0, 0.0]))
    o, _, _ = delta_rule_recurrent(q, k, v, torch.zeros_like(g), beta)
    assert torch.allclose(o.flatten(), torch.tensor([2.0, 3.5]))


def test_rewrites_a_key_instead_of_adding() -> None:
    # The property that distinguishes the delta rule from linear attention: writing the same
    # unit key twice with beta = 1 replaces the stored value instead of summing the two.
    k = F.normalize(torch.randn(1, 1, 1, 4), dim=-1).expand(1, 2, 1, 4)
    v = torch.tensor([1.0, -3.0]).view(1, 2, 1, 1)
    o, _ = delta_rule_chunk(k, k, v, torch.zeros(1, 2, 1), torch.ones(1, 2, 1))
    assert torch.allclose(o.flatten(), torch.tensor([1.0, -3.0]), atol=1e-6)


def test_strong_decay_stays_finite() -> None:
    x = _inputs(40, seed=9, with_state=True)
    x["log_decay"] = torch.full_like(x["log_decay"], -30.0)
    o, s = delta_rule_chunk(**x, chunk_size=16)
    o_ref, _, _ = delta_rule_recurrent(**x)
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
    assert_close("output", o, o_ref, delta_rule_recurrent(**to_float64(x))[0], reduction=40 + DK)


def test_bad_beta_shape() -> None:
    x = _inputs(4, seed=0, with_state=False)
    x["beta"] = x["beta"].unsqueeze(-1)
    with pytest.raises(ValueError, match="beta must be"):
        delta_rule_recurrent(**x)
