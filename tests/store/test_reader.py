"""The reader API: paging, sorting, filtering, search, explanations, and clear errors for
paths that are not stores and for corrupt or foreign Parquet parts."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featlab.store import (
    NotAStoreError,
    StoreFormatError,
    analyze,
    init_store,
    open_store,
    write_table,
)
from featlab.store.writer import ROW_GROUP_SIZE

from .store_helpers import make_sae


@pytest.fixture(scope="module")
def store_dir(tiny_model, tiny_tokens, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "s"
    sae = make_sae(16, 64, 4, "blocks.0.hook_resid_post")
    analyze(tiny_model, {"a": sae}, tiny_tokens, path, batch_size=8, n_examples=3,
            progress=False)
    return path


def test_paging_sorting_filtering(store_dir) -> None:
    store = open_store(store_dir)
    everything, total = store.features("a", limit=1000)
    assert total == 64 and list(everything["feature"]) == list(range(64))
    page, total2 = store.features("a", offset=10, limit=7, sort_by="density", descending=True)
    expected = everything.sort_values(["density", "feature"], ascending=[False, True])
    assert total2 == 64 and list(page["feature"]) == list(expected["feature"].iloc[10:17])
    live, n_live = store.features("a", filters={"dead": False, "density": (0.05, None)})
    mask = (~everything["dead"]) & (everything["density"] >= 0.05)
    assert n_live == int(mask.sum()) and (live["density"] >= 0.05).all()
    past, n_past = store.features("a", offset=500)
    assert past.empty and n_past == 64
    chosen, n = store.features("a", filters={"feature": [3, 5, 7]})
    assert n == 3 and list(chosen["feature"]) == [3, 5, 7]
    with pytest.raises(ValueError, match="cannot sort by 'nope'"):
        store.features("a", sort_by="nope")
    with pytest.raises(ValueError, match="cannot filter on 'x; DROP'"):
        store.features("a", filters={"x; DROP": 1})
    with pytest.raises(KeyError, match="stored SAEs"):
        store.features("zzz")
    assert store.feature_card("a", 10_000) is None


def test_explanations_latest_user_wins(store_dir, tmp_path) -> None:
    store = open_store(store_dir)
    feature = int(store.features("a", filters={"dead": False}, limit=1)[0]["feature"].iloc[0])
    auto = store.feature_card("a", feature).explanation
    assert auto and auto.startswith("peaks on")
    assert store.set_explanation("a", feature, "first draft: digit detector")
    assert store.set_explanation("a", feature, "detects the token after a digit")
    card = store.feature_card("a", feature)
    assert card.explanation == "detects the token after a digit"
    assert card.explanation_source == "user"
    store.set_explanation("a", feature, "newer auto label", source="auto")  # user still wins
    assert open_store(store_dir).feature_card("a", feature).explanation.startswith("detects")
    found, n = store.features("a", search="AFTER A DIGIT")
    assert n == 1 and int(found["feature"].iloc[0]) == feature
    with pytest.raises(ValueError, match="source must be"):
        store.set_explanation("a", feature, "x", source="robot")
    with pytest.raises(KeyError):
        store.set_explanation("a", 999, "x")


def test_search_token_and_maps(store_dir) -> None:
    store = open_store(store_dir)
    row = store.features("a", filters={"dead": False}, limit=1)[0].iloc[0]
    hits = store.search_token("a", row["top_token"])
    assert int(row["feature"]) in set(hits["feature"])
    fmap = store.feature_map("a")
    assert list(fmap.columns[:3]) == ["feature", "x", "y"] and len(fmap) == 64
    dens = store.density_histogram("a")
    assert int(dens["count"].sum()) == 64
    assert len(store.vocab()) == 20


def test_reads_touch_one_feature(store_dir, monkeypatch) -> None:
    """A feature card reads only that SAE's and feature's row groups (from the footer
    statistics indexed at open), and parts are sorted by feature so the pruning works."""
    store = open_store(store_dir)
    store.feature_card("a", 0)  # load the vocabulary once
    queries: list[str] = []
    real_query = store._query
    monkeypatch.setattr(store, "_query", lambda sql, params=None: (
        queries.append(sql), real_query(sql, params))[1])
    reads: list[tuple[str, str, int, list]] = []
    real_rows = store._index.rows

    def spy(table, sae_id, feature, cols, schema):
        out = real_rows(table, sae_id, feature, cols, schema)
        reads.append((table, sae_id, feature, list(store._index.last_read)))
        return out

    monkeypatch.setattr(store._index, "rows", spy)
    card = store.feature_card("a", 7)
    assert card is not None and card.examples.get("seq") is not None
    assert queries == []  # no full-table query on the way
    assert {r[0] for r in reads} == {"features", "examples", "logits", "neighbours",
                                     "explanations"} - ({"logits"} if card.logits_top.empty
                                                        else set())
    for table, sae_id, feature, groups in reads:
        assert (sae_id, feature) == ("a", 7)
        for name, g in groups:  # every decoded row group's feature range holds 7
            md = pq.ParquetFile(store_dir / table / name).metadata
            col = md.schema.to_arrow_schema().get_field_index("feature")
            st = md.row_group(g).column(col).statistics
            assert st.min <= 7 <= st.max, (table, name, g)
    for part in (store_dir / "examples").glob("*.parquet"):
        feats = pq.read_table(part, columns=["feature"]).column("feature").to_pylist()
        assert feats == sorted(feats)
        assert pq.ParquetFile(part).metadata.row_group(0).num_rows <= ROW_GROUP_SIZE


def test_card_equals_a_brute_force_read(store_dir) -> None:
    """The pruned reads give exactly the rows a full scan filtered in pandas gives."""
    store = open_store(store_dir)
    vocab = dict(zip(*[store.vocab()[c] for c in ("token_id", "token")], strict=True))
    ex = pd.read_parquet(store_dir / "examples")
    for feature in (0, 31, 63):
        card = store.feature_card("a", feature)
        want = ex[(ex.sae_id == "a") & (ex.feature == feature)]
        order = want["band"].map(lambda b: -10**6 if b == "top" else -int(b[1:]))
        want = want.assign(_o=order).sort_values(["_o", "rank"])
        assert list(card.examples["band"]) == list(want["band"])
        assert list(card.examples["rank"]) == list(want["rank"])
        assert list(card.examples["pos"]) == list(want["pos"] - want["start"])
        for got, ids in zip(card.examples["tokens"], want["token_ids"], strict=True):
            assert list(got) == [vocab[i] for i in ids]
        nb = pd.read_parquet(store_dir / "neighbours")
        nb = nb[(nb.sae_id == "a") & (nb.feature == feature)].sort_values(["kind", "rank"])
        assert list(card.neighbours["other_feature"]) == list(nb["other_feature"])
        assert card.stats["feature"] == feature and int(card.histogram["count"].sum()) >= 0


def test_parts_from_other_writers_are_sorted_and_read(store_dir, tmp_path) -> None:
    """`write_table` sorts rows by (sae_id, feature); a second part of a table is read too."""
    import shutil

    root = tmp_path / "s"
    shutil.copytree(store_dir, root)
    store = open_store(root)
    before = len(store.feature_card("a", 5).examples)
    row = pd.read_parquet(root / "examples").query("feature == 5").iloc[[0]]
    extra = pd.concat([row.assign(feature=f, rank=99) for f in (9, 5, 1)], ignore_index=True)
    part = write_table(root, "examples", extra, name="extra")
    assert pq.read_table(part).column("feature").to_pylist() == [1, 5, 9]
    # The next read notices the new part by itself (the directory's stat changed).
    assert len(store.feature_card("a", 5).examples) == before + 1
    assert store.refresh() is False  # nothing left to pick up


def test_cross_matches_and_attributions(tiny_model, tiny_tokens, tmp_path) -> None:
    path = tmp_path / "two"
    saes = {"a": make_sae(16, 24, 4, "blocks.0.hook_resid_post", seed=0),
            "b": make_sae(16, 20, 4, "blocks.1.hook_resid_post", seed=1)}
    analyze(tiny_model, saes, tiny_tokens, path, batch_size=8, n_examples=2, progress=False,
            correlations=False)
    store = open_store(path)
    page, total = store.cross_matches("a", "b", offset=5, limit=7)
    assert total == 24 and list(page["feature"]) == list(range(5, 12))
    nb = pd.read_parquet(path / "neighbours").query("sae_id == 'a' and kind == 'cross_sae'")
    for r in page.itertuples():
        rows = nb[nb.feature == r.feature]
        best = rows.loc[rows["value"].abs().idxmax()]
        assert r.match == best["other_feature"] and r.cosine == pytest.approx(best["value"])
        want = store.feature_card("b", r.match).explanation
        got = r.match_explanation if isinstance(r.match_explanation, str) else None
        assert got == want
    tail, _ = store.cross_matches("a", "b", offset=20, limit=10)
    assert list(tail["feature"]) == [20, 21, 22, 23]
    with pytest.raises(KeyError, match="stored SAEs"):
        store.cross_matches("a", "zz")
    write_table(path, "attributions", pd.DataFrame([
        {"id": f"m{i}", "kind": "tokens", "method": "ig", "target": "t", "example": i,
         "tokens": ["x", "y"], "shape": [2], "values": [float(i), -1.0], "meta": "{}",
         "created_at": str(i)} for i in range(3)]))
    store.refresh()
    index = store.attribution_index()
    assert list(index["id"]) == ["m0", "m1", "m2"] and "values" not in index.columns
    assert list(store.attribution("m2")["values"]) == [2.0, -1.0]
    assert store.attribution("nope") is None


def test_not_a_store_and_bad_parts(store_dir, tmp_path) -> None:
    with pytest.raises(NotAStoreError, match="not a featlab store"):
        open_store(tmp_path)
    with pytest.raises(NotAStoreError, match="not a directory"):
        open_store(tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "model.pt").write_text("x")
    with pytest.raises(NotAStoreError, match="not empty"):
        init_store(tmp_path / "full")

    bad = tmp_path / "bad"
    init_store(bad)
    (bad / "features").mkdir()
    (bad / "features" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreFormatError, match="broken.parquet.*not a readable Parquet"):
        open_store(bad)

    foreign = tmp_path / "foreign"
    init_store(foreign)
    (foreign / "features").mkdir()
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), foreign / "features" / "f.parquet")
    with pytest.raises(StoreFormatError, match="not a featlab 'features' part: missing"):
        open_store(foreign)

    (tmp_path / "manifest_only").mkdir()
    (tmp_path / "manifest_only" / "featlab_store.json").write_text("{not json")
    with pytest.raises(StoreFormatError, match="corrupt"):
        open_store(tmp_path / "manifest_only")


def test_write_table_validates_columns(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown column"):
        write_table(tmp_path / "s", "shortcut", pd.DataFrame({"run_id": ["r"], "oops": [1]}))
    write_table(tmp_path / "s", "shortcut", {"run_id": ["r1"], "reliance": [0.5]})
    write_table(tmp_path / "s", "complexity", {"sae_id": ["a"], "feature": [1], "layer": [0],
                                              "metric": ["v_info"], "value": [0.25]})
    store = open_store(tmp_path / "s")
    assert store.shortcut()["reliance"].tolist() == [0.5]
    assert store.complexity("a")["value"].tolist() == [0.25]
    assert store.circuits().empty and store.attributions(kind="image").empty
    assert not list((tmp_path / "s").rglob("*.tmp"))


def test_top_features_for_prompt(tiny_model, tiny_tokens) -> None:
    from featlab.store import top_features_for_prompt

    sae = make_sae(16, 64, 4, "blocks.0.hook_resid_post")
    prompt = tiny_tokens[0]
    top = top_features_for_prompt(tiny_model, sae, prompt, k=5)
    _, cache = tiny_model.run_with_cache(prompt[None], names_filter=["blocks.0.hook_resid_post"])
    z = sae.encode(cache["blocks.0.hook_resid_post"][0]).max(0).values
    assert list(top["feature"]) == z.topk(5).indices.tolist()[: len(top)]
    at3 = top_features_for_prompt(tiny_model, sae, prompt, k=3, pos=3)
    assert (at3["pos"] == 3).all()
    with pytest.raises(ValueError, match="no tokenizer"):
        top_features_for_prompt(tiny_model, sae, "hello")


# -- conditions: (column, operator, value) ------------------------------------------------------


def _expected(df: pd.DataFrame, column: str, op: str, value) -> list[int]:
    """The features a condition should keep, computed in pandas from the full table."""
    col = df[column]
    fold = op.startswith("i") and op not in ("is null", "is blank")
    base = op[1:] if fold else op
    if base in ("is null", "is blank"):
        keep = col.isna() | ((col == "") if base == "is blank" else False)
    else:
        if fold:
            col, value = col.str.lower(), value.lower()
        keep = {
            "=": lambda: col == value, "!=": lambda: col.isna() | (col != value),
            ">": lambda: col > value, ">=": lambda: col >= value,
            "<": lambda: col < value, "<=": lambda: col <= value,
            "contains": lambda: col.fillna("\0").str.contains(value, regex=False)
            & col.notna(),
        }[base]()
    return sorted(df.loc[keep.fillna(False).astype(bool), "feature"].astype(int).tolist())


@pytest.fixture(scope="module")
def explained_store(store_dir, tmp_path_factory):
    """A copy of the store with a few user explanations (mixed case, one empty)."""
    import shutil

    root = tmp_path_factory.mktemp("cond") / "s"
    shutil.copytree(store_dir, root)
    store = open_store(root)
    for f, text in {3: "Digit Detector", 4: "detects digits", 5: "", 6: "50% of tokens"}.items():
        store.set_explanation("a", f, text)
    return root


def test_every_condition_operator_matches_pandas(explained_store) -> None:
    store = open_store(explained_store)
    full, _ = store.features("a", limit=1000)
    density = float(full["density"].sort_values().iloc[len(full) // 2])  # a stored value
    token = str(full["top_token"].dropna().iloc[0])
    cases = [("feature", op, 3) for op in ("=", "!=", ">", ">=", "<", "<=")]
    cases += [("density", op, density) for op in ("=", "!=", ">", ">=", "<", "<=")]
    cases += [("max_act", ">", 0.0), ("mean_act", "<=", 0.5), ("dead", "=", True),
              ("dead", "!=", True), ("top_token", "=", token), ("top_token", "!=", token),
              ("top_token", ">", token), ("top_token", "contains", token[:1]),
              ("explanation", "contains", "digit"), ("explanation", "icontains", "DIGIT"),
              ("explanation", "contains", "Digit"), ("explanation", "i=", "digit detector"),
              ("explanation", "=", "digit detector"), ("explanation", "i!=", "DIGIT DETECTOR"),
              ("explanation", "contains", "50%"), ("explanation", "contains", "5_%"),
              ("explanation", "is blank", None), ("explanation", "is null", None),
              ("complexity", "is null", None), ("explanation", "i<", "e")]
    for column, op, value in cases:
        got, n = store.features("a", limit=1000, conditions=[(column, op, value)])
        want = _expected(full, column, op, value)
        assert sorted(got["feature"].tolist()) == want and n == len(want), (column, op, value)
    # Strict comparisons are strict: the boundary value itself is excluded.
    at = store.features("a", limit=1000, conditions=[("density", "=", density)])[1]
    above = store.features("a", limit=1000, conditions=[("density", ">", density)])[1]
    at_or_above = store.features("a", limit=1000, conditions=[("density", ">=", density)])[1]
    assert at >= 1 and at_or_above == above + at
    # Several conditions combine with AND, and with the older filters / search.
    both, n = store.features("a", limit=1000, conditions=[("feature", ">", 2),
                                                          ("feature", "<=", 5)])
    assert list(both["feature"]) == [3, 4, 5] and n == 3
    mixed, n = store.features("a", filters={"feature": (3, 5)}, search="digit",
                              conditions=[("explanation", "contains", "detects")])
    assert list(mixed["feature"]) == [4] and n == 1


def test_conditions_name_what_is_wrong(store_dir) -> None:
    store = open_store(store_dir)
    bad = [
        (("hist", ">", 1), "cannot filter on 'hist'"),
        (("nope", "=", 1), "cannot filter on 'nope'"),
        (("density", "~", 1), "unknown operator '~'"),
        (("density", "contains", "1"), "'contains' works on the text columns"),
        (("density", ">", "abc"), "'density' is numeric"),
        (("density", ">", float("nan")), "'density' is numeric"),
        (("top_token", "=", 3), "'top_token' is a text column"),
        (("dead", ">", True), "'dead' is true/false"),
        (("explanation", "is null", "x"), "takes no value"),
        (("feature", "="), "a condition is (column, operator, value)"),
    ]
    for cond, message in bad:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            store.features("a", conditions=[cond])


# -- explanations: the cap and unchanged saves -------------------------------------------------


def test_explanation_cap_and_unchanged_saves(store_dir, tmp_path) -> None:
    import shutil

    from featlab.store.reader import MAX_EXPLANATION_CHARS

    root = tmp_path / "s"
    shutil.copytree(store_dir, root)
    store = open_store(root)
    parts = lambda: len(store.parts("explanations"))  # noqa: E731
    n0 = parts()
    assert store.set_explanation("a", 1, "fires on commas") is True
    assert parts() == n0 + 1
    assert store.set_explanation("a", 1, "fires on commas") is False  # unchanged: no part
    assert parts() == n0 + 1
    assert store.set_explanation("a", 1, "fires on commas", source="auto") is True
    assert store.set_explanation("a", 1, "x" * MAX_EXPLANATION_CHARS) is True
    with pytest.raises(ValueError, match=f"the limit is {MAX_EXPLANATION_CHARS}"):
        store.set_explanation("a", 1, "x" * 200_000)
    with pytest.raises(ValueError, match="an explanation is text"):
        store.set_explanation("a", 1, 123)
    assert parts() == n0 + 3
    assert store.feature_card("a", 1).explanation == "x" * MAX_EXPLANATION_CHARS
