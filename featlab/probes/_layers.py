"""Turn a cache, a dict of activations or a list of arrays into named 2-D float arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ConstantTargetError", "as_1d_target", "as_layer_dict", "to_numpy_2d"]


class ConstantTargetError(ValueError):
    """A target (a label, a feature, an SAE latent) takes one value on the rows given, so a
    probe or V-information estimate has nothing to predict. The message names the target."""


def to_numpy_2d(a: Any, name: str = "activations") -> np.ndarray:
    """[n, ...] tensor or array -> float64 [n, prod(...)] (trailing dims flattened)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().to(torch.float64).cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim < 1 or a.shape[0] == 0:
        raise ValueError(f"{name} must be [n, ...] with n > 0, got shape {a.shape}")
    a = a.reshape(a.shape[0], -1)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf; check the model run that produced it")
    return a


def as_1d_target(z: Any, n: int | None = None, name: str = "target") -> np.ndarray:
    """A target [n] (or [n, 1]) -> float64 [n], checking its length and that it varies."""
    if isinstance(z, torch.Tensor):
        z = z.detach().to(torch.float64).cpu().numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim != 1:
        raise ValueError(f"{name} must be 1-D [n], got shape {z.shape}")
    if n is not None and z.shape[0] != n:
        raise ValueError(f"{name} has {z.shape[0]} rows but the activations have {n}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.ptp(z) == 0:
        raise ConstantTargetError(
            f"{name} is constant ({z[0]:g} on all {z.shape[0]} rows); there is nothing to "
            "predict (an SAE latent that never fires on these rows is constant 0)"
        )
    return z


def as_layer_dict(
    cache_or_layers: Any, layers: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Named activations, in the order given by `layers` (default: the cache's own order).

    Accepts a TransformerLens ``ActivationCache`` or any mapping name -> [n, ...], a list of
    arrays (named "0", "1", ...), or one array (named "x"). A name in `layers` that is not
    there raises a KeyError listing the valid names.
    """
    if isinstance(cache_or_layers, (torch.Tensor, np.ndarray)):
        source: Mapping[str, Any] = {"x": cache_or_layers}
    elif isinstance(cache_or_layers, Mapping) or hasattr(cache_or_layers, "keys"):
        source = cache_or_layers
    elif isinstance(cache_or_layers, Sequence):
        source = {str(i): a for i, a in enumerate(cache_or_layers)}
    else:
        raise TypeError(
            "expected an ActivationCache, a dict of activations, a list of arrays or one array, "
            f"got {type(cache_or_layers).__name__}"
        )
    names = select_names(list(source.keys()), layers, "layer")
    out = {nm: to_numpy_2d(source[nm], name=f"activations at {nm!r}") for nm in names}
    ns = {nm: a.shape[0] for nm, a in out.items()}
    if len(set(ns.values())) != 1:
        raise ValueError(f"layers have different numbers of rows: {ns}")
    return out


def select_names(valid: list[str], wanted: Sequence[str] | None, what: str) -> list[str]:
    """`wanted` (default: every valid name), refusing an empty choice or unknown names."""
    names = valid if wanted is None else list(wanted)
    if not names:
        raise ValueError(f"no {what}s to read: the cache is empty or the list is")
    missing = [nm for nm in names if nm not in valid]
    if missing:
        raise KeyError(f"{what}(s) {missing} not in the cache; valid names: {valid}")
    return names
