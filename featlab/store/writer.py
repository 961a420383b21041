"""Writing store parts: every file goes to a temporary name in the same directory and is
renamed into place, so a reader never sees half a file and a crash leaves nothing behind."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featlab._atomic import atomic_path, atomic_write_bytes
from featlab.store.errors import NotAStoreError, StoreFormatError
from featlab.store.schema import FORMAT_NAME, FORMAT_VERSION, MANIFEST, schema

# Small row groups let the reader skip all but the row groups holding one feature (min/max
# statistics on the `feature` column; `write_part` sorts parts by (sae_id, feature)).
ROW_GROUP_SIZE = 2048


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def safe_name(text: str) -> str:
    """A file-name-safe version of an identifier (SAE ids contain dots and slashes)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def init_store(path: str | Path) -> Path:
    """Create `path` as an empty store (idempotent); refuse a directory that is something else.

    A non-empty directory without a manifest is refused so a typo cannot scatter parts
    into, say, a model run directory.
    """
    root = Path(path)
    manifest = root / MANIFEST
    if manifest.exists():
        read_manifest(root)
        return root
    if root.exists() and any(root.iterdir()):
        raise NotAStoreError(
            f"{root} exists, is not empty and has no {MANIFEST}; pick a new or empty "
            "directory for the store"
        )
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "created_at": now_iso()}
    atomic_write_bytes(manifest, json.dumps(meta, indent=2).encode())
    return root


def read_manifest(root: Path) -> dict[str, Any]:
    manifest = root / MANIFEST
    if not root.is_dir():
        raise NotAStoreError(f"{root} is not a directory; give the path of a featlab store")
    if not manifest.is_file():
        raise NotAStoreError(
            f"{root} is not a featlab store (no {MANIFEST}); create one with "
            f"`featlab analyze ... --store {root}` or featlab.store.analyze(...)"
        )
    try:
        meta = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreFormatError(f"{manifest} is corrupt ({exc}); re-create the store") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise StoreFormatError(f"{manifest} is not a featlab store manifest: {meta!r}")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise StoreFormatError(
            f"{root} has store format {meta['format_version']}, newer than this featlab "
            f"({FORMAT_VERSION}); upgrade featlab"
        )
    return meta


def to_arrow(table: str, data: pd.DataFrame | pa.Table | Mapping[str, Any]) -> pa.Table:
    """Cast `data` to the schema of `table`; missing nullable columns become nulls.

    Raises a clear error for unknown columns (a typo would otherwise be dropped silently)
    and for values that do not cast.
    """
    target = schema(table)
    if isinstance(data, pa.Table):
        return _arrow_to_schema(table, data, target)
    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(dict(data))
    extra = [c for c in data.columns if c not in target.names]
    if extra:
        raise ValueError(
            f"unknown column(s) {extra} for table {table!r}; valid columns are {target.names}"
        )
    arrays = []
    n = len(data)
    for field in target:
        if field.name in data.columns:
            try:
                arrays.append(pa.array(data[field.name].tolist(), type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"column {field.name!r} of table {table!r} does not convert to "
                    f"{field.type}: {exc}"
                ) from exc
        else:
            arrays.append(pa.nulls(n, type=field.type))
    return pa.Table.from_arrays(arrays, schema=target)


def _arrow_to_schema(table: str, data: pa.Table, target: pa.Schema) -> pa.Table:
    # Fast path for big parts built column-wise (analyze): no round trip through Python lists.
    extra = [c for c in data.column_names if c not in target.names]
    if extra:
        raise ValueError(
            f"unknown column(s) {extra} for table {table!r}; valid columns are {target.names}"
        )
    cols = []
    for field in target:
        if field.name in data.column_names:
            cols.append(data.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(len(data), type=field.type))
    return pa.Table.from_arrays(cols, schema=target)


def sorted_for_pruning(data: pa.Table) -> pa.Table:
    """`data` ordered by (sae_id, feature) when it has those columns, so every row group
    covers a narrow feature range and the reader skips the others by their statistics.
    Stable, so the order within one feature (band, rank, ...) is kept; a no-op (no copy)
    when the rows are already in order, as `analyze` writes them."""
    if "feature" not in data.column_names or data.num_rows < 2:
        return data
    feat = data.column("feature").to_numpy(zero_copy_only=False)
    keys = [("feature", "ascending")]
    if "sae_id" in data.column_names:
        sae = data.column("sae_id")
        if pc.count_distinct(sae).as_py() > 1:
            keys.insert(0, ("sae_id", "ascending"))
    if len(keys) == 1 and not (np.diff(feat) < 0).any():
        return data
    return data.take(pc.sort_indices(data, sort_keys=keys))


def write_part(
    store: str | Path,
    table: str,
    data: pd.DataFrame | pa.Table | Mapping[str, Any],
    *,
    name: str | None = None,
) -> Path:
    """Write one Parquet part of `table` atomically and return its path.

    `name` makes the part deterministic: writing the same name again replaces it (how
    `analyze` stays free of duplicate rows on resume). Without a name a unique one is made.
    """
    root = Path(store)
    read_manifest(root)
    arrow = sorted_for_pruning(to_arrow(table, data))
    part = safe_name(name) if name else f"{now_iso().replace(':', '')}-{uuid.uuid4().hex[:8]}"
    path = root / table / f"{part}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")
    return path


def write_table(store: str | Path, table: str, data: Any, *, name: str | None = None) -> Path:
    """Public entry point for other packages (complexity, shortcut experiments, circuits):
    create the store if needed, then write one part of `table`."""
    init_store(store)
    return write_part(store, table, data, name=name)
