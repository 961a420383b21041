"""Plot builders for the app: pure functions from DataFrames/arrays to plotly figures.

None of them reads the store or shows anything, so they are testable without a browser and
usable from a notebook. Figures carry `customdata` where a click must navigate (feature map,
circuit nodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DIVERGING = "RdBu_r"  # red positive, blue negative; centred at 0 with zmid/cmid
_MARGIN = {"l": 40, "r": 10, "t": 30, "b": 40}


def _go():
    import plotly.graph_objects as go

    return go


def empty_figure(message: str):
    """A blank figure carrying `message` (for "no data" and refusals)."""
    go = _go()
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(margin=_MARGIN, height=220)
    return fig


def first_col(df: pd.DataFrame, names: Sequence[str], what: str) -> str:
    """The first of `names` present in `df` (store tables written by different versions)."""
    for name in names:
        if name in df.columns:
            return name
    raise KeyError(f"{what}: none of the columns {list(names)} in {list(df.columns)}")


# -- histograms ---------------------------------------------------------------------------------


def _log_bins(hist: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(log10 left, log10 right, count, count in zero-width bins) of a positive-binned table.

    The store puts dead features in a bin with left = right = 0; they cannot sit on a log
    axis, so they are returned as a separate count.
    """
    left = hist["bin_left"].to_numpy(float)
    right = hist["bin_right"].to_numpy(float)
    count = hist["count"].to_numpy(float)
    ok = (left > 0) & (right > left)
    return np.log10(left[ok]), np.log10(right[ok]), count[ok], int(count[~ok].sum())


def empty_spec(message: str) -> dict[str, Any]:
    """:func:`empty_figure` as a plain dict (see :func:`binned_histogram_spec`)."""
    return {"data": [], "layout": {
        "annotations": [{"text": message, "showarrow": False, "x": 0.5, "y": 0.5,
                         "xref": "paper", "yref": "paper"}],
        "xaxis": {"visible": False}, "yaxis": {"visible": False}, "margin": _MARGIN,
        "height": 220}}


