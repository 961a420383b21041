"""TopK SAE: the code, the sparse backward, AuxK and the decoder constraint."""

from __future__ import annotations

import copy

import pytest
import torch

from featlab.datasets.superposition import make_superposition
from featlab.sae import build_sae, make_config, train_sae
from featlab.sae.sparse import selected_preacts, sparse_decode, topk_select
from tests.numerics import assert_close


def _sae(d_in: int = 8, d_sae: int = 32, k: int = 3, **hp):
    # the plain transpose under perturbations of order 0.1: on the default's smaller encoder
    # the same noise would swamp the encoder it perturbs
    hp.setdefault("encoder_init_norm", 1.0)
    sae = build_sae(make_config("topk", d_in, d_sae, k, **hp))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
        sae.W_enc.add_(0.1 * torch.randn_like(sae.W_enc))
    return sae


def test_code_is_relu_of_topk_and_shapes_follow_input():
    sae = _sae()
    x = torch.randn(5, 7, 8)
    z = sae.encode(x)
    assert z.shape == (5, 7, 32)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    top = pre.topk(3, dim=-1)
    ref = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    torch.testing.assert_close(z, ref)
    out = sae(x)
    assert out.x_hat.shape == x.shape
    torch.testing.assert_close(out.x_hat, z @ sae.W_dec + sae.b_dec, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae.decode(z), out.x_hat, atol=1e-5, rtol=1e-5)
    flat = sae(x.reshape(-1, 8))
    torch.testing.assert_close(flat.x_hat.reshape(5, 7, 8), out.x_hat)


