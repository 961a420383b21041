"""The feature table's filter boxes: DataTable `filter_query` -> `store.features` conditions.

With `filter_action="custom"` the DataTable does not filter; it sends the query its filter
cells make, one `{column} operator value` term per cell joined by ` && ` (dash's
`dash-table/syntax-tree`). What a cell makes of what is typed:

- an operator typed before the value is kept: `=`, `!=`, `>`, `>=`, `<`, `<=`, their word
  forms `eq ne gt ge lt le`, `contains`, `datestartswith`; each but the last gets the cell's
  case flag in front (`s` case-sensitive, `i` insensitive: `>0.1` is sent as `s> 0.1`);
- a bare value gets the column type's default operator: `=` on a numeric column, `contains`
  on a text one (`3` on `feature` is sent as `s= 3`, `digit` on `explanation` as
  `icontains digit` when the cell is case-insensitive);
- a value with spaces is quoted (`"two words"`); `'...'`, `"..."` and backquotes are
  strings, a backslash escapes the next character;
- `is blank`, `is nil` (and `is num`, `is str`, ... which we refuse) take no value.
"""

from __future__ import annotations

import math
import re
from typing import Any

COLUMNS = ("feature", "density", "max_act", "mean_act", "complexity", "importance",
           "top_token", "explanation")
TEXT_COLUMNS = ("top_token", "explanation")
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c not in TEXT_COLUMNS)
MAX_FILTER_CHARS = 1000  # a filter query lands in the URL; no typed filter comes near it

_WORDS = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
# Longest symbols first, so ">=" is not read as ">" followed by "=".
_OP = re.compile(r"(?P<flag>[is]?)(?P<op>>=|<=|!=|=|>|<|(?:eq|ne|gt|ge|lt|le|contains)(?=\s|$))"
                 r"|(?P<date>datestartswith)(?=\s|$)", re.IGNORECASE)
_UNARY = re.compile(r"is\s+(?P<what>\w+)", re.IGNORECASE)
_FIELD = re.compile(r"\{(?P<name>(?:[^{}\\]|\\.)+)\}")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`")
_BARE = re.compile(r"(?:[^\s'\"`{}()\\]|\\.)+")
_ESCAPE = re.compile(r"\\(.)")
_AND = re.compile(r"(?:&&|and(?=\s))\s*", re.IGNORECASE)

HINT = ("use e.g. '>0.01', '<=5', '=3', '!=0' on numbers, a word or 'contains word' on "
        "text, 'is blank' for none")


class FilterError(ValueError):
    """A filter the table cannot apply; the message names the term and the fix."""


def parse_filter(query: str | None) -> list[tuple[str, str, Any]]:
    """DataTable `filter_query` -> `(column, operator, value)` conditions for
    `store.features(conditions=...)`, ANDed. Raises FilterError naming the bad term."""
    query = (query or "").strip()
    if len(query) > MAX_FILTER_CHARS:
        raise FilterError(f"the filter has {len(query)} characters; the limit is "
                          f"{MAX_FILTER_CHARS}")
    out: list[tuple[str, str, Any]] = []
    pos = 0
    while query:  # one term per pass; a separator must be followed by another term
        start = pos
        m = _FIELD.match(query, pos)
        if not m:
            raise FilterError(f"cannot read the filter {query[start:]!r}: expected a "
                              "{column} first; " + HINT)
        column = _ESCAPE.sub(r"\1", m["name"])
        if column not in COLUMNS:
            raise FilterError(f"cannot filter on {column!r}; choose one of {list(COLUMNS)}")
        pos = _skip(query, m.end())
        cond, pos = _unary(query, pos, column) or _binary(query, pos, column, start)
        out.append(cond)
        pos = _skip(query, pos)
        if pos == len(query):
            break
        sep = _AND.match(query, pos)
        if not sep:
            word = "'||' (or)" if query.startswith("||", pos) else repr(query[pos:pos + 20])
            raise FilterError(f"cannot read {word} in the filter: terms can only be "
                              "combined with && (and)")
        pos = sep.end()
    return out


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _unary(query: str, pos: int, column: str) -> tuple[tuple[str, str, Any], int] | None:
    m = _UNARY.match(query, pos)
    if not m:
        return None
    what = m["what"].lower()
    if what not in ("blank", "nil"):
        raise FilterError(f"'is {what}' is not supported on {column!r}; use 'is blank' or "
                          "'is nil' (no value)")
    return (column, "is blank" if what == "blank" else "is null", None), m.end()


def _binary(query: str, pos: int, column: str,
            start: int) -> tuple[tuple[str, str, Any], int]:
    m = _OP.match(query, pos)
    if not m:
        raise FilterError(f"cannot read the filter {query[start:]!r}: no operator; " + HINT)
    if m["date"]:
        raise FilterError(f"'datestartswith' compares dates and {column!r} is not a date; "
                          + HINT)
    op = _WORDS.get(m["op"].lower(), m["op"].lower())
    pos = _skip(query, m.end())
    raw, pos = _value(query, pos, column, start)
    if column in TEXT_COLUMNS:
        # The cell's case flag matters for text only ("i": case-insensitive).
        return (column, ("i" if m["flag"].lower() == "i" else "") + op, raw), pos
    if op == "contains":
        raise FilterError(f"'contains' works on the text columns {list(TEXT_COLUMNS)}; "
                          f"filter {column!r} with =, !=, >, >=, <, <= and a number")
    return (column, op, _number(raw, column)), pos


def _value(query: str, pos: int, column: str, start: int) -> tuple[str, int]:
    m = _QUOTED.match(query, pos)
    if m:
        return _ESCAPE.sub(r"\1", m.group(0)[1:-1]), m.end()
    m = _BARE.match(query, pos)
    if not m:
        raise FilterError(f"cannot read the filter {query[start:]!r}: the value for {column!r} "
                          "is missing; " + HINT)
    return _ESCAPE.sub(r"\1", m.group(0)), m.end()


def _number(raw: str, column: str) -> int | float:
    try:
        value = float(raw)
    except ValueError:
        raise FilterError(f"filter on {column!r} needs a number, got {raw!r}") from None
    if math.isnan(value):
        raise FilterError(f"filter on {column!r} needs a number, got {raw!r}")
    if column == "feature" and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
