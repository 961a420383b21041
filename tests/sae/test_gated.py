"""The gated kind: the code is the paper's formula, the losses reach the parameters they
should, and `train_sae` / `evaluate` / the registry treat it like every other kind."""

from __future__ import annotations

import pytest
import torch

from featlab.sae import GatedSAE, build_sae, evaluate, kind_names, make_config, train_sae
from featlab.sae.registry import uses_k


def _random_gated(d_in: int = 10, d_sae: int = 30, dtype: str = "float64") -> GatedSAE:
    sae = build_sae(make_config("gated", d_in, d_sae, dtype=dtype))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return sae


def _data(d: int = 12, n: int = 2048) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, d, generator=g)
    on = (torch.rand(n, 40, generator=g) < 0.08).float()
    return (on * torch.rand(n, 40, generator=g)) @ feats + 0.5


def test_code_is_gate_times_relu_of_magnitude():
    sae = _random_gated()
    x = torch.randn(64, 10, dtype=torch.float64)
    xc = x - sae.b_dec
    gate = (xc @ sae.W_enc + sae.b_gate) > 0
    mag = (xc @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag).relu()
    want = gate * mag
    with torch.no_grad():
        out = sae(x)
        assert torch.equal(out.z, want)
        assert (out.z > 0).any() and (out.z == 0).any()
        assert (gate & (mag > 0) & ~(out.z > 0)).sum() == 0
        # the gate matters: latents with a positive magnitude but a closed gate stay 0
        assert ((mag > 0) & ~gate).any()
        torch.testing.assert_close(out.x_hat, want @ sae.W_dec + sae.b_dec, rtol=0, atol=1e-12)
        # the sparse path (evaluate's) is the dense one; [batch, pos, d_in] keeps its shape
        code = sae.encode_sparse(x)
        torch.testing.assert_close(sae.decode_sparse(code), out.x_hat, rtol=0, atol=1e-12)
        assert sae.encode(x.reshape(8, 8, 10)).shape == (8, 8, 30)


def test_losses_reach_the_right_parameters():
    sae = _random_gated(dtype="float32")
    x = torch.randn(128, 10)
    out = sae.training_loss(x)
    params = dict(sae.named_parameters())
    # the reconstruction through the step gate gives b_gate no gradient
    g_mse = torch.autograd.grad(out.mse, list(params.values()), allow_unused=True)
    g_mse = dict(zip(params, g_mse, strict=True))
    assert g_mse["b_gate"] is None or not g_mse["b_gate"].any()
    assert g_mse["r_mag"].abs().sum() > 0 and g_mse["W_dec"].abs().sum() > 0
    # the auxiliary reconstruction goes through a frozen decoder: no gradient to W_dec, b_dec
    out = sae.training_loss(x)
    g_aux = torch.autograd.grad(out.aux, list(params.values()), allow_unused=True)
    g_aux = dict(zip(params, g_aux, strict=True))
    assert g_aux["W_dec"] is None or not g_aux["W_dec"].any()
    assert g_aux["b_gate"].abs().sum() > 0 and g_aux["W_enc"].abs().sum() > 0
    assert g_aux["r_mag"] is None and g_aux["b_mag"] is None
    # loss = mse + l1_coef * L1(ReLU(pi_gate)) + aux_coef * aux
    xc = x - sae.b_dec
    l1 = ((xc @ sae.W_enc + sae.b_gate).relu() * sae.W_dec.norm(dim=-1)).sum(-1).mean()
    torch.testing.assert_close(out.loss, out.mse + l1 + out.aux)
    assert out.aux > 0 and out.l0 > 0


def test_registry_and_config_know_gated():
    assert "gated" in kind_names() and not uses_k("gated") and uses_k("topk")
    cfg = make_config("gated", 6, 12, 4, l1_coef=0.1)
    assert cfg.k is None, "gated has no k; a k given (train_sae's default 32) is dropped"
    assert cfg.hparams == {"l1_coef": 0.1, "aux_coef": 1.0}
    sae = build_sae(cfg)
    assert sorted(n for n, _ in sae.named_parameters()) == [
        "W_dec", "W_enc", "b_dec", "b_gate", "b_mag", "r_mag"]  # fmt: skip
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    sae.reset_parameters()  # callable again after construction
    assert not hasattr(sae, "b_enc")


def test_train_sae_gated_lowers_the_loss_and_evaluates():
    data = _data()
    losses: list[float] = []
    sae = train_sae(
        data, kind="gated", d_sae=24, tokens=2048 * 6, batch_size=256, progress=False,
        l1_coef=0.02, callback=lambda step, saes, logs: losses.append(logs[0]["loss"]),
    )  # fmt: skip
    assert sae.kind == "gated" and sae.cfg.k is None and not sae.training
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    m = evaluate(sae, data[:1024])
    assert m.fvu < 0.5 and 0 < m.l0 < 24, m
    norms = sae.W_dec.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_gated_resume_after_interruption_is_bit_identical(tmp_path):
    data = _data()
    kw = dict(kind="gated", d_sae=24, tokens=12 * 128, batch_size=128, progress=False, seed=3,
              l1_coef=0.05)  # fmt: skip
    full = train_sae(data, **kw)

    class Crash(Exception):
        pass

    def crash(step, saes, logs):
        if step == 6:
            raise Crash

    with pytest.raises(Crash):
        train_sae(data, checkpoint_dir=tmp_path, checkpoint_every=4, callback=crash, **kw)
    steps: list[int] = []
    resumed = train_sae(data, checkpoint_dir=tmp_path, checkpoint_every=4,
                        callback=lambda step, *_: steps.append(step), **kw)  # fmt: skip
    assert steps[0] == 4, "resumed from the step-4 checkpoint"
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):  # fmt: skip
        assert torch.equal(a, b), name
