"""The store's update API: metrics into an SAE's row, feature columns, and the overwrite
path that replaces parts in place."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from featlab.store import analyze, open_store, update_features, update_sae
from featlab.store.update import analysis_parts, remove_unreplaced

from .store_helpers import make_sae

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture()
def store(tiny_model, tiny_tokens, tmp_path):
    analyze(tiny_model, {"a": make_sae(16, 32, 4, HOOK)}, tiny_tokens, tmp_path / "s",
            batch_size=8, n_examples=2, progress=False)
    return tmp_path / "s"


def test_update_sae_sets_metrics_and_merges_config(store) -> None:
    before = json.loads(open_store(store).saes().loc[0, "config"])
    update_sae(store, "a", fvu=0.25, ce_recovered=0.9, config={"eval_split": "held-out"})
    row = open_store(store).saes().iloc[0]
    assert row["fvu"] == 0.25 and row["ce_recovered"] == 0.9
    after = json.loads(row["config"])
    assert after == {**before, "eval_split": "held-out"}  # the fingerprint is kept
    with pytest.raises(ValueError, match="unknown saes column"):
        update_sae(store, "a", fvuu=1.0)
    with pytest.raises(KeyError, match="no saes part for SAE 'b'"):
        update_sae(store, "b", fvu=1.0)


def test_update_features_fills_columns_by_feature(store) -> None:
    values = pd.DataFrame({"feature": [3, 1], "complexity": [0.5, 0.25],
                           "importance": [2.0, np.nan]})
    update_features(store, "a", values)
    feats, _ = open_store(store).features("a", limit=100)
    by = feats.set_index("feature")
    assert by.loc[3, "complexity"] == 0.5 and by.loc[1, "complexity"] == 0.25
    assert np.isnan(by.loc[1, "importance"]) and np.isnan(by.loc[0, "complexity"])
    assert len(feats) == 32  # no row lost or added
    with pytest.raises(ValueError, match="cannot set feature column"):
        update_features(store, "a", pd.DataFrame({"feature": [0], "densty": [1.0]}))


def test_overwrite_replaces_parts_by_rename_and_drops_the_rest(store) -> None:
    parts = analysis_parts(store, ["a"])
    assert {p.parent.name for p in parts} >= {"features", "examples", "saes", "explanations"}
    kept, stale = sorted(parts)[:2]
    tmp = kept.with_suffix(".new")
    tmp.write_bytes(kept.read_bytes())
    os.replace(tmp, kept)  # what a re-run does to a part it writes again
    remove_unreplaced({kept: parts[kept], stale: parts[stale]})
    assert kept.is_file() and not stale.exists()
