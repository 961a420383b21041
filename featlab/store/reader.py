"""Reading a store: an in-memory DuckDB with one view per table over its Parquet parts.

Each read is a query for one SAE's page of rows or for one feature; DuckDB pushes the
`sae_id`/`feature` filters into the Parquet scan (row-group statistics on sorted parts), so
no table is ever loaded whole. The only write is `set_explanation`, which adds a small part.

Parts may be replaced while the store is open (`analyze` re-run into a served store): every
read first checks the parts of the tables it uses (`PartIndex.stale`, a few `os.stat`
calls) and re-scans those that changed, and a read that fails on a part replaced under it
is retried once after a re-scan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa

from featlab.store import sql as q
from featlab.store.card import (
    MAX_EXPLANATION_CHARS,
    FeatureCard,
    Vocab,
    check_explanation,
    load_hist_edges,
    load_vocab,
    read_card,
)
from featlab.store.card import latest_explanation as card_explanation
from featlab.store.errors import StoreError, StoreFormatError
from featlab.store.index import PartIndex, list_parts
from featlab.store.schema import FEATURE_COLUMNS, TABLES, columns, schema
from featlab.store.writer import now_iso, read_manifest, write_part

_CARD_TABLES = ("saes", "vocab", "features", "examples", "logits", "neighbours", "explanations")
T = TypeVar("T")


class UnknownIdError(KeyError):
    """The store holds no SAE, feature or circuit of that id (the message lists what it
    does hold). A KeyError, so `except KeyError` keeps working."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def open_store(path: str | Path) -> FeatureStore:
    """Open the store at `path` read-only (clear error if it is not a featlab store)."""
    return FeatureStore(path)


