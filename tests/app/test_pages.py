"""Pages on the server side: routing each URL through the router callback (as the browser
does) and the page helpers, on a synthetic store. No browser needed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from featlab.app.context import get_context
from featlab.app.routing import find_ids, page_layout, render_url

SAE = "L0-topk"


@pytest.mark.parametrize(("url", "expected"), [
    ("/", {"sae-cards", f"sae-card-{SAE}", "density-histogram"}),
    (f"/sae/{SAE}", {"feature-table", "feature-map", "features-url"}),
    (f"/sae/{SAE}/feature/4", {"feature-page", "feature-hist", "examples", "feature-next",
                               "explanation-text", "neighbours"}),
    ("/prompt", {"prompt-text", "prompt-run", "prompt-output"}),
    ("/circuit", {"circuit-graph", "circuit-node-threshold", "circuit-count"}),
    ("/attribution?id=a-image", {"attr-graph", "attr-sign", "attr-clip"}),
    ("/complexity", {"complexity-scatter", "complexity-spectrum", "shortcut-graph"}),
    ("/compare", {"compare-table", "compare-hist"}),
])
def test_pages_route_to_their_components(client, url: str, expected: set[str]) -> None:
    ids = find_ids(page_layout(client, url))
    assert expected <= ids, f"{url} lacks {expected - ids}"
    assert "not-found" not in ids


@pytest.mark.parametrize("url", [
    "/sae/nope", "/sae/nope/feature/1", f"/sae/{SAE}/feature/64", f"/sae/{SAE}/feature/-1",
    f"/sae/{SAE}/feature/1.5", "/circuit?id=zz", "/attribution?id=zz", "/complexity?sae=zz",
    "/compare?a=zz", "/no/such/page",
])
def test_bad_urls_give_the_not_found_page(client, url: str) -> None:
    status, body = render_url(client, url)
    assert status == 200
    tree = json.loads(body)["response"]["_pages_content"]["children"]
    assert "not-found" in find_ids(tree)
    assert b"Traceback" not in body


def test_not_found_names_the_valid_ids(client) -> None:
    _, body = render_url(client, "/sae/nope")
    assert b"L1-batchtopk" in body  # the message lists what the store holds


def test_feature_links_are_deep_links(client) -> None:
    from featlab.app.components import feature_href, sae_href

    assert feature_href("blocks.0/x", 3) == "/sae/blocks.0%2Fx/feature/3"
    assert sae_href("a", page=2, sort="density") == "/sae/a?page=2&sort=density"
    # A percent-encoded SAE id in the path is decoded before the store sees it.
    ids = find_ids(page_layout(client, f"/sae/{SAE.replace('-', '%2D')}/feature/1"))
    assert "feature-page" in ids


def test_random_feature_is_stable_and_moves() -> None:
    from featlab.app.pages.feature import random_feature

    picks = [random_feature("s", f, 100) for f in range(100)]
    assert picks == [random_feature("s", f, 100) for f in range(100)]
    assert all(p != f and 0 <= p < 100 for f, p in enumerate(picks))
    assert len(set(picks)) > 30  # not a constant jump


def test_table_page_comes_from_the_store(client, synthetic_store) -> None:
    from featlab.app.pages.features import PAGE_SIZE, query_page
    from featlab.store import open_store

    with client.application.app_context():
        rows, count, msg = query_page(SAE, 1, [{"column_id": "density", "direction": "desc"}],
                                      "{density} s> 0")
    store = open_store(synthetic_store)
    df, total = store.features(SAE, offset=PAGE_SIZE, limit=PAGE_SIZE, sort_by="density",
                               descending=True, conditions=[("density", ">", 0.0)])
    assert total < store.n_features(SAE)  # the dead features (density 0) are left out
    assert count == -(-total // PAGE_SIZE) and msg == ""
    assert [r["feature"].split("]")[0][1:] for r in rows] == [str(f) for f in df["feature"]]


def test_circuit_filter_counts() -> None:
    from featlab.app.pages.circuit import filter_circuit, slider_range

    nodes = pd.DataFrame({"node_id": ["a", "b", "c"], "effect": [0.1, -2.0, 3.0]})
    edges = pd.DataFrame({"src": ["b", "a"], "dst": ["c", "c"], "effect": [1.0, 5.0]})
    kept_n, kept_e, counts = filter_circuit(nodes, edges, 1.0, 0.5)
    assert list(kept_n["node_id"]) == ["b", "c"]
    assert list(kept_e["src"]) == ["b"]  # the a->c edge goes with its hidden end
    assert counts == {"nodes": 2, "nodes_total": 3, "edges": 1, "edges_total": 2}
    top, step = slider_range(nodes)
    assert top <= 3.0 < top + step and step in (0.05, 0.1)


def test_circuit_refuses_beyond_the_node_budget(client, monkeypatch) -> None:
    from featlab.app.pages import circuit

    monkeypatch.setattr(circuit, "NODE_BUDGET", 5)
    with client.application.app_context():
        fig, summary, message = circuit.render("c0", 0.0, 0.0)
    assert fig is None and "budget of 5" in message and "showing" in summary


def test_circuit_nodes_name_site_feature_explanation_and_token(client) -> None:
    from featlab.app.pages import circuit

    row = pd.Series({"sae_id": "resid1", "layer": 1, "pos": 3, "feature": 12})
    assert circuit.node_label(row, "automatic: the", " the") == \
        "resid1 L1 @3 ␣the #12: automatic: the"
    cut = circuit.node_label(row, "x" * 100).split(": ", 1)[1]
    assert cut.endswith("…") and len(cut) == circuit.EXPLANATION_CHARS
    assert circuit.node_label(row.copy().replace(12, -1)).endswith("error")
    with client.application.app_context():
        fig, _, _ = circuit.render("c0", 0.0, 0.0)
        store = get_context().store
        nodes, _ = store.circuit("c0")
        explained = circuit.node_explanations(store, nodes)
    labels = list(fig.data[-1].text)
    assert all(label.split(" ")[0] in set(nodes["sae_id"]) for label in labels)
    assert explained and sum(": fires on token" in label for label in labels) == \
        sum((s, f) in explained for s, f in zip(nodes["sae_id"], nodes["feature"], strict=True))
    assert list(fig.layout.xaxis.ticktext)[:2] == ["0 ␣t0", "1 ␣t1"]


def test_a_circuit_over_the_budget_opens_on_its_strongest_nodes() -> None:
    from featlab.app.pages.circuit import DEFAULT_NODES, readable_threshold, slider_range

    nodes = pd.DataFrame({"effect": [(-1) ** i * (1000 - i) / 997 for i in range(400)]})
    _, step = slider_range(nodes)
    thr = readable_threshold(nodes, step)
    shown = (nodes["effect"].abs() >= thr).sum()
    assert 0 < shown <= DEFAULT_NODES
    assert (nodes["effect"].abs() >= thr - step).sum() > shown  # the grid's next lower value
    assert readable_threshold(nodes.head(DEFAULT_NODES), step) == 0.0


def test_feature_page_payload_is_small(client) -> None:
    status, body = render_url(client, f"/sae/{SAE}/feature/7")
    assert status == 200 and len(body) < 500_000


def test_map_click_without_customdata_uses_the_point_index(client, synthetic_store) -> None:
    from featlab.app.pages.features import clicked_feature
    from featlab.store import open_store

    order = open_store(synthetic_store).feature_map(SAE)["feature"].tolist()
    with client.application.app_context():
        assert clicked_feature(SAE, {"customdata": [7]}) == 7
        assert clicked_feature(SAE, {"customdata": 8}) == 8
        # Scattergl click events carry only the index (what the browser test hit).
        assert clicked_feature(SAE, {"pointIndex": 5, "x": 0.0}) == order[5]


def test_prompt_without_a_model_explains_instead_of_failing(client) -> None:
    from featlab.app.pages.prompt import run_prompt

    with client.application.app_context():
        box = run_prompt(SAE, "1 2 3").to_plotly_json()
        hint = run_prompt(SAE, "   ").to_plotly_json()
    assert box["props"]["className"] == "error-box"
    assert "--model DIR" in box["props"]["children"]
    assert "Type a prompt" in hint["props"]["children"]


def test_compare_page_is_one_store_query_per_page(client, monkeypatch) -> None:
    """The Compare page reads its rows with `store.cross_matches` (no card per row), and
    the rows agree with the cross-SAE neighbours in the feature cards."""
    from featlab.app.context import get_context
    from featlab.app.pages.compare import PAGE_SIZE, match_page

    with client.application.app_context():
        store = get_context().store
        calls: list[str] = []
        real_card = store.feature_card
        monkeypatch.setattr(store, "feature_card",
                            lambda *a, **k: (calls.append("card"), real_card(*a, **k))[1])
        df, total = match_page(SAE, "L1-batchtopk", 1)
        assert calls == [] and len(df) == PAGE_SIZE
        assert total == store.n_features(SAE)
        assert list(df["feature"]) == list(range(PAGE_SIZE, 2 * PAGE_SIZE))
        for r in df.head(3).itertuples():
            nb = real_card(SAE, r.feature).neighbours
            nb = nb[(nb["kind"] == "cross_sae") & (nb["other_sae"] == "L1-batchtopk")]
            best = nb.loc[nb["value"].abs().idxmax()]
            assert r.match == best["other_feature"]
            assert r.cosine == pytest.approx(best["value"])


def test_an_automatic_explanation_is_labelled_as_such(client, synthetic_store) -> None:
    from featlab.store import open_store

    store = open_store(synthetic_store)
    feature = next(f for f in range(store.n_features(SAE))
                   if store.feature_card(SAE, f).explanation_source == "auto")
    status, body = render_url(client, f"/sae/{SAE}/feature/{feature}")
    assert status == 200
    assert b"automatic: the tokens at the peaks of the top examples" in body
