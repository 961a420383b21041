"""SQL and small helpers of the reader (kept apart so `reader.py` reads as the API)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pyarrow as pa

from featlab.store.schema import FEATURE_COLUMNS, SCHEMAS, columns

# Latest explanation per feature: a user's text beats an automatic one (so re-running
# `analyze` never hides it), then the latest wins; ties broken by text for determinism.
LATEST_EXPLANATION = (
    "SELECT sae_id, feature, arg_max(text, (source = 'user', updated_at, text)) AS explanation, "
    "arg_max(source, (source = 'user', updated_at, text)) AS explanation_source "
    "FROM explanations"
)


def scan_sql(table: str, paths: list[Any]) -> str:
    """SELECT of `table`'s columns from the Parquet files `paths` (from its empty stand-in,
    `_empty_<table>`, when there are none)."""
    cols = ", ".join(f'"{c}"' for c in columns(table))
    if not paths:
        return f"SELECT {cols} FROM _empty_{table}"
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
    union = ", union_by_name = true" if len(paths) > 1 else ""
    return f"SELECT {cols} FROM read_parquet({files}{union})"


def latest_explanation(src: str = "explanations") -> str:
    """`LATEST_EXPLANATION` over `src` (a table name or a parenthesised scan of some parts)."""
    return LATEST_EXPLANATION.replace("FROM explanations", f"FROM {src}")


def cross_matches_sql(features: str, neighbours: str, explanations: str) -> str:
    """A page of SAE A's features (a feature range) with their best `cross_sae` match in B
    and A's explanation. Parameters: sae_a, lo, hi, sae_a, sae_b, lo, hi, sae_a, lo, hi."""
    return f"""
        WITH f AS (SELECT feature FROM {features}
                   WHERE sae_id = ? AND feature BETWEEN ? AND ?),
        m AS (SELECT feature, arg_max(other_feature, abs(value)) AS match,
                     arg_max(value, abs(value)) AS cosine
              FROM {neighbours}
              WHERE sae_id = ? AND kind = 'cross_sae' AND other_sae = ?
                    AND feature BETWEEN ? AND ? GROUP BY feature),
        e AS ({explanations} WHERE sae_id = ? AND feature BETWEEN ? AND ?
              GROUP BY sae_id, feature)
        SELECT f.feature, coalesce(m.match, -1) AS match, m.cosine, e.explanation
        FROM f LEFT JOIN m USING (feature) LEFT JOIN e USING (feature)
        ORDER BY f.feature"""


def features_sql(features: str, explanations: str, select: str, where: str,
                 tail: str = "") -> str:
    """`select` over one SAE's features joined with their latest explanation (`f`, `e`).
    Parameters: sae_id (of the explanations), then those of `where` and `tail`."""
    return (f"WITH e AS ({latest_explanation(explanations)} WHERE sae_id = ? "
            f"GROUP BY sae_id, feature) SELECT {select} FROM {features} f "
            f"LEFT JOIN e USING (sae_id, feature) WHERE {where} {tail}")


def density_histogram_sql(features: str, w: float) -> str:
    """Counts of log10(density) in bins of width `w` decades (dead features in bin 0).
    Parameter: sae_id."""
    return f"""SELECT CASE WHEN dead THEN 0.0 ELSE power(10, floor(log10(density) / {w}) * {w})
                   END AS bin_left,
                   CASE WHEN dead THEN 0.0 ELSE power(10, (floor(log10(density) / {w}) + 1)
                   * {w}) END AS bin_right,
                   count(*) AS count
            FROM {features}
            WHERE sae_id = ? GROUP BY ALL ORDER BY bin_left"""


def search_token_sql(explanations: str, examples: str) -> str:
    """Features whose top examples peak on a token. Parameters: sae_id, sae_id, token,
    token, limit."""
    return f"""WITH e AS ({explanations} WHERE sae_id = ? GROUP BY sae_id, feature)
            SELECT x.feature, count(*) AS n_examples, max(x.peak) AS max_peak,
                   any_value(e.explanation) AS explanation
            FROM {examples} x
            JOIN vocab v ON v.token_id = x.peak_token
            LEFT JOIN e ON e.sae_id = x.sae_id AND e.feature = x.feature
            WHERE x.sae_id = ? AND x.band = 'top' AND (v.token = ? OR trim(v.token) = trim(?))
            GROUP BY x.feature ORDER BY n_examples DESC, max_peak DESC, x.feature LIMIT ?"""


def sortable() -> list[str]:
    return [c for c in FEATURE_COLUMNS if c != "hist"]


# -- WHERE clauses of `FeatureStore.features` --------------------------------------------------
# Comparison operators of `conditions`; an "i" prefix ("icontains", "i=", ...) makes a text
# comparison case-insensitive. "is null" / "is blank" (null or "") take the value None.
OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "contains", "is null", "is blank")
TEXT_COLUMNS = ("sae_id", "top_token", "explanation")
_FLOAT_COLUMNS = tuple(f.name for f in SCHEMAS["features"] if pa.types.is_floating(f.type))
_BOOL_COLUMNS = tuple(f.name for f in SCHEMAS["features"] if pa.types.is_boolean(f.type))


