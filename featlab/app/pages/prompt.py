"""Prompt view: type text (or a token-id sequence for MQAR models) and see the top features
per token from the live model and SAE (loaded once, on first use, from the paths the store
recorded)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pandas as pd

from featlab.app.components import (
    NotFoundError,
    error_box,
    feature_href,
    fmt,
    sae_ids,
    safe_layout,
)
from featlab.app.context import get_context
from featlab.app.guard import MAX_BODY_BYTES, expect_int, expect_str
from featlab.app.pages import register_url_sync, url_sync

PATH = "/prompt"
TITLE = "Prompt"
TOP_K = 5
MAX_CHARS = 2000  # keeps one request's model run short on a CPU, and the URL short


def results_view(sae_id: str, df: pd.DataFrame) -> Any:
    """One row per token: the token and its top features (links) with activations."""
    from dash import dcc, html

    if not len(df):
        return html.P("No feature fires on this prompt.", id="prompt-empty")
    rows = []
    for (pos, token), part in df.groupby(["pos", "token"], sort=True):
        feats = [
            html.Span([dcc.Link(f"#{int(r.feature)}", href=feature_href(sae_id, int(r.feature))),
                       html.Span(f" {fmt(float(r.act))}", className="muted")],
                      className="prompt-feature")
            for r in part.sort_values("act", ascending=False).itertuples()
        ]
        rows.append(html.Tr([html.Td(str(pos)), html.Td(repr(str(token)), className="tok-cell"),
                             html.Td(feats)]))
    head = html.Thead(html.Tr([html.Th("pos"), html.Th("token"), html.Th("top features")]))
    return html.Table([head, html.Tbody(rows)], className="mini", id="prompt-results")


def too_long(text: str) -> str | None:
    if len(text) <= MAX_CHARS:
        return None
    return (f"The prompt has {len(text):,} characters; the limit is {MAX_CHARS:,}. Shorten "
            "it and press Run again.")


def run_prompt(sae_id: str, text: str, k: int = TOP_K) -> Any:
    if not (text or "").strip():
        return _hint("Type a prompt and press Run.")
    if too_long(text):
        return error_box(too_long(text))
    try:
        df = get_context().live.top_features(sae_id, text, k=k)
    except Exception as err:  # no recorded model, bad tokens: tell the user, keep the page
        return error_box(f"Could not run the model: {type(err).__name__}: {err}")
    return results_view(sae_id, df)


def _hint(text: str) -> Any:
    from dash import html

    return html.P(text, className="muted")


@safe_layout
def layout(sae: str | None = None, text: str = "", **_: Any) -> Any:
    from dash import dcc, html

    ids = sae_ids(get_context().store)
    if not ids:
        return html.Div([html.H2("Prompt"), html.P("This store holds no SAEs.")])
    sae_id = sae if sae in ids else ids[0]
    # A link with a prompt over the cap (typed into the address bar) opens empty, with
    # the refusal, rather than putting the text back into the box and the URL.
    refused = too_long(text or "")
    return html.Div(
        [
            *url_sync("prompt"),
            html.H2("Prompt"),
            html.P("Text for text models; for token-id models (MQAR) type ids separated by "
                   "spaces, e.g. 3 17 42 17.", className="muted"),
            dcc.Dropdown(id="prompt-sae", value=sae_id, clearable=False,
                         options=[{"label": i, "value": i} for i in ids]),
            dcc.Textarea(id="prompt-text", value="" if refused else text, maxLength=MAX_CHARS,
                         className="prompt-text"),
            html.Button("Run", id="prompt-run", n_clicks=0, className="btn"),
            html.Div(error_box(refused) if refused else None, id="prompt-link-message"),
            dcc.Loading(html.Div(id="prompt-output"), type="dot"),
        ]
    )


def register_callbacks(app: Any) -> None:
    register_url_sync(app, "prompt")
    from dash import Input, Output, State

    @app.callback(
        Output("prompt-output", "children"),
        Output("prompt-url", "data"),
        Input("prompt-run", "n_clicks"),
        State("prompt-sae", "value"),
        State("prompt-text", "value"),
    )
    def _run(n_clicks: Any, sae_id: Any, text: Any):
        # Runs on page load too, so a deep link with ?text=... shows its results.
        expect_int(n_clicks, "n_clicks", 0, 10**9, default=0)
        sae_id = expect_str(sae_id, "the SAE id")
        if sae_id not in sae_ids(get_context().store):
            raise NotFoundError(f"no SAE {sae_id!r} in this store")
        text = expect_str(text, "the prompt", MAX_BODY_BYTES, optional=True) or ""
        # Only a prompt that is run goes into the URL: one over the cap would make every
        # reload of the page a request the server refuses (HTTP 414 beyond ~8 KB).
        query = "?" + urlencode({"sae": sae_id, "text": text}) if text else ""
        if too_long(text):
            query = "?" + urlencode({"sae": sae_id})
        return run_prompt(sae_id, text), query
