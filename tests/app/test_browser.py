"""The app in headless Chromium (Debian's), driven by Playwright, against a store built by
`analyze` on a tiny model (see conftest.py). Every test also checks that the browser console
stayed free of errors and that no request left localhost."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

# About 2.5 minutes on 2 busy cores (Chromium + plotly.js), hence also `slow`.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAE = "L0-topk"
SLIDER_KEYS = 20


def goto(w, live, path: str, wait_for: str) -> None:
    w.page.goto(live.url + path)
    w.page.wait_for_selector(wait_for)


def clean(w) -> None:
    assert w.errors == [], f"browser console errors: {w.errors}"
    assert w.external == [], f"requests left localhost: {w.external}"
    assert w.requests, "the request recorder saw nothing"


def drawn_nodes(pg) -> int:
    """Markers in the circuit graph's node trace (the last scatter trace)."""
    return pg.locator("#circuit-graph .scatterlayer .trace").last.locator(".point").count()


def test_home_to_feature_by_clicks_and_reload(page, live_server) -> None:
    w, pg = page, page.page
    goto(w, live_server, "/", ".sae-card")
    pg.wait_for_selector("#density-histogram .main-svg")  # plotly.js loads asynchronously
    pg.click(f"#sae-card-{SAE}")
    pg.wait_for_url(re.compile(rf"/sae/{SAE}$"))
    link = pg.locator("#feature-table a[href*='/feature/']").nth(3)
    link.wait_for()
    href = link.get_attribute("href")
    link.click()
    pg.wait_for_url(re.compile(re.escape(href) + "$"))
    pg.wait_for_selector("#feature-page")
    title = pg.inner_text("#feature-title")
    assert title.endswith(f"feature {href.rsplit('/', 1)[1]}")
    pg.wait_for_selector("#feature-hist .main-svg")
    assert pg.locator("#examples .example").count() > 0
    pg.reload()
    pg.wait_for_selector("#feature-page")
    assert pg.url.endswith(href)
    assert pg.inner_text("#feature-title") == title
    clean(w)


def test_hover_token_shows_its_value(page, live_server) -> None:
    w, pg = page, page.page
    goto(w, live_server, f"/sae/{SAE}/feature/0", "#feature-page")
    # Pick a feature that has examples: walk forward until one does.
    for f in range(1, 20):
        if pg.locator("#examples .tok-active").count():
            break
        goto(w, live_server, f"/sae/{SAE}/feature/{f}", "#feature-page")
    # plotly draws the histogram above the examples asynchronously, and the layout shift can
    # move the token from under a pointer that hovered too early: wait for it, and hover again
    # if the tip has not shown.
    pg.wait_for_selector("#feature-hist .main-svg")
    tok = pg.locator("#examples .tok-active").first
    tip = tok.locator(".tok-tip")
    assert not tip.is_visible()
    for _ in range(5):
        tok.scroll_into_view_if_needed()
        tok.hover()
        try:
            tip.wait_for(state="visible", timeout=3000)
            break
        except PlaywrightTimeout:
            pg.mouse.move(0, 0)
    tip.wait_for(state="visible")
    assert float(tip.inner_text()) == pytest.approx(float(tok.get_attribute("title")), rel=1e-2)
    assert float(tip.inner_text()) > 0
    clean(w)


def test_next_goes_to_next_index(page, live_server) -> None:
    w, pg = page, page.page
    goto(w, live_server, f"/sae/{SAE}/feature/3", "#feature-page")
    pg.click("#feature-next")
    pg.wait_for_url(re.compile(rf"/sae/{SAE}/feature/4$"))
    pg.wait_for_function("document.querySelector('#feature-title')"
                         " && document.querySelector('#feature-title').innerText.endsWith(' 4')")
    pg.click("#feature-prev")
    pg.wait_for_url(re.compile(rf"/sae/{SAE}/feature/3$"))
    clean(w)


# Screen position and feature of the map's first point, from plotly's own axis transforms.
_MAP_POINT_JS = """() => {
  const gd = document.querySelector('#feature-map .js-plotly-plot');
  const fl = gd._fullLayout, tr = gd._fullData[0], box = gd.getBoundingClientRect();
  return {x: box.left + fl._size.l + fl.xaxis.l2p(tr.x[0]),
          y: box.top + fl._size.t + fl.yaxis.l2p(tr.y[0]), feature: Number(tr.customdata[0])};
}"""


