from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from featlab.complexity import v_information, v_information_details


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_family_equals_held_out_r2(seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((1200, 6))
    y = 3.0 * (X @ rng.standard_normal(6)) + 2.0 * rng.standard_normal(1200) + 5.0
    tr, te = train_test_split(np.arange(1200), test_size=0.25, random_state=seed)
    r2 = LinearRegression().fit(X[tr], y[tr]).score(X[te], y[te])
    assert 0.3 < r2 < 0.99  # the check means something only away from 0 and 1
    assert abs(v_information(X, y, family="gaussian", seed=seed) - r2) < 0.02


def test_xor_is_invisible_to_a_linear_family_until_it_is_given() -> None:
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(2000, 2))
    z = x[:, 0] * x[:, 1]
    with_z = np.c_[x, z]
    for family in ("gaussian", "logistic"):
        assert abs(v_information(x, z, family=family)) < 0.02
        # Processing made z *more* usable: the data processing inequality fails for I_V.
        assert v_information(with_z, z, family=family) > 0.95
    # In bits, a balanced label that is fully determined carries ~1 bit.
    assert abs(v_information(with_z, z, family="logistic", units="bits") - 1.0) < 0.05
    nats = v_information(with_z, z, family="logistic", units="nats")
    assert abs(nats - np.log(2)) < 0.05


def test_details_and_units() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((800, 3))
    y = (X[:, 0] + 0.5 * rng.standard_normal(800) > 0).astype(int)
    d = v_information_details(X, y, "logistic")
    assert d.units == "bits" and d.h_y == pytest.approx(1.0, abs=0.02)
    assert d.i_v == pytest.approx(d.h_y - d.h_y_given_x)
    assert 0 < d.normalised < 1
    g = v_information_details(X, X[:, 0] * 2.0, "gaussian")
    assert g.units == "nats" and g.normalised > 0.99
    bits = v_information(X, X[:, 0], "gaussian", units="bits")
    assert bits == pytest.approx(g.i_v / np.log(2), rel=1e-6)


def test_bad_inputs() -> None:
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="rows"):
        v_information(X, np.arange(9))
    with pytest.raises(ValueError, match="constant"):
        v_information(X, np.ones(10))
    with pytest.raises(ValueError, match="family"):
        v_information(X, np.arange(10), family="poisson")
    with pytest.raises(ValueError, match="NaN"):
        v_information(np.full((10, 2), np.nan), np.arange(10))
    with pytest.raises(ValueError, match="gaussian"):
        v_information(np.random.default_rng(0).standard_normal((50, 2)),
                      np.arange(50.0), family="logistic")


def test_constant_target_names_the_feature() -> None:
    from featlab.complexity import ConstantTargetError

    X = np.random.default_rng(0).standard_normal((40, 2))
    with pytest.raises(ConstantTargetError, match="latent 3 is constant \\(0 on all 40 rows\\)"):
        v_information_details(X, np.zeros(40), name="latent 3")
    once = np.zeros(40)
    once[0] = 1.0
    with pytest.raises(ConstantTargetError, match="latent 3 is constant .* split"):
        v_information_details(X, once, name="latent 3")
    in_test = np.zeros(40)
    in_test[4] = 1.0  # row 4 falls in the test split of seed 0
    with pytest.raises(ConstantTargetError, match="latent 3 has a single class"):
        v_information_details(X, in_test, "logistic", name="latent 3")
