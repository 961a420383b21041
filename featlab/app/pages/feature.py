"""Feature page: one latent's density, histogram, examples, logit effects, neighbours,
complexity, importance and an editable explanation, with previous / next / random links.

Everything comes from one `store.feature_card` call, so the page costs one feature's rows
whatever the SAE's width.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from featlab.app import figures
from featlab.app.components import (
    NotFoundError,
    feature_href,
    fmt,
    parse_int,
    path_arg,
    require_sae,
    sae_href,
    safe_layout,
    stat_list,
    token_html,
)
from featlab.app.context import get_context
from featlab.app.guard import MAX_BODY_BYTES, expect_dict, expect_int, expect_str

PATH_TEMPLATE = "/sae/<sae_id>/feature/<feature>"
TITLE = "Feature"
EXAMPLES_PER_BAND = 5
STAT_KEYS = ("density", "max_act", "mean_act", "dead", "complexity", "importance", "top_token")


def random_feature(sae_id: str, feature: int, n_features: int) -> int:
    """A reproducible "random" neighbour: seeded by (sae_id, feature) so the link is stable
    across reloads and differs from the current feature when there is another."""
    if n_features <= 1:
        return 0
    rng = random.Random(f"{sae_id}:{feature}")
    pick = rng.randrange(n_features - 1)
    return pick + 1 if pick >= feature else pick


def _nav(sae_id: str, feature: int, n: int) -> Any:
    from dash import dcc, html

    def link(label: str, target: int, id_: str) -> Any:
        if 0 <= target < n:
            return dcc.Link(label, href=feature_href(sae_id, target), id=id_, className="btn")
        return html.Span(label, id=id_, className="btn disabled")

    return html.Div(
        [
            link("← previous", feature - 1, "feature-prev"),
            link("next →", feature + 1, "feature-next"),
            link("random", random_feature(sae_id, feature, n), "feature-random"),
            dcc.Link("all features", href=sae_href(sae_id), className="btn", id="feature-list"),
        ],
        className="feature-nav",
    )


def examples_html(examples: Any, scale: float) -> list[tuple[str, str]]:
    """[(band, HTML of its rows)]: "top" first, then bands strongest to weakest, at most
    EXAMPLES_PER_BAND rows each (`examples` is ordered by band then rank by the store)."""
    if examples is None or not len(examples):
        return []
    found = [str(b) for b in examples["band"].unique()]
    bands = (["top"] if "top" in found else []) + sorted(
        (b for b in found if b != "top"), key=lambda b: int(b[1:]) if b[1:].isdigit() else 0,
        reverse=True)
    band_col = examples["band"].astype(str).to_numpy()
    out = []
    for band in bands:
        idx = np.flatnonzero(band_col == band)[:EXAMPLES_PER_BAND]
        rows = [
            f'<div class="example"><span class="peak">{fmt(float(examples["peak"].iat[i]))}'
            f'</span>{token_html(examples["tokens"].iat[i], examples["acts"].iat[i], scale)}'
            "</div>"
            for i in idx
        ]
        out.append((band, "".join(rows)))
    return out


def _examples(examples: Any, scale: float) -> Any:
    from dash import dcc, html

    blocks = []
    for band, rows in examples_html(examples, scale):
        title = "Top activations" if band == "top" else f"Quantile band {band}"
        blocks.append(html.Div(
            [html.H4(title), dcc.Markdown(rows, dangerously_allow_html=True,
                                          className="band-rows")],
            className="band", id=f"band-{band}"))
    if not blocks:
        blocks = [html.P("No examples recorded (the feature never fired on the analysed "
                         "tokens).")]
    return html.Div(blocks, id="examples")


def _neighbours(nb: Any) -> Any:
    from dash import dcc, html

    if nb is None or not len(nb):
        return html.P("No neighbours recorded.")
    names = {"decoder_cosine": "Decoder cosine", "act_correlation": "Activation correlation",
             "cross_sae": "Best match in another SAE"}
    out = []
    for kind, part in nb.groupby("kind", sort=False):
        items = []
        for r in part.sort_values("rank").itertuples():
            other, f = str(r.other_sae), int(r.other_feature)
            items.append(html.Li([
                dcc.Link(f"{other if kind == 'cross_sae' else ''} #{f}",
                         href=feature_href(other, f)),
                f" {fmt(float(r.value))}",
            ]))
        out.append(html.Div([html.H5(names.get(str(kind), str(kind))), html.Ul(items)]))
    return html.Div(out, className="neighbours", id="neighbours")


@safe_layout
def layout(sae_id: str | None = None, feature: str | None = None, **_: Any) -> Any:
    from dash import dcc, html

    store = get_context().store
    sae_id = require_sae(store, path_arg(sae_id))
    idx = parse_int(path_arg(feature), "feature index")
    n = int(store.n_features(sae_id))
    if not 0 <= idx < n:
        raise NotFoundError(
            f"feature {idx} is out of range: SAE {sae_id!r} has features 0..{n - 1}")
    card = store.feature_card(sae_id, idx)
    if card is None:
        raise NotFoundError(f"no feature {idx} recorded for SAE {sae_id!r}")
    stats = {k: card.stats.get(k) for k in STAT_KEYS if k in card.stats}
    scale = float(card.stats.get("max_act") or 0.0)
    explanation = card.explanation or ""
    return html.Div(
        [
            dcc.Store(id="feature-key", data={"sae_id": sae_id, "feature": idx}),
            html.H2([dcc.Link(sae_id, href=sae_href(sae_id)), f" · feature {idx}"],
                    id="feature-title"),
            _nav(sae_id, idx, n),
            html.Div(
                [
                    html.Div([html.H4("Statistics"), stat_list(stats)], className="panel"),
                    html.Div(
                        [
                            html.H4(["Explanation ", html.Span(
                                _source_label(card), className="muted",
                                id="explanation-source")]),
                            dcc.Textarea(id="explanation-text", value=explanation,
                                         maxLength=max_explanation_chars(),
                                         className="explanation"),
                            html.Button("Save", id="explanation-save", n_clicks=0,
                                        className="btn"),
                            html.Span(id="explanation-status", className="muted"),
                        ],
                        className="panel",
                    ),
                ],
                className="row",
            ),
            dcc.Graph(id="feature-hist", figure=figures.activation_histogram_spec(card.histogram),
                      config={"displaylogo": False}),
            html.H3("Examples"),
            _examples(card.examples, scale),
            html.Div(
                [
                    html.Div(dcc.Graph(id="feature-logits",
                                       figure=figures.logit_bars_spec(card.logits_top,
                                                                      card.logits_bottom),
                                       config={"displaylogo": False}), className="panel"),
                    html.Div([html.H4("Neighbours"), _neighbours(card.neighbours)],
                             className="panel"),
                ],
                className="row",
            ),
        ],
        id="feature-page",
    )


def _source_label(card: Any) -> str:
    if not card.explanation:
        return "(none)"
    if card.explanation_source == "auto":  # a heuristic, not a reading: say so
        return "(automatic: the tokens at the peaks of the top examples; edit to replace)"
    return f"({card.explanation_source})"


def max_explanation_chars() -> int:
    from featlab.store.reader import MAX_EXPLANATION_CHARS

    return MAX_EXPLANATION_CHARS


def save_explanation(sae_id: str, feature: int, text: str) -> str:
    """Persist a user explanation; returns the status line the page shows."""
    text = (text or "").strip()
    if not text:
        return "Nothing to save: the explanation is empty."
    cap = max_explanation_chars()
    if len(text) > cap:
        return f"Not saved: the explanation has {len(text):,} characters; the limit is {cap:,}."
    if not get_context().store.set_explanation(sae_id, int(feature), text, source="user"):
        return "Nothing to save: the explanation is unchanged."
    return "Saved."


def register_callbacks(app: Any) -> None:
    from dash import Input, Output, State

    @app.callback(
        Output("explanation-status", "children"),
        Input("explanation-save", "n_clicks"),
        State("explanation-text", "value"),
        State("feature-key", "data"),
        prevent_initial_call=True,
    )
    def _save(n_clicks: Any, text: Any, key: Any) -> str:
        from featlab.store import StoreError

        expect_int(n_clicks, "n_clicks", 0, 10**9, default=0)
        key = expect_dict(key, "the feature key", ("sae_id", "feature"))
        sae_id = require_sae(get_context().store, expect_str(key["sae_id"], "the SAE id"))
        feature = expect_int(key["feature"], "the feature index", 0, 2**62)
        text = expect_str(text, "the explanation", MAX_BODY_BYTES, optional=True)
        try:
            return save_explanation(sae_id, feature, text or "")
        except (OSError, StoreError, KeyError) as err:  # read-only store, full disk, gone
            return f"Could not save: {type(err).__name__}: {err}"
