"""Feature list of one SAE: a server-paged, sortable, filterable table and a 2-D feature map.

The table's paging, sorting and filtering are answered by `store.features` (one page of
rows per request); the table state lives in the query string so a reload restores it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import numpy as np

from featlab.app import figures
from featlab.app.components import (
    feature_href,
    fmt,
    parse_float,
    path_arg,
    require_sae,
    sae_row,
    safe_layout,
)
from featlab.app.context import get_context
from featlab.app.filters import COLUMNS, NUMERIC_COLUMNS, FilterError, parse_filter
from featlab.app.guard import (
    expect_choice,
    expect_dict,
    expect_int,
    expect_list,
    expect_points,
    expect_str,
)
from featlab.app.pages import register_url_sync, url_sync

PATH_TEMPLATE = "/sae/<sae_id>"
TITLE = "Features"
PAGE_SIZE = 25
MAX_PAGE = 10**6  # 25 million features: beyond any SAE the app serves


def table_rows(df: Any, sae_id: str) -> list[dict[str, Any]]:
    """Rows for the DataTable: numbers rounded for display, the feature index a link."""
    rows = []
    for rec in df.to_dict("records"):
        row = {c: rec.get(c) for c in COLUMNS}
        for c in ("density", "max_act", "mean_act", "complexity", "importance"):
            row[c] = fmt(rec.get(c))
        f = int(rec["feature"])
        row["feature"] = f"[{f}]({feature_href(sae_id, f)})"
        row["explanation"] = rec.get("explanation") or ""
        row["top_token"] = repr(rec["top_token"]) if rec.get("top_token") is not None else ""
        rows.append(row)
    return rows


def query_page(sae_id: str, page: int, sort_by: list[dict[str, str]] | None,
               filter_query: str | None) -> tuple[list[dict[str, Any]], int, str]:
    """One table page: (rows, page count, error message or "")."""
    store = get_context().store
    try:
        conditions = parse_filter(filter_query)
    except FilterError as err:
        return [], 1, str(err)
    sort = (sort_by or [{}])[0]
    df, total = store.features(
        sae_id, offset=page * PAGE_SIZE, limit=PAGE_SIZE,
        sort_by=sort.get("column_id", "feature"), descending=sort.get("direction") == "desc",
        conditions=conditions,
    )
    return table_rows(df, sae_id), max(1, -(-total // PAGE_SIZE)), (
        "" if total else "No features match the filter.")


def check_table_state(page: Any, sort_by: Any, filter_query: Any,
                      sae_id: Any) -> tuple[int, list[dict[str, str]], str, str]:
    """The paging callback's inputs as the DataTable sends them, or BadCallbackInput."""
    page = expect_int(page, "page_current", 0, MAX_PAGE, default=0)
    sort_by = expect_list(sort_by if sort_by is not None else [], "sort_by", 1)
    for s in sort_by:
        expect_dict(s, "a sort_by entry", ("column_id",))
        expect_choice(s["column_id"], "sort_by column_id", COLUMNS)
        expect_choice(s.get("direction", "asc"), "sort_by direction", ("asc", "desc"))
    filter_query = expect_str(filter_query, "filter_query", 10 * 1000, optional=True) or ""
    return page, sort_by, filter_query, expect_str(sae_id, "the SAE id")


def state_query(page: int, sort_by: list[dict[str, str]] | None, filter_query: str | None) -> str:
    q: dict[str, Any] = {}
    if page:
        q["page"] = page
    if sort_by:
        q["sort"] = sort_by[0]["column_id"]
        q["desc"] = int(sort_by[0].get("direction") == "desc")
    if filter_query:
        q["filter"] = filter_query
    return f"?{urlencode(q)}" if q else ""


def _header(row: dict[str, Any]) -> Any:
    from dash import dcc, html

    bits = [f"{k}: {fmt(row.get(k))}" for k in ("model", "hook", "kind", "d_sae", "l0", "fvu")]
    return html.Div(
        [html.H2(f"SAE {row['sae_id']}", id="sae-title"), html.P(" · ".join(bits)),
         dcc.Link("complexity", href=f"/complexity?sae={row['sae_id']}", className="btn")],
    )


