"""Requests no page of the app sends are answered 4xx with a short JSON error, not a 500.

Two layers. Before Dash dispatches a POST to `/_dash-update-component`, `install`'s
`before_request` hook checks the body's structure: a JSON object whose `output` names a
registered callback and whose `outputs` / `inputs` / `state` / `changedPropIds` are what
that callback declares (Dash would otherwise fail on them with a KeyError or TypeError deep
inside its dispatcher). The values are then each callback's business: it checks them with
the `expect_*` helpers, which raise `BadCallbackInput` (mapped to 400). A URL or value
naming something the store does not hold raises `NotFoundError` (mapped to 404). Anything
else is a genuine bug and stays a 500 with its traceback in the log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from featlab.app.components import NotFoundError

CALLBACK_PATH = "/_dash-update-component"
MAX_BODY_BYTES = 1 << 20  # the largest real request (a 2,000-character prompt) is ~10 KB
MAX_URL_CHARS = 65_536  # a 2,000-character prompt percent-encodes to at most ~18,000
MAX_CLICKED_POINTS = 100
ROUTER_OUTPUT = ".._pages_content.children..._pages_store.data.."


class BadCallbackInput(ValueError):
    """A callback request no page of this app sends (a crafted or corrupted request)."""


# -- values, checked by each callback ------------------------------------------------------


def expect_int(value: Any, name: str, lo: int = 0, hi: int = 10**6,
               default: int | None = None) -> int:
    """An integer in [lo, hi] (a float holding one is accepted, as JSON may send 3.0)."""
    if value is None and default is not None:
        return default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadCallbackInput(f"{name} must be an integer in [{lo}, {hi}], got {_show(value)}")
    return value


def expect_number(value: Any, name: str, lo: float, hi: float,
                  default: float | None = None) -> float:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and lo <= value <= hi):
        raise BadCallbackInput(f"{name} must be a number in [{lo}, {hi}], got {_show(value)}")
    return float(value)


def expect_str(value: Any, name: str, max_chars: int = 1000, *,
               optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise BadCallbackInput(f"{name} must be text of at most {max_chars} characters, "
                               f"got {_show(value)}")
    return value


def expect_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or \
            value not in choices:
        raise BadCallbackInput(f"{name} must be one of {list(choices)}, got {_show(value)}")
    return value


def expect_dict(value: Any, name: str, keys: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict) or any(k not in value for k in keys):
        raise BadCallbackInput(f"{name} must be an object with keys {list(keys)}, "
                               f"got {_show(value)}")
    return value


def expect_list(value: Any, name: str, max_len: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_len:
        raise BadCallbackInput(f"{name} must be a list of at most {max_len} items, "
                               f"got {_show(value)}")
    return value


def expect_points(click: Any, name: str) -> list[dict[str, Any]]:
    """The `points` of a plotly clickData, each an object."""
    points = expect_list(expect_dict(click, name, ("points",))["points"], f"{name}.points",
                         MAX_CLICKED_POINTS)
    for p in points:
        expect_dict(p, f"a point of {name}")
    return points


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- the request body, checked before Dash dispatches ---------------------------------------


def _prop_ids(spec: str) -> list[str]:
    """A callback's `output` key ("a.b" or "..a.b...c.d..") as its "id.property" parts."""
    return spec[2:-2].split("...") if spec.startswith("..") and spec.endswith("..") else [spec]


def _dep_key(dep: Any, what: str) -> str:
    if not isinstance(dep, dict) or not isinstance(dep.get("property"), str) or not isinstance(
            dep.get("id"), (str, dict)):
        raise BadCallbackInput(f"each of {what} must be an object with an id and a property, "
                               f"got {_show(dep)}")
    if isinstance(dep["id"], dict):  # pattern-matching ids are keyed by their JSON
        import json

        return f"{json.dumps(dep['id'], sort_keys=True, separators=(',', ':'))}.{dep['property']}"
    return f"{dep['id']}.{dep['property']}"


def _check_deps(body: dict[str, Any], key: str, declared: list[dict[str, Any]]) -> list[Any]:
    deps = body.get(key, [])
    if not isinstance(deps, list):
        raise BadCallbackInput(f"{key!r} must be a list, got {_show(deps)}")
    got = [_dep_key(d, key) for d in deps]
    want = [_dep_key(d, key) for d in declared]
    if got != want:
        raise BadCallbackInput(f"{key!r} must be {want} for this callback, got {got}")
    return [d.get("value") for d in deps]


def check_body(body: Any, callbacks: dict[str, Any]) -> None:
    """Raise BadCallbackInput unless `body` is a well-formed request for one of
    `callbacks` (the app's `callback_map`)."""
    if not isinstance(body, dict):
        raise BadCallbackInput("the body must be a JSON object (what dash-renderer posts)")
    output = body.get("output")
    if not isinstance(output, str) or output not in callbacks:
        raise BadCallbackInput(f"'output' must name a callback of this app, got {_show(output)}")
    cb = callbacks[output]
    outputs = body.get("outputs")
    outputs = outputs if isinstance(outputs, list) else [outputs]
    got = [_dep_key(o, "outputs") for o in outputs]
    if got != _prop_ids(output):
        raise BadCallbackInput(f"'outputs' must be {_prop_ids(output)} for this callback, "
                               f"got {got}")
    inputs = _check_deps(body, "inputs", cb.get("inputs", []))
    _check_deps(body, "state", cb.get("state", []))
    changed = body.get("changedPropIds", [])
    names = {_dep_key(d, "inputs") for d in body.get("inputs", [])}
    if not isinstance(changed, list) or any(c not in names for c in changed):
        raise BadCallbackInput(f"'changedPropIds' must list some of the inputs {sorted(names)}, "
                               f"got {_show(changed)}")
    if output == ROUTER_OUTPUT:  # Dash's own page router: its inputs are the URL
        for value, name in zip(inputs, ("pathname", "search"), strict=False):
            expect_str(value, f"the URL {name}", MAX_URL_CHARS, optional=True)


def install(app: Any) -> None:
    """Add the body check and the 4xx error handlers to the `dash.Dash` `app`."""
    import flask

    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    def answer(status: int, message: str) -> flask.Response:
        return flask.Response(flask.json.dumps({"error": message}), status=status,
                              mimetype="application/json")

    @server.before_request
    def _check_callback_body() -> flask.Response | None:
        req = flask.request
        if req.method != "POST" or not req.path.endswith(CALLBACK_PATH):
            return None
        body = req.get_json(silent=True)
        if body is None:
            return answer(400, "bad callback request: the body is not JSON")
        try:
            check_body(body, app.callback_map)
        except BadCallbackInput as err:
            return answer(400, f"bad callback request: {err}")
        return None

    @server.errorhandler(BadCallbackInput)
    def _bad_input(err: BadCallbackInput) -> flask.Response:
        return answer(400, f"bad callback request: {err}")

    from featlab.store.reader import UnknownIdError

    @server.errorhandler(NotFoundError)
    @server.errorhandler(UnknownIdError)
    def _not_found(err: LookupError) -> flask.Response:
        return answer(404, str(err))
