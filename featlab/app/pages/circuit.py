"""Circuit page: a stored feature circuit laid out by token position and layer, thresholds
filtered on the server, a count of what they hide, a node budget, and click-through to a
node's feature card."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from featlab.app import figures
from featlab.app.components import (
    NotFoundError,
    error_box,
    feature_href,
    fmt,
    parse_float,
    safe_layout,
    stat_list,
    visible_token,
)
from featlab.app.context import get_context
from featlab.app.guard import (
    BadCallbackInput,
    expect_int,
    expect_number,
    expect_points,
    expect_str,
)
from featlab.app.pages import register_url_sync, url_sync

PATH = "/circuit"
TITLE = "Circuits"
NODE_BUDGET = 150  # beyond this a plot is an unreadable hairball (and a big payload)
DEFAULT_NODES = 60  # what a circuit over the budget first shows: its strongest nodes
SLIDER_STEPS = 50


def filter_circuit(nodes: pd.DataFrame, edges: pd.DataFrame, node_threshold: float,
                   edge_threshold: float) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Keep nodes with |effect| >= node_threshold and edges with |effect| >= edge_threshold
    whose both ends are kept. Returns (nodes, edges, counts of shown / total)."""
    keep_n = nodes[nodes["effect"].abs() >= node_threshold]
    ids = set(keep_n["node_id"])
    keep_e = edges[(edges["effect"].abs() >= edge_threshold)
                   & edges["src"].isin(ids) & edges["dst"].isin(ids)]
    counts = {"nodes": len(keep_n), "nodes_total": len(nodes),
              "edges": len(keep_e), "edges_total": len(edges)}
    return keep_n, keep_e, counts


EXPLANATION_CHARS = 60  # of a node's explanation in its hover label


def node_label(row: pd.Series, explanation: str | None = None,
               token: str | None = None) -> str:
    """Site, position (and its token), feature and explanation of one node."""
    where = f"{row['sae_id']} L{int(row['layer'])}"
    if int(row["pos"]) >= 0:
        where += f" @{int(row['pos'])}" + (f" {visible_token(token)}" if token is not None
                                           else "")
    what = "error" if int(row["feature"]) < 0 else f"#{int(row['feature'])}"
    label = f"{where} {what}"
    if explanation:
        short = explanation if len(explanation) <= EXPLANATION_CHARS else \
            explanation[: EXPLANATION_CHARS - 1] + "…"
        label += f": {short}"
    return label


def node_explanations(store: Any, nodes: pd.DataFrame) -> dict[tuple[str, int], str]:
    """(sae_id, feature) -> the stored explanation, for the feature nodes of `nodes` (one
    query per SAE; nodes of an SAE the store does not hold get none)."""
    out: dict[tuple[str, int], str] = {}
    known = set(store.saes()["sae_id"])
    feats = nodes[nodes["feature"] >= 0]
    for sae_id, rows in feats.groupby("sae_id"):
        if sae_id not in known:
            continue
        wanted = sorted({int(f) for f in rows["feature"]})
        df, _ = store.features(str(sae_id), filters={"feature": wanted}, limit=len(wanted))
        for f, e in zip(df["feature"], df["explanation"], strict=True):
            if isinstance(e, str) and e:
                out[(str(sae_id), int(f))] = e
    return out


def prompt_tokens(circuits: pd.DataFrame, circuit_id: str) -> list[str] | None:
    """The readable tokens of the circuit's first prompt, when its meta records them."""
    import json

    row = circuits[circuits["circuit_id"] == circuit_id]
    if not len(row) or not isinstance(row["meta"].iloc[0], str):
        return None
    try:
        tokens = json.loads(row["meta"].iloc[0]).get("tokens")
    except (ValueError, AttributeError):
        return None
    return [str(t) for t in tokens] if isinstance(tokens, list) else None