def test_feature_map_click_opens_the_feature(page, live_server) -> None:
    w, pg = page, page.page
    goto(w, live_server, f"/sae/{SAE}", "#feature-map .main-svg")
    pg.locator("#feature-map").scroll_into_view_if_needed()
    pg.wait_for_timeout(500)
    pt = pg.evaluate(_MAP_POINT_JS)
    pg.mouse.move(pt["x"] - 5, pt["y"] - 5)
    pg.mouse.move(pt["x"], pt["y"])
    pg.wait_for_timeout(500)
    pg.mouse.click(pt["x"], pt["y"])
    pg.wait_for_function(f"location.pathname.endsWith('/feature/{int(pt['feature'])}')")
    pg.wait_for_selector("#feature-page")
    clean(w)


def test_table_state_is_in_the_url(page, live_server) -> None:
    w, pg = page, page.page
    goto(w, live_server, f"/sae/{SAE}?page=1&sort=density&desc=1", "#feature-table")
    pg.wait_for_selector("#feature-table a[href*='/feature/']")
    first = pg.locator("#feature-table a[href*='/feature/']").first.inner_text()
    pg.reload()
    pg.wait_for_selector("#feature-table a[href*='/feature/']")
    assert pg.locator("#feature-table a[href*='/feature/']").first.inner_text() == first
    # Paging forward rewrites the query string, so a reload lands on the same page.
    assert "page=1" in pg.evaluate("location.search")
    pg.locator("#feature-table button.next-page").click()
    # The query string is replaced in place (history.replaceState), not navigated to.
    pg.wait_for_function("location.search.includes('page=2')")
    pg.wait_for_function("t => document.querySelector('#feature-table a').innerText !== t",
                         arg=first)
    second = pg.locator("#feature-table a[href*='/feature/']").first.inner_text()
    pg.reload()
    pg.wait_for_selector("#feature-table a[href*='/feature/']")
    assert pg.locator("#feature-table a[href*='/feature/']").first.inner_text() == second
    clean(w)


def test_circuit_threshold_changes_drawn_nodes(page, live_server) -> None:
    w, pg = page, page.page
    goto(w, live_server, "/circuit", "#circuit-graph .scatterlayer .trace .point")
    before = drawn_nodes(pg)
    count_before = pg.inner_text("#circuit-count")
    assert int(re.match(r"showing (\d+) of", count_before)[1]) == before
    step = float(pg.get_attribute("#circuit-node-threshold input", "step"))
    thumb = pg.locator("#circuit-node-threshold [role=slider]")
    thumb.focus()
    for _ in range(SLIDER_KEYS):  # keyboard moves one step per press and commits the value
        thumb.press("ArrowRight")
    # Each press fires a server round trip; wait for the last one (the threshold in the deep
    # link reaches its final value and the drawn markers agree with the count line), not the
    # first, or the assertions race the callbacks still in flight.
    pg.wait_for_function(
        """v => {
            const m = location.search.match(/node=([0-9.e-]+)/);
            return m !== null && Math.abs(parseFloat(m[1]) - v) < 1e-9;
        }""",
        arg=SLIDER_KEYS * step,
    )
    pg.wait_for_function(
        """() => {
            const text = document.querySelector('#circuit-count').innerText;
            const m = text.match(/showing (\\d+) of/);
            const traces = document.querySelectorAll('#circuit-graph .scatterlayer .trace');
            const last = traces[traces.length - 1];
            return m !== null && last && last.querySelectorAll('.point').length == +m[1];
        }"""
    )
    after = drawn_nodes(pg)
    shown = int(re.match(r"showing (\d+) of", pg.inner_text("#circuit-count"))[1])
    assert after == shown < before
    assert "hidden by the node threshold" in pg.inner_text("#circuit-count")
    node = float(re.search(r"node=([0-9.e-]+)", pg.evaluate("location.search"))[1])
    assert node == pytest.approx(SLIDER_KEYS * step)  # the threshold is in the deep link
    clean(w)


def test_prompt_view_returns_features(page, live_server) -> None:
    w, pg = page, page.page
    goto(w, live_server, "/prompt", "#prompt-text")
    pg.fill("#prompt-text", "1 2 3 4 5 6")
    pg.click("#prompt-run")
    pg.wait_for_selector("#prompt-results")
    rows = pg.locator("#prompt-results tbody tr")
    assert rows.count() == 6
    assert pg.locator("#prompt-results a[href*='/feature/']").count() >= 6
    pg.reload()  # the prompt is in the URL: reloading shows the same results
    pg.wait_for_selector("#prompt-results")
    assert pg.locator("#prompt-results tbody tr").count() == 6
    clean(w)


