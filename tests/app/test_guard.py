"""Crafted callback requests (what no page sends) get a 4xx with a short JSON error, never a
500 with a traceback in the server log; well-formed requests still work."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from featlab.app.routing import router_request

SAE = "L0-topk"


def body(outputs: list[tuple[str, str]], inputs: list[tuple[str, str, Any]],
         state: list[tuple[str, str, Any]] = ()) -> dict[str, Any]:
    """A callback body as dash-renderer builds it."""
    outs = [{"id": i, "property": p} for i, p in outputs]
    key = (f"{outputs[0][0]}.{outputs[0][1]}" if len(outputs) == 1
           else ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..")
    return {"output": key, "outputs": outs[0] if len(outs) == 1 else outs,
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
            "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"] if inputs else []}


TABLE_OUT = [("feature-table", "data"), ("feature-table", "page_count"),
             ("feature-table-message", "children"), ("features-url", "data")]


def table(page: Any = 0, sort_by: Any = (), filter_query: Any = "", sae: Any = SAE) -> dict:
    return body(TABLE_OUT, [("feature-table", "page_current", page),
                            ("feature-table", "sort_by", list(sort_by) if isinstance(
                                sort_by, tuple) else sort_by),
                            ("feature-table", "filter_query", filter_query)],
                [("features-sae", "data", sae)])


def save(key: Any, text: Any = "x") -> dict:
    return body([("explanation-status", "children")], [("explanation-save", "n_clicks", 1)],
                [("explanation-text", "value", text), ("feature-key", "data", key)])


def prompt(sae: Any = SAE, text: Any = "1 2 3") -> dict:
    return body([("prompt-output", "children"), ("prompt-url", "data")],
                [("prompt-run", "n_clicks", 1)],
                [("prompt-sae", "value", sae), ("prompt-text", "value", text)])


def circuit(node: Any = 0.0, edge: Any = 0.0, cid: Any = "c0") -> dict:
    return body([("circuit-graph", "figure"), ("circuit-count", "children"),
                 ("circuit-message", "children"), ("circuit-url", "data")],
                [("circuit-node-threshold", "value", node),
                 ("circuit-edge-threshold", "value", edge)], [("circuit-id", "data", cid)])


def attribution(map_id: Any = "a-image", sign: Any = "both", clip: Any = 99) -> dict:
    return body([("attr-graph", "figure"), ("attr-info", "children"), ("attr-url", "data")],
                [("attr-select", "value", map_id), ("attr-sign", "value", sign),
                 ("attr-clip", "value", clip)])


def router(pathname: Any = "/", search: Any = "") -> dict:
    b = router_request("/")
    b["inputs"][0]["value"], b["inputs"][1]["value"] = pathname, search
    return b


def _with(b: dict, **changes: Any) -> dict:
    return {**b, **changes}


# (name, body or raw bytes). Each is something no page of the app sends.
PROBES: list[tuple[str, Any]] = [
    ("non-JSON body", b"hello, not json"),
    ("JSON array, not an object", [1, 2, 3]),
    ("empty object", {}),
    ("output is a number", _with(router(), output=5)),
    ("unknown output", _with(router(), output="nope.children")),
    ("outputs missing", _with(router(), outputs=[])),
    ("inputs not a list", _with(router(), inputs="pathname")),
    ("unknown input id", _with(router(), inputs=[
        {"id": "zz", "property": "pathname", "value": "/"},
        {"id": "_pages_location", "property": "search", "value": ""}])),
    ("changedPropIds names no input", _with(router(), changedPropIds=["zz.value"])),
    ("state not a list", _with(table(), state={"id": "features-sae"})),
    ("router: pathname is a number", router(pathname=123)),
    ("router: search is 100 kB", router(search="?" + "a" * 100_000)),
    ("body over 1 MiB", _with(router(), pad="x" * (2 << 20))),
    ("table: page_current 'abc'", table(page="abc")),
    ("table: page_current 10**12", table(page=10**12)),
    ("table: page_current -1", table(page=-1)),
    ("table: sort_by not a list", table(sort_by="density")),
    ("table: sort_by unknown column", table(sort_by=[{"column_id": "hist",
                                                      "direction": "asc"}])),
    ("table: filter_query a number", table(filter_query=123)),
    ("table: SAE id null", table(sae=None)),
    ("table: unknown SAE id", table(sae="nope")),
    ("map: SAE id null", body([("feature-map", "figure")], [("features-sae", "data", None)])),
    ("map click: clickData a string", body([("features-nav", "href")],
                                           [("feature-map", "clickData", "x")],
                                           [("features-sae", "data", SAE)])),
    ("map click: pointIndex 10**9", body([("features-nav", "href")],
                                         [("feature-map", "clickData",
                                           {"points": [{"pointIndex": 10**9}]})],
                                         [("features-sae", "data", SAE)])),
    ("save: feature-key null", save(None)),
    ("save: feature 'abc'", save({"sae_id": SAE, "feature": "abc"})),
    ("save: explanation a list", save({"sae_id": SAE, "feature": 1}, ["x"])),
    ("prompt: SAE id null", prompt(sae=None)),
    ("prompt: text a number", prompt(text=123)),
    ("circuit: threshold 'abc'", circuit(node="abc")),
    ("circuit: unknown circuit", circuit(cid="nope")),
    ("circuit click: customdata wrong", body([("circuit-node-card", "children")],
                                             [("circuit-graph", "clickData",
                                               {"points": [{"customdata": "x"}]})])),
    ("attribution: sign 'sideways'", attribution(sign="sideways")),
    ("attribution: clip 1e9", attribution(clip=1e9)),
    ("attribution: unknown map", attribution(map_id="nope")),
]


def post(client: Any, probe: Any) -> Any:
    if isinstance(probe, bytes):
        return client.post("/_dash-update-component", data=probe,
                           content_type="application/json")
    return client.post("/_dash-update-component", json=probe)


@pytest.mark.parametrize(("name", "probe"), PROBES, ids=[p[0] for p in PROBES])
def test_crafted_callback_requests_get_4xx(client, caplog, name: str, probe: Any) -> None:
    with caplog.at_level(logging.ERROR):
        resp = post(client, probe)
    assert 400 <= resp.status_code < 500, (name, resp.status_code, resp.get_data()[:300])
    assert b"Traceback" not in resp.get_data()
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, [r.getMessage() for r in logged]
    if resp.status_code in (400, 404):
        assert json.loads(resp.get_data())["error"]  # a short JSON error


@pytest.mark.parametrize("good", [router("/"), router(f"/sae/{SAE}"), table(page=1),
                                  table(sort_by=[{"column_id": "density",
                                                  "direction": "desc"}],
                                        filter_query="{density} s> 0"),
                                  circuit(node=0.5), attribution(sign="positive", clip=90),
                                  prompt(text="")])
def test_well_formed_requests_still_work(client, good: dict) -> None:
    resp = client.post("/_dash-update-component", json=good)
    assert resp.status_code == 200, resp.get_data()[:300]


def test_a_genuine_bug_is_still_a_500(client, monkeypatch, caplog) -> None:
    """The guard answers requests it can tell are wrong; a bug in a callback is not hidden."""
    from featlab.app.pages import attribution as page

    def broken(*_a: Any, **_k: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(page, "map_figure", broken)
    monkeypatch.setattr(client.application, "testing", False)  # answer, don't re-raise
    with caplog.at_level(logging.ERROR):
        resp = client.post("/_dash-update-component", json=attribution())
    assert resp.status_code == 500
    assert any(r.exc_info for r in caplog.records)  # logged with its traceback
