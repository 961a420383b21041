"""Shortcut reliance and shortcut bias (Hermann et al., ICLR 2024).

On a grid over (z_short, z_core), a model's *reliance* is
``mean(y_hat * (sign z_short - sign z_core))``: a classifier that follows only the shortcut
(y_hat = sign z_short) scores ``mean(1 - sign z_s sign z_c) = +1``, one that follows only the
core scores -1, and the diagonal boundary of equal predictivities 0. The grid estimates the
mean over the uniform density on the square, a continuous function of the model: for a linear
boundary at angle theta from the z_core axis it is ``1 - tan(theta)`` up to 45 degrees and
``cot(theta) - 1`` beyond, and no grid point lies on a diagonal, so the estimate does not jump
where the Bayes boundary sits (see `featlab.datasets.shortcut.grid_axes`). *Shortcut bias* is
the model's reliance minus that of the Bayes-optimal classifier on the same grid, so a model
is biased only where it leans further towards the shortcut than the data justify (with
rho_core = rho_short the optimal reliance is 0). `shortcut_report` can also subtract the
reliance of a reference model, e.g. the best classifier of the model's own family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from featlab.datasets.shortcut import ProbeGrid, probe_grid

__all__ = ["predict_sign", "reliance", "shortcut_bias", "shortcut_report"]


@torch.no_grad()
def predict_sign(model_fn: Callable[[torch.Tensor], Any], X: torch.Tensor) -> torch.Tensor:
    """Predicted labels in {-1, +1} from a model returning [n] or [n, 1] logits (sign) or
    [n, 2] class scores (argmax; class 1 is +1)."""
    if isinstance(model_fn, torch.nn.Module):
        model_fn.eval()
    out = torch.as_tensor(model_fn(X))
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim == 2 and out.shape[1] == 2:
        return torch.where(out[:, 1] > out[:, 0], 1.0, -1.0)
    if out.ndim != 1 or out.shape[0] != X.shape[0]:
        raise ValueError(f"model output must be [n], [n, 1] or [n, 2]; got {tuple(out.shape)}")
    return torch.where(out > 0, 1.0, -1.0)


def _reliance_from_pred(y_hat: torch.Tensor, grid: ProbeGrid) -> float:
    diff = torch.sign(grid.z_short) - torch.sign(grid.z_core)
    return float((y_hat * diff).mean())


def reliance(model_fn: Callable[[torch.Tensor], Any], grid: ProbeGrid) -> float:
    """Reliance on the shortcut over `grid`: +1 shortcut-only, -1 core-only."""
    if grid.X is None or grid.X.shape[0] != grid.z_core.shape[0]:
        raise ValueError("the grid has no inputs; build it with featlab.datasets.probe_grid")
    return _reliance_from_pred(predict_sign(model_fn, grid.X), grid)


def shortcut_report(
    model_fn: Callable[[torch.Tensor], Any], dataset: Any, *, grid: ProbeGrid | None = None,
    n_per_axis: int = 64, reference: Callable[[torch.Tensor], Any] | None = None,
) -> pd.DataFrame:
    """One row: reliance of the model, of the Bayes-optimal classifier, and their difference;
    with `reference`, also its reliance and ``bias_vs_reference`` (model minus reference)."""
    if not hasattr(dataset, "bayes_predict"):
        raise TypeError("dataset must come from make_shortcut_dataset / make_shortcut_images")
    grid = grid if grid is not None else probe_grid(dataset, n_per_axis=n_per_axis)
    r_model = reliance(model_fn, grid)
    r_bayes = _reliance_from_pred(dataset.bayes_predict(grid.z_core, grid.z_short), grid)
    row = dict(reliance=r_model, reliance_bayes=r_bayes, shortcut_bias=r_model - r_bayes)
    if reference is not None:
        r_ref = reliance(reference, grid)
        row.update(reliance_reference=r_ref, bias_vs_reference=r_model - r_ref)
    return pd.DataFrame([row])


def shortcut_bias(
    model_fn: Callable[[torch.Tensor], Any], dataset: Any, *, grid: ProbeGrid | None = None,
    n_per_axis: int = 64,
) -> float:
    """reliance(model) - reliance(Bayes-optimal) on the dataset's probe grid."""
    return float(
        shortcut_report(model_fn, dataset, grid=grid, n_per_axis=n_per_axis)["shortcut_bias"][0]
    )
