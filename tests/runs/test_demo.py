"""`run_demo(quick=True)` on both tasks: every stage writes its output, a rerun is cached and
identical."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from featlab.errors import RunConflict
from featlab.runs import demo_mqar, demo_text
from featlab.runs.demo import DemoConfig, run_demo

RECIPES = {"text": demo_text, "mqar": demo_mqar}


def _quick(out, task: str = "text", **kw) -> DemoConfig:
    return DemoConfig(task=task, out=out, quick=True, serve=False, progress=False, **kw)


def _ids(task: str) -> list[str]:
    size = RECIPES[task].SIZES["quick"]
    return sorted(demo_text.hooks(size)) if task == "text" else sorted(demo_mqar.KINDS)


@pytest.fixture(scope="module", params=list(RECIPES))
def demo_runs(request, tmp_path_factory: pytest.TempPathFactory):
    task = request.param
    out = tmp_path_factory.mktemp(f"demo_{task}")
    t0 = time.perf_counter()
    first = run_demo(_quick(out, task))
    t1 = time.perf_counter()
    second = run_demo(_quick(out, task))
    t2 = time.perf_counter()
    return out, first, second, t1 - t0, t2 - t1, task


def test_every_stage_wrote_its_output(demo_runs) -> None:
    out, first, _, _, _, task = demo_runs
    assert (out / "model" / "config.json").is_file()
    for sid in _ids(task):
        assert (out / "saes" / sid / "sae" / "cfg.json").is_file()
    stages = json.loads((out / "stages.json").read_text())
    assert {"circuit", "attributions", "complexity"} <= set(stages)
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    assert list(first.stages["stage"]) == [
        "imports", "model", "saes", "analyze", "circuit", "attributions", "complexity"]
    assert not first.stages["cached"].iloc[1:].any()


def test_store_holds_saes_features_circuit_attributions_complexity(demo_runs) -> None:
    from featlab.store import open_store

    _, first, _, _, _, task = demo_runs
    ids = _ids(task)
    store = open_store(first.store)
    saes = store.saes()
    assert sorted(saes["sae_id"]) == ids
    for col in ("fvu", "l0", "dead_frac", "ce_recovered"):
        assert saes[col].notna().all(), col
    assert (saes["fvu"] >= 0).all() and (saes["dead_frac"].between(0, 1)).all()
    size = RECIPES[task].SIZES["quick"]
    # TopK fires at most k latents per token (ReLU after the top-k zeroes a negative one,
    # which a trained SAE rarely keeps); BatchTopK k on average over the batch.
    topk = saes.set_index("kind").loc[["topk"]]
    l0 = topk["l0"].to_numpy()
    assert (l0 <= size.k + 1e-6).all() and (l0 >= 0.9 * size.k).all(), l0
    assert (saes["d_sae"] == size.d_sae).all()
    # The recorded paths let the app's prompt view find the model and SAE.
    cfg = json.loads(topk["config"].iloc[0])
    assert (first.store / cfg["model_path"] / "config.json").is_file()
    # Complexity K and importance written into the features table (through the store API).
    feats = pd.concat([store.features(sid, limit=size.d_sae)[0] for sid in ids])
    assert len(feats) == len(ids) * size.d_sae
    scored = feats.dropna(subset=["complexity"])
    assert 0 < len(scored) <= len(ids) * size.n_complexity
    assert scored["complexity"].between(0, 1).all()
    assert feats["importance"].notna().all() and (feats["importance"] >= 0).all()
    assert feats["importance"].max() > 0
    cx = store.complexity()
    assert set(cx["sae_id"]) == set(ids) and (cx["metric"] == "v_info").all()
    assert set(cx["layer"]) == {0, 1, 2}
    assert list(store.circuits()["circuit_id"]) == [first.circuit["circuit_id"]]
    assert first.circuit["n_nodes"] > 0
    assert np.isfinite(first.circuit["faithfulness"])
    assert first.complexity[ids[0]]["n_scored"] > 0
    assert len(store.attributions("tokens")) == size.n_attr


@pytest.mark.parametrize("demo_runs", ["text"], indirect=True)
def test_text_demo_reads_as_text_and_its_circuit_spans_every_site(demo_runs) -> None:
    """The language-model demo: examples are decoded text, the circuit has edges between
    the residual streams of successive layers, and the budget sweep is recorded."""
    from featlab.store import open_store

    first = demo_runs[1]
    store = open_store(first.store)
    card = store.feature_card("resid0", int(store.features("resid0", limit=1)[0]["feature"][0]))
    tokens = list(card.examples["tokens"].iloc[0])
    assert any(c.isalpha() for c in "".join(tokens))
    assert not any(t.startswith("K") and t[1:].isdigit() for t in tokens)  # no MQAR symbols
    nodes, edges = store.circuit(first.circuit["circuit_id"])
    assert set(nodes["hook"]) == set(demo_text.hooks(RECIPES["text"].SIZES["quick"]).values())
    src_layer = edges["src"].map(nodes.set_index("node_id")["layer"])
    dst_layer = edges["dst"].map(nodes.set_index("node_id")["layer"])
    assert len(edges) > 0 and (dst_layer > src_layer).all()
    size = RECIPES["text"].SIZES["quick"]
    # faithfulness is measured on prompts from other windows than those that ranked the nodes
    assert first.circuit["n_held_out"] == size.n_held_out
    assert first.circuit["n_prompts"] == size.n_prompts
    assert "faithfulness_in_sample" in first.circuit
    sweep = first.circuit["sweep"]
    assert [r["max_nodes"] for r in sweep] == list(RECIPES["text"].SIZES["quick"].budgets[
        : len(sweep)])
    meta = json.loads(store.circuits()["meta"].iloc[0])
    assert len(meta["tokens"]) == RECIPES["text"].SIZES["quick"].prefix + 1 + \
        RECIPES["text"].SIZES["quick"].words  # the first clean prompt, to label positions


def test_second_run_is_cached_and_identical(demo_runs) -> None:
    _, first, second, t_first, t_second, _ = demo_runs
    assert second.stages["cached"].iloc[1:].all()
    assert t_second < t_first
    pd.testing.assert_frame_equal(first.saes, second.saes)
    pd.testing.assert_frame_equal(first.model, second.model)
    assert first.circuit == second.circuit
    assert first.complexity == second.complexity
    assert first.report().split("\n\n")[:3] == second.report().split("\n\n")[:3]


def test_app_builds_on_the_demo_store(demo_runs) -> None:
    from featlab.app import create_app

    first = demo_runs[1]
    app = create_app(first.store)
    assert app.layout is not None or app.validation_layout is not None


def test_changed_settings_are_refused(demo_runs) -> None:
    out, task = demo_runs[0], demo_runs[5]
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file())
    with pytest.raises(RunConflict, match="seed: 0 -> 1"):
        run_demo(_quick(out, task, seed=1))  # another seed must not reuse seed 0's SAEs
    other = "mqar" if task == "text" else "text"
    with pytest.raises(RunConflict, match=f"task: {task} -> {other}"):
        run_demo(_quick(out, other))
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()) == before


def test_default_folders_differ_by_task() -> None:
    assert DemoConfig().folder.as_posix() == "runs/demo"
    assert DemoConfig(task="mqar").folder.as_posix() == "runs/demo_mqar"
    assert DemoConfig(task="mqar", out="x").folder.as_posix() == "x"


def test_a_deleted_store_is_rebuilt(tmp_path) -> None:
    import shutil

    first = run_demo(_quick(tmp_path, "mqar"))
    shutil.rmtree(first.store)
    again = run_demo(_quick(tmp_path, "mqar"))
    cached = dict(zip(again.stages["stage"], again.stages["cached"], strict=True))
    assert cached["model"] and cached["saes"] and not cached["analyze"]
    assert not cached["circuit"] and not cached["complexity"]
    assert again.circuit == first.circuit
