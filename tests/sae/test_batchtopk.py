"""BatchTopK / Mutual Choice: global top k*B selection and the inference threshold."""

from __future__ import annotations

import torch

from featlab.sae import SAE_KINDS, build_sae, make_config, train_sae
from featlab.sae.batchtopk import BatchTopKSAE, batch_topk_select


def test_mutual_choice_is_an_alias_of_batchtopk():
    assert SAE_KINDS["mutual_choice"] is BatchTopKSAE
    assert make_config("mutual_choice", 4, 8, 2).kind == "batchtopk"


def test_mask_equals_global_top_k_times_batch():
    torch.manual_seed(0)
    sae = build_sae(make_config("batchtopk", 8, 24, 3))
    x = torch.randn(16, 8)
    pre = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc).relu()
    vals, rows, cols = batch_topk_select(pre, 3 * 16)
    mask = torch.zeros_like(pre, dtype=torch.bool)
    mask[rows, cols] = True
    flat = pre.flatten()
    ref = torch.zeros_like(flat, dtype=torch.bool)
    ref[flat.topk(48).indices] = True
    ref &= flat > 0
    assert torch.equal(mask.flatten(), ref)
    assert torch.all(rows[1:] >= rows[:-1]), "entries must be row-sorted for embedding_bag"
    torch.testing.assert_close(vals, pre[rows, cols])
    # per-token counts vary while the batch total is k*B
    counts = mask.sum(1)
    assert counts.sum() == 48 and counts.max() > counts.min()


def test_training_loss_reconstruction_matches_dense_code():
    torch.manual_seed(1)
    sae = build_sae(make_config("batchtopk", 8, 24, 3))
    x = torch.randn(16, 8)
    out = sae.training_loss(x)
    pre = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc).relu()
    flat = pre.flatten()
    z = torch.zeros_like(flat)
    top = flat.topk(48)
    z[top.indices] = top.values
    ref = z.view_as(pre) @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(out.x_hat, ref, atol=1e-5, rtol=1e-5)
    assert abs(out.l0 - 3.0) < 1e-9


def test_inference_uses_learnt_threshold():
    torch.manual_seed(2)
    data = torch.randn(4096, 8).relu()
    sae = train_sae(data, kind="batchtopk", d_sae=32, k=4, tokens=8192, batch_size=256,
                    progress=False)  # fmt: skip
    assert bool(sae.threshold_ready)
    theta = sae.threshold
    assert torch.all(theta == theta[0]) and theta[0] > 0
    x = data[:50]
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    ref = pre.relu() * (pre > theta)
    torch.testing.assert_close(sae.encode(x), ref)
    # threshold inference keeps the mean L0 near k on training-like data
    l0 = (sae.encode(data) > 0).sum(-1).float().mean()
    assert 1.0 < float(l0) < 12.0


def test_selection_with_ties_keeps_exactly_k_total():
    pre = torch.zeros(4, 6)
    pre[:, :3] = 1.0  # 12 tied entries, 5 to keep
    vals, rows, cols = batch_topk_select(pre, 5)
    assert vals.numel() == 5 and torch.all(vals == 1.0)
    assert torch.all(rows[1:] >= rows[:-1])
    few = torch.zeros(3, 5)
    few[1, 2] = 2.0
    vals, rows, cols = batch_topk_select(few, 4)  # only one positive entry exists
    assert vals.tolist() == [2.0] and rows.tolist() == [1] and cols.tolist() == [2]


def test_auxk_is_active_and_trains_dead_encoder_columns():
    torch.manual_seed(5)
    sae = build_sae(make_config("batchtopk", 8, 48, 3, dead_tokens=10, k_aux=4,
                                encoder_init_norm=1.0))  # pre-acts above the b_enc noise
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[1::3] = True
    sae.tokens_since_fired[dead] = 10
    out = sae.training_loss(torch.randn(32, 8))
    assert float(out.aux.detach()) > 0
    out.aux.backward()
    assert float(sae.W_enc.grad[:, dead].abs().sum(0).min()) > 0
    assert float(sae.W_enc.grad[:, ~dead].abs().max()) == 0
    assert float(sae.b_enc.grad[dead].abs().min()) > 0


def test_default_window_makes_auxk_run():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(8192, 2, generator=g) @ torch.randn(2, 16, generator=g)
    seen = []
    sae = train_sae(data, kind="batchtopk", d_sae=256, k=2, tokens=8192, batch_size=256,
                    progress=False, callback=lambda s, _, logs: seen.append(logs[0]["aux"]))
    assert sae.cfg.hparams["dead_tokens"] == 819
    assert max(seen) > 0
