"""Attribution page: stored token or image attribution maps as heatmaps centred at 0, with a
sign toggle and outlier clipping at a percentile."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import numpy as np

from featlab.app import figures
from featlab.app.components import NotFoundError, parse_float, safe_layout, stat_list
from featlab.app.context import get_context
from featlab.app.guard import expect_choice, expect_number, expect_str
from featlab.app.pages import register_url_sync, url_sync

PATH = "/attribution"
TITLE = "Attribution"
SIGNS = ("both", "positive", "negative")


def map_figure(row: dict[str, Any], sign: str, clip: float):
    """The heatmap of one stored map (a row of `store.attributions()`)."""
    values = np.asarray(row["values"], dtype=float)
    title = f"{row.get('method', '')} attribution to {row.get('target', '')}"
    if row.get("kind") == "image":
        shape = [int(s) for s in row["shape"]]
        if int(np.prod(shape)) != values.size:
            raise ValueError(f"map {row['id']!r}: shape {shape} does not hold {values.size} values")
        # [C, H, W] or [H, W, C] maps are summed over channels for display.
        img = values.reshape(shape)
        if img.ndim == 3:
            img = img.sum(axis=0 if shape[0] <= 4 else -1)
        return figures.attribution_heatmap(img, sign=sign, clip_percentile=clip, title=title)
    return figures.attribution_heatmap(values, tokens=list(row["tokens"]), sign=sign,
                                       clip_percentile=clip, title=title)


def _find(map_id: str) -> dict[str, Any]:
    """One stored map (one row read by id: the table is never loaded whole)."""
    row = get_context().store.attribution(str(map_id))
    if row is None:
        raise NotFoundError(f"no attribution map {map_id!r} in this store")
    return row


@safe_layout
def layout(id: str | None = None, sign: str = "both", clip: str = "99", **_: Any) -> Any:  # noqa: A002
    from dash import dcc, html

    maps = get_context().store.attribution_index()  # ids and labels, no values
    if not len(maps):
        return html.Div([html.H2("Attribution"), html.P("This store holds no attribution maps.")])
    ids = [str(i) for i in maps["id"]]
    map_id = id if id is not None else ids[0]
    if map_id not in ids:
        raise NotFoundError(f"no attribution map {map_id!r} in this store; stored: {ids}")
    sign = sign if sign in SIGNS else "both"
    clip_v = min(max(parse_float(clip, 99.0), 50.0), 100.0)
    labels = [f"{r['id']} — {r['kind']}, {r['method']} → {r['target']}"
              for _, r in maps.iterrows()]
    return html.Div(
        [
            *url_sync("attr"),
            html.H2("Attribution maps"),
            dcc.Dropdown(id="attr-select", value=map_id, clearable=False,
                         options=[{"label": lab, "value": i} for lab, i in zip(labels, ids,
                                                                               strict=True)]),
            dcc.RadioItems(id="attr-sign", value=sign, inline=True,
                           options=[{"label": s, "value": s} for s in SIGNS]),
            html.Label("clip outliers at percentile of |value|"),
            dcc.Slider(id="attr-clip", min=50, max=100, step=0.5, value=clip_v,
                       marks={50: "50", 90: "90", 99: "99", 100: "100"}),
            html.Div(id="attr-info"),
            dcc.Graph(id="attr-graph", config={"displaylogo": False}),
        ]
    )


def register_callbacks(app: Any) -> None:
    register_url_sync(app, "attr")
    from dash import Input, Output

    @app.callback(
        Output("attr-graph", "figure"),
        Output("attr-info", "children"),
        Output("attr-url", "data"),
        Input("attr-select", "value"),
        Input("attr-sign", "value"),
        Input("attr-clip", "value"),
    )
    def _draw(map_id: Any, sign: Any, clip: Any):
        row = _find(expect_str(map_id, "the map id"))
        sign = expect_choice(sign, "the sign", SIGNS)
        percentile = expect_number(clip, "the clip percentile", 50.0, 100.0)
        info = {k: row.get(k) for k in ("kind", "method", "target", "example")}
        query = "?" + urlencode({"id": map_id, "sign": sign, "clip": clip})
        return map_figure(row, sign, percentile), stat_list(info), query
