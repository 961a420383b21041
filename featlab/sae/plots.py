"""Plotly figures of one SAE, from arrays: no feature store needed.

>>> fig = plot_feature_histogram(sae, x, feature=12)   # one latent's activations on x
>>> fig = plot_density_histogram(evaluate(sae, x))     # log10 firing density of all latents
>>> fig = plot_l0_histogram(evaluate(sae, x))          # active latents per row

Each returns a ``plotly.graph_objects.Figure`` and never shows it; plotly is imported inside
the functions so that ``import featlab.sae`` stays light.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featlab.sae.evaluation import SAEMetrics

__all__ = [
    "feature_activations",
    "plot_activation_histogram",
    "plot_density_histogram",
    "plot_feature_histogram",
    "plot_l0_histogram",
]

_MARGIN = {"l": 50, "r": 20, "t": 50, "b": 50}


def _bars(counts: Any, edges: Any, *, title: str, x_title: str, y_title: str,
          name: str = "") -> Any:
    import plotly.graph_objects as go

    counts = np.asarray(counts, dtype=float)
    edges = np.asarray(edges, dtype=float)
    left, right = edges[:-1], edges[1:]
    fig = go.Figure(go.Bar(
        x=(left + right) / 2, y=counts, width=right - left, name=name,
        customdata=np.stack([left, right], axis=1),
        hovertemplate="[%{customdata[0]:.3g}, %{customdata[1]:.3g}): %{y}<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(title=title, template="plotly_white", bargap=0.02, margin=_MARGIN,
                      height=320, xaxis_title=x_title, yaxis_title=y_title)  # fmt: skip
    return fig


def _note(fig: Any, text: str) -> Any:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


@torch.no_grad()
def feature_activations(sae: Any, x: torch.Tensor, feature: int, *,
                        batch_size: int = 4096) -> np.ndarray:
    """Latent `feature`'s activations ``[n]`` on ``x`` ``[n, d_in]`` (or ``[..., d_in]``,
    flattened), encoded in batches so the dense ``[n, d_sae]`` code is never held."""
    d_sae = int(sae.W_dec.shape[0])
    if not -d_sae <= int(feature) < d_sae:
        raise IndexError(f"feature {feature} is out of range for an SAE with d_sae={d_sae}")
    d_in = int(sae.W_dec.shape[1])
    x = torch.as_tensor(x)
    if x.shape[-1] != d_in:
        raise ValueError(f"x has shape {tuple(x.shape)}; its last dim must be d_in={d_in}")
    rows = x.reshape(-1, d_in)
    was_training = sae.training
    sae.eval()
    try:
        parts = [sae.encode(rows[i : i + batch_size].to(sae.W_dec.dtype))[:, feature]
                 for i in range(0, rows.shape[0], batch_size)]  # fmt: skip
    finally:
        sae.train(was_training)
    return torch.cat(parts).to(torch.float64).cpu().numpy()


def plot_activation_histogram(
    values: Any, *, bins: int = 40, include_zeros: bool = False, log_y: bool = False,
    title: str = "Feature activations",
) -> Any:
    """Histogram of one feature's activations ``values`` ``[n]`` (a tensor or array).

    Zeros (the rows where a latent is off) are left out unless `include_zeros`; the title
    says how many rows are active. A feature with nothing to draw gets an empty figure that
    says so.
    """
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D [n], got shape {v.shape}; pick one feature")
    if not np.all(np.isfinite(v)):
        raise ValueError("values contain NaN or inf")
    n_active = int(np.count_nonzero(v))
    shown = v if include_zeros else v[v != 0]
    full = f"{title}: {n_active} of {v.size} rows active ({n_active / max(v.size, 1):.1%})"
    if shown.size == 0:
        import plotly.graph_objects as go

        fig = go.Figure()
        fig.update_layout(title=full, template="plotly_white", margin=_MARGIN, height=320)
        return _note(fig, "never fires on these rows" if v.size else "no rows")
    counts, edges = np.histogram(shown, bins=bins)
    fig = _bars(counts, edges, title=full, x_title="activation", y_title="rows")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def plot_feature_histogram(sae: Any, x: torch.Tensor, feature: int, **kwargs: Any) -> Any:
    """Histogram of latent `feature`'s activations on ``x`` ``[n, d_in]``; keywords as in
    :func:`plot_activation_histogram`."""
    kwargs.setdefault("title", f"Feature {feature}")
    return plot_activation_histogram(feature_activations(sae, x, feature), **kwargs)


def _check_metrics(metrics: Any, attr: str) -> None:
    if not isinstance(metrics, SAEMetrics):
        raise TypeError(
            f"expected the SAEMetrics that featlab.sae.evaluate returns, got "
            f"{type(metrics).__name__}"
        )
    counts, edges = getattr(metrics, attr)
    if len(edges) != len(counts) + 1:
        raise ValueError(f"{attr} has {len(counts)} counts but {len(edges)} bin edges")


def plot_density_histogram(metrics: SAEMetrics, *, title: str = "Feature density") -> Any:
    """Histogram across latents of log10 firing density (the SAE-health plot), from
    :func:`featlab.sae.evaluate`'s result. Dead latents have no log density: their count is
    in the title and legend."""
    _check_metrics(metrics, "density_hist")
    counts, edges = metrics.density_hist
    n_dead = int(round(metrics.dead_frac * metrics.d_sae))
    full = f"{title}: {metrics.d_sae - n_dead} live, {n_dead} dead of {metrics.d_sae} latents"
    if sum(counts) == 0:
        import plotly.graph_objects as go

        fig = go.Figure()
        fig.update_layout(title=full, template="plotly_white", margin=_MARGIN, height=320)
        return _note(fig, "every latent is dead on these rows")
    return _bars(counts, edges, title=full, name=f"live (dead: {n_dead})",
                 x_title="log10 density (fraction of rows active)", y_title="latents")


def plot_l0_histogram(metrics: SAEMetrics, *, title: str = "L0 per row") -> Any:
    """Histogram over rows of the number of active latents, from
    :func:`featlab.sae.evaluate`'s result; a dashed line marks the mean."""
    _check_metrics(metrics, "l0_hist")
    counts, edges = metrics.l0_hist
    fig = _bars(counts, edges, title=f"{title} (mean {metrics.l0:.3g})",
                x_title="active latents", y_title="rows")
    fig.add_vline(x=metrics.l0, line_dash="dash", line_color="black")
    return fig
