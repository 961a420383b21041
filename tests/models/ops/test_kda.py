"""KDA op (delta rule with a per-key-channel decay): the chunked form equals the step-by-step
reference (values and gradients, any length), equal decays across channels give the gated
delta rule, and a hand-checked case pins the order "decay, then erase and write"."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featlab.models.ops import (
    OPS,
    delta_rule_chunk,
    delta_rule_recurrent,
    kda_chunk,
    kda_recurrent,
)
from tests.numerics import assert_close, to_float64

B, H, DK, DV = 2, 2, 8, 6


def _inputs(t: int, seed: int, with_state: bool) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "q": F.normalize(torch.randn(B, t, H, DK, generator=gen), dim=-1),
        # unit keys and beta in (0, 1), as the mixer feeds them (the update is a contraction)
        "k": F.normalize(torch.randn(B, t, H, DK, generator=gen), dim=-1),
        "v": torch.randn(B, t, H, DV, generator=gen),
        # per channel, from fast (e^-3 a step) to nearly none: channels must not be mixed up
        "log_decay": F.logsigmoid(2 * torch.randn(B, t, H, DK, generator=gen) + 2),
        "beta": torch.rand(B, t, H, generator=gen),
        "initial_state": torch.randn(B, H, DK, DV, generator=gen) if with_state else None,
    }


@pytest.mark.parametrize("t", [1, 5, 16, 37, 64, 71])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("chunk_size", [8, 16, 64])
def test_chunk_equals_recurrent(t: int, with_state: bool, chunk_size: int) -> None:
    x = _inputs(t, seed=t, with_state=with_state)
    o_ref, s_ref, _ = kda_recurrent(**x)
    o_ref64, s_ref64, _ = kda_recurrent(**to_float64(x))
    o, s = kda_chunk(**x, chunk_size=chunk_size)
    assert o.shape == (B, t, H, DV) and s.shape == (B, H, DK, DV)
    assert_close("output", o, o_ref, o_ref64, reduction=t + DK)
    assert_close("final state", s, s_ref, s_ref64, reduction=t)


def test_states_and_step_agree() -> None:
    """The per-token states are what `step` produces and what the read-out reads."""
    x = _inputs(21, seed=2, with_state=True)
    o, final, states = OPS["kda"].recurrent(**x, output_states=True)
    assert states.shape == (B, 21, H, DK, DV) and torch.equal(states[:, -1], final)
    state = x["initial_state"]
    for t in (0, 1, 2):
        state = OPS["kda"].step(state, x["k"][:, t], x["v"][:, t], x["log_decay"][:, t],
                                x["beta"][:, t])
        assert torch.equal(state, states[:, t])
    assert torch.allclose(o, torch.einsum("bthkv,bthk->bthv", states, x["q"]))


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

    g_chunk = grads(kda_chunk, x, chunk_size=16)
    g_ref, g_ref64 = grads(kda_recurrent, x), grads(kda_recurrent, to_float64(x))
    for name in x:  # a gradient runs the recurrence backwards over all t steps
        assert torch.isfinite(g_chunk[name]).all(), name
        assert_close(f"d{name}", g_chunk[name], g_ref[name], g_ref64[name], reduction=t + DK)


@pytest.mark.parametrize("t", [29, 50])
def test_equal_channel_decays_are_the_delta_rule(t: int) -> None:
    x = _inputs(t, seed=4, with_state=True)
    scalar = x["log_decay"][..., 0]  # [b, t, h]
    x["log_decay"] = scalar.unsqueeze(-1).expand(-1, -1, -1, DK)
    dr = {**x, "log_decay": scalar}
    o_dr, s_dr, _ = delta_rule_recurrent(**dr)
    o_dr64, s_dr64, _ = delta_rule_recurrent(**to_float64(dr))
    assert_close("delta_rule chunk", delta_rule_chunk(**dr)[0], o_dr, o_dr64, reduction=t + DK)
    for form, (o, s) in (("recurrent", kda_recurrent(**x)[:2]),
                         ("chunk", kda_chunk(**x, chunk_size=16))):
        assert_close(f"{form} output", o, o_dr, o_dr64, reduction=t + DK)
        assert_close(f"{form} state", s, s_dr, s_dr64, reduction=t)


def test_per_channel_decay_is_not_scalar() -> None:
    """Unequal channel decays give a different result from any one of them broadcast: the
    equality above is not vacuous."""
    x = _inputs(20, seed=5, with_state=True)
    o, _, _ = kda_recurrent(**x)
    for channel in (0, DK - 1):
        scalar = x["log_decay"][..., channel]
        o_dr, _, _ = delta_rule_recurrent(**{**x, "log_decay": scalar})
        assert (o - o_dr).abs().max() > 1e-2


def test_hand_checked_tiny_case() -> None:
    # d_k = 2, d_v = 1, q = (1, 1), decays (1/2, 1/4) on the two key channels.
    # Step 1 from S0 = [4, 8]: S' = [2, 2], k = e1, v = 5, b = 1 -> u = 5 - 2 = 3, S1 = [5, 2],
    # o1 = 7. Step 2: S' = [2.5, 0.5], k = e2, v = 1, b = 0.5 -> u = 0.5 (1 - 0.5) = 0.25,
    # S2 = [2.5, 0.75], o2 = 3.25. (Erasing before decaying would give u = 0.5 (1 - 2).)
    q = torch.ones(1, 2, 1, 2)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    v = torch.tensor([5.0, 1.0]).view(1, 2, 1, 1)
    beta = torch.tensor([1.0, 0.5]).view(1, 2, 1)
    g = torch.tensor([0.5, 0.25]).log().expand(2, 2).reshape(1, 2, 1, 2)
    s0 = torch.tensor([4.0, 8.0]).view(1, 1, 2, 1)
    for form, (o, s) in (("recurrent", kda_recurrent(q, k, v, g, beta, s0)[:2]),
                         ("chunk", kda_chunk(q, k, v, g, beta, s0))):
        assert torch.allclose(o.flatten(), torch.tensor([7.0, 3.25])), form
        assert torch.allclose(s.flatten(), torch.tensor([2.5, 0.75])), form


def test_strong_decay_stays_finite() -> None:
    x = _inputs(40, seed=9, with_state=True)
    x["log_decay"][..., :4] = -30.0  # half the channels forget at once, half barely
    o, s = kda_chunk(**x, chunk_size=16)
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
    o_ref64 = kda_recurrent(**to_float64(x))[0]
    assert_close("output", o, kda_recurrent(**x)[0], o_ref64, reduction=40 + DK)


def test_decay_must_be_per_channel() -> None:
    x = _inputs(4, seed=0, with_state=False)
    x["log_decay"] = x["log_decay"][..., 0]
    with pytest.raises(ValueError, match=r"log_decay must be \[batch, pos, heads, d_k\]"):
        kda_chunk(**x)
