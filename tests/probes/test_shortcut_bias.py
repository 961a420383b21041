from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featlab.datasets.shortcut import make_shortcut_dataset, probe_grid
from featlab.datasets.shortcut_images import make_shortcut_images
from featlab.probes import reliance, shortcut_bias, shortcut_report


def _oracle(ds, which: int):
    """A classifier that reads one latent exactly, by inverting the linear embedding."""
    u = torch.as_tensor([ds.embed_core.first, ds.embed_short.first][which], dtype=torch.float32)
    return lambda X: X @ u  # the directions are near-orthogonal in d=64, so this reads z_which


def test_reliance_is_plus_one_for_shortcut_and_minus_one_for_core() -> None:
    ds = make_shortcut_dataset(10, d=64, seed=0)
    grid = probe_grid(ds, n_per_axis=12)
    # Exact latent readers, independent of the embedding: they see the grid's z directly.
    short_only = lambda X: grid.z_short  # noqa: E731
    core_only = lambda X: grid.z_core  # noqa: E731
    assert reliance(short_only, grid) == pytest.approx(1.0)
    assert reliance(core_only, grid) == pytest.approx(-1.0)
    # Through the input, with nearly orthogonal embedding directions.
    u_c, u_s = ds.embed_core.first, ds.embed_short.first
    if abs(float(u_c @ u_s)) < 0.2:
        assert reliance(_oracle(ds, 1), grid) > 0.8
        assert reliance(_oracle(ds, 0), grid) < -0.8


def test_bayes_has_zero_bias_and_asymmetric_rho_moves_it() -> None:
    ds = make_shortcut_dataset(10, seed=0)
    grid = probe_grid(ds)
    bayes = lambda X: ds.bayes_logit(grid.z_core, grid.z_short)  # noqa: E731
    assert shortcut_bias(bayes, ds, grid=grid) == pytest.approx(0.0, abs=1e-6)
    rep = shortcut_report(bayes, ds, grid=grid)
    assert rep.reliance_bayes[0] == pytest.approx(0.0, abs=1e-6)
    # A more predictive shortcut: the optimum itself leans on it, so its reliance is > 0.
    ds2 = make_shortcut_dataset(10, rho_short=0.97, seed=0)
    rep2 = shortcut_report(lambda X: torch.zeros(len(X)) - 1, ds2)
    assert rep2.reliance_bayes[0] > 0.1


def _uniform_square_reliance(theta: float) -> float:
    """Reliance of sign(sin(theta) z_c + cos(theta) z_s) under the uniform density on the
    square: 1 - tan(theta) up to 45 degrees, cot(theta) - 1 beyond (integrated by hand)."""
    t = math.tan(theta)
    return 1.0 - t if t <= 1.0 else 1.0 / t - 1.0


def test_reliance_is_continuous_in_the_boundary_angle() -> None:
    """No grid mass on the diagonal: a tiny tilt of the equal-rho Bayes boundary moves the
    reliance by a tiny amount (the old symmetric grid jumped by +-0.1 at a 0.06 degree tilt),
    and sweeping the boundary follows the continuous uniform-density value, monotonically."""
    grid = probe_grid(make_shortcut_dataset(10, seed=0))

    def at(theta: float) -> float:
        return reliance(lambda X: math.sin(theta) * grid.z_core + math.cos(theta) * grid.z_short,
                        grid)

    for tilt in (1e-3, -1e-3, 1e-2, -1e-2):  # 0.06 and 0.6 degrees
        assert abs(at(math.pi / 4 + tilt)) <= 2.0 * abs(tilt) + 1e-6
    thetas = np.linspace(0.0, math.pi / 2, 181)
    rel = np.array([at(t) for t in thetas])
    want = np.array([_uniform_square_reliance(t) for t in thetas])
    assert np.abs(rel - want).max() < 0.03
    assert np.all(np.diff(rel) <= 0) and rel[0] == 1.0 and rel[-1] == -1.0
    # The steps of the estimate are small: no single angle step moves it by more than 0.03.
    assert np.abs(np.diff(rel)).max() < 0.03


def test_report_against_a_reference_model() -> None:
    ds = make_shortcut_dataset(10, seed=0)
    grid = probe_grid(ds)
    rep = shortcut_report(lambda X: grid.z_short, ds, grid=grid,
                          reference=lambda X: grid.z_core + grid.z_short)
    assert rep.reliance_reference[0] == pytest.approx(0.0, abs=1e-6)
    assert rep.bias_vs_reference[0] == pytest.approx(1.0)


def test_model_outputs_of_several_shapes_and_images() -> None:
    ds = make_shortcut_images(10, seed=0)
    grid = probe_grid(ds, n_per_axis=8)
    two_class = lambda X: torch.stack([-grid.z_short, grid.z_short], 1)  # noqa: E731
    assert reliance(two_class, grid) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="model output"):
        reliance(lambda X: torch.zeros(len(X), 3), grid)


def test_converged_logistic_regression_is_blind_to_amplification() -> None:
    """Amplifying the shortcut must not move a *converged* linear classifier's reliance.

    The amplified input is a linear reparametrisation of the un-amplified one, and the
    logistic-regression optimum (non-separable data) is equivariant to it: the weight just
    shrinks by alpha. This is why the linear model's shortcut bias is ~0 in the experiment
    once training has converged (early-stopped gradient descent is not invariant).
    """
    from sklearn.linear_model import LogisticRegression

    rel = []
    for alpha in (1.0, 5.0):
        ds = make_shortcut_dataset(200, alpha_short=alpha, d=8, seed=3)
        clf = LogisticRegression(C=1e6, tol=1e-10, max_iter=10_000)
        clf.fit(ds.X.numpy(), ds.y.numpy())
        w = torch.as_tensor(clf.coef_[0], dtype=torch.float32)
        b = float(clf.intercept_[0])
        rel.append(reliance(lambda X, w=w, b=b: X @ w + b, probe_grid(ds)))
    assert rel[0] == pytest.approx(rel[1], abs=1e-6)
