"""Small updates to a store after `analyze`: add metrics to an SAE's row, fill feature
columns computed later (complexity, importance), remove an analysis.

Each update rewrites the one part that holds the rows (atomically, under the same name), so
readers see the old part or the new one. Values are cast to the table's schema; an unknown
column or SAE id is refused with the valid ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featlab.store.schema import TABLES, schema
from featlab.store.writer import read_manifest, safe_name, write_part


def _part(store: Path, table: str, sae_id: str) -> Path:
    read_manifest(store)
    path = store / table / f"{safe_name(sae_id)}.parquet"
    if not path.is_file():
        known = sorted(p.stem for p in (store / table).glob("*.parquet"))
        raise KeyError(f"the store {store} has no {table} part for SAE {sae_id!r}; "
                       f"parts: {known}")
    return path


def update_sae(store: str | Path, sae_id: str, **fields: Any) -> None:
    """Set columns of SAE `sae_id`'s row in the `saes` table, e.g. held-out metrics:
    ``update_sae(store, "topk", fvu=0.02, ce_recovered=0.95)``. `config` takes a dict,
    merged into the stored JSON."""
    import json

    store = Path(store)
    names = schema("saes").names
    unknown = sorted(set(fields) - set(names) - {"sae_id"})
    if unknown:
        raise ValueError(f"unknown saes column(s) {unknown}; valid: {names}")
    row = pq.read_table(_part(store, "saes", sae_id)).to_pandas()
    for key, value in fields.items():
        if key == "config" and isinstance(value, Mapping):
            old = json.loads(row.loc[0, "config"] or "{}")
            value = json.dumps({**(old if isinstance(old, dict) else {}), **value})
        row.loc[0, key] = value
    write_part(store, "saes", row, name=sae_id)


def update_features(store: str | Path, sae_id: str, values: pd.DataFrame) -> None:
    """Set feature columns of `sae_id` from `values` (a `feature` column plus the columns to
    set, e.g. complexity, importance); features not in `values` get nulls in those columns."""
    store = Path(store)
    if "feature" not in values.columns:
        raise ValueError(f"values needs a 'feature' column; it has {list(values.columns)}")
    target = schema("features")
    cols = [c for c in values.columns if c != "feature"]
    unknown = sorted(set(cols) - set(target.names))
    if unknown or "sae_id" in cols:
        raise ValueError(f"cannot set feature column(s) {unknown or ['sae_id']}; valid: "
                         f"{[c for c in target.names if c not in ('sae_id', 'feature')]}")
    part = pq.read_table(_part(store, "features", sae_id))
    ids = part.column("feature").to_pandas()
    by_feature = values.set_index("feature")
    for col in cols:
        new = by_feature[col].reindex(ids.to_numpy())
        array = pa.array(new.tolist(), type=target.field(col).type, from_pandas=True)
        part = part.set_column(part.schema.get_field_index(col), col, array)
    write_part(store, "features", part, name=sae_id)


def analysis_parts(root: Path, sae_ids: list[str]) -> dict[Path, int]:
    """The parts analyze writes for `sae_ids` (deterministic names) that exist now, with
    their inode; user-written explanations (unique part names) are not among them."""
    root = Path(root)
    names = {f"{safe_name(sid)}.parquet" for sid in sae_ids}
    names |= {f"{safe_name(f'auto-{sid}')}.parquet" for sid in sae_ids}
    out = {}
    for table in TABLES:
        for name in names:
            path = root / table / name
            if path.is_file():
                out[path] = path.stat().st_ino
    return out


def remove_unreplaced(parts: dict[Path, int]) -> None:
    """Delete the `parts` that still have their old inode: a re-run replaced the others by
    rename (so readers never saw a gap), these it did not write again."""
    for path, inode in parts.items():
        if path.is_file() and path.stat().st_ino == inode:
            path.unlink()
