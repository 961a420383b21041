"""Representation strength: how much of a layer's variance a feature accounts for.

After Lampinen, Chan & Hermann (TMLR 2024): the strength of feature f in layer h is the held-out
R^2 of a linear regression *from the feature's value to the centred representation* -- the
fraction of the layer's total variance that f explains. Unlike decodability (feature from
representation), it is large only when the feature takes up a large share of the geometry, so
two perfectly decodable features can have very different strengths. `pc_alignment` asks the
related question of how much the top principal component is about the feature.

"Variance explained" can be pooled over units (``1 - sum SSE / sum SS``: units weighted by
their variance, the share of the layer's total variance) or averaged over units (the mean of
each unit's R^2: every live unit counts the same, so a few high-variance units cannot decide
it). The default is pooled; ``average="units"`` gives the other.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from featlab.probes._layers import (
    ConstantTargetError,
    as_1d_target,
    as_layer_dict,
    to_numpy_2d,
)

__all__ = ["AVERAGES", "pc_alignment", "representation_strength", "strength_table"]

AVERAGES = ("pooled", "units")


def representation_strength(
    H: Any, z: Any, *, test_size: float = 0.25, seed: int = 0, name: str = "z",
    average: str = "pooled",
) -> float:
    """Held-out R^2 of ``H ~ z`` (z: [n] or [n, k]; H: [n, ...] flattened) with H centred by
    its training mean: pooled over units (``1 - sum SSE / sum SS``, default) or, with
    ``average="units"``, the mean of the units' own R^2 over the units that vary on the test
    split (a dead ReLU unit has no R^2). A constant z raises
    :class:`~featlab.probes.ConstantTargetError` naming `name`."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {list(AVERAGES)}, got {average!r}")
    Ha = to_numpy_2d(H, name="H")
    Z = to_numpy_2d(z, name=name)
    if Z.shape[0] != Ha.shape[0]:
        raise ValueError(f"{name} has {Z.shape[0]} rows but H has {Ha.shape[0]}")
    if np.any(np.ptp(Z, axis=0) == 0):
        raise ConstantTargetError(
            f"{name} is constant on all {Z.shape[0]} rows; a constant feature explains nothing"
        )
    tr, te = train_test_split(np.arange(len(Ha)), test_size=test_size, random_state=seed)
    mu = Ha[tr].mean(0)
    Hc = Ha - mu
    ss = float(np.sum(Hc[te] ** 2))
    if ss == 0:
        raise ValueError("the representation is constant on the test split")
    A = np.c_[Z[tr], np.ones(len(tr))]
    W, *_ = np.linalg.lstsq(A, Hc[tr], rcond=None)
    pred = np.c_[Z[te], np.ones(len(te))] @ W
    sse = np.sum((Hc[te] - pred) ** 2, axis=0)
    if average == "pooled":
        return float(1.0 - sse.sum() / ss)
    # the same centring (training mean) as the pooled form, one unit at a time
    live = np.ptp(Ha[te], axis=0) > 0
    if not live.any():
        raise ValueError("no unit of the representation varies on the test split")
    return float(np.mean(1.0 - sse[live] / np.sum(Hc[te][:, live] ** 2, axis=0)))


def pc_alignment(H: Any, z: Any, *, component: int = 0, name: str = "z") -> float:
    """Squared correlation between z [n] and the scores on principal component `component`
    of H (in-sample: PCA has nothing to overfit in one direction)."""
    Ha = to_numpy_2d(H, name="H")
    zt = as_1d_target(z, n=Ha.shape[0], name=name)
    Hc = Ha - Ha.mean(0)
    if not np.any(Hc):
        raise ValueError("the representation is constant")
    _, _, vt = np.linalg.svd(Hc, full_matrices=False)
    if component >= vt.shape[0]:
        raise ValueError(f"component {component} >= rank bound {vt.shape[0]}")
    score = Hc @ vt[component]
    if np.ptp(score) == 0:
        return 0.0
    return float(np.corrcoef(score, zt)[0, 1] ** 2)


def strength_table(
    cache_or_layers: Any,
    features: Mapping[str, Any],
    *,
    layers: Sequence[str] | None = None,
    test_size: float = 0.25,
    seed: int = 0,
    on_constant: str = "warn",
    average: str = "pooled",
) -> pd.DataFrame:
    """Long table: layer, depth, feature, strength, pc1_r2, pc1_var_frac (variance share of
    PC1), reason. `average` is passed to :func:`representation_strength`.

    A feature constant on these rows gets NaN strength and pc1_r2 with the cause in `reason`
    (None elsewhere) and one warning naming all such features (``on_constant="warn"``), or
    raises :class:`~featlab.probes.ConstantTargetError` (``on_constant="raise"``), as
    :func:`~featlab.complexity.complexity_table` does.
    """
    if on_constant not in ("warn", "raise"):
        raise ValueError(f"on_constant must be 'warn' or 'raise', got {on_constant!r}")
    acts = as_layer_dict(cache_or_layers, layers)
    rows, skipped = [], []
    for depth, (layer, h) in enumerate(acts.items()):
        hc = h - h.mean(0)
        sv = np.linalg.svd(hc, compute_uv=False)
        var_frac = float(sv[0] ** 2 / np.sum(sv**2)) if np.any(sv) else float("nan")
        for feat, z in features.items():
            label = f"feature {feat!r}"
            try:
                strength = representation_strength(h, z, test_size=test_size, seed=seed,
                                                   name=label, average=average)
                pc1, reason = pc_alignment(h, z, name=label), None
            except ConstantTargetError as err:
                if on_constant == "raise":
                    raise
                strength, pc1, reason = float("nan"), float("nan"), str(err)
                if feat not in skipped:
                    skipped.append(feat)
            rows.append(dict(layer=layer, depth=depth, feature=feat, strength=strength,
                             pc1_r2=pc1, pc1_var_frac=var_frac, reason=reason))
    if skipped:
        warnings.warn(
            f"strength_table: strength is NaN for {len(skipped)} feature(s) constant on these "
            f"rows: {[str(f) for f in skipped]}. Pass on_constant='raise' to stop instead.",
            RuntimeWarning, stacklevel=2,
        )
    return pd.DataFrame(rows)