def render(circuit_id: str, node_threshold: float, edge_threshold: float):
    """(figure or None, summary text, message) for one threshold setting."""
    store = get_context().store
    nodes, edges = store.circuit(circuit_id)  # unknown id: UnknownIdError
    keep_n, keep_e, c = filter_circuit(nodes, edges, node_threshold, edge_threshold)
    summary = (f"showing {c['nodes']} of {c['nodes_total']} nodes "
               f"({c['nodes_total'] - c['nodes']} hidden by the node threshold), "
               f"{c['edges']} of {c['edges_total']} edges "
               f"({c['edges_total'] - c['edges']} hidden)")
    if c["nodes"] > NODE_BUDGET:
        return None, summary, (f"{c['nodes']} nodes exceed the drawing budget of {NODE_BUDGET}; "
                               "raise the node threshold.")
    tokens = prompt_tokens(store.circuits(), circuit_id)
    explained = node_explanations(store, keep_n)

    def label(row: pd.Series) -> str:
        pos = int(row["pos"])
        token = tokens[pos] if tokens is not None and 0 <= pos < len(tokens) else None
        return node_label(row, explained.get((str(row["sae_id"]), int(row["feature"]))), token)

    placed = figures.circuit_positions(keep_n.assign(label=keep_n.apply(label, axis=1)
                                                     if len(keep_n) else []))
    # Summed-over-positions nodes (pos = -1) sit left of position 0.
    fig = figures.circuit_figure(placed, keep_e, node_col="node_id")
    if tokens is not None and len(keep_n):
        shown = sorted({int(p) for p in keep_n["pos"] if 0 <= int(p) < len(tokens)})
        fig.update_xaxes(tickmode="array", tickvals=shown,
                         ticktext=[f"{p} {visible_token(tokens[p])}" for p in shown])
    return fig, summary, ""


def slider_range(df: pd.DataFrame) -> tuple[float, float]:
    """(max, step) for a threshold slider over |effect|: a round step near max/50 so typed
    and keyboard values land on readable numbers, and a max that is a whole number of steps
    at or above the largest |effect| (the top setting hides everything but the top node)."""
    top = float(df["effect"].abs().max()) if len(df) else 0.0
    if not top > 0:
        return 1.0, 1.0 / SLIDER_STEPS
    raw = top / SLIDER_STEPS
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=10 * mag)
    return math.floor(top / step) * step, step


def readable_threshold(nodes: pd.DataFrame, step: float) -> float:
    """The smallest threshold on the slider's grid that shows at most DEFAULT_NODES nodes."""
    top = nodes["effect"].abs().sort_values(ascending=False).to_numpy()
    if len(top) <= DEFAULT_NODES:
        return 0.0
    # strictly above the first node left out, rounded up to the grid
    cut = float(top[DEFAULT_NODES])
    return (math.floor(cut / step) + 1) * step


@safe_layout
def layout(id: str | None = None, node: str | None = None, edge: str | None = None,  # noqa: A002
           **_: Any) -> Any:
    from dash import dcc, html

    store = get_context().store
    circuits = store.circuits()
    if not len(circuits):
        return html.Div([html.H2("Circuits"), html.P("This store holds no circuits yet.")])
    ids = [str(c) for c in circuits["circuit_id"]]
    circuit_id = id if id is not None else ids[0]
    if circuit_id not in ids:
        raise NotFoundError(f"no circuit {circuit_id!r} in this store (it holds: {', '.join(ids)})")
    nodes, edges = store.circuit(circuit_id)
    (nmax, nstep), (emax, estep) = slider_range(nodes), slider_range(edges)
    meta = circuits[circuits["circuit_id"] == circuit_id].iloc[0].to_dict()
    # Default thresholds: the stored ones, else 0 (show all that fits the budget); a circuit
    # over the budget opens on its strongest nodes instead of a refusal.
    n_thr = parse_float(node, parse_float(meta.get("node_threshold"), 0.0))
    if node is None and (nodes["effect"].abs() >= n_thr).sum() > NODE_BUDGET:
        n_thr = readable_threshold(nodes, nstep)
    e_thr = parse_float(edge, parse_float(meta.get("edge_threshold"), 0.0))
    info = {k: meta.get(k) for k in ("model", "method", "metric", "faithfulness",
                                     "completeness", "n_nodes", "n_edges")}
    return html.Div(
        [
            *url_sync("circuit"),
            dcc.Store(id="circuit-id", data=circuit_id),
            html.H2("Circuit"),
            dcc.Dropdown(id="circuit-select", options=[{"label": c, "value": c} for c in ids],
                         value=circuit_id, clearable=False),
            dcc.Location(id="circuit-nav", refresh=True),
            stat_list(info),
            html.Label("node threshold |effect|"),
            dcc.Slider(id="circuit-node-threshold", min=0, max=nmax, step=nstep,
                       value=min(n_thr, nmax), marks=None,
                       tooltip={"placement": "bottom", "always_visible": False}),
            html.Label("edge threshold |effect|"),
            dcc.Slider(id="circuit-edge-threshold", min=0, max=emax, step=estep,
                       value=min(e_thr, emax), marks=None,
                       tooltip={"placement": "bottom", "always_visible": False}),
            html.P(id="circuit-count", className="count"),
            html.Div(id="circuit-message"),
            dcc.Graph(id="circuit-graph", config={"displaylogo": False}),
            html.Div(id="circuit-node-card", className="panel"),
        ]
    )


