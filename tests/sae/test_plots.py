"""SAE plots from arrays and SAEMetrics: no feature store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.sae import build_sae, evaluate, make_config
from featlab.sae.plots import (
    feature_activations,
    plot_activation_histogram,
    plot_density_histogram,
    plot_feature_histogram,
    plot_l0_histogram,
)


def _sae_and_x():
    torch.manual_seed(0)
    sae = build_sae(make_config("topk", 6, 16, 2))
    return sae, torch.randn(400, 6)


def test_activation_histogram_from_an_array() -> None:
    v = np.r_[np.zeros(60), np.linspace(0.5, 2.0, 40)]
    fig = plot_activation_histogram(v, bins=8)
    (bar,) = fig.data
    assert bar.type == "bar" and len(bar.y) == 8
    assert sum(bar.y) == 40  # zeros left out
    assert bar.x[0] > 0.5 and bar.x[-1] < 2.0
    assert "40 of 100 rows active (40.0%)" in fig.layout.title.text
    assert sum(plot_activation_histogram(v, bins=8, include_zeros=True).data[0].y) == 100
    dead = plot_activation_histogram(torch.zeros(30))
    assert len(dead.data) == 0 and "never fires" in dead.layout.annotations[0].text
    with pytest.raises(ValueError, match="1-D"):
        plot_activation_histogram(np.zeros((3, 4)))


def test_feature_histogram_from_an_sae() -> None:
    sae, x = _sae_and_x()
    z = sae.encode(x).detach()
    f = int((z > 0).sum(0).argmax())
    vals = feature_activations(sae, x, f, batch_size=64)  # batched = one pass
    np.testing.assert_allclose(vals, z[:, f].double().numpy(), rtol=1e-6, atol=1e-7)
    fig = plot_feature_histogram(sae, x.reshape(20, 20, 6), f, bins=10)
    assert sum(fig.data[0].y) == int((z[:, f] != 0).sum())
    assert fig.layout.title.text.startswith(f"Feature {f}:")
    with pytest.raises(IndexError, match="d_sae=16"):
        feature_activations(sae, x, 16)
    with pytest.raises(ValueError, match="d_in=6"):
        feature_activations(sae, x[:, :4], 0)


def test_density_and_l0_histograms_from_metrics() -> None:
    sae, x = _sae_and_x()
    with torch.no_grad():
        sae.b_enc[:4] = -1e3  # four latents can never fire
    m = evaluate(sae, x, n_bins=12)
    dens = plot_density_histogram(m)
    (bar,) = dens.data
    n_dead = int(round(m.dead_frac * 16))
    assert n_dead >= 4 and sum(bar.y) == 16 - n_dead
    np.testing.assert_allclose(bar.y, m.density_hist[0])
    assert bar.x.max() <= 0  # log10 of a fraction
    assert f"{n_dead} dead of 16" in dens.layout.title.text
    l0 = plot_l0_histogram(m)
    assert sum(l0.data[0].y) == 400
    assert l0.layout.shapes[0].x0 == pytest.approx(m.l0)
    with pytest.raises(TypeError, match="SAEMetrics"):
        plot_l0_histogram({"l0_hist": ([1], [0, 1])})
