"""`run_demo(quick=True)`: every stage writes its output, a rerun is cached and identical."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from featlab.errors import RunConflict
from featlab.runs.demo import DemoConfig, run_demo
from featlab.runs.demo_stages import KINDS, SIZES


def _quick(out, **kw) -> DemoConfig:
    return DemoConfig(out=out, quick=True, serve=False, progress=False, **kw)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    t0 = time.perf_counter()
    first = run_demo(_quick(out))
    t1 = time.perf_counter()
    second = run_demo(_quick(out))
    t2 = time.perf_counter()
    return out, first, second, t1 - t0, t2 - t1


def test_every_stage_wrote_its_output(demo_runs) -> None:
    out, first, _, _, _ = demo_runs
    assert (out / "model" / "config.json").is_file()
    for kind in KINDS:
        assert (out / "saes" / kind / "sae" / "cfg.json").is_file()
    stages = json.loads((out / "stages.json").read_text())
    assert {"circuit", "attributions", "complexity"} <= set(stages)
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    assert list(first.stages["stage"]) == [
        "imports", "model", "saes", "analyze", "circuit", "attributions", "complexity"]
    assert not first.stages["cached"].iloc[1:].any()


def test_store_holds_saes_features_circuit_attributions_complexity(demo_runs) -> None:
    from featlab.store import open_store

    _, first, _, _, _ = demo_runs
    store = open_store(first.store)
    saes = store.saes()
    assert sorted(saes["sae_id"]) == sorted(KINDS)
    for col in ("fvu", "l0", "dead_frac", "ce_recovered"):
        assert saes[col].notna().all(), col
    assert (saes["fvu"] >= 0).all() and (saes["dead_frac"].between(0, 1)).all()
    size = SIZES["quick"]
    # TopK fires exactly k latents per token; BatchTopK k on average over the batch.
    topk = saes.set_index("sae_id").loc["topk"]
    assert topk["l0"] == pytest.approx(size.k, abs=1e-6)
    assert (saes["d_sae"] == size.d_sae).all()
    # The recorded paths let the app's prompt view find the model and SAE.
    cfg = json.loads(topk["config"])
    assert (first.store / cfg["model_path"] / "config.json").is_file()
    # Complexity K and importance written into the features table (through the store API).
    feats = pd.concat([store.features(sid, limit=size.d_sae)[0] for sid in KINDS])
    assert len(feats) == len(KINDS) * size.d_sae
    scored = feats.dropna(subset=["complexity"])
    assert 0 < len(scored) <= len(KINDS) * size.n_complexity
    assert scored["complexity"].between(0, 1).all()
    assert feats["importance"].notna().all() and (feats["importance"] >= 0).all()
    assert feats["importance"].max() > 0
    cx = store.complexity()
    assert set(cx["sae_id"]) == set(KINDS) and (cx["metric"] == "v_info").all()
    assert set(cx["layer"]) == {0, 1, 2}
    assert list(store.circuits()["circuit_id"]) == [first.circuit["circuit_id"]]
    assert first.circuit["n_nodes"] > 0
    assert np.isfinite(first.circuit["faithfulness"])
    assert first.complexity["topk"]["n_scored"] > 0
    assert len(store.attributions("tokens")) == size.n_attr


def test_second_run_is_cached_and_identical(demo_runs) -> None:
    _, first, second, t_first, t_second = demo_runs
    assert second.stages["cached"].iloc[1:].all()
    assert t_second < t_first
    pd.testing.assert_frame_equal(first.saes, second.saes)
    pd.testing.assert_frame_equal(first.accuracy, second.accuracy)
    assert first.circuit == second.circuit
    assert first.complexity == second.complexity
    assert first.report().split("\n\n")[:3] == second.report().split("\n\n")[:3]


def test_app_builds_on_the_demo_store(demo_runs) -> None:
    from featlab.app import create_app

    _, first, _, _, _ = demo_runs
    app = create_app(first.store)
    assert app.layout is not None or app.validation_layout is not None


def test_changed_settings_are_refused(demo_runs) -> None:
    out, _, _, _, _ = demo_runs
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file())
    with pytest.raises(RunConflict, match="seed: 0 -> 1"):
        run_demo(_quick(out, seed=1))  # another seed must not reuse seed 0's SAEs
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()) == before


def test_a_deleted_store_is_rebuilt(tmp_path) -> None:
    import shutil

    first = run_demo(_quick(tmp_path))
    shutil.rmtree(first.store)
    again = run_demo(_quick(tmp_path))
    cached = dict(zip(again.stages["stage"], again.stages["cached"], strict=True))
    assert cached["model"] and cached["saes"] and not cached["analyze"]
    assert not cached["circuit"] and not cached["complexity"]
    assert again.circuit == first.circuit