class FeatureStore:
    """Read-only view of a featlab store. Thread-safe (one lock around the connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self._lock = threading.RLock()
        self._con = duckdb.connect(database=":memory:")
        self._con.execute("SET threads TO 2")
        # Keep Parquet footers in memory between queries (DuckDB re-reads a footer when the
        # file's modification time changes, as a part renamed over does). `enable_object_cache`
        # is the older name of the same cache; set it where this DuckDB still knows it.
        self._con.execute("SET parquet_metadata_cache = true")
        try:
            self._con.execute("SET enable_object_cache = true")
        except duckdb.Error:
            pass
        self._index = PartIndex()
        self._sae_edges: dict[str, Any] = {}
        self._vocab: Vocab | None = None
        self._generation = 0
        self.refresh()

    # -- set-up ---------------------------------------------------------------------------
    def parts(self, table: str) -> list[Path]:
        """The Parquet parts of `table`, in name order (writers' temporary files excluded)."""
        return list_parts(self.path / table)

    def refresh(self, tables: Sequence[str] | None = None) -> bool:
        """Re-scan parts and rebuild the views of the tables that changed; returns whether
        any did. Reads do this by themselves for the tables they use. A new or changed
        part's footer is checked against the table schema here, so a corrupt or foreign
        file fails with its name instead of deep inside a query."""
        changed = False
        with self._lock:
            for table in tables or TABLES:
                for attempt in range(3):
                    if not self._index.scan(self.path, table) and attempt == 0:
                        break
                    changed = True
                    try:
                        self._rebuild(table)
                        break
                    except duckdb.IOException as exc:  # a part removed since the scan
                        if attempt == 2:
                            raise self._corrupt(exc) from exc
            if changed:
                self._generation += 1
        return changed

    def _rebuild(self, table: str) -> None:
        """The view of `table` over its scanned parts, and what is loaded from them."""
        parts = self._index.paths(table)
        if table == "saes":
            self._sae_edges = load_hist_edges(parts)
        elif table == "vocab":
            self._vocab = None  # reloaded on first use
        if not parts:
            self._con.register(f"_empty_{table}", schema(table).empty_table())
        self._con.execute(f'CREATE OR REPLACE VIEW "{table}" AS {q.scan_sql(table, parts)}')

    def _sync(self, tables: Sequence[str]) -> None:
        """Re-scan those of `tables` whose parts changed on disk since they were read."""
        stale = [t for t in tables if self._index.stale(self.path, t)]
        if stale:
            self.refresh(stale)

    def generation(self, *tables: str) -> int:
        """A counter that grows whenever parts of the store change; `tables` are checked
        first (the app's caches key on it to drop answers about replaced parts)."""
        self._sync(tables or TABLES)
        return self._generation

    def _read(self, tables: Sequence[str], read: Callable[[], T]) -> T:
        """`read()` over freshly checked `tables`. A part renamed over between the check and
        the read makes DuckDB or pyarrow fail on a file that no longer matches what was
        planned; then the tables are re-scanned and, if they did change, `read` runs once
        more. A part that is simply corrupt fails the same way twice and is reported."""
        self._sync(tables)
        try:
            return read()
        except (StoreFormatError, pa.ArrowException, OSError) as exc:
            if not self.refresh(tables):
                if isinstance(exc, StoreFormatError):
                    raise
                raise self._corrupt(exc) from exc
        return read()

    def _corrupt(self, exc: Exception) -> StoreFormatError:
        return StoreFormatError(f"reading {self.path} failed: {exc}. A part may be corrupt; "
                                "remove it or re-run `featlab analyze`")

    def _vocabulary(self) -> Vocab:
        if self._vocab is None:
            self._vocab = load_vocab(self._index.paths("vocab"))
        return self._vocab

    def _src(self, table: str, sae_id: str) -> str:
        """FROM-clause source of `table` restricted to the parts that may hold `sae_id`
        (a direct Parquet scan of those files: no union over every SAE's parts)."""
        paths = self._index.paths(table, sae_id)
        return f"({q.scan_sql(table, paths)})" if paths else f'"{table}"'

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r})"

    def _query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self._lock:
            try:
                return self._con.execute(sql, params or []).df()
            except (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException):
                raise  # a query built wrongly: a bug, not the store's data
            except duckdb.Error as exc:  # a part unreadable, or replaced mid-read (retried)
                raise self._corrupt(exc) from exc

    def _fetch(self, tables: Sequence[str], sql: Callable[[], str],
               params: list[Any] | None = None) -> pd.DataFrame:
        """`_query` through `_read`: `sql()` is rebuilt on a retry, since it names parts."""
        return self._read(tables, lambda: self._query(sql(), params))

    # -- SAEs and features ----------------------------------------------------------------
    def saes(self) -> pd.DataFrame:
        """One row per SAE."""
        return self._fetch(("saes",), lambda: "SELECT * FROM saes ORDER BY sae_id")

    def _check_sae(self, sae_id: str) -> None:
        # The SAE ids are read with the `saes` parts (no query per call).
        self._sync(("saes",))
        if sae_id not in self._sae_edges:
            known = sorted(self._sae_edges)
            raise UnknownIdError(f"no SAE {sae_id!r} in {self.path}; stored SAEs: {known}")

    def n_features(self, sae_id: str) -> int:
        self._check_sae(sae_id)
        df = self._fetch(("features",), lambda: f"SELECT count(*) AS n FROM "
                         f"{self._src('features', sae_id)} WHERE sae_id = ?", [sae_id])
        return int(df["n"].iloc[0])

    def features(
        self,
        sae_id: str,
        *,
        offset: int = 0,
        limit: int = 50,
        sort_by: str = "feature",
        descending: bool = False,
        filters: dict[str, Any] | None = None,
        search: str | None = None,
        conditions: Sequence[tuple[str, str, Any]] | None = None,
    ) -> tuple[pd.DataFrame, int]:
        """One page of `sae_id`'s features (no histograms) and the total matching count.

        conditions: (column, operator, value) triples, e.g. `[("density", ">", 0.01),
        ("explanation", "icontains", "digit")]`: `=`, `!=` (keeps rows with no value), `>`,
        `>=`, `<`, `<=` on any column, `contains` on text (`top_token`, `explanation`),
        `is null` / `is blank` with None; an `i` prefix compares text case-insensitively.
        filters: column -> value (equality), (lo, hi) (inclusive, None for open) or a list
        (membership). search: case-insensitive substring of the explanation or the top
        token, or an exact feature index. All combine with AND."""
        self._check_sae(sae_id)
        if sort_by not in FEATURE_COLUMNS or sort_by == "hist":
            raise ValueError(f"cannot sort by {sort_by!r}; choose one of {q.sortable()}")
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, got {offset}, {limit}")
        terms, params = q.feature_where(filters, search, conditions)
        where = " AND ".join(["f.sae_id = ?", *terms])
        params = [sae_id, *params]
        order_ref = "e.explanation" if sort_by == "explanation" else f'f."{sort_by}"'
        direction = "DESC" if descending else "ASC"
        cols = ", ".join(f'f."{c}"' for c in columns("features") if c != "hist")

        def sql(select: str, tail: str = "") -> Callable[[], str]:
            return lambda: q.features_sql(self._src("features", sae_id),
                                        self._src("explanations", sae_id), select, where, tail)

        tables = ("features", "explanations")
        page = sql(f"{cols}, e.explanation, e.explanation_source, count(*) OVER () AS _total",
                   f"ORDER BY {order_ref} {direction} NULLS LAST, f.feature LIMIT ? OFFSET ?")
        df = self._fetch(tables, page, [sae_id, *params, int(limit), int(offset)])
        if len(df):
            total = int(df["_total"].iloc[0])
        else:  # past the end (or nothing matched): count separately
            total = int(self._fetch(tables, sql("count(*) AS n"), [sae_id, *params])["n"].iloc[0])
        return df.drop(columns="_total").reset_index(drop=True), total

    def feature_card(self, sae_id: str, feature: int) -> FeatureCard | None:
        """Stats, histogram, examples, logit effects, neighbours and explanation of one
        feature; None if the SAE has no such feature.

        Five reads, each decoding only the row groups that hold this feature (the footers
        are parsed once per part; see `featlab.store.index`)."""
        feature = int(feature)

        def read() -> FeatureCard | None:
            if sae_id not in self._sae_edges:
                return None
            return read_card(self._index, sae_id, feature, self._sae_edges[sae_id],
                             self._vocabulary())

        return self._read(_CARD_TABLES, read)

    def feature_map(self, sae_id: str) -> pd.DataFrame:
        """feature, x, y: a 2-D PCA of the decoder rows (plus density and dead for colour)."""
        self._check_sae(sae_id)
        return self._fetch(("features",), lambda: "SELECT feature, x, y, density, dead FROM "
                           f"{self._src('features', sae_id)} WHERE sae_id = ? ORDER BY feature",
                           [sae_id])

    def density_histogram(self, sae_id: str, bins_per_decade: int = 4) -> pd.DataFrame:
        """bin_left, bin_right, count of log10(density) over live features (dead features
        are counted in the row with bin_left = bin_right = 0)."""
        self._check_sae(sae_id)
        return self._fetch(("features",), lambda: q.density_histogram_sql(
            self._src("features", sae_id), 1.0 / bins_per_decade), [sae_id])

    def search_token(self, sae_id: str, token: str, limit: int = 20) -> pd.DataFrame:
        """Features whose top examples peak on `token` (exact, or equal after stripping
        whitespace): feature, n_examples, max_peak, explanation."""
        self._check_sae(sae_id)
        return self._fetch(("explanations", "examples", "vocab"), lambda: q.search_token_sql(
            q.latest_explanation(self._src("explanations", sae_id)),
            self._src("examples", sae_id)), [sae_id, sae_id, token, token, int(limit)])

    def vocab(self) -> pd.DataFrame:
        return self._fetch(("vocab",), lambda: "SELECT token_id, token FROM vocab "
                           "ORDER BY token_id")

    # -- circuits, attributions, complexity, shortcut --------------------------------------
    def circuits(self) -> pd.DataFrame:
        return self._fetch(("circuits",),
                           lambda: "SELECT * FROM circuits ORDER BY created_at, circuit_id")

    def circuit(self, circuit_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(nodes, edges) of one circuit; KeyError naming the stored ids if unknown."""
        known = self._fetch(("circuits",), lambda: "SELECT circuit_id FROM circuits")
        if circuit_id not in set(known["circuit_id"]):
            raise UnknownIdError(f"no circuit {circuit_id!r}; stored circuits: "
                           f"{known['circuit_id'].tolist()}")
        nodes = self._fetch(("nodes",), lambda: "SELECT * FROM nodes WHERE circuit_id = ? "
                            "ORDER BY layer, abs(effect) DESC", [circuit_id])
        edges = self._fetch(("edges",), lambda: "SELECT * FROM edges WHERE circuit_id = ? "
                            "ORDER BY abs(effect) DESC", [circuit_id])
        return nodes, edges

    def attributions(self, kind: str | None = None) -> pd.DataFrame:
        """One row per stored attribution map (kind "tokens" or "image")."""
        return self._attributions("*", kind)

    def attribution_index(self, kind: str | None = None) -> pd.DataFrame:
        """The stored maps without their values: id, kind, method, target, example,
        created_at (what a picker lists)."""
        return self._attributions("id, kind, method, target, example, created_at", kind)

    def _attributions(self, cols: str, kind: str | None) -> pd.DataFrame:
        where, params = ("WHERE kind = ?", [kind]) if kind is not None else ("", [])
        return self._fetch(("attributions",), lambda: f"SELECT {cols} FROM attributions "
                           f"{where} ORDER BY created_at, example, id", params)

    def attribution(self, map_id: str) -> dict[str, Any] | None:
        """One stored map as a dict (a row of `attributions()`), or None if unknown."""
        df = self._fetch(("attributions",), lambda: "SELECT * FROM attributions WHERE "
                         "CAST(id AS VARCHAR) = ? ORDER BY created_at DESC LIMIT 1", [str(map_id)])
        return df.iloc[0].to_dict() if len(df) else None

    def cross_matches(
        self, sae_a: str, sae_b: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[pd.DataFrame, int]:
        """One page of SAE A's features (by index) with their best decoder-cosine match in
        SAE B (the `cross_sae` neighbours `analyze` stores) and the total feature count.

        Columns: feature, match (-1 where A stores no match in B), cosine (NaN there),
        explanation (A's), match_explanation (B's). Two queries, each bounded by the page:
        A's page of features joined with their matches, then B's matched features'
        explanations.
        """
        self._check_sae(sae_a)
        self._check_sae(sae_b)
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, got {offset}, {limit}")
        # Features are 0..d_sae-1, so a page is a feature range: the range filter is pushed
        # into the neighbours scan (row-group statistics) instead of a join over all rows.
        lo, hi = int(offset), int(offset) + int(limit) - 1
        tables = ("features", "neighbours", "explanations")
        df = self._fetch(tables, lambda: q.cross_matches_sql(
            self._src("features", sae_a), self._src("neighbours", sae_a),
            q.latest_explanation(self._src("explanations", sae_a))),
            [sae_a, lo, hi, sae_a, sae_b, lo, hi, sae_a, lo, hi])
        df["cosine"] = df["cosine"].astype(float)
        matched = sorted({int(m) for m in df["match"] if m >= 0})
        names: dict[int, Any] = {}
        if matched:
            marks = ", ".join("?" * len(matched))
            eb = self._fetch(("explanations",), lambda: q.latest_explanation(
                self._src("explanations", sae_b)) + f" WHERE sae_id = ? AND feature IN ({marks}) "
                "GROUP BY sae_id, feature", [sae_b, *matched])
            names = dict(zip(eb["feature"].astype(int), eb["explanation"], strict=True))
        df["match_explanation"] = [names.get(int(m)) for m in df["match"]]
        return df.reset_index(drop=True), self.n_features(sae_a)

    def complexity(self, sae_id: str | None = None) -> pd.DataFrame:
        if sae_id is None:
            return self._fetch(("complexity",), lambda: "SELECT * FROM complexity "
                               "ORDER BY sae_id, feature, layer")
        return self._fetch(("complexity",), lambda: "SELECT * FROM complexity WHERE sae_id = ? "
                           "ORDER BY feature, layer", [sae_id])

    def shortcut(self) -> pd.DataFrame:
        return self._fetch(("shortcut",), lambda: "SELECT * FROM shortcut ORDER BY run_id")

    # -- the one write ---------------------------------------------------------------------
    def set_explanation(self, sae_id: str, feature: int, text: str, source: str = "user") -> bool:
        """Record an explanation (append-only; the latest one is shown). Returns False, and
        writes nothing, when it equals the one shown (same text and source). Texts over
        `MAX_EXPLANATION_CHARS` characters are refused."""
        check_explanation(text, source)
        feature = int(feature)
        self._sync(("saes",))
        if sae_id not in self._sae_edges or not self._read(
                ("features",), lambda: self._index.rows("features", sae_id, feature, ["feature"],
                                                        schema("features")).num_rows):
            raise UnknownIdError(f"no feature {feature} of SAE {sae_id!r} in {self.path}")
        if self._read(("explanations",), lambda: card_explanation(
                self._index, sae_id, feature)) == (text, source):
            return False
        row = {"sae_id": [sae_id], "feature": [feature], "text": [text],
               "source": [source], "updated_at": [now_iso()]}
        write_part(self.path, "explanations", row)
        self.refresh(("explanations",))
        return True


__all__ = ["MAX_EXPLANATION_CHARS", "FeatureCard", "FeatureStore", "StoreError",
           "UnknownIdError", "open_store"]
