"""Layout of a featlab store: table names, their columns as pyarrow schemas, a format version.

A store is a directory::

    <store>/featlab_store.json          manifest: format name + version (marks the directory)
    <store>/<table>/<part>.parquet      append-only parts, one table per sub-directory
    <store>/.analyze/state-<ids>.pt     resumable `analyze` state (removed once finished)

Every table is the union of its parts. Parts written by `analyze` have deterministic names
(one per SAE and table), so re-running or resuming replaces a part instead of adding
duplicate rows. Explanations are append-only with a timestamp; the latest per feature wins.
"""

from __future__ import annotations

import pyarrow as pa

FORMAT_NAME = "featlab-store"
FORMAT_VERSION = 1
MANIFEST = "featlab_store.json"
STATE_DIR = ".analyze"

_f32 = pa.float32()
_f64 = pa.float64()
_i64 = pa.int64()
_i32 = pa.int32()
_str = pa.string()
_bool = pa.bool_()

SCHEMAS: dict[str, pa.Schema] = {
    # One row per SAE. `hist_edges` are the bin edges shared by every feature's `hist`.
    "saes": pa.schema([
        ("sae_id", _str), ("model", _str), ("hook", _str), ("kind", _str), ("d_in", _i64),
        ("d_sae", _i64), ("k", _i64), ("l0", _f64), ("fvu", _f64), ("dead_frac", _f64),
        ("ce_recovered", _f64), ("n_tokens", _i64), ("hist_edges", pa.list_(_f64)),
        ("config", _str), ("created_at", _str),
    ]),
    # One row per latent. density = fraction of tokens with z > 0; mean_act is over active
    # tokens; hist counts active tokens per log10-activation bin (edges in `saes`).
    "features": pa.schema([
        ("sae_id", _str), ("feature", _i64), ("density", _f64), ("max_act", _f64),
        ("mean_act", _f64), ("dead", _bool), ("hist", pa.list_(_i64)), ("x", _f64), ("y", _f64),
        ("top_token", _str), ("complexity", _f64), ("importance", _f64),
    ]),
    # Max-activating windows ("top") and uniform samples per activation quantile band ("q0" is
    # the weakest band). token_ids/acts cover `start .. start + len - 1`; `peak` is the
    # activation at position `pos` of sequence `seq`.
    "examples": pa.schema([
        ("sae_id", _str), ("feature", _i64), ("band", _str), ("rank", _i64), ("seq", _i64),
        ("pos", _i64), ("start", _i64), ("peak", _f64), ("peak_token", _i64),
        ("token_ids", pa.list_(_i64)), ("acts", pa.list_(_f32)),
    ]),
    # Direct logit effects W_dec[f] @ W_U: the `side` ("top"/"bottom") ranked tokens.
    "logits": pa.schema([
        ("sae_id", _str), ("feature", _i64), ("side", _str), ("rank", _i64),
        ("token_id", _i64), ("value", _f64),
    ]),
    # kind: "decoder_cosine" | "act_correlation" (same SAE) | "cross_sae" (best decoder
    # cosine in `other_sae`).
    "neighbours": pa.schema([
        ("sae_id", _str), ("feature", _i64), ("kind", _str), ("rank", _i64),
        ("other_sae", _str), ("other_feature", _i64), ("value", _f64),
    ]),
    "vocab": pa.schema([("token_id", _i64), ("token", _str)]),
    # source: "user" | "auto". Append-only; the row with the latest `updated_at` wins.
    "explanations": pa.schema([
        ("sae_id", _str), ("feature", _i64), ("text", _str), ("source", _str),
        ("updated_at", _str),
    ]),
    "circuits": pa.schema([
        ("circuit_id", _str), ("name", _str), ("model", _str), ("method", _str),
        ("metric", _str), ("node_threshold", _f64), ("edge_threshold", _f64),
        ("faithfulness", _f64), ("completeness", _f64), ("n_nodes", _i64), ("n_edges", _i64),
        ("meta", _str), ("created_at", _str),
    ]),
    # feature == -1 marks the SAE error node; pos == -1 means summed over positions.
    "nodes": pa.schema([
        ("circuit_id", _str), ("node_id", _str), ("hook", _str), ("layer", _i64),
        ("sae_id", _str), ("feature", _i64), ("pos", _i64), ("kind", _str), ("effect", _f64),
    ]),
    "edges": pa.schema([
        ("circuit_id", _str), ("src", _str), ("dst", _str), ("effect", _f64),
    ]),
    # One stored input-attribution map. kind: "tokens" (values per token) or "image" (values
    # flattened from `shape`).
    "attributions": pa.schema([
        ("id", _str), ("kind", _str), ("method", _str), ("target", _str), ("example", _i64),
        ("tokens", pa.list_(_str)), ("shape", pa.list_(_i64)), ("values", pa.list_(_f64)),
        ("meta", _str), ("created_at", _str),
    ]),
    # Written by featlab.complexity: per feature (or named variable) and layer.
    "complexity": pa.schema([
        ("sae_id", _str), ("feature", _i64), ("name", _str), ("layer", _i64), ("metric", _str),
        ("value", _f64), ("meta", _str),
    ]),
    # Written by the shortcut experiments: one row per trained model / setting.
    "shortcut": pa.schema([
        ("run_id", _str), ("model", _str), ("rho_core", _f64), ("rho_short", _f64),
        ("alpha_core", _f64), ("alpha_short", _f64), ("eta_core", _i64), ("eta_short", _i64),
        ("accuracy", _f64), ("reliance", _f64), ("bayes_reliance", _f64),
        ("shortcut_bias", _f64), ("meta", _str),
    ]),
}

TABLES: tuple[str, ...] = tuple(SCHEMAS)

# Columns `features(sort_by=...)` and `filters=` accept (the list is part of the API).
FEATURE_COLUMNS: tuple[str, ...] = (*SCHEMAS["features"].names, "explanation")


def columns(table: str) -> list[str]:
    """Column names of `table`; a clear error for an unknown table."""
    return list(schema(table).names)


def schema(table: str) -> pa.Schema:
    if table not in SCHEMAS:
        raise KeyError(f"unknown store table {table!r}; valid tables are {list(TABLES)}")
    return SCHEMAS[table]


def check_compatible(table: str, found: pa.Schema, where: str) -> None:
    """Raise `StoreFormatError` unless `found` has every column of `table` with a castable type.

    Extra columns are allowed (a later format may add some); missing ones are not.
    """
    from featlab.store.errors import StoreFormatError

    expected = schema(table)
    missing = [n for n in expected.names if n not in found.names]
    if missing:
        raise StoreFormatError(
            f"{where} is not a featlab '{table}' part: missing column(s) {missing} "
            f"(it has {found.names}). Remove the file or re-run `featlab analyze`."
        )
    for field in expected:
        got = found.field(field.name).type
        if got != field.type and not _castable(got, field.type):
            raise StoreFormatError(
                f"{where}: column {field.name!r} has type {got}, expected {field.type}. "
                "Remove the file or re-run `featlab analyze`."
            )


def _castable(src: pa.DataType, dst: pa.DataType) -> bool:
    if pa.types.is_null(src):
        return True
    if pa.types.is_list(src) and pa.types.is_list(dst):
        return _castable(src.value_type, dst.value_type)
    groups = (
        (pa.types.is_integer, pa.types.is_floating),
        (pa.types.is_string, pa.types.is_large_string),
    )
    for group in groups:
        if any(g(src) for g in group) and any(g(dst) for g in group):
            return True
    return pa.types.is_boolean(src) and pa.types.is_boolean(dst)