def test_sparse_backward_matches_dense_autograd():
    torch.manual_seed(3)
    n, d, f, k = 6, 5, 12, 3
    x = torch.randn(n, d, requires_grad=True)
    W_enc = torch.randn(d, f, requires_grad=True)
    b_enc = torch.randn(f, requires_grad=True)
    b_dec = torch.randn(d, requires_grad=True)
    W_dec = torch.randn(f, d, requires_grad=True)
    target = torch.randn(n, d)

    def loss_sparse():
        with torch.no_grad():
            pre = (x - b_dec) @ W_enc + b_enc
            vals, idx = topk_select(pre, k)
        v = selected_preacts(x, b_dec, W_enc, b_enc, idx, vals).relu()
        return (sparse_decode(v, idx, W_dec) + b_dec - target).pow(2).sum()

    def loss_dense():
        pre = (x - b_dec) @ W_enc + b_enc
        top = pre.topk(k, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        return (z @ W_dec + b_dec - target).pow(2).sum()

    params = (x, W_enc, b_enc, b_dec, W_dec)
    g_sparse = torch.autograd.grad(loss_sparse(), params)
    g_dense = torch.autograd.grad(loss_dense(), params)
    for a, b in zip(g_sparse, g_dense, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_coo_backward_matches_dense_autograd():
    torch.manual_seed(4)
    n, d, f = 5, 4, 9
    x = torch.randn(n, d, requires_grad=True)
    W_enc = torch.randn(d, f, requires_grad=True)
    b_enc = torch.randn(f, requires_grad=True)
    b_dec = torch.randn(d, requires_grad=True)
    rows = torch.tensor([0, 0, 1, 3, 3, 3, 4])
    cols = torch.tensor([2, 5, 0, 1, 7, 8, 8])
    with torch.no_grad():
        pre_sel = ((x - b_dec) @ W_enc + b_enc)[rows, cols]
    params = (x, W_enc, b_enc, b_dec)
    w = torch.randn(rows.numel())
    g1 = torch.autograd.grad(
        (selected_preacts(x, b_dec, W_enc, b_enc, cols, pre_sel, rows) * w).sum(), params
    )
    g2 = torch.autograd.grad((((x - b_dec) @ W_enc + b_enc)[rows, cols] * w).sum(), params)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_decoder_rows_unit_norm_and_parallel_grad_removed():
    sae = _sae()
    x = torch.randn(64, 8)
    out = sae.training_loss(x)
    out.loss.backward()
    sae.remove_parallel_grad()
    along = (sae.W_dec.grad * sae.W_dec).sum(-1)
    assert along.abs().max() < 1e-5
    data = torch.randn(2048, 8)
    trained = train_sae(data, kind="topk", d_sae=32, k=3, tokens=4096, batch_size=256,
                        progress=False, lr=1e-2)  # fmt: skip
    norms = trained.W_dec.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_encoder_initialised_as_decoder_transpose():
    from featlab.sae.config import ENCODER_INIT_NORM

    sae = build_sae(make_config("topk", 6, 10, 2))
    torch.testing.assert_close(sae.W_enc, ENCODER_INIT_NORM * sae.W_dec.T)
    assert sae.hp.encoder_init_norm == ENCODER_INIT_NORM == 0.3


def test_auxk_lowers_dead_fraction():
    # a regime where latents die from the optimisation, not because the data has too few
    # features (with d_sae >> n_features AuxK cannot help and measurably does not)
    data = make_superposition(16_384, n_features=256, d=32, l0=4.0, seed=0).acts
    common = dict(kind="topk", d_sae=512, k=4, tokens=32_768, batch_size=256, lr=1e-2,
                  progress=False, dead_tokens=8192, seed=1, decay_frac=0.0)  # fmt: skip
    with_aux = train_sae(data, aux_coef=1 / 32, **common)
    without = train_sae(data, aux_coef=0.0, **common)
    dead_with = float(with_aux.dead_mask(8192).float().mean())
    dead_without = float(without.dead_mask(8192).float().mean())
    assert dead_without > 0.02, "the setting should produce dead latents without AuxK"
    assert dead_with < 0.75 * dead_without


def test_k_larger_than_width_is_rejected():
    with pytest.raises(ValueError, match="k=40 is larger than the SAE width d_sae=32"):
        make_config("topk", 8, 32, 40)


def _rank_data(n: int, d_in: int = 16, rank: int = 2, seed: int = 0) -> torch.Tensor:
    """Low-rank Gaussian data: far more latents than directions, so many die quickly."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, rank, generator=g) @ torch.randn(rank, d_in, generator=g)


def _dense_auxk(sae, x: torch.Tensor, dead: torch.Tensor, k: int, k_aux: int):
    """AuxK by plain autograd on dense pre-activations: (e_hat, residual)."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    top = pre.topk(k, dim=1)
    x_hat = (top.values.relu()[:, :, None] * sae.W_dec[top.indices]).sum(1) + sae.b_dec
    idx = pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=1).indices
    e_hat = (pre.gather(1, idx).relu()[:, :, None] * sae.W_dec[idx]).sum(1)
    return e_hat, (x - x_hat).detach()


def _dense_auxk_loss(sae, x: torch.Tensor, dead: torch.Tensor, normalize: bool):
    """Gao et al.'s AuxK by plain autograd on dense pre-activations: (loss, its gradients
    with respect to W_enc, b_enc, b_dec, W_dec), in the dtype of ``sae`` and ``x``."""
    e_hat, resid = _dense_auxk(sae, x, dead, 3, 4)
    err = (e_hat - resid).pow(2).sum(-1).mean()
    var_e = (resid - resid.mean(0)).pow(2).sum(-1).mean()
    var_x = (x - x.mean(0)).pow(2).sum(-1).mean()
    # FVU + coef * NMSE, times Var(x) to be in the units of featlab's MSE; the variances
    # are constants of the batch, as in the loss itself
    loss = err * (var_x / var_e).detach() if normalize else err
    grads = torch.autograd.grad(loss, [sae.W_enc, sae.b_enc, sae.b_dec, sae.W_dec])
    return loss.detach(), grads


@pytest.mark.parametrize("normalize", [True, False])
def test_auxk_loss_and_its_gradient_match_the_dense_formula(normalize):
    torch.manual_seed(4)
    sae = _sae(d_in=8, d_sae=48, k=3, dead_tokens=10, k_aux=4, aux_normalize=normalize)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[::2] = True
    sae.tokens_since_fired[dead] = 10
    x = torch.randn(32, 8)
    out = sae.training_loss(x)
    params = [sae.W_enc, sae.b_enc, sae.b_dec, sae.W_dec]
    got = torch.autograd.grad(out.aux, params)
    # the dense formula in fp32 (what fp32 can do) and in float64 (the truth), as
    # tests/numerics.py compares everything: normwise, not at a fixed elementwise tolerance
    want32, grads32 = _dense_auxk_loss(sae, x, dead, normalize)
    want64, grads64 = _dense_auxk_loss(copy.deepcopy(sae).double(), x.double(), dead, normalize)
    assert_close("aux", out.aux.reshape(1), want32.reshape(1), want64.reshape(1), reduction=32 * 8)
    for name, a, b32, b64 in zip(["W_enc", "b_enc", "b_dec", "W_dec"], got, grads32, grads64,
                                 strict=True):
        assert_close(f"d aux / d {name}", a, b32, b64, reduction=32 * 8)
    # AuxK trains the encoder (W_enc columns, b_enc) of dead latents, and only of those
    assert float(got[0][:, dead].abs().sum(0).min()) > 0
    assert float(got[1][dead].abs().min()) > 0
    assert float(got[0][:, ~dead].abs().max()) == 0


def test_decoder_projection_keeps_the_auxk_gradient_of_dead_rows():
    sae = _sae(d_in=8, d_sae=48, k=3, dead_tokens=10, k_aux=4)
    sae.tokens_since_fired[::2] = 10
    out = sae.training_loss(torch.randn(32, 8))
    (out.aux * sae.hp.aux_coef).backward()
    used = sae.W_dec.grad.norm(dim=-1) > 0  # the dead rows some token's AuxK picked
    assert int(used.sum()) >= 4 and not bool(used[1::2].any())
    sae.remove_parallel_grad()
    g = sae.W_dec.grad[used]
    assert float(g.norm(dim=-1).min()) > 0, "only the radial part may be removed"


def test_auxk_runs_in_a_short_run_with_the_default_window():
    # With the former fixed window (1M tokens) no latent of a run this short ever counted as
    # dead, so k_aux was 0 and the aux loss exactly 0 throughout.
    data = _rank_data(8192)
    seen = []
    sae = train_sae(data, kind="topk", d_sae=256, k=2, tokens=8192, batch_size=256,
                    progress=False, callback=lambda s, _, logs: seen.append(logs[0]["aux"]))
    assert sae.hp.dead_tokens == 819, "a tenth of the run"
    assert max(seen) > 0, "AuxK must take part once latents die"
    assert float(sae.dead_mask().float().mean()) > 0


def test_dead_tokens_must_be_positive():
    with pytest.raises(ValueError, match="dead_tokens=0.*positive int.*None"):
        make_config("topk", 8, 32, 3, dead_tokens=0)


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "feature_choice"])
def test_encoder_starts_as_the_scaled_decoder_transpose(kind):
    plain = build_sae(make_config(kind, 8, 32, 3, encoder_init_norm=1.0))
    small = build_sae(make_config(kind, 8, 32, 3, encoder_init_norm=0.1))
    torch.testing.assert_close(plain.W_enc, plain.W_dec.T)
    torch.testing.assert_close(small.W_enc, 0.1 * plain.W_dec.T)
    torch.testing.assert_close(small.W_dec, plain.W_dec)  # decoder rows stay unit norm
    for bad in (0.0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="encoder_init_norm"):
            make_config(kind, 8, 32, 3, encoder_init_norm=bad)