def binned_histogram_spec(
    hist: pd.DataFrame, *, title: str, x_title: str, log_x: bool = False, log_y: bool = False,
    height: int = 260,
) -> dict[str, Any]:
    """Bars from a pre-binned table (`bin_left`, `bin_right`, `count`) as a plain figure dict.

    With `log_x` the bins (log-spaced in the store) are drawn on a log10 axis. The `*_spec`
    builders skip plotly's per-property validation (tens of ms per figure), which matters in
    the feature page's callback; the same-named functions without `_spec` wrap them in a
    `go.Figure` for notebooks.
    """
    if hist is None or not len(hist):
        return empty_spec(f"{title}: no data")
    if log_x:
        left, right, count, _ = _log_bins(hist)
    else:
        left = hist["bin_left"].to_numpy(float)
        right = hist["bin_right"].to_numpy(float)
        count = hist["count"].to_numpy(float)
    bar = {
        "type": "bar", "x": ((left + right) / 2).tolist(), "y": count.tolist(),
        "width": (right - left).tolist(), "marker": {"color": "#e07b00"},
        "customdata": np.stack([left, right], axis=1).tolist(),
        "hovertemplate": "[%{customdata[0]:.3g}, %{customdata[1]:.3g}): %{y}<extra></extra>",
    }
    return {"data": [bar], "layout": {
        "title": {"text": title}, "margin": _MARGIN, "height": height, "bargap": 0.02,
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": "count"}, "type": "log" if log_y else "linear"}}}


def binned_histogram(hist: pd.DataFrame, **kwargs: Any):
    """:func:`binned_histogram_spec` as a `go.Figure`."""
    return _go().Figure(binned_histogram_spec(hist, **kwargs))


def density_histogram(hist: pd.DataFrame):
    """Histogram across features of log10 firing density (the SAE-health plot)."""
    return density_histograms({"density": hist})


def density_histograms(hists: dict[str, pd.DataFrame]):
    """Density histograms of several SAEs overlaid (`{sae_id: bin_left/bin_right/count}`)."""
    hists = {k: v for k, v in hists.items() if v is not None and len(v)}
    if not hists:
        return empty_figure("Feature density: no data")
    go = _go()
    fig = go.Figure()
    for name, hist in hists.items():
        left, right, count, dead = _log_bins(hist)
        fig.add_trace(go.Bar(x=(left + right) / 2, y=count, width=right - left,
                             name=f"{name} (dead: {dead})", opacity=0.6,
                             hovertemplate="log10 density %{x:.2f}: %{y}<extra></extra>"))
    fig.update_layout(title="Feature density across SAEs", barmode="overlay", margin=_MARGIN,
                      height=300, legend={"orientation": "h", "y": -0.3})
    fig.update_xaxes(title="log10 density (fraction of tokens active)")
    fig.update_yaxes(title="features")
    return fig


def activation_histogram_spec(hist: pd.DataFrame) -> dict[str, Any]:
    """Histogram of one feature's non-zero activations (plain dict)."""
    return binned_histogram_spec(hist, title="Activations (non-zero)",
                                 x_title="log10 activation", log_x=True)


def activation_histogram(hist: pd.DataFrame):
    """Histogram of one feature's non-zero activations."""
    return _go().Figure(activation_histogram_spec(hist))


# -- feature map and logits ---------------------------------------------------------------------


def feature_map(df: pd.DataFrame, color: str | None = None):
    """2-D map of features (`feature`, `x`, `y`); each point's `customdata` is its feature."""
    if df is None or not len(df):
        return empty_figure("no feature map in this store")
    go = _go()
    # float32 / int32 arrays travel as base64 typed arrays: 16k points fit in ~420 KB
    # instead of ~700 KB of decimal text, and a map does not need float64 precision.
    marker: dict[str, Any] = {"size": 5, "opacity": 0.7}
    if color and color in df.columns:
        marker.update(color=df[color].to_numpy(np.float32), colorscale="Viridis",
                      showscale=True, colorbar={"title": color})
    fig = go.Figure(
        go.Scattergl(
            x=df["x"].to_numpy(np.float32),
            y=df["y"].to_numpy(np.float32),
            mode="markers",
            marker=marker,
            customdata=df["feature"].to_numpy(np.int32),
            hovertemplate="feature %{customdata}<extra></extra>",
        )
    )
    fig.update_layout(title="Feature map (click a point to open it)", margin=_MARGIN,
                      height=420, clickmode="event")
    return fig


def logit_bars_spec(top: pd.DataFrame, bottom: pd.DataFrame) -> dict[str, Any]:
    """Top (positive) and bottom (negative) logit effects of one feature as one bar chart
    (plain dict; columns `token`, `value`)."""
    frames = [d for d in (top, bottom) if d is not None and len(d)]
    if not frames:
        return empty_spec("no logit effects (the model has no unembedding)")
    df = pd.concat(frames, ignore_index=True)
    tok = first_col(df, ("token", "token_str", "str"), "logit effects")
    val = first_col(df, ("value", "effect", "logit"), "logit effects")
    df = df.drop_duplicates(subset=[tok]).sort_values(val)
    values = df[val].to_numpy(float)
    bar = {"type": "bar", "orientation": "h", "x": values.tolist(),
           "y": [repr(str(t)) for t in df[tok]],
           "marker": {"color": np.where(values >= 0, "#c0392b", "#2c7fb8").tolist()},
           "hovertemplate": "%{y}: %{x:.4g}<extra></extra>"}
    return {"data": [bar], "layout": {
        "title": {"text": "Logit effects (W_dec · W_U)"}, "margin": {**_MARGIN, "l": 90},
        "height": max(220, 18 * len(df) + 60)}}


def logit_bars(top: pd.DataFrame, bottom: pd.DataFrame):
    """:func:`logit_bars_spec` as a `go.Figure`."""
    return _go().Figure(logit_bars_spec(top, bottom))


# -- circuits -----------------------------------------------------------------------------------


# Where a hook sits inside its block, relative to the block's output: Marks et al.'s edges
# join resid_pre -> attn / mlp -> resid_post within one layer, so each needs a row of its
# own. resid_post keeps the layer's row (as residual-only circuits always drew it), and
# resid_pre shares the previous block's resid_post row, being the same tensor.
_BLOCK_ROW = {"hook_resid_pre": -1.0, "hook_attn_out": -0.6, "hook_mixer_out": -0.6,
              "hook_resid_mid": -0.45, "hook_mlp_out": -0.3, "hook_resid_post": 0.0}


def block_row(hook: object) -> float:
    """Offset from its layer's row of `hook` (a `blocks.{l}.<name>` hook); 0 if unknown."""
    return _BLOCK_ROW.get(str(hook).rsplit(".", 1)[-1], 0.0)


def circuit_positions(nodes: pd.DataFrame) -> pd.DataFrame:
    """Place nodes on a grid: x = token position, y = layer plus the hook's place in its block
    (`block_row`); nodes sharing a cell are spread horizontally (by descending |effect|) so
    none overlaps. Returns `nodes` plus `x`, `y`."""
    out = nodes.copy()
    if not len(out):
        return out.assign(x=pd.Series(dtype=float), y=pd.Series(dtype=float))
    eff = first_col(out, ("effect", "score", "attribution", "value"), "circuit nodes")
    out["_abs"] = out[eff].abs()
    rows = out["hook"].map(block_row) if "hook" in out else 0.0
    out["_row"] = out["layer"].astype(float) + rows
    out = out.sort_values(["_row", "pos", "_abs"], ascending=[True, True, False])
    slot = out.groupby(["_row", "pos"]).cumcount()
    size = out.groupby(["_row", "pos"])["pos"].transform("size")
    # Spread within [-0.4, 0.4] of the position so neighbouring positions never collide.
    spread = np.where(size > 1, (slot / (size - 1).clip(lower=1) - 0.5) * 0.8, 0.0)
    out["x"] = out["pos"].astype(float) + spread
    out["y"] = out["_row"]
    return out.drop(columns=["_abs", "_row"]).sort_index()


def circuit_figure(nodes: pd.DataFrame, edges: pd.DataFrame, node_col: str = "node"):
    """Draw a (filtered) circuit; nodes need `x`, `y` (see :func:`circuit_positions`).

    Node colour is the signed effect (diverging, centred at 0); edge width ~ |weight|. Each
    node's `customdata` is (node id, sae_id, feature) for click-through.
    """
    if nodes is None or not len(nodes):
        return empty_figure("no nodes above the threshold")
    go = _go()
    eff = first_col(nodes, ("effect", "score", "attribution", "value"), "circuit nodes")
    xy = nodes.set_index(node_col)[["x", "y"]]
    traces = []
    if edges is not None and len(edges):
        src = first_col(edges, ("src", "source", "upstream"), "circuit edges")
        dst = first_col(edges, ("dst", "target", "downstream"), "circuit edges")
        w = first_col(edges, ("weight", "effect", "score", "value"), "circuit edges")
        wmax = float(edges[w].abs().max()) or 1.0
        for sign, color in ((1, "rgba(192,57,43,0.5)"), (-1, "rgba(44,127,184,0.5)")):
            part = edges[np.sign(edges[w]) == sign]
            part = part[part[src].isin(xy.index) & part[dst].isin(xy.index)]
            if not len(part):
                continue
            xs: list[float | None] = []
            ys: list[float | None] = []
            for a, b in zip(part[src], part[dst], strict=True):
                xs += [xy.at[a, "x"], xy.at[b, "x"], None]
                ys += [xy.at[a, "y"], xy.at[b, "y"], None]
            width = 1 + 3 * float(part[w].abs().mean()) / wmax
            traces.append(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip",
                                     line={"color": color, "width": width},
                                     name="positive edges" if sign > 0 else "negative edges"))
    vmax = float(nodes[eff].abs().max()) or 1.0
    label = nodes["label"].astype(str) if "label" in nodes.columns else nodes[node_col].astype(str)
    custom = np.stack(
        [nodes[node_col].astype(str),
         nodes["sae_id"].astype(str) if "sae_id" in nodes.columns else [""] * len(nodes),
         nodes["feature"].fillna(-1).astype(int).astype(str)
         if "feature" in nodes.columns else ["-1"] * len(nodes)],
        axis=1,
    )
    traces.append(
        go.Scatter(
            x=nodes["x"], y=nodes["y"], mode="markers", name="nodes",
            marker={"size": 14, "color": nodes[eff], "colorscale": DIVERGING, "cmid": 0,
                    "cmin": -vmax, "cmax": vmax, "line": {"width": 1, "color": "#333"},
                    "colorbar": {"title": "effect"}},
            text=label, customdata=custom,
            hovertemplate="%{text}<br>effect %{marker.color:.4g}<extra></extra>",
        )
    )
    fig = go.Figure(traces)
    fig.update_layout(margin=_MARGIN, height=480, clickmode="event", showlegend=False)
    fig.update_xaxes(title="token position", dtick=1)
    fig.update_yaxes(title="layer", dtick=1)
    return fig


# -- attribution --------------------------------------------------------------------------------


def clip_symmetric(values: np.ndarray, percentile: float) -> tuple[np.ndarray, float]:
    """Clip to +-(the `percentile`-th percentile of |values|); returns (clipped, bound)."""
    finite = np.abs(values[np.isfinite(values)])
    bound = float(np.percentile(finite, percentile)) if finite.size else 0.0
    bound = bound if bound > 0 else (float(finite.max()) if finite.size else 1.0) or 1.0
    return np.clip(values, -bound, bound), bound


def attribution_heatmap(
    values: np.ndarray,
    *,
    tokens: Sequence[str] | None = None,
    sign: str = "both",
    clip_percentile: float = 99.0,
    title: str = "",
):
    """Heatmap of an attribution map, centred at 0.

    values: `[pos]` or `[rows, pos]` for token maps (x labels = `tokens`), `[H, W]` for
    images. `sign`: "both", "positive" (negatives zeroed) or "negative" (positives zeroed).
    Outliers beyond the `clip_percentile`-th percentile of |values| are clipped so one huge
    entry does not wash out the map.
    """
    if sign not in ("both", "positive", "negative"):
        raise ValueError(f"sign must be 'both', 'positive' or 'negative', got {sign!r}")
    go = _go()
    z = np.asarray(values, dtype=float)
    if z.ndim == 1:
        z = z[None, :]
    if sign == "positive":
        z = np.where(z > 0, z, 0.0)
    elif sign == "negative":
        z = np.where(z < 0, z, 0.0)
    z, bound = clip_symmetric(z, clip_percentile)
    heat = go.Heatmap(z=z, colorscale=DIVERGING, zmid=0, zmin=-bound, zmax=bound,
                      colorbar={"title": "attribution"})
    fig = go.Figure(heat)
    if tokens is not None:
        labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
        fig.update_traces(x=labels, text=[list(tokens)] * z.shape[0],
                          hovertemplate="%{x}: %{z:.4g}<extra></extra>")
        fig.update_yaxes(visible=False)
        fig.update_layout(height=200)
    else:
        fig.update_yaxes(autorange="reversed", scaleanchor="x")
        fig.update_layout(height=420)
    fig.update_layout(title=title, margin=_MARGIN)
    return fig


# -- complexity and comparison ------------------------------------------------------------------


def complexity_scatter(df: pd.DataFrame):
    """Complexity vs importance, one point per feature (`feature`, `complexity`, `importance`)."""
    if df is None or not len(df) or "complexity" not in df.columns:
        return empty_figure("no complexity scores in this store")
    go = _go()
    imp = df["importance"] if "importance" in df.columns else pd.Series(0.0, index=df.index)
    fig = go.Figure(
        go.Scattergl(x=df["complexity"], y=imp, mode="markers", marker={"size": 6, "opacity": 0.7},
                     customdata=df[["feature"]].to_numpy() if "feature" in df.columns else None,
                     hovertemplate="feature %{customdata[0]}<br>complexity %{x:.3f}"
                                   "<br>importance %{y:.3g}<extra></extra>")
    )
    fig.update_layout(title="Complexity vs importance", margin=_MARGIN, height=380)
    fig.update_xaxes(title="complexity K(z)", range=[-0.02, 1.02])
    fig.update_yaxes(title="importance E|z dy/dz|")
    return fig


def complexity_spectrum(df: pd.DataFrame, metric: str = "v_info", max_lines: int = 40):
    """Per-layer spectrum of `metric` from the store's long complexity table
    (`feature` or `name`, `layer`, `metric`, `value`): one faint line per feature (the first
    `max_lines`) and the mean over all features in bold."""
    need = {"layer", "metric", "value"}
    if df is None or not len(df) or not need <= set(df.columns):
        return empty_figure("no per-layer scores in this store")
    part = df[(df["metric"] == metric) & df["layer"].notna() & (df["layer"] >= 0)]
    if not len(part):
        return empty_figure(f"no per-layer {metric!r} scores in this store")
    go = _go()
    key = "feature" if "feature" in part.columns and part["feature"].notna().any() else "name"
    fig = go.Figure()
    for i, (name, group) in enumerate(part.groupby(key, sort=True)):
        if i >= max_lines:
            break
        group = group.sort_values("layer")
        fig.add_trace(go.Scatter(x=group["layer"], y=group["value"], mode="lines",
                                 name=f"{key} {name}", line={"width": 1, "color": "#9ecae1"},
                                 hovertemplate=f"{key} {name}: %{{y:.3f}}<extra></extra>"))
    mean = part.groupby("layer")["value"].mean()
    fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines+markers", name="mean",
                             line={"width": 3, "color": "#08519c"}))
    fig.update_layout(title=f"Complexity spectrum: {metric} by layer", margin=_MARGIN,
                      height=380, showlegend=False)
    fig.update_xaxes(title="layer", dtick=1)
    fig.update_yaxes(title=metric)
    return fig


def match_histogram(cosines: np.ndarray, title: str = "Best decoder cosine match"):
    """Histogram of each feature's best |cosine| with the other SAE's decoder."""
    if cosines is None or not len(cosines):
        return empty_figure("nothing to compare")
    go = _go()
    fig = go.Figure(go.Histogram(x=np.asarray(cosines, float), nbinsx=40,
                                 marker_color="#5b8c5a"))
    fig.update_layout(title=title, margin=_MARGIN, height=300)
    fig.update_xaxes(title="max cosine", range=[0, 1.01])
    fig.update_yaxes(title="features")
    return fig


def bar_table(df: pd.DataFrame, x: str, y: str, title: str, color: str | None = None):
    """A generic bar chart for small result tables (shortcut bias per model, etc.)."""
    if df is None or not len(df) or x not in df.columns or y not in df.columns:
        return empty_figure(f"{title}: no data")
    go = _go()
    fig = go.Figure(go.Bar(x=df[x].astype(str), y=df[y], marker_color=color or "#6a51a3"))
    fig.update_layout(title=title, margin=_MARGIN, height=320)
    fig.update_yaxes(title=y)
    return fig
