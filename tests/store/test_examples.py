"""Automatic explanations (`featlab.store.examples`): the peak tokens and the most frequent
(previous token, peak token) pair of the top examples."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from featlab.store.examples import auto_explanations, top_peak_bigrams, top_peak_tokens


def _examples() -> pa.Table:
    # feature 0: four top examples peaking on token 7, three of them right after token 3;
    # feature 1: one example whose peak opens its window (no previous token)
    windows = [[1, 3, 7, 2], [5, 3, 7, 2], [3, 7, 4, 4], [9, 9, 2, 7], [7, 1, 1, 1]]
    offsets = [2, 2, 1, 3, 0]
    n = len(windows)
    flat = pa.array(np.array(windows).reshape(-1))
    bounds = pa.array(np.arange(n + 1, dtype=np.int32) * 4)
    return pa.table({
        "feature": [0, 0, 0, 0, 1], "band": ["top"] * n, "start": [10] * n,
        "pos": [10 + o for o in offsets],
        "peak_token": [w[o] for w, o in zip(windows, offsets, strict=True)],
        "token_ids": pa.ListArray.from_arrays(bounds, flat),
    })


def test_bigrams_count_the_token_before_each_peak() -> None:
    bigrams = top_peak_bigrams(_examples(), d_sae=3)
    assert bigrams[0] == [((3, 7), 3), ((2, 7), 1)]
    assert bigrams[1] == [] and bigrams[2] == []


def test_explanation_names_peaks_and_the_recurring_pair() -> None:
    examples = _examples()
    strings = [f"t{i}" for i in range(10)]
    strings[3], strings[7] = " f", " ("
    table = auto_explanations("s", top_peak_tokens(examples, 3), strings,
                              top_peak_bigrams(examples, 3))
    text = dict(zip(table["feature"], table["text"], strict=True))
    assert text[0] == "peaks on ' (' (4/4); most often ' f' ' (' (3/4)"
    assert text[1] == "peaks on ' (' (1/1)"  # no pair recurs: peaks only
    assert set(table["source"]) == {"auto"} and 2 not in text


def test_explanation_names_a_recurring_context_token() -> None:
    # Peaks on four different tokens, each after token 3: a feature of what came before.
    peaks = [[(4, 1), (5, 1), (6, 1), (7, 1)]]
    bigrams = [[((3, 4), 1), ((3, 5), 1), ((3, 6), 1), ((2, 7), 1)]]
    strings = ["a", "b", "c", "-", "type", "Cookie", "option", "Agent"]
    text = auto_explanations("s", peaks, strings, bigrams)["text"][0]
    assert text == "peaks on 'type' (1/4), 'Cookie' (1/4), 'option' (1/4); after '-' (3/4)"
    # ...but not when the pair already says it: "most often '-' 'type'" covers it.
    same = auto_explanations("s", [[(4, 3), (5, 1)]], strings,
                             [[((3, 4), 3), ((2, 5), 1)]])["text"][0]
    assert same.endswith("most often '-' 'type' (3/4)")
    # ...nor when the context recurs in fewer than 30% of the examples
    peaks10 = [[(4, 3), (5, 3), (6, 2), (7, 2)]]
    rare = [[((3, 4), 1), ((3, 5), 1), ((0, 6), 1), ((1, 7), 1), ((2, 4), 1)]]
    assert "after" not in auto_explanations("s", peaks10, strings, rare)["text"][0]
