"""Feature complexity: how late in the network a feature becomes (linearly) readable.

After Fel et al., "Understanding Visual Feature Reliance through the Lens of Complexity"
(NeurIPS 2024): ``K(z) = 1 - (1/L) sum_l I_V(h_l -> z)`` with each I_V normalised to [0, 1]
(held-out R^2 of the standardised target for the Gaussian family, I_V / H_V(z) for the
logistic one). A feature readable from the first layer on has K ~ 0; one that only the last
layer exposes has K ~ 1 - 1/L; one no layer exposes has K ~ 1.

For a label, prefer ``family="logistic"``: the Gaussian family regresses the label's *value*,
so a linearly separable threshold feature (the majority of 3 +-1 bits, R^2 0.75 from its own
bits) comes out "complex" (K 0.25 where the logistic family gives ~0).

The target z can be anything with one value per example: a labelled feature, the projection
onto a probe direction, or an SAE latent's activations -- so every SAE feature can be given a
complexity score. Which layers count is the caller's choice (`layers`); the experiments here
use every hidden layer and leave the input out, as Fel et al. use the network's blocks.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from featlab.complexity.v_information import v_information_details
from featlab.probes._layers import ConstantTargetError, as_1d_target, as_layer_dict

__all__ = ["complexity_table", "feature_complexity", "v_information_by_layer"]

ON_CONSTANT = ("warn", "raise")


def v_information_by_layer(
    cache_or_layers: Any,
    z: Any,
    *,
    layers: Sequence[str] | None = None,
    family: str = "gaussian",
    test_size: float = 0.25,
    seed: int = 0,
    name: str = "z",
    **kwargs: Any,
) -> pd.DataFrame:
    """One row per layer: layer, depth (0-based order), i_v, normalised, units, family.

    Every layer uses the same train/test split (same `seed` and row count). `name` is what
    errors call z; a constant z raises :class:`~featlab.probes.ConstantTargetError`.
    """
    acts = as_layer_dict(cache_or_layers, layers)
    n = next(iter(acts.values())).shape[0]
    zt = as_1d_target(z, n=n, name=name)
    rows = []
    for depth, (layer, h) in enumerate(acts.items()):
        vi = v_information_details(
            h, zt, family, test_size=test_size, seed=seed, name=name, **kwargs
        )
        rows.append(
            dict(layer=layer, depth=depth, i_v=vi.i_v, normalised=vi.normalised,
                 units=vi.units, family=family)
        )
    return pd.DataFrame(rows)


def feature_complexity(
    cache_or_layers: Any,
    z: Any,
    *,
    layers: Sequence[str] | None = None,
    family: str = "gaussian",
    test_size: float = 0.25,
    seed: int = 0,
    name: str = "z",
    **kwargs: Any,
) -> float:
    """K(z) = 1 - mean over layers of the normalised held-out I_V(h_l -> z), in [0, 1].

    A constant z (a latent that never fires on these rows) has no K: it raises
    :class:`~featlab.probes.ConstantTargetError` naming `name`.
    """
    df = v_information_by_layer(
        cache_or_layers, z, layers=layers, family=family, test_size=test_size, seed=seed,
        name=name, **kwargs,
    )
    return float(1.0 - df["normalised"].mean())


def _is_constant(z: Any) -> bool:
    a = np.asarray(z.detach().cpu() if hasattr(z, "detach") else z, dtype=np.float64)
    return a.size > 0 and bool(np.all(np.isfinite(a))) and np.ptp(a) == 0


def complexity_table(
    cache_or_layers: Any,
    features: Mapping[str, Any],
    *,
    layers: Sequence[str] | None = None,
    family: str = "gaussian",
    test_size: float = 0.25,
    seed: int = 0,
    on_constant: str = "warn",
    **kwargs: Any,
) -> pd.DataFrame:
    """Per-layer normalised I_V for several features, long form, plus their K.

    Returns columns feature, layer, depth, i_v, normalised, units, family, K, reason (K
    repeated on every row of a feature, so ``df.groupby("feature").K.first()`` gives the
    scores).

    A feature that is constant on these rows (an SAE latent that never fires, or fires so
    rarely that one split holds none of its firings) has nothing to predict, so it has no K.
    With ``on_constant="warn"`` (default) it keeps its rows with i_v, normalised and K NaN and
    the cause in `reason` (None on scored rows), and one warning names all such features;
    ``on_constant="raise"`` raises :class:`~featlab.probes.ConstantTargetError` naming them.
    """
    if on_constant not in ON_CONSTANT:
        raise ValueError(f"on_constant must be one of {list(ON_CONSTANT)}, got {on_constant!r}")
    if not features:
        raise ValueError("features is empty; pass a mapping name -> values [n]")
    acts = as_layer_dict(cache_or_layers, layers)
    units = kwargs.get("units", "auto")
    if units == "auto":
        units = "nats" if family == "gaussian" else "bits"
    if on_constant == "raise":
        const = [str(nm) for nm, z in features.items() if _is_constant(z)]
        if const:
            raise ConstantTargetError(
                f"{len(const)} feature(s) constant on these rows, with no K: {const}; leave "
                "them out, or pass on_constant='warn' to get NaN rows for them"
            )
    parts, skipped = [], []
    for feat, z in features.items():
        try:
            df = v_information_by_layer(
                acts, z, family=family, test_size=test_size, seed=seed,
                name=f"feature {feat!r}", **kwargs,
            )
        except ConstantTargetError as err:
            if on_constant == "raise":
                raise
            skipped.append(str(feat))
            df = pd.DataFrame(dict(
                layer=list(acts), depth=range(len(acts)), i_v=np.nan, normalised=np.nan,
                units=units, family=family,
            ))
            df["K"], df["reason"] = np.nan, str(err)
        else:
            df["K"], df["reason"] = 1.0 - df["normalised"].mean(), None
        df.insert(0, "feature", feat)
        parts.append(df)
    if skipped:
        shown = ", ".join(skipped[:20]) + (f", ... ({len(skipped)} in all)" if len(skipped) > 20
                                           else "")
        warnings.warn(
            f"complexity_table: K is NaN for {len(skipped)} feature(s) constant on these rows "
            f"(see the reason column): {shown}. Pass on_constant='raise' to stop instead.",
            RuntimeWarning, stacklevel=2,
        )
    return pd.concat(parts, ignore_index=True)
