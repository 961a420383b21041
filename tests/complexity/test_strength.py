from __future__ import annotations

import numpy as np
import pytest

from featlab.complexity import pc_alignment, representation_strength, strength_table


def _rep(n: int = 2000):
    rng = np.random.default_rng(0)
    a = rng.choice([-1.0, 1.0], n)
    b = rng.choice([-1.0, 1.0], n)
    # a is written with 3x the norm of b, plus isotropic noise
    H = 3.0 * a[:, None] * rng.standard_normal(10) + b[:, None] * rng.standard_normal(10)
    H += 0.1 * rng.standard_normal((n, 10))
    return H, a, b


def test_strength_follows_the_variance_share() -> None:
    H, a, b = _rep()
    sa, sb = representation_strength(H, a), representation_strength(H, b)
    assert sa > 0.7 and 0.02 < sb < 0.3
    assert representation_strength(H, np.c_[a, b]) > 0.97
    assert pc_alignment(H, a) > 0.9 and pc_alignment(H, b) < 0.1


def test_table_and_errors() -> None:
    H, a, b = _rep(500)
    t = strength_table({"h": H, "h2": H[:, :5]}, {"a": a, "b": b})
    assert len(t) == 4 and set(t.columns) >= {"strength", "pc1_r2", "pc1_var_frac"}
    with pytest.raises(ValueError, match="constant"):
        representation_strength(H, np.zeros(len(a)))
    with pytest.raises(ValueError, match="rows"):
        representation_strength(H, a[:10])


def test_table_with_a_constant_feature() -> None:
    from featlab.probes import ConstantTargetError

    H, a, _ = _rep(300)
    with pytest.warns(RuntimeWarning, match=r"NaN for 1 feature\(s\).*'dead'"):
        t = strength_table({"h": H}, {"a": a, "dead": np.zeros(len(a))})
    assert np.isnan(t.set_index("feature").loc["dead", "strength"])
    assert t.set_index("feature").loc["a", "strength"] > 0.5
    assert t.reason.notna().tolist() == [False, True]
    with pytest.raises(ConstantTargetError, match="feature 'dead' is constant"):
        strength_table({"h": H}, {"a": a, "dead": np.zeros(len(a))}, on_constant="raise")


def test_pooled_and_per_unit_averages_weigh_units_differently() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.choice([-1.0, 1.0], (2, 1000))
    # one loud unit that is all a, nine quiet units that are mostly b
    H = np.c_[10.0 * a, b[:, None] + 0.3 * rng.standard_normal((1000, 9))]
    assert representation_strength(H, a) > 0.9 > representation_strength(H, b)
    assert representation_strength(H, b, average="units") > 0.8
    assert representation_strength(H, a, average="units") < 0.15
    t = strength_table({"h": H}, {"a": a, "b": b}, average="units").set_index("feature")
    assert t.strength["b"] > t.strength["a"]
    with pytest.raises(ValueError, match="average must be one of"):
        representation_strength(H, a, average="median")
