"""The feature table's filter boxes: every operator the DataTable sends, parsed and applied.

The query strings are the ones dash's DataTable builds from a filter cell (see
`featlab.app.filters`): an operator typed before the value gets the cell's case flag (`s`
or `i`), a bare value gets `=` on a numeric column and `contains` on a text one. The browser
test (`test_browser.py::test_filter_cells_apply_every_operator`) checks those strings are
what Chromium really sends.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from featlab.app.filters import FilterError, parse_filter

SAE = "L0-topk"


@pytest.mark.parametrize(("query", "expected"), [
    # Symbols with each case flag and without one.
    ("{density} s> 0.1", [("density", ">", 0.1)]),
    ("{density} i> 0.1", [("density", ">", 0.1)]),
    ("{density} > 0.1", [("density", ">", 0.1)]),
    ("{density} s>= 0.1", [("density", ">=", 0.1)]),
    ("{density} s< 0.1", [("density", "<", 0.1)]),
    ("{density} s<= 0.1", [("density", "<=", 0.1)]),
    ("{feature} s= 3", [("feature", "=", 3)]),
    ("{feature} = 3", [("feature", "=", 3)]),
    ("{feature} s!= 3", [("feature", "!=", 3)]),
    # Word forms (typed as words; the cell prefixes the flag), any letter case.
    ("{feature} seq 3", [("feature", "=", 3)]),
    ("{feature} sne 3", [("feature", "!=", 3)]),
    ("{max_act} sgt 2.5", [("max_act", ">", 2.5)]),
    ("{max_act} sge 2.5", [("max_act", ">=", 2.5)]),
    ("{max_act} slt 2.5", [("max_act", "<", 2.5)]),
    ("{max_act} sle 2.5", [("max_act", "<=", 2.5)]),
    ("{max_act} GT 2.5", [("max_act", ">", 2.5)]),
    ("{max_act} ieq 2.5", [("max_act", "=", 2.5)]),
    # Numbers as the table types them.
    ("{density} s< 1e-3", [("density", "<", 1e-3)]),
    ("{importance} s> -0.5", [("importance", ">", -0.5)]),
    ("{feature} s= 3.0", [("feature", "=", 3)]),
    ("{feature} s= 3.5", [("feature", "=", 3.5)]),
    # Text: contains (bare value), exact, comparisons, case flags kept.
    ("{explanation} icontains digit", [("explanation", "icontains", "digit")]),
    ("{explanation} scontains Digit", [("explanation", "contains", "Digit")]),
    ("{explanation} contains digit", [("explanation", "contains", "digit")]),
    ("{top_token} icontains t1", [("top_token", "icontains", "t1")]),
    ("{top_token} s= t1", [("top_token", "=", "t1")]),
    ("{top_token} i= T1", [("top_token", "i=", "T1")]),
    ("{top_token} s!= t1", [("top_token", "!=", "t1")]),
    ("{top_token} s> t5", [("top_token", ">", "t5")]),
    ("{top_token} ile T5", [("top_token", "i<=", "T5")]),
    ("{top_token} s= 3", [("top_token", "=", "3")]),  # a number on a text column is text
    # Quoted values (the cell quotes a value with spaces) and escapes.
    ('{explanation} icontains "fires on"', [("explanation", "icontains", "fires on")]),
    ("{explanation} icontains 'a && b'", [("explanation", "icontains", "a && b")]),
    ("{explanation} icontains `x`", [("explanation", "icontains", "x")]),
    (r'{explanation} icontains "say \"hi\""', [("explanation", "icontains", 'say "hi"')]),
    (r"{explanation} icontains a\(b", [("explanation", "icontains", "a(b")]),
    # No value.
    ("{explanation} is blank", [("explanation", "is blank", None)]),
    ("{complexity} is nil", [("complexity", "is null", None)]),
    # Several cells: AND.
    ("{density} s> 0.01 && {density} s< 0.5", [("density", ">", 0.01), ("density", "<", 0.5)]),
    ("{feature} s>= 10 && {explanation} icontains t && {top_token} s= t3",
     [("feature", ">=", 10), ("explanation", "icontains", "t"), ("top_token", "=", "t3")]),
    ("{feature} s> 1 and {feature} s< 9", [("feature", ">", 1), ("feature", "<", 9)]),
    ("", []),
    ("   ", []),
])
def test_parse_every_operator(query: str, expected: list) -> None:
    got = parse_filter(query)
    assert got == expected
    for (_, _, v), (_, _, w) in zip(got, expected, strict=True):
        assert type(v) is type(w)  # 3 stays an int on `feature`, "3" text on top_token


@pytest.mark.parametrize(("query", "message"), [
    ("{hist} s> 1", "cannot filter on 'hist'"),
    ("{density} s> abc", "needs a number"),
    ("{density} s> nan", "needs a number"),
    ("{density} scontains 1", "'contains' works on the text columns"),
    ("{density} datestartswith 2020", "'datestartswith' compares dates"),
    ("{feature} is even", "'is even' is not supported"),
    ("{feature} s> 1 || {feature} s< 0", "only be combined with && "),
    ("density > 1", "expected a {column} first"),
    ("{density} 0.1", "no operator"),
    ("{density} s>", "value for 'density' is missing"),
    ("{density} s> 1 && ", "expected a {column} first"),
    ("{density} s> " + "1" * 2000, "the limit is 1000"),
])
def test_bad_filters_say_what_to_type(query: str, message: str) -> None:
    with pytest.raises(FilterError, match=_re(message)):
        parse_filter(query)


def _re(text: str) -> str:
    import re

    return re.escape(text)


def _expect(df: pd.DataFrame, cond: tuple) -> pd.Series:
    column, op, value = cond
    col = df[column]
    if op in ("is null", "is blank"):
        return col.isna() | ((col == "") if op == "is blank" else False)
    if op.startswith("i") and column in ("top_token", "explanation"):
        col, value, op = col.str.lower(), value.lower(), op[1:]
    if op == "contains":
        return col.notna() & col.fillna("").str.contains(value, regex=False)
    if op == "!=":
        return col.isna() | (col != value)
    return {"=": col == value, ">": col > value, ">=": col >= value, "<": col < value,
            "<=": col <= value}[op].fillna(False)


def test_typed_filters_give_exactly_the_matching_rows(client, synthetic_store) -> None:
    """Through the table's own paging path (`query_page`), each typed filter shows the rows
    pandas finds in the full table: strict is strict, = is exact, a text filter looks at
    its own column only."""
    from featlab.app.pages.features import PAGE_SIZE, query_page
    from featlab.store import open_store

    full, _ = open_store(synthetic_store).features(SAE, limit=10_000)
    dens = float(full["density"].sort_values().iloc[len(full) // 2])
    token = str(full["top_token"].iloc[0])
    queries = [f"{{density}} s> {dens!r}", f"{{density}} s>= {dens!r}",
               f"{{density}} s< {dens!r}", f"{{density}} s<= {dens!r}",
               f"{{density}} s= {dens!r}", f"{{density}} s!= {dens!r}",
               "{feature} s= 3", "{feature} sne 3", "{feature} sgt 60", "{feature} sle 2",
               f"{{top_token}} icontains {token}", f"{{top_token}} s= {token}",
               "{explanation} icontains FIRES", "{explanation} scontains FIRES",
               f"{{explanation}} icontains {token}", "{explanation} is blank",
               "{feature} s>= 5 && {feature} s< 9 && {density} s> 0"]
    with client.application.app_context():
        for q in queries:
            mask = pd.Series(True, index=full.index)
            for cond in parse_filter(q):
                mask &= _expect(full, cond)
            want = sorted(full.loc[mask, "feature"].astype(int))
            rows, count, msg = query_page(SAE, 0, [], q)
            shown = [int(r["feature"].split("]")[0][1:]) for r in rows]
            assert shown == want[:PAGE_SIZE], q
            assert count == max(1, math.ceil(len(want) / PAGE_SIZE)), q
            assert msg == ("" if want else "No features match the filter."), q
    # The text filter of one column is not a search of the other.
    with client.application.app_context():
        by_token, _, _ = query_page(SAE, 0, [], f"{{top_token}} icontains {token}")
    assert all(token in r["top_token"] for r in by_token)


def test_a_refused_filter_is_a_message_not_an_error(client) -> None:
    from featlab.app.pages.features import query_page

    with client.application.app_context():
        rows, count, msg = query_page(SAE, 0, [], "{density} s> abc")
    assert rows == [] and count == 1 and "needs a number" in msg


def test_a_value_ending_like_a_separator_is_a_value() -> None:
    assert parse_filter("{explanation} icontains band") == [("explanation", "icontains",
                                                             "band")]
