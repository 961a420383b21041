"""Plotly figures for probe and complexity tables. Each returns a figure and never shows it."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = [
    "plot_complexity_by_layer",
    "plot_importance_vs_complexity",
    "plot_lines",
    "plot_probe_layers",
    "plot_temporal",
]


def _check(df: pd.DataFrame, cols: list[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(df.columns)}")


def plot_lines(
    df: pd.DataFrame, *, x: str, y: str, color: str | None = None, facet: str | None = None,
    error: str | None = None, title: str = "", **kwargs: Any,
) -> Any:
    """A line plot of `y` against `x`, one line per `color`, one panel per `facet`; `error`
    names a column of error-bar half-widths."""
    import plotly.express as px

    _check(df, [c for c in (x, y, color, facet, error) if c])
    fig = px.line(
        df, x=x, y=y, color=color, facet_col=facet, error_y=error, markers=True, title=title,
        **kwargs,
    )
    fig.update_layout(template="plotly_white")
    return fig


def plot_complexity_by_layer(df: pd.DataFrame, *, title: str = "Decodability by layer") -> Any:
    """Normalised I_V against depth per feature, from :func:`complexity_table`."""
    return plot_lines(df, x="depth", y="normalised", color="feature", title=title,
                      hover_data=["layer"])


def plot_probe_layers(
    df: pd.DataFrame, *, scores: tuple[str, ...] = ("test_score", "train_score"),
    title: str = "Probe score by layer",
) -> Any:
    """Probe scores against depth, one line per score column (and per kind, when the table
    holds several), from :func:`featlab.probes.probe_layers`; the x ticks name the layers."""
    import plotly.graph_objects as go

    _check(df, ["layer", "depth", *scores])
    kinds = list(df["kind"].unique()) if "kind" in df.columns else [None]
    fig = go.Figure()
    for kind in kinds:
        sub = df if kind is None else df[df["kind"] == kind]
        sub = sub.sort_values("depth")
        for col in scores:
            name = col.removesuffix("_score")
            fig.add_scatter(
                x=sub["depth"], y=sub[col], mode="lines+markers", customdata=sub["layer"],
                name=name if len(kinds) == 1 else f"{kind} {name}",
                line_dash="solid" if col == scores[0] else "dot",
                hovertemplate="%{customdata}: %{y:.3f}<extra></extra>",
            )
    ticks = df.drop_duplicates("depth").sort_values("depth")
    fig.update_xaxes(title="layer", tickvals=ticks["depth"], ticktext=ticks["layer"])
    y_title = "score (accuracy or R^2)"
    if "kind" in df.columns and len(kinds) == 1:
        y_title = f"{kinds[0]} probe score"
    fig.update_layout(title=title, template="plotly_white", yaxis_title=y_title)
    return fig


def plot_temporal(df: pd.DataFrame, *, layer: str | None = None,
                  title: str = "Decodability over training") -> Any:
    """Normalised I_V against checkpoint per feature at one layer (default: the deepest)."""
    _check(df, ["checkpoint", "feature", "layer", "depth", "normalised"])
    if layer is None:
        layer = df.loc[df["depth"].idxmax(), "layer"]
    sub = df[df["layer"] == layer]
    return plot_lines(sub, x="checkpoint", y="normalised", color="feature",
                      title=f"{title} ({layer})")


def plot_importance_vs_complexity(
    df: pd.DataFrame, *, x: str = "K", y: str = "importance", color: str = "feature",
    title: str = "Importance vs complexity",
) -> Any:
    """A scatter of importance against complexity K, one colour per feature."""
    import plotly.express as px

    _check(df, [x, y, color])
    fig = px.scatter(df, x=x, y=y, color=color, title=title)
    fig.update_layout(template="plotly_white")
    return fig
