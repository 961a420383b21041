from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.datasets.shortcut import make_shortcut_dataset, probe_grid
from featlab.datasets.shortcut_images import make_shortcut_images
from featlab.errors import UserError


@pytest.mark.parametrize("rho_core,rho_short", [(0.9, 0.9), (0.7, 0.95)])
def test_predictivity_matches_setting(rho_core: float, rho_short: float) -> None:
    ds = make_shortcut_dataset(20000, rho_core=rho_core, rho_short=rho_short, seed=1)
    agree = (torch.sign(ds.z) == ds.y[:, None]).float().mean(0)
    assert abs(agree[0].item() - rho_core) < 0.015
    assert abs(agree[1].item() - rho_short) < 0.015


def test_linear_embedding_is_the_sum_of_scaled_directions() -> None:
    ds = make_shortcut_dataset(200, alpha_core=2.0, alpha_short=3.0, d=8, seed=0)
    u_c, u_s = ds.embed_core.first, ds.embed_short.first
    want = 2.0 * ds.z[:, :1].numpy() * u_c + 3.0 * ds.z[:, 1:].numpy() * u_s
    np.testing.assert_allclose(ds.X.numpy(), want, atol=1e-5)
    assert abs(np.linalg.norm(u_c) - 1) < 1e-9


def test_nesting_keeps_scale_and_is_nonlinear() -> None:
    ds0 = make_shortcut_dataset(4000, eta_core=0, d=16, seed=3)
    ds2 = make_shortcut_dataset(4000, eta_core=2, d=16, seed=3)
    z = ds2.z[:, 0].double().numpy()
    e0 = ds0.embed_core(z)
    e2 = ds2.embed_core(z)
    rms0 = np.sqrt(np.mean(np.sum(e0**2, 1)))
    rms2 = np.sqrt(np.mean(np.sum(e2**2, 1)))
    assert abs(rms2 / rms0 - 1) < 0.05
    # A linear fit of the nested embedding from z leaves a clear residual; the flat one none.
    a = np.c_[z, np.ones_like(z)]
    res = e2 - a @ np.linalg.lstsq(a, e2, rcond=None)[0]
    assert np.sum(res**2) / np.sum((e2 - e2.mean(0)) ** 2) > 0.02


def test_nesting_bends_without_binarising() -> None:
    """The normalised nesting map keeps most tanh units in their graded range; a large gain
    saturates them (the nested latent then carries little more than its sign)."""
    z = make_shortcut_dataset(4000, seed=0).z[:, 0].double().numpy()
    sat = {g: np.mean([make_shortcut_dataset(10, eta_core=eta, d=20, nest_gain=g, seed=s)
                       .embed_core.saturated_fraction(z) for eta in (1, 2, 3) for s in range(3)])
           for g in (1.0, 3.0)}
    assert sat[1.0] < 0.15 and sat[3.0] > 0.4
    assert make_shortcut_dataset(10, seed=0).embed_core.saturated_fraction(z) == 0.0


def test_same_embed_seed_same_task() -> None:
    a = make_shortcut_dataset(50, seed=1, embed_seed=7, eta_core=1)
    b = make_shortcut_dataset(50, seed=2, embed_seed=7, eta_core=1)
    np.testing.assert_array_equal(a.embed_core.first, b.embed_core.first)
    assert not torch.equal(a.z, b.z)
    c = make_shortcut_dataset(50, seed=1, embed_seed=7, eta_core=1)
    assert torch.equal(a.X, c.X)


def test_probe_grid_is_symmetric_and_off_the_diagonals() -> None:
    ds = make_shortcut_dataset(100, seed=0)
    g = probe_grid(ds, n_per_axis=8)
    assert g.X.shape == (64, ds.X.shape[1])
    assert torch.all(g.z_core != 0) and torch.all(g.z_short != 0)
    assert abs(float((torch.sign(g.z_core) * torch.sign(g.z_short)).mean())) < 1e-6
    # No point where the equal-rho Bayes boundary runs, and no side of it favoured.
    gap = g.z_short.abs() - g.z_core.abs()
    assert gap.abs().min() > 0.1 * (max(ds.mu) + 2 * ds.sigma) / 8
    assert int((gap > 0).sum()) == int((gap < 0).sum())
    torch.testing.assert_close(g.X, ds.embed(g.z_core.numpy(), g.z_short.numpy()))


def test_bayes_is_better_than_either_latent() -> None:
    ds = make_shortcut_dataset(20000, seed=0)
    acc_bayes = (ds.bayes_predict(ds.z[:, 0], ds.z[:, 1]) == ds.y).float().mean()
    acc_core = (torch.sign(ds.z[:, 0]) == ds.y).float().mean()
    assert acc_bayes > acc_core + 0.02


def test_bayes_on_x_with_input_noise() -> None:
    """With noise the latent rule is not optimal on x; the closed-form linear rule is: it
    agrees with a large-sample logistic regression and leans on the amplified shortcut."""
    from sklearn.linear_model import LogisticRegression

    clean = make_shortcut_dataset(500, alpha_short=3.0, d=8, seed=2)
    torch.testing.assert_close(clean.bayes_input_logit(clean.X).float(),
                               clean.bayes_logit(clean.z[:, 0], clean.z[:, 1]),
                               rtol=1e-4, atol=1e-4)
    ds = make_shortcut_dataset(40_000, alpha_short=3.0, d=8, noise=1.0, seed=2)
    w_bayes = torch.linalg.lstsq(ds.X.double(), ds.bayes_input_logit(ds.X)[:, None]).solution
    w_fit = LogisticRegression(C=1e6, max_iter=2000).fit(ds.X.numpy(), ds.y.numpy()).coef_[0]
    w_bayes = w_bayes[:, 0].numpy()
    cos = float(w_bayes @ w_fit / np.linalg.norm(w_bayes) / np.linalg.norm(w_fit))
    assert cos > 0.995
    grid = probe_grid(ds)
    bayes = ds.bayes_predict(grid.z_core, grid.z_short)
    lean = float((bayes * (torch.sign(grid.z_short) - torch.sign(grid.z_core))).mean())
    assert lean > 0.1  # the core is buried in noise 1, the 3x shortcut much less
    # Images are linear too: their rule with pixel noise is defined.
    img = make_shortcut_images(20, noise=0.5, seed=0)
    assert torch.isfinite(img.bayes_input_logit(img.X)).all()


def test_noise_with_nesting_is_refused() -> None:
    ds = make_shortcut_dataset(20, eta_core=1, noise=0.5, seed=0)
    with pytest.raises(UserError, match="noise=0"):
        ds.bayes_predict(ds.z[:, 0], ds.z[:, 1])
    with pytest.raises(UserError, match="linear embedding"):
        make_shortcut_dataset(20, eta_core=1, seed=0).bayes_input_logit(ds.X)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="rho_core"):
        make_shortcut_dataset(10, rho_core=1.0)
    with pytest.raises(ValueError, match="multiple of 4"):
        probe_grid(make_shortcut_dataset(10), n_per_axis=6)
    with pytest.raises(ValueError, match="noise"):
        make_shortcut_dataset(10, noise=-0.1)
    with pytest.raises(ValueError, match="nest_gain"):
        make_shortcut_dataset(10, nest_gain=0.0)
    with pytest.raises(ValueError, match="nesting depth"):
        make_shortcut_dataset(10, eta_short=-1)