PAGES = [
    ("/", ".sae-card"),
    (f"/sae/{SAE}", "#feature-table a"),
    (f"/sae/{SAE}/feature/1", "#feature-page"),
    ("/prompt", "#prompt-text"),
    ("/circuit", "#circuit-graph .main-svg"),
    ("/attribution", "#attr-graph .main-svg"),
    ("/attribution?id=a-image&sign=positive&clip=90", "#attr-graph .main-svg"),
    ("/complexity", "#complexity-scatter .main-svg"),
    ("/compare", "#compare-table"),
    ("/no/such/page", "#not-found"),
]


@pytest.mark.parametrize(("path", "selector"), PAGES)
def test_every_page_is_clean_and_local(page, live_server, path: str, selector: str) -> None:
    goto(page, live_server, path, selector)
    page.page.wait_for_load_state("networkidle")
    assert "Traceback" not in page.page.content()
    clean(page)


@pytest.mark.parametrize("path", ["/sae/nope", f"/sae/{SAE}/feature/99999",
                                  f"/sae/{SAE}/feature/abc", "/sae/nope/feature/1",
                                  "/circuit?id=nope"])
def test_unknown_ids_give_not_found(page, live_server, path: str) -> None:
    goto(page, live_server, path, "#not-found")
    text = page.page.inner_text("#not-found")
    assert "Not found" in text and "Traceback" not in text
    clean(page)


def test_explanation_edit_persists(page, live_server) -> None:
    w, pg = page, page.page
    goto(w, live_server, f"/sae/{SAE}/feature/2", "#explanation-text")
    pg.fill("#explanation-text", "browser-test explanation")
    pg.click("#explanation-save")
    pg.wait_for_function("document.querySelector('#explanation-status').innerText === 'Saved.'")
    pg.reload()
    pg.wait_for_selector("#explanation-text")
    assert pg.input_value("#explanation-text") == "browser-test explanation"
    clean(w)


# -- the feature table's filter cells ------------------------------------------------------

FEATURE_LINKS = "#feature-table a[href*='/feature/']"


def _shown(pg) -> list[int]:
    return [int(t) for t in pg.locator(FEATURE_LINKS).all_inner_texts()]


def _type_filter(pg, column: str, text: str) -> None:
    cell = pg.locator(f"#feature-table th.dash-filter[data-dash-column='{column}'] "
                      "input[type=text]")
    cell.fill(text)
    cell.press("Enter")


def _expected_rows(store_path, query: str) -> tuple[list[int], int]:
    """(first page of features, total) that pandas finds for `query` in the full table."""
    import pandas as pd

    from featlab.app.filters import parse_filter
    from featlab.store import open_store

    from .test_filters import _expect

    full, _ = open_store(store_path).features(SAE, limit=100_000)
    mask = pd.Series(True, index=full.index)
    for cond in parse_filter(query):
        mask &= _expect(full, cond)
    want = sorted(full.loc[mask, "feature"].astype(int))
    return want[:25], len(want)


def _wait_rows(pg, want: list[int], what: str) -> None:
    for _ in range(100):
        if _shown(pg) == want:
            return
        pg.wait_for_timeout(100)
    assert _shown(pg) == want, what