def node_card(sae_id: str, feature: int) -> Any:
    from dash import dcc, html

    if feature < 0:
        return html.P(f"The error node of {sae_id}: what the SAE fails to reconstruct.")
    card = get_context().store.feature_card(sae_id, feature)
    if card is None:
        return error_box(f"feature {feature} of {sae_id!r} is not in this store")
    stats = {k: card.stats.get(k) for k in ("density", "max_act", "top_token")}
    return html.Div([
        html.H4([dcc.Link(f"{sae_id} · feature {feature}", href=feature_href(sae_id, feature),
                          id="circuit-node-link")]),
        html.P(card.explanation or "no explanation", className="muted"),
        stat_list(stats),
    ])


def register_callbacks(app: Any) -> None:
    register_url_sync(app, "circuit")
    from dash import Input, Output, State, no_update

    @app.callback(
        Output("circuit-graph", "figure"),
        Output("circuit-count", "children"),
        Output("circuit-message", "children"),
        Output("circuit-url", "data"),
        Input("circuit-node-threshold", "value"),
        Input("circuit-edge-threshold", "value"),
        State("circuit-id", "data"),
    )
    def _draw(node_thr: Any, edge_thr: Any, circuit_id: Any):
        node_thr = expect_number(node_thr, "the node threshold", 0.0, 1e300, default=0.0)
        edge_thr = expect_number(edge_thr, "the edge threshold", 0.0, 1e300, default=0.0)
        circuit_id = expect_str(circuit_id, "the circuit id")
        fig, summary, message = render(circuit_id, node_thr, edge_thr)
        query = "?" + urlencode({"id": circuit_id, "node": fmt(node_thr, 6),
                                 "edge": fmt(edge_thr, 6)})
        if fig is None:
            fig = figures.empty_figure("too many nodes to draw")
        return fig, summary, error_box(message) if message else "", query

    @app.callback(
        Output("circuit-nav", "href"),
        Input("circuit-select", "value"),
        State("circuit-id", "data"),
        prevent_initial_call=True,
    )
    def _select(value: Any, current: Any):
        value = expect_str(value, "the chosen circuit")
        current = expect_str(current, "the circuit id", optional=True)
        return no_update if value == current else "/circuit?" + urlencode({"id": value})

    @app.callback(
        Output("circuit-node-card", "children"),
        Input("circuit-graph", "clickData"),
        prevent_initial_call=True,
    )
    def _click(click: Any):
        if click is None:
            return no_update
        points = expect_points(click, "clickData")
        if not points or "customdata" not in points[0]:
            return no_update  # a click on an edge: nothing to show
        custom = points[0]["customdata"]
        if not isinstance(custom, list) or len(custom) != 3:
            raise BadCallbackInput(f"a node's customdata is [node id, SAE id, feature], got "
                                   f"{str(custom)[:80]}")
        sae_id = expect_str(custom[1], "the node's SAE id")
        return node_card(sae_id, expect_int(custom[2], "the node's feature", -1, 2**62))
