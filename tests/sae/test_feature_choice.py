"""Feature Choice: capacities, per-latent selection, no dead latents in training."""

from __future__ import annotations

import pytest
import torch

from featlab.datasets.superposition import make_superposition
from featlab.sae import build_sae, make_config, train_sae
from featlab.sae.feature_choice import zipf_capacities


@pytest.mark.parametrize("s", [0.0, 0.5, 1.0, 2.0])
def test_capacities_sum_to_k_batch_within_bounds(s):
    torch.manual_seed(0)
    density = torch.rand(100, dtype=torch.float64)
    m = zipf_capacities(density, total=4 * 64, n_rows=64, s=s)
    assert int(m.sum()) == 256
    assert int(m.min()) >= 1 and int(m.max()) <= 64
    order = density.argsort(descending=True)
    assert torch.all(m[order][1:] <= m[order][:-1]), "denser latents get no less capacity"
    if s == 0.0:
        assert int(m.max()) - int(m.min()) <= 1


def test_capacity_cap_redistributes():
    m = zipf_capacities(torch.arange(10, 0, -1, dtype=torch.float64), 60, 8, s=3.0)
    assert int(m.sum()) == 60 and int(m.max()) == 8


def test_too_small_budget_is_rejected():
    with pytest.raises(ValueError, match="k \\* batch_size >= d_sae"):
        zipf_capacities(torch.zeros(100, dtype=torch.float64), 50, 10, 0.0)


@pytest.mark.parametrize("s", [0.0, 1.0])
def test_each_feature_keeps_at_most_its_capacity(s):
    torch.manual_seed(1)
    sae = build_sae(make_config("feature_choice", 8, 40, 4, zipf_s=s))
    with torch.no_grad():
        sae.density_ema.copy_(torch.rand(40, dtype=torch.float64))
    x = torch.randn(32, 8)
    cap = sae.capacities(32)
    out = sae.training_loss(x)
    assert torch.all(out.counts <= cap.to(out.counts.dtype))
    assert float(out.counts.sum()) <= 4 * 32
    # the kept tokens are each latent's largest pre-activations
    pre = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc).relu()
    for j in range(40):
        c = int(out.counts[j])
        if c:
            kth = pre[:, j].detach().topk(c).values[-1]
            assert float(kth) > 0


def test_no_dead_latents_while_training_on_superposition_data():
    data = make_superposition(8192, n_features=64, d=16, l0=3.0, seed=0).acts
    seen = []

    def watch(step, saes, logs):
        seen.append(int((saes[0].tokens_since_fired > 0).sum()))

    sae = train_sae(data, kind="feature_choice", d_sae=128, k=2, tokens=32_768, batch_size=256,
                    progress=False, callback=watch, lr=3e-3)  # fmt: skip
    assert max(seen) == 0, "every latent fires in every training batch"
    assert float(sae.feature_density().min()) > 0
    thr = sae.threshold
    assert torch.all(thr > 0)
    x = data[:64]
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    torch.testing.assert_close(sae.encode(x), pre * ((pre > thr) & (pre > 0)))


def test_without_the_floor_tail_latents_get_no_capacity():
    density = torch.linspace(1, 0, 100, dtype=torch.float64)
    m = zipf_capacities(density, total=4 * 64, n_rows=64, s=1.5, floor=False)
    assert int(m.sum()) == 256 and int(m.min()) == 0
    assert torch.all(m[1:] <= m[:-1]) and int(m[0]) > 1
    with_floor = zipf_capacities(density, total=4 * 64, n_rows=64, s=1.5)
    assert int(with_floor.min()) == 1
    # uniform capacities: the floor changes nothing when k*B >= d_sae
    assert torch.equal(zipf_capacities(density, 256, 64, 0.0, floor=False),
                       zipf_capacities(density, 256, 64, 0.0))  # fmt: skip
    # and without it a budget below d_sae is allowed
    assert int(zipf_capacities(torch.zeros(100, dtype=torch.float64), 50, 10, 0.0,
                               floor=False).sum()) == 50  # fmt: skip


@pytest.mark.parametrize("floor", [True, False])
def test_floor_decides_dead_latents_at_zipf_capacities(floor):
    data = make_superposition(8192, n_features=64, d=16, l0=3.0, seed=0).acts
    silent = []

    def watch(step, saes, logs):
        silent.append(int((saes[0].tokens_since_fired > 0).sum()))

    sae = train_sae(data, kind="feature_choice", d_sae=128, k=2, tokens=16_384, batch_size=256,
                    progress=False, callback=watch, lr=3e-3, zipf_s=1.5, floor=floor)  # fmt: skip
    dead = float((sae.tokens_since_fired >= 1638).float().mean())  # the run's default window
    if floor:
        assert max(silent) == 0 and dead == 0.0, "with the floor every latent fires every batch"
        assert torch.all(torch.isfinite(sae.threshold))
    else:
        assert dead > 0.05, "zero-capacity latents cannot fire"
        never = sae.fire_count == 0
        assert torch.all(torch.isinf(sae.threshold[never])), "never chosen: off at inference"
        assert torch.all(torch.isfinite(sae.threshold[~never]))