def column_ref(col: str) -> str:
    if col not in FEATURE_COLUMNS or col == "hist":
        raise ValueError(f"cannot filter on {col!r}; choose one of {sortable()}")
    return "e.explanation" if col == "explanation" else f'f."{col}"'


def condition_sql(column: str, op: str, value: Any) -> tuple[str, list[Any]]:
    """One `(column, op, value)` condition as (SQL, params) over `f` (features) and `e`
    (latest explanations). Raises ValueError naming the problem for a bad column, operator
    or value type."""
    ref = column_ref(column)
    name = str(op).strip().lower()
    fold = name.startswith("i") and name[1:] in OPERATORS and name not in ("is null", "is blank")
    base = name[1:] if fold else name
    if base not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; use one of {list(OPERATORS)} (prefix 'i' "
                         "for case-insensitive text: 'icontains', 'i=')")
    if base in ("is null", "is blank"):
        if value is not None:
            raise ValueError(f"{base!r} takes no value (pass None), got {value!r}")
        blank = f" OR {ref} = ''" if base == "is blank" and column in TEXT_COLUMNS else ""
        return f"({ref} IS NULL{blank})", []
    if column in TEXT_COLUMNS:
        if not isinstance(value, str):
            raise ValueError(f"{column!r} is a text column: compare it with a string, "
                             f"got {value!r}")
        lhs, rhs = (f"lower({ref})", "lower(?)") if fold else (ref, "?")
        if base == "contains":
            return f"contains({lhs}, {rhs})", [value]
        return _compare(lhs, base, rhs), [value]
    if base == "contains":
        raise ValueError(f"'contains' works on the text columns {list(TEXT_COLUMNS)}; compare "
                         f"{column!r} with =, !=, >, >=, <, <=")
    if column in _BOOL_COLUMNS:
        if not isinstance(value, bool) or base not in ("=", "!="):
            raise ValueError(f"{column!r} is true/false: use = or != with a bool, "
                             f"got {op!r} {value!r}")
        return _compare(ref, base, "?"), [value]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{column!r} is numeric: compare it with a number, got {value!r}")
    sql = _compare(ref, base, "?")
    if base in (">", ">=") and column in _FLOAT_COLUMNS:
        sql = f"({sql} AND NOT isnan({ref}))"  # DuckDB orders NaN above every number
    return sql, [value]


def _compare(lhs: str, op: str, rhs: str) -> str:
    # "not equal" keeps rows whose value is missing, as the DataTable's own filter does.
    return f"{lhs} IS DISTINCT FROM {rhs}" if op == "!=" else f"{lhs} {op} {rhs}"


def feature_where(filters: dict[str, Any] | None, search: str | None,
                  conditions: Any) -> tuple[list[str], list[Any]]:
    """WHERE terms (ANDed) and their params for `FeatureStore.features`' three ways of
    filtering: `filters` (column -> value, (lo, hi) or list), `search` (substring of the
    explanation or top token, or a feature index) and `conditions` ((column, op, value))."""
    where: list[str] = []
    params: list[Any] = []
    for col, value in (filters or {}).items():
        ref = column_ref(col)
        if isinstance(value, tuple):
            if len(value) != 2:
                raise ValueError(f"range filter on {col!r} must be (lo, hi), got {value}")
            lo, hi = value
            if lo is not None:
                where.append(f"{ref} >= ?")
                params.append(lo)
            if hi is not None:
                where.append(f"{ref} <= ?")
                params.append(hi)
        elif isinstance(value, (list, set, frozenset)):
            values = list(value)
            where.append(f"{ref} IN ({', '.join('?' * len(values))})" if values else "FALSE")
            params.extend(values)
        elif value is None:
            where.append(f"{ref} IS NULL")
        else:
            where.append(f"{ref} = ?")
            params.append(value)
    if search:
        text = search.strip()
        # contains(), not ILIKE: a typed % or _ is a character, not a wildcard.
        cond = "(contains(lower(e.explanation), lower(?)) OR contains(lower(f.top_token), lower(?))"
        params += [text, text]
        if text.isdigit():
            cond += " OR f.feature = ?"
            params.append(int(text))
        where.append(cond + ")")
    for item in conditions or ():
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(f"a condition is (column, operator, value), got {item!r}")
        sql, args = condition_sql(*item)
        where.append(sql)
        params += args
    return where, params


def histogram_frame(hist: Any, edges: Any) -> pd.DataFrame:
    """bin_left/bin_right in activation units (edges are stored as log10)."""
    if hist is None or edges is None or len(edges) != len(hist) + 1:
        return pd.DataFrame({"bin_left": [], "bin_right": [], "count": []})
    edges = [10.0 ** float(e) for e in edges]
    return pd.DataFrame(
        {"bin_left": edges[:-1], "bin_right": edges[1:], "count": [int(c) for c in hist]}
    )


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python scalars so the stats dict serialises to JSON (Dash)."""
    out = {}
    for k, v in row.items():
        if hasattr(v, "item") and not isinstance(v, (list, dict)):
            try:
                v = v.item()
            except (ValueError, AttributeError):
                pass
        out[k] = v
    json.dumps(out, default=str)
    return out
