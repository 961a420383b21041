"""Which analysis made each SAE id of a store, and whether a new one may take it.

`analyze` records in every SAE's `saes` row (its `config` JSON, key `analyze_fingerprint`)
a fingerprint of everything that made its tables: the analyze settings, the tokens, the
model's and the SAE's weights, the hook and the id. The same fingerprint again means the work
is done; another one under a stored id is a clash, refused unless the caller overwrites.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from featlab._fingerprint import model_fingerprint, settings_fingerprint, tensor_fingerprint
from featlab.errors import RunConflict


def fingerprints(config: dict[str, Any], tokens: Any, model: Any, saes: dict,
                 hooks: dict) -> dict[str, str]:
    """sae_id -> fingerprint of everything that changes that SAE's tables."""
    common = {"config": config, "tokens": tensor_fingerprint(tokens),
              "model": model_fingerprint(model)}
    return {sid: settings_fingerprint({**common, "sae_id": sid, "hook": hooks[sid],
                                       "sae": model_fingerprint(saes[sid])})
            for sid in sorted(saes)}


def stored_fingerprints(root: Path) -> dict[str, str | None]:
    """sae_id -> the fingerprint recorded in its `saes` row (None: not recorded)."""
    import pyarrow.parquet as pq

    out: dict[str, str | None] = {}
    for part in sorted((root / "saes").glob("*.parquet")):
        table = pq.read_table(part, columns=["sae_id", "config"]).to_pylist()
        for row in table:
            try:
                cfg = json.loads(row["config"] or "{}")
            except json.JSONDecodeError:
                cfg = {}
            out[row["sae_id"]] = cfg.get("analyze_fingerprint") if isinstance(cfg, dict) else None
    return out


def claim_ids(root: Path, prints: dict[str, str], overwrite: bool) -> pd.DataFrame | None:
    """The stored rows when every id was analysed with the same fingerprint (nothing to do);
    else None after checking that no stored id would be replaced without `overwrite`."""
    stored = stored_fingerprints(root)
    taken = [sid for sid in prints if sid in stored and stored[sid] != prints[sid]]
    if taken and not overwrite:
        raise RunConflict(
            f"the store {root} already holds SAE id(s) {taken} from another analysis; pass "
            "{opt:overwrite=True} to replace them, or give the SAE(s) other ids"
        )
    if not overwrite and all(stored.get(sid) == fp for sid, fp in prints.items()):
        from featlab.store.reader import open_store

        with open_store(root) as store:
            rows = store.saes()
        return rows[rows["sae_id"].isin(list(prints))].reset_index(drop=True)
    return None


def run_key(saes: dict) -> str:
    """The checkpoint's file name: one per set of SAE ids, so two runs into one store
    never take over each other's checkpoint."""
    return "state-" + settings_fingerprint(sorted(saes))


def read_state(path: Path) -> dict[str, Any]:
    """An analyze checkpoint, or a RunConflict naming the fix if it cannot be read."""
    import torch

    try:
        state = torch.load(path, weights_only=False)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        raise RunConflict(
            f"cannot read the analyze checkpoint {path} ({err}); pass {{opt:overwrite=True}} to "
            "start again"
        ) from None
    return state if isinstance(state, dict) else {}
