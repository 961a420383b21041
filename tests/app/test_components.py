"""Readable tokens (`featlab.app.components.token_html`): whitespace drawn, boundaries
visible, the peak marked, the context as text on hover, everything escaped."""

from __future__ import annotations

import re

from featlab.app.components import token_html, visible_token


def test_visible_whitespace() -> None:
    assert visible_token(" the") == "␣the"
    assert visible_token("\n\n") == "↵↵"
    assert visible_token("\tx\r") == "⇥x␍"
    assert visible_token("") == "∅"
    assert visible_token("plain") == "plain"


def test_each_token_is_a_box_and_the_peak_is_marked() -> None:
    html = token_html(["def", " f", "(", "x", "):\n"], [0.0, 0.5, 2.0, 1.0, 0.0], scale=2.0)
    boxes = re.findall(r'<span class="(tok(?: [^"]*)?)"', html)
    assert len(boxes) == 5
    assert boxes.count("tok tok-active tok-peak") == 1  # the largest activation only
    assert re.search(r'tok-peak"[^>]*>\(<', html)  # and it is the "(" token
    assert "␣f" in html and "):↵" in html
    assert 'title="def f(x):\n"' in html  # hover: the context as plain text


def test_no_peak_when_nothing_fires_and_text_is_escaped() -> None:
    html = token_html(["<b>", "&", '"q"'], [0.0, 0.0, 0.0], scale=1.0)
    assert "tok-peak" not in html and "tok-active" not in html
    assert "<b>" not in html and "&lt;b&gt;" in html and "&amp;" in html
    assert 'title="&lt;b&gt;&amp;&quot;q&quot;"' in html
