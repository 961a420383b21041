"""Feature importance: E |z * dy/dz| for features that live as directions in a layer.

Fel et al. (NeurIPS 2024) score a feature by how much the output moves with it, gradient times
value, averaged in absolute value over the data. A feature here is a direction d_j in a hooked
layer's (flattened) activation space: a probe direction, or an SAE decoder row. Its value z_j
on an example is either given (`codes`, e.g. SAE latent activations) or the projection
``h . d_j``. With h written as ``sum_j z_j d_j + rest``, the chain rule gives
``dy/dz_j = d_j . dy/dh``, so only one backward pass per batch is needed for all features.

Gradient x value needs a meaningful zero for z. A dictionary coefficient has one (0 = the
latent is off), so given codes are used as they are. A raw projection does not: ``h . d``
carries the layer's mean along d (a ReLU layer's is far from 0), and adding a constant to it
would change the score without changing the model. Projections are therefore measured from
their mean over X (``zero="mean"``), which makes the score blind to that offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["ZEROS", "importance"]

ZEROS = ("mean", "raw")


def importance(
    model: Any,
    X: torch.Tensor,
    hook: str,
    directions: Any,
    *,
    codes: Any = None,
    zero: str | None = None,
    output_index: int = 0,
    names: Sequence[str] | None = None,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Importance of k feature directions at `hook` for output logit `output_index`.

    model: a HookedRootModule; X: [n, ...] inputs; directions: [k, d] with d the flattened
    width of the hook's activation; codes: optional [n, k] feature values (default: the
    projections). `zero`: where z is measured from -- "mean" (z minus its mean over X) or
    "raw" (z as it is); default "mean" for projections and "raw" for codes.
    Returns a DataFrame with columns feature, importance, mean_abs_z, mean_abs_grad, z_offset
    (the value subtracted from z: its mean for "mean", 0 for "raw").
    """
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is None:
        raise TypeError("importance needs a HookedRootModule (something with .hook_dict)")
    if hook not in hook_dict:
        raise KeyError(f"no hook {hook!r} in the model; valid names: {list(hook_dict)}")
    if zero is None:
        zero = "mean" if codes is None else "raw"
    if zero not in ZEROS:
        raise ValueError(f"zero must be one of {list(ZEROS)}, got {zero!r}")
    D = torch.as_tensor(np.asarray(directions), dtype=torch.float32)
    if D.ndim == 1:
        D = D[None]
    k = D.shape[0]
    if codes is not None:
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.float32)
        if codes.ndim == 1:
            codes = codes[:, None]
        if codes.shape != (X.shape[0], k):
            raise ValueError(
                f"codes must be [n, k] = {(X.shape[0], k)}, got {tuple(codes.shape)}"
            )
    names = list(names) if names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} directions")

    zs, grads = [], []
    model.eval()
    for i in range(0, X.shape[0], batch_size):
        xb = X[i : i + batch_size]
        store: dict[str, torch.Tensor] = {}

        def grab(act: torch.Tensor, hook: Any, store: dict = store) -> torch.Tensor:
            # A leaf that requires grad: dy/dh for every row in one backward pass.
            act = act.detach().requires_grad_(True)
            store["h"] = act
            return act

        out = model.run_with_hooks(xb, fwd_hooks=[(hook, grab)])
        if out.ndim != 2 or not 0 <= output_index < out.shape[1]:
            raise ValueError(
                f"output_index {output_index} is out of range for output {tuple(out.shape)}"
            )
        h = store["h"]
        (grad,) = torch.autograd.grad(out[:, output_index].sum(), h)
        hf, gf = h.detach().flatten(1), grad.flatten(1)
        if hf.shape[1] != D.shape[1]:
            raise ValueError(
                f"directions have width {D.shape[1]} but {hook!r} is {hf.shape[1]} wide"
            )
        zs.append((hf @ D.T if codes is None else codes[i : i + batch_size]).double())
        grads.append((gf @ D.T).double())  # dy/dz, [b, k]
    z, dydz = torch.cat(zs), torch.cat(grads)
    # The mean needs every row, so the products wait until all batches are in ([n, k] only).
    offset = z.mean(0) if zero == "mean" else torch.zeros(k, dtype=torch.float64)
    z = z - offset
    return pd.DataFrame(
        dict(
            feature=names,
            importance=(z * dydz).abs().mean(0).numpy(),
            mean_abs_z=z.abs().mean(0).numpy(),
            mean_abs_grad=dydz.abs().mean(0).numpy(),
            z_offset=offset.numpy(),
        )
    )
