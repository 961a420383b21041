"""Matching Pursuit: orthogonal residuals, monotone residual norms, the Gram fast path."""

from __future__ import annotations

import pytest
import torch

from featlab.sae import build_sae, make_config, train_sae


def _mp(k: int = 4, **hp):
    torch.manual_seed(0)
    sae = build_sae(make_config("matching_pursuit", 16, 48, k, **hp))
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.1)
    return sae


def test_residual_orthogonal_to_last_atom():
    sae = _mp()
    x = torch.randn(64, 16)
    with torch.no_grad():
        for steps in (1, 2, 5):
            vals, idx, r = sae.pursuit(x, steps)
            last = sae.W_dec[idx[:, -1]]
            moved = vals[:, -1] > 0
            assert moved.any()
            dots = (r * last).sum(-1)[moved]
            assert dots.abs().max() < 1e-5


def test_residual_norm_never_rises_with_more_steps():
    sae = _mp()
    x = torch.randn(64, 16)
    with torch.no_grad():
        norms = torch.stack([sae.pursuit(x, t)[2].norm(dim=-1) for t in range(0 + 1, 12)])
    assert torch.all(norms[1:] <= norms[:-1] + 1e-6)
    assert torch.all(norms[-1] < (x - sae.b_dec).norm(dim=-1))


def test_gram_path_matches_direct_path():
    sae = _mp(k=6)
    x = torch.randn(40, 16)
    v1, i1, r1 = sae.pursuit(x, 6, gram=False)
    v2, i2, r2 = sae.pursuit(x, 6, gram=True)
    assert torch.equal(i1, i2)
    torch.testing.assert_close(v1, v2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1, r2, atol=1e-5, rtol=1e-5)


def test_chunked_gram_selection_matches_direct_path_on_many_rows():
    torch.manual_seed(2)
    sae = build_sae(make_config("matching_pursuit", 32, 512, 5))
    x = torch.randn(600, 32)  # three chunks of 256 rows, blocked argmax over 512 latents
    assert sae._use_gram(600, 5)
    v1, i1, r1 = sae.pursuit(x, 5, gram=False)
    v2, i2, r2 = sae.pursuit(x, 5, gram=True)
    assert torch.equal(i1, i2)
    torch.testing.assert_close(r1, r2, atol=1e-5, rtol=1e-5)
    # and the training loss uses it: x_hat = x - r
    out = sae.training_loss(x)
    torch.testing.assert_close(out.x_hat, x - r1.detach(), atol=1e-5, rtol=1e-5)


def test_reconstruction_is_input_minus_residual_and_tolerance_stops():
    sae = _mp(k=8, residual_tol=0.5)
    x = torch.randn(30, 16)
    out = sae(x)
    with torch.no_grad():
        _, _, r = sae.pursuit(x, 8)
    torch.testing.assert_close(out.x_hat, x - r, atol=1e-5, rtol=1e-5)
    # a stopped row adds nothing more: its L0 never exceeds the step count
    assert int((out.z > 0).sum(-1).max()) <= 8


def test_more_inference_steps_lower_the_error():
    data = torch.randn(2048, 16)
    sae = train_sae(data, kind="matching_pursuit", d_sae=48, k=3, tokens=4096, batch_size=256,
                    progress=False, inference_steps=8)  # fmt: skip
    x = data[:200]
    err_inf = (sae(x).x_hat - x).pow(2).sum()
    sae.train()
    err_train = (sae(x).x_hat - x).pow(2).sum()
    sae.eval()
    assert err_inf < err_train
    norms = sae.W_dec.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_data_atom_init_uses_distinct_centred_rows_of_the_first_batch():
    sae = _mp(k=2)
    x = torch.randn(30, 16)
    x[1] = x[0]  # a repeated activation must not become two tied atoms
    sae.init_from_sample(x, "mean")
    centred = torch.unique(x, dim=0) - x.mean(0)
    unit = centred / centred.norm(dim=-1, keepdim=True)
    # 29 distinct rows for 48 atoms: 29 atoms come from the data, 19 keep their random start
    cos = sae.W_dec @ unit.T
    assert int((cos.amax(1) > 1 - 1e-5).sum()) == 29
    norms = sae.W_dec.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_random_atom_init_keeps_the_random_dictionary():
    sae = _mp(k=2, atom_init="random")
    before = sae.W_dec.detach().clone()
    sae.init_from_sample(torch.randn(30, 16))
    assert torch.equal(sae.W_dec, before)
    with pytest.raises(ValueError, match="atom_init"):
        _mp(atom_init="kmeans")


def test_training_counts_an_atom_picked_twice_in_a_row_once():
    torch.manual_seed(4)
    sae = build_sae(make_config("matching_pursuit", 16, 8, 12))  # 12 steps, 8 atoms: repeats
    x = torch.randn(50, 16)
    out = sae.training_loss(x)
    with torch.no_grad():
        vals, idx, _ = sae.pursuit(x, 12)
    rows = torch.arange(50)[:, None].expand_as(idx)
    pairs = torch.unique((rows * 8 + idx)[vals > 0])
    assert pairs.numel() < int((vals > 0).sum())  # the case under test occurs
    torch.testing.assert_close(out.counts, torch.bincount(pairs % 8, minlength=8).float())
    assert out.l0 == pairs.numel() / 50
