from __future__ import annotations

import numpy as np
import pytest

from featlab.complexity import complexity_table, feature_complexity, v_information_by_layer


def _layers(n: int = 1000):
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(n, 4))
    easy = x[:, 0]
    hard = x[:, 1] * x[:, 2]
    noise = rng.standard_normal((n, 3))
    layers = {
        "l0": np.c_[x, noise],
        "l1": np.c_[x, noise, rng.standard_normal((n, 2))],
        "l2": np.c_[x, hard, noise],
    }
    return layers, easy, hard


def test_easy_feature_is_simpler() -> None:
    layers, easy, hard = _layers()
    k_easy = feature_complexity(layers, easy)
    k_hard = feature_complexity(layers, hard)
    assert k_easy < 0.05
    # readable only at the last of three layers: K ~ 1 - 1/3
    assert k_hard == pytest.approx(2 / 3, abs=0.05)
    df = v_information_by_layer(layers, hard)
    assert list(df.layer) == ["l0", "l1", "l2"] and list(df.depth) == [0, 1, 2]


def test_table_and_layer_selection() -> None:
    layers, easy, hard = _layers()
    t = complexity_table(layers, {"easy": easy, "hard": hard}, layers=["l1", "l2"])
    assert set(t.feature) == {"easy", "hard"} and set(t.layer) == {"l1", "l2"}
    k = t.groupby("feature").K.first()
    assert k["easy"] < k["hard"]
    assert k["hard"] == pytest.approx(0.5, abs=0.05)


def test_bad_inputs() -> None:
    layers, easy, _ = _layers()
    with pytest.raises(KeyError, match="valid names"):
        feature_complexity(layers, easy, layers=["l0", "blocks.9.hook_resid_post"])
    with pytest.raises(ValueError, match="rows"):
        feature_complexity(layers, easy[:-1])
    with pytest.raises(ValueError, match="constant"):
        feature_complexity(layers, np.ones(len(easy)))


def test_constant_latent_gets_nan_rows_and_one_warning() -> None:
    layers, easy, hard = _layers(400)
    dead = np.zeros(len(easy))  # an SAE latent that never fires on these rows
    rare = np.zeros(len(easy))
    rare[3] = 1.0  # fires once: one split holds none of its firings
    feats = {"easy": easy, "dead": dead, "hard": hard, "rare": rare}
    with pytest.warns(RuntimeWarning, match=r"K is NaN for 2 feature\(s\).*dead, rare") as rec:
        t = complexity_table(layers, feats)
    assert len(rec) == 1
    assert list(t.feature.unique()) == ["easy", "dead", "hard", "rare"]
    assert len(t) == 4 * 3 and set(t.units) == {"nats"}
    k = t.groupby("feature", sort=False).K.first()
    assert np.isnan(k["dead"]) and np.isnan(k["rare"])
    # the other features are scored as if the constant ones were not there
    alone = complexity_table(layers, {"easy": easy, "hard": hard}).groupby("feature").K.first()
    assert k["easy"] == alone["easy"] and k["hard"] == alone["hard"]
    bad = t[t.feature == "dead"]
    assert bad.i_v.isna().all() and bad.normalised.isna().all()
    assert bad.reason.str.contains("feature 'dead' is constant").all()
    assert t[t.feature == "rare"].reason.str.contains("split").all()
    assert t[t.feature.isin(["easy", "hard"])].reason.isna().all()


def test_constant_latent_can_raise_instead() -> None:
    from featlab.probes import ConstantTargetError

    layers, easy, _ = _layers(400)
    feats = {"easy": easy, "d1": np.zeros(len(easy)), "d2": np.full(len(easy), 2.0)}
    with pytest.raises(ConstantTargetError, match=r"2 feature\(s\).*\['d1', 'd2'\]"):
        complexity_table(layers, feats, on_constant="raise")
    rare = np.zeros(len(easy))
    rare[3] = 1.0
    with pytest.raises(ConstantTargetError, match="feature 'rare' is constant.*split"):
        complexity_table(layers, {"easy": easy, "rare": rare}, on_constant="raise")
    with pytest.raises(ValueError, match="on_constant"):
        complexity_table(layers, feats, on_constant="skip")
    # the single-feature entry points name the feature they were given
    with pytest.raises(ConstantTargetError, match="latent 12 is constant"):
        feature_complexity(layers, np.zeros(len(easy)), name="latent 12")
    with pytest.raises(ConstantTargetError, match="latent 12 is constant.*split"):
        v_information_by_layer(layers, rare, name="latent 12")


def test_threshold_feature_is_simple_for_the_logistic_family_only() -> None:
    # The majority of 3 bits is linearly separable from the bits, but as a +-1 *value* it is
    # not a linear function of them (R^2 = 0.75): the Gaussian family calls it complex.
    rng = np.random.default_rng(1)
    x = rng.choice([-1.0, 1.0], size=(2000, 5))
    layers = {"l0": np.c_[x, rng.standard_normal((2000, 2))], "l1": x}
    majority = np.sign(x[:, :3].sum(1))
    k_gauss = feature_complexity(layers, majority, family="gaussian")
    k_logistic = feature_complexity(layers, majority, family="logistic")
    assert k_gauss == pytest.approx(0.25, abs=0.05)
    assert k_logistic < 0.05
    # a parity stays complex under both: no linear family reads it from the bits
    parity = x[:, 3] * x[:, 4]
    assert feature_complexity(layers, parity, family="logistic") > 0.9
    t = complexity_table(layers, {"maj": majority}, family="logistic")
    assert set(t.units) == {"bits"} and set(t.family) == {"logistic"}
