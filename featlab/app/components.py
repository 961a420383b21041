"""Small Dash building blocks shared by the pages: links, cards, token shading, not-found.

Dash is imported inside each function so this module stays importable without it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from html import escape as html_escape
from typing import Any
from urllib.parse import quote, unquote, urlencode

log = logging.getLogger("featlab.app")


class NotFoundError(LookupError):
    """A URL named an SAE, feature or circuit the store does not hold."""


def _unknown_id(err: Exception) -> bool:
    """Whether `err` is the store's "no such SAE / circuit" (also raised when `analyze`
    re-runs into a served store and removes an SAE's parts just before rewriting them)."""
    from featlab.store.reader import UnknownIdError

    return isinstance(err, UnknownIdError)


# -- URLs --------------------------------------------------------------------------------


def sae_href(sae_id: str, **query: Any) -> str:
    """Feature list of one SAE, optionally with table state in the query string."""
    q = {k: v for k, v in query.items() if v not in (None, "", False)}
    return f"/sae/{quote(str(sae_id), safe='')}" + (f"?{urlencode(q)}" if q else "")


def feature_href(sae_id: str, feature: int) -> str:
    return f"/sae/{quote(str(sae_id), safe='')}/feature/{int(feature)}"


def page_href(path: str, **query: Any) -> str:
    q = {k: v for k, v in query.items() if v not in (None, "")}
    return path + (f"?{urlencode(q)}" if q else "")


def path_arg(value: Any) -> str:
    """A path variable as the browser sent it (percent-encoded) turned back into text."""
    return unquote(str(value)) if value is not None else ""


def parse_int(value: Any, what: str) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise NotFoundError(f"{what} {value!r} is not an integer") from None


def parse_float(value: Any, default: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


# -- store look-ups that turn "missing" into NotFoundError ------------------------------------


def sae_ids(store: Any) -> list[str]:
    saes = store.saes()
    return [str(s) for s in saes["sae_id"]] if len(saes) else []


def require_sae(store: Any, sae_id: str) -> str:
    ids = sae_ids(store)
    if sae_id not in ids:
        listed = ", ".join(ids) if ids else "none"
        raise NotFoundError(f"no SAE {sae_id!r} in this store (it holds: {listed})")
    return sae_id


def sae_row(store: Any, sae_id: str) -> dict[str, Any]:
    saes = store.saes()
    rows = saes[saes["sae_id"].astype(str) == sae_id]
    if not len(rows):
        require_sae(store, sae_id)
    return rows.iloc[0].to_dict()


# -- layout guard -----------------------------------------------------------------------------


def not_found(message: str) -> Any:
    from dash import dcc, html

    return html.Div(
        [
            html.H2("Not found"),
            html.P(message, className="not-found-message"),
            dcc.Link("Back to the SAEs", href="/"),
        ],
        id="not-found",
        className="not-found",
    )


def error_box(message: str) -> Any:
    from dash import html

    return html.Div(message, className="error-box", role="alert")


def safe_layout(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a page layout so bad URLs give a friendly page instead of a traceback.

    Dash passes path variables *and* query parameters as keyword arguments; unknown query
    keys are swallowed by ``**_`` in each layout.
    """

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except NotFoundError as err:
            return not_found(str(err))
        except Exception as err:  # a broken store must not crash the page
            if _unknown_id(err):
                return not_found(str(err))
            log.exception("layout %s failed", fn.__qualname__)
            return error_box(f"Could not build this page: {type(err).__name__}: {err}")

    return wrapper


# -- display helpers --------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers for humans: NaN/None as an em dash, small floats in scientific notation."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:.{digits + 1}g}"
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return fmt(value.item(), digits)
    return str(value)


def stat_list(stats: dict[str, Any], class_name: str = "stats") -> Any:
    from dash import html

    items = []
    for key, value in stats.items():
        items += [html.Dt(str(key).replace("_", " ")), html.Dd(fmt(value))]
    return html.Dl(items, className=class_name)


# Whitespace a reader must see: a leading space is what separates words in byte-level BPE,
# and a newline inside a token would otherwise break the line of tokens.
_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})


def visible_token(token: str) -> str:
    """`token` with its whitespace drawn (␣ space, ↵ newline, ⇥ tab); ∅ for the empty one."""
    return str(token).translate(_VISIBLE) or "∅"


def token_html(tokens: Sequence[str], acts: Sequence[float], scale: float) -> str:
    """One example as an HTML line of tokens, each shaded by its activation.

    Each token is its own box with a small gap between boxes (token boundaries show) and its
    whitespace drawn (`visible_token`); the example's largest activation is marked as the
    peak (`tok-peak`); the whole context as plain text is the line's `title`, so hovering
    anywhere on it reads the text without the token boxes. Background alpha is act / scale
    (clipped to [0, 1]); an active token's value is in its `title` (native tooltip) and in a
    child `.tok-tip` that CSS reveals on hover, so the value shows without the tooltip's
    delay. Examples are sent as HTML strings rather than one Dash component per token: a
    feature page holds hundreds of tokens, and components cost ~10x the bytes and server
    time. Token text is escaped.
    """
    scale = scale if scale and math.isfinite(scale) and scale > 0 else 1.0
    values = [float(a) for a in acts]
    peak = max(range(len(values)), key=values.__getitem__) if values else -1
    if peak >= 0 and not values[peak] > 0:
        peak = -1
    out = []
    for i, (tok, act) in enumerate(zip(tokens, values, strict=False)):
        text = html_escape(visible_token(tok))
        if not act > 0:
            out.append(f'<span class="tok">{text}</span>')
            continue
        alpha = min(act / scale, 1.0)
        marked = " tok-peak" if i == peak else ""
        out.append(
            f'<span class="tok tok-active{marked}" title="{act:.4g}" '
            f'style="background-color:rgba(255,120,0,{alpha:.2f})">{text}'
            f'<span class="tok-tip">{act:.3g}</span></span>'
        )
    context = html_escape("".join(str(t) for t in tokens), quote=True)
    return f'<span class="tokens" title="{context}">{"".join(out)}</span>'


def df_table(df: Any, columns: Sequence[str] | None = None, class_name: str = "mini") -> Any:
    """A small static HTML table (a handful of rows: neighbours, logits, stats)."""
    from dash import html

    cols = list(columns) if columns is not None else list(df.columns)
    cols = [c for c in cols if c in df.columns]
    head = html.Thead(html.Tr([html.Th(c.replace("_", " ")) for c in cols]))
    body = html.Tbody(
        [html.Tr([html.Td(fmt(row[c])) for c in cols]) for _, row in df.iterrows()]
    )
    return html.Table([head, body], className=class_name)
