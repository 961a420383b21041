"""Temporal decoding: V-information of each feature at each layer across training checkpoints.

Fel et al. (NeurIPS 2024) ask *when* a feature becomes decodable; simple features tend to be
available early. Given the snapshots that :func:`featlab.models.fit.fit_classifier` keeps, this
reloads each into a copy of the model, caches the layers and scores every feature.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from featlab.complexity.feature_complexity import complexity_table

__all__ = ["first_decodable", "temporal_decoding"]


def temporal_decoding(
    model: Any,
    snapshots: Mapping[int, Mapping[str, torch.Tensor]],
    X: torch.Tensor,
    features: Mapping[str, Any],
    *,
    layers: Sequence[str],
    family: str = "gaussian",
    test_size: float = 0.25,
    seed: int = 0,
    on_constant: str = "warn",
) -> pd.DataFrame:
    """Columns checkpoint, feature, layer, depth, i_v, normalised, units, family, K, reason
    (per checkpoint).

    model: a HookedRootModule (not modified); snapshots: checkpoint -> state_dict;
    X: [n, ...] inputs; features: name -> values [n]; layers: hook names to read.
    on_constant: what a feature constant on X does, as in
    :func:`~featlab.complexity.complexity_table`.
    """
    if not snapshots:
        raise ValueError("no snapshots; pass checkpoints=[...] to fit_classifier")
    work = copy.deepcopy(model)
    valid = list(work.hook_dict)
    bad = [h for h in layers if h not in valid]
    if bad:
        raise KeyError(f"hook(s) {bad} not in the model; valid names: {valid}")
    parts = []
    for ckpt in sorted(snapshots):
        work.load_state_dict(snapshots[ckpt])
        work.eval()
        with torch.no_grad():
            _, cache = work.run_with_cache(X, names_filter=list(layers))
        df = complexity_table(
            {h: cache[h] for h in layers}, features, family=family, test_size=test_size,
            seed=seed, on_constant=on_constant,
        )
        df.insert(0, "checkpoint", ckpt)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def first_decodable(
    df: pd.DataFrame, *, threshold: float = 0.9, layer: str | None = None
) -> pd.DataFrame:
    """First checkpoint at which each feature's normalised I_V reaches `threshold` at `layer`
    (default: the deepest layer in `df`); NaN if it never does. Columns feature, checkpoint."""
    if layer is None:
        layer = df.loc[df["depth"].idxmax(), "layer"]
    if layer not in set(df["layer"]):
        raise KeyError(f"layer {layer!r} not in the table; valid: {sorted(set(df['layer']))}")
    sub = df[df["layer"] == layer]
    rows = []
    for feat, g in sub.groupby("feature", sort=False):
        hit = g[g["normalised"] >= threshold]["checkpoint"]
        rows.append(dict(feature=feat, checkpoint=float(hit.min()) if len(hit) else np.nan))
    return pd.DataFrame(rows)