@safe_layout
def layout(sae_id: str | None = None, page: str = "0", sort: str | None = None,
           desc: str = "0", filter: str | None = None, **_: Any) -> Any:  # noqa: A002
    from dash import dash_table, dcc, html

    store = get_context().store
    sae_id = require_sae(store, path_arg(sae_id))
    page_i = max(0, int(parse_float(page, 0)))
    sort_by = [{"column_id": sort, "direction": "desc" if desc == "1" else "asc"}] \
        if sort in COLUMNS else []
    # The table clamps page_current to page_count on mount, so a deep link to page 3 needs
    # the real count up front (one count query), not a placeholder.
    try:
        _, total = store.features(sae_id, limit=1, conditions=parse_filter(filter))
    except FilterError:
        total = int(store.n_features(sae_id))
    page_count = max(1, -(-total // PAGE_SIZE))
    page_i = min(page_i, page_count - 1)
    # Numeric columns are typed so a bare typed value means "=" (text columns: "contains");
    # text filters ignore case unless the cell's Aa button is toggled (case means nothing
    # to numbers, which keep the table's default flag, "s").
    columns = [
        {"name": c.replace("_", " "), "id": c,
         **({"presentation": "markdown"} if c == "feature" else {}),
         **({"type": "numeric"} if c in NUMERIC_COLUMNS else
            {"filter_options": {"case": "insensitive"}})}
        for c in COLUMNS
    ]
    return html.Div(
        [
            *url_sync("features", state_query(page_i, sort_by, filter)),
            dcc.Store(id="features-sae", data=sae_id),
            dcc.Location(id="features-nav", refresh="callback-nav"),
            _header(sae_row(store, sae_id)),
            html.P("Filter a column: >0.01, <=5, =3, !=0 on numbers; a word (or "
                   "contains word, =exact) on text, case-insensitive unless Aa is toggled; "
                   "is blank for none. Click a column header to sort.", className="muted"),
            dash_table.DataTable(
                id="feature-table",
                columns=columns,
                data=[],
                page_current=page_i,
                page_size=PAGE_SIZE,
                page_count=page_count,
                page_action="custom",
                sort_action="custom",
                sort_mode="single",
                sort_by=sort_by,
                filter_action="custom",
                filter_query=filter or "",
                markdown_options={"link_target": "_self"},
                style_cell={"textAlign": "left", "fontFamily": "inherit", "fontSize": "13px",
                            "maxWidth": "320px", "overflow": "hidden",
                            "textOverflow": "ellipsis"},
                style_header={"fontWeight": "600"},
            ),
            html.Div(id="feature-table-message", className="muted"),
            dcc.Graph(id="feature-map", config={"displaylogo": False}),
        ]
    )


def clicked_feature(sae_id: str, point: dict[str, Any]) -> int:
    """The feature under a clicked map point. WebGL traces (Scattergl) leave `customdata`
    out of click events, so fall back to the point's index in the map's rows (ordered by
    feature, as `store.feature_map` returns them)."""
    custom = point.get("customdata")
    if custom is not None:
        value = custom[0] if isinstance(custom, list) and custom else custom
        return expect_int(value, "the clicked point's customdata", 0, 2**62)
    features = get_context().store.feature_map(sae_id)["feature"]
    i = expect_int(point.get("pointIndex"), "the clicked point's pointIndex", 0,
                   max(len(features) - 1, 0))
    return int(features.iloc[i])


def register_callbacks(app: Any) -> None:
    register_url_sync(app, "features")
    from dash import Input, Output, State, no_update

    @app.callback(
        Output("feature-table", "data"),
        Output("feature-table", "page_count"),
        Output("feature-table-message", "children"),
        Output("features-url", "data"),
        Input("feature-table", "page_current"),
        Input("feature-table", "sort_by"),
        Input("feature-table", "filter_query"),
        State("features-sae", "data"),
    )
    def _page(page: Any, sort_by: Any, filter_query: Any, sae_id: Any):
        page, sort_by, filter_query, sae_id = check_table_state(page, sort_by, filter_query,
                                                                sae_id)
        require_sae(get_context().store, sae_id)
        rows, count, msg = query_page(sae_id, page, sort_by, filter_query)
        try:
            parse_filter(filter_query)
        except FilterError:  # a refused filter stays out of the URL
            filter_query = ""
        return rows, count, msg, state_query(page, sort_by, filter_query)

    @app.callback(Output("feature-map", "figure"), Input("features-sae", "data"))
    def _map(sae_id: Any):
        sae_id = require_sae(get_context().store, expect_str(sae_id, "the SAE id"))
        df = get_context().store.feature_map(sae_id)
        # Densities span decades; colour by their log so the map is not one flat colour.
        df["log10 density"] = np.log10(df["density"].astype(float).clip(lower=1e-9))
        return figures.feature_map(df, color="log10 density")

    @app.callback(
        Output("features-nav", "href"),
        Input("feature-map", "clickData"),
        State("features-sae", "data"),
        prevent_initial_call=True,
    )
    def _open(click: Any, sae_id: Any):
        sae_id = require_sae(get_context().store, expect_str(sae_id, "the SAE id"))
        if click is None:
            return no_update
        points = expect_points(click, "clickData")
        if not points:
            return no_update
        return feature_href(sae_id, clicked_feature(sae_id, points[0]))