def test_filter_cells_apply_every_operator(page, live_server, real_store) -> None:
    """Type into the DataTable's filter cells as a user does: the query the table builds
    (read back from the URL) is the DataTable syntax, and the rows shown are exactly those
    pandas finds for it in the full table."""
    from featlab.store import open_store

    w, pg = page, page.page
    goto(w, live_server, f"/sae/{SAE}", FEATURE_LINKS)
    full, _ = open_store(real_store.store).features(SAE, limit=1000)
    d = float(full["density"][full["density"] > 0].sort_values().iloc[10])
    token = str(full["top_token"].dropna().iloc[0])
    cases = [  # (column, typed, the query the table sends)
        ("density", f">{d!r}", f"{{density}} s> {d!r}"),
        ("density", f">={d!r}", f"{{density}} s>= {d!r}"),
        ("density", f"<{d!r}", f"{{density}} s< {d!r}"),
        ("density", f"<={d!r}", f"{{density}} s<= {d!r}"),
        ("density", f"={d!r}", f"{{density}} s= {d!r}"),
        ("density", f"!={d!r}", f"{{density}} s!= {d!r}"),
        ("feature", "=3", "{feature} s= 3"),
        ("feature", "3", "{feature} s= 3"),  # a bare value on a numeric column: =
        ("feature", "eq 40", "{feature} seq 40"),
        ("feature", "ne 3", "{feature} sne 3"),
        ("feature", "gt 60", "{feature} sgt 60"),
        ("feature", "ge 60", "{feature} sge 60"),
        ("feature", "lt 2", "{feature} slt 2"),
        ("feature", "le 2", "{feature} sle 2"),
        ("top_token", token, f"{{top_token}} icontains {token}"),  # bare text: contains
        ("top_token", f"={token}", f"{{top_token}} i= {token}"),
        ("explanation", "peaks", "{explanation} icontains peaks"),
        ("explanation", "contains PEAKS", "{explanation} icontains PEAKS"),
        ("explanation", "scontains PEAKS", "{explanation} scontains PEAKS"),  # none
        ("explanation", "is blank", "{explanation} is blank"),
    ]
    for column, typed, query in cases:
        _type_filter(pg, column, typed)
        pg.wait_for_function("q => new URLSearchParams(location.search).get('filter') === q",
                             arg=query)
        want, total = _expected_rows(real_store.store, query)
        _wait_rows(pg, want, f"{typed!r} on {column}")
        message = pg.inner_text("#feature-table-message")
        assert message == ("" if total else "No features match the filter."), typed
        _type_filter(pg, column, "")  # clear the cell
        pg.wait_for_function("() => !new URLSearchParams(location.search).get('filter')")
    # The cell's Aa button makes text filters case-sensitive: a bare word then is scontains.
    pg.click("#feature-table th.dash-filter[data-dash-column='explanation'] input[type=button]")
    for typed, query in (("PEAKS", "{explanation} scontains PEAKS"),
                         ("peaks", "{explanation} scontains peaks")):
        _type_filter(pg, "explanation", typed)
        pg.wait_for_function("q => new URLSearchParams(location.search).get('filter') === q",
                             arg=query)
        _wait_rows(pg, _expected_rows(real_store.store, query)[0], f"case-sensitive {typed}")
    _type_filter(pg, "explanation", "")
    # Two cells at once: AND.
    _type_filter(pg, "feature", ">5")
    _type_filter(pg, "density", f"<={d!r}")
    query = f"{{feature}} s> 5 && {{density}} s<= {d!r}"
    pg.wait_for_function("q => new URLSearchParams(location.search).get('filter') === q",
                         arg=query)
    want, total = _expected_rows(real_store.store, query)
    assert 0 < total < len(full)
    _wait_rows(pg, want, "two cells")
    pg.reload()  # the filter is in the URL: a reload shows the same rows
    pg.wait_for_selector(FEATURE_LINKS)
    _wait_rows(pg, want, "two cells after a reload")
    _type_filter(pg, "feature", "")
    _type_filter(pg, "density", "")
    # A refused filter says why, in the page (not the console).
    _type_filter(pg, "density", "datestartswith 2020")
    pg.wait_for_function("() => document.querySelector('#feature-table-message')"
                         ".innerText.includes('compares dates')")
    assert _shown(pg) == []
    clean(w)


def test_a_100k_prompt_leaves_the_url_short_and_reload_works(page, live_server) -> None:
    from featlab.app.pages.prompt import MAX_CHARS

    w, pg = page, page.page
    goto(w, live_server, "/prompt", "#prompt-text")
    big = "1 " * 50_000
    pg.fill("#prompt-text", big)  # the box's maxLength keeps what is typed to the cap
    assert len(pg.input_value("#prompt-text")) <= MAX_CHARS
    # Past the box (as a paste through a script or a crafted request would): the server
    # refuses it and keeps it out of the URL.
    pg.evaluate("""t => {
        const box = document.querySelector('#prompt-text');
        Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(box, t);
        box.dispatchEvent(new Event('input', {bubbles: true}));
    }""", big)
    assert len(pg.input_value("#prompt-text")) == len(big)
    pg.click("#prompt-run")
    pg.wait_for_function("() => document.querySelector('#prompt-output')"
                         ".innerText.includes('the limit is')")
    pg.wait_for_function("() => location.search.includes('sae=')")
    assert len(pg.url) < 200 and "text=" not in pg.url
    resp = pg.reload()
    assert resp.status == 200
    pg.wait_for_selector("#prompt-text")
    clean(w)
