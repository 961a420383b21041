"""Edges are exact on a linear model; faithfulness is 1 for the full model and 0 for the
empty circuit; a `Circuit` round-trips through JSON and the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from featlab.circuits import (
    Circuit,
    edge_effects,
    faithfulness,
    find_circuit,
    logit_metric,
    node_effects,
)
from featlab.circuits.splice import capture, decode, sites
from featlab.store import open_store

from .circuit_helpers import LinearSAE, TopKSAE

H0, H1 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"


def test_edges_equal_exact_on_linear_model(toy, tokens_pair) -> None:
    clean, patch = tokens_pair
    saes = {H0: LinearSAE(8, 6, H0, seed=1), H1: LinearSAE(8, 5, H1, seed=2)}
    metric = logit_metric(-1, 3)
    eff = node_effects(toy, saes, clean, metric, patch=patch)
    nodes = eff.frame()
    edges = edge_effects(toy, eff, clean, nodes)
    assert len(edges) == (6 * 7) * (6 * 6)  # every upstream node x every downstream node
    # exact: patch upstream node u, measure the change of downstream feature d, times dm/dd
    site = sites(toy, saes)
    states = capture(toy, site, clean)
    base = capture(toy, site, patch)
    grad_d = eff.grad_z[H1]
    for (fu, pu), (fd, pd_) in [((2, 1), (3, 4)), ((-1, 0), (0, 5)), ((5, 3), (4, 3))]:
        z, e = (t.clone() for t in states[H0])
        if fu < 0:
            e[:, pu] = base[H0][1][:, pu]
        else:
            z[:, pu, fu] = base[H0][0][:, pu, fu]

        def hook(x, hook, z=z, e=e):
            return decode(saes[H0], z) + e

        patched = {}

        def grab(x, hook, patched=patched):
            patched["z"] = saes[H1].encode(x)

        with torch.no_grad():
            toy.run_with_hooks(clean, fwd_hooks=[(H0, hook), (H1, grab)])
        exact = float(((patched["z"] - states[H1][0]) * grad_d)[:, pd_, fd].sum())
        src = f"{H0}/{'err' if fu < 0 else fu}@{pu}"
        got = edges[(edges.src == src) & (edges.dst == f"{H1}/{fd}@{pd_}")]["effect"]
        assert float(got.iloc[0]) == pytest.approx(exact, rel=1e-4, abs=1e-6)


def test_faithfulness_full_is_one_and_empty_is_zero(smooth_model) -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 13, (4, 8), generator=g)
    saes = {H0: TopKSAE(16, 24, 4, H0, seed=3), H1: TopKSAE(16, 20, 4, H1, seed=4)}
    metric = logit_metric(-1, 5)
    all_nodes = node_effects(smooth_model, saes, tokens, metric, baseline="mean").frame()
    for ablation in ("mean", "mean_all", "zero"):
        full = faithfulness(smooth_model, saes, tokens, metric, all_nodes, ablation=ablation)
        assert abs(full["m_full"] - full["m_empty"]) > 1e-3
        assert full["faithfulness"] == pytest.approx(1.0, abs=1e-5)
        assert full["completeness"] == pytest.approx(0.0, abs=1e-5)
        empty = faithfulness(smooth_model, saes, tokens, metric, all_nodes.iloc[:0],
                             ablation=ablation)
        assert empty["faithfulness"] == pytest.approx(0.0, abs=1e-5)
        assert empty["completeness"] == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():  # m_full is the unmodified model (splicing is exact)
        assert full["m_full"] == pytest.approx(float(smooth_model(tokens)[:, -1, 5].mean()),
                                               abs=1e-5)


def test_mean_ablation_is_the_batch_mean_at_each_position(toy, tokens_pair) -> None:
    from featlab.circuits.splice import baseline_states

    clean, _ = tokens_pair
    saes = {H0: LinearSAE(8, 6, H0, seed=1), H1: LinearSAE(8, 5, H1, seed=2)}
    site = sites(toy, saes)
    states = capture(toy, site, clean)
    per_pos = baseline_states(toy, site, states, None, "mean")
    overall = baseline_states(toy, site, states, None, "mean_all")
    for h, (z, e) in states.items():
        torch.testing.assert_close(per_pos[h][0], z.mean(0, keepdim=True).expand_as(z))
        torch.testing.assert_close(per_pos[h][1], e.mean(0, keepdim=True).expand_as(e))
        torch.testing.assert_close(overall[h][0], z.mean((0, 1), keepdim=True).expand_as(z))
        assert not torch.allclose(per_pos[h][0], overall[h][0])  # positions differ here
    with pytest.raises(ValueError, match="mean_all"):
        baseline_states(toy, site, states, None, "median")


def test_find_circuit_json_and_store_round_trip(smooth_model, tmp_path) -> None:
    g = torch.Generator().manual_seed(1)
    clean, patch = torch.randint(0, 13, (3, 8), generator=g), torch.randint(0, 13, (3, 8),
                                                                          generator=g)
    saes = {H0: TopKSAE(16, 24, 4, H0, seed=3), H1: TopKSAE(16, 20, 4, H1, seed=4)}
    circuit = find_circuit(smooth_model, saes, clean, logit_metric(-1, 5), patch=patch,
                           node_threshold=0.0, max_nodes=5, edge_threshold=0.0, ablation="patch")
    assert 0 < len(circuit.nodes) <= 10 and len(circuit.edges) > 0
    assert set(circuit.edges["src"]) <= set(circuit.nodes["node_id"])
    assert np.isfinite(circuit.meta["faithfulness"])
    back = Circuit.from_json(circuit.to_json(tmp_path / "c.json"))
    back = Circuit.from_json(tmp_path / "c.json")
    pd.testing.assert_frame_equal(back.nodes, circuit.nodes, check_dtype=False)
    cid = circuit.to_store(tmp_path / "store", name="test circuit")
    store = open_store(tmp_path / "store")
    row = store.circuits().iloc[0]
    assert row["circuit_id"] == cid and row["n_nodes"] == len(circuit.nodes)
    assert row["faithfulness"] == pytest.approx(circuit.meta["faithfulness"])
    nodes, edges = store.circuit(cid)
    assert set(nodes["node_id"]) == set(circuit.nodes["node_id"]) and len(edges) == len(
        circuit.edges)
    strict = circuit.threshold(node_threshold=float(circuit.nodes["effect"].abs().max()))
    assert len(strict.nodes) == 1 and strict.meta["node_threshold"] > 0


def test_budget_sweep_keeps_the_smallest_circuit_that_reaches_the_target(smooth_model) -> None:
    g = torch.Generator().manual_seed(2)
    clean, patch = torch.randint(0, 13, (4, 8), generator=g), torch.randint(0, 13, (4, 8),
                                                                          generator=g)
    saes = {H0: TopKSAE(16, 24, 4, H0, seed=3), H1: TopKSAE(16, 20, 4, H1, seed=4)}
    kw = dict(patch=patch, method="ig", steps=4, node_threshold=0.0, edge_threshold=0.0,
              ablation="patch")
    budgets = [1, 2, 4, 8, 16, 32, 200]
    every = [find_circuit(smooth_model, saes, clean, logit_metric(-1, 5), max_nodes=b, **kw)
             for b in budgets]
    faith = [c.meta["faithfulness"] for c in every]
    assert faith[-1] == pytest.approx(1.0, abs=1e-5)  # every node kept: the full model
    target = 0.5 * (min(faith) + 1.0)
    first = next(i for i, f in enumerate(faith) if f >= target)
    swept = find_circuit(smooth_model, saes, clean, logit_metric(-1, 5), max_nodes=budgets,
                         target_faithfulness=target, **kw)
    assert swept.meta["max_nodes"] == budgets[first]
    assert [r["max_nodes"] for r in swept.meta["sweep"]] == budgets[: first + 1]
    assert [r["faithfulness"] for r in swept.meta["sweep"]] == pytest.approx(faith[: first + 1])
    pd.testing.assert_frame_equal(swept.nodes, every[first].nodes)
    assert len(swept.edges) == len(every[first].edges)
    unreachable = find_circuit(smooth_model, saes, clean, logit_metric(-1, 5),
                               max_nodes=budgets[:2], target_faithfulness=float("inf"), **kw)
    assert unreachable.meta["max_nodes"] == budgets[1] and len(unreachable.meta["sweep"]) == 2
    with pytest.raises(ValueError, match="target_faithfulness"):
        find_circuit(smooth_model, saes, clean, logit_metric(-1, 5), max_nodes=[1, 2], **kw)


def test_faithfulness_on_held_out_prompts(smooth_model) -> None:
    g = torch.Generator().manual_seed(5)
    clean, patch, other, other_patch = (torch.randint(0, 13, (4, 8), generator=g)
                                        for _ in range(4))
    saes = {H0: TopKSAE(16, 24, 4, H0, seed=3), H1: TopKSAE(16, 20, 4, H1, seed=4)}
    metric = logit_metric(-1, 5)
    kw = dict(patch=patch, method="ig", steps=4, node_threshold=0.0, edge_threshold=0.0,
              ablation="patch", max_nodes=[2, 4, 8], target_faithfulness=0.9)
    ranked = find_circuit(smooth_model, saes, clean, metric, **kw)
    same = find_circuit(smooth_model, saes, clean, metric, held_out=(clean, patch, metric), **kw)
    assert same.meta["faithfulness"] == pytest.approx(ranked.meta["faithfulness"])
    assert same.meta["faithfulness_in_sample"] == pytest.approx(ranked.meta["faithfulness"])
    held = find_circuit(smooth_model, saes, clean, metric, held_out=(other, other_patch, metric),
                        **kw)
    direct = faithfulness(smooth_model, saes, other, metric, held.nodes, ablation="patch",
                          patch=other_patch)
    assert held.meta["faithfulness"] == pytest.approx(direct["faithfulness"])
    assert held.meta["faithfulness_on"] == "4 held-out prompts"
    assert held.meta["faithfulness"] != pytest.approx(held.meta["faithfulness_in_sample"])
    assert [r["faithfulness"] for r in held.meta["sweep"]][-1] == pytest.approx(
        held.meta["faithfulness"])
    with pytest.raises(ValueError, match="same length"):
        find_circuit(smooth_model, saes, clean, metric, held_out=(other[:, :6], None, metric),
                     **kw)


def test_hybrid_model_nodes_and_faithfulness() -> None:
    hybrid = pytest.importorskip("featlab.models.hybrid")
    from featlab.models.config import HybridConfig

    model = hybrid.HookedHybrid(HybridConfig(layers=("gdn", "attn"), d_model=16, n_heads=2,
                                             d_vocab=13, n_ctx=8)).eval()
    g = torch.Generator().manual_seed(0)
    clean, patch = torch.randint(0, 13, (2, 8), generator=g), torch.randint(0, 13, (2, 8),
                                                                          generator=g)
    saes = {H0: TopKSAE(16, 24, 4, H0, seed=3), H1: TopKSAE(16, 20, 4, H1, seed=4)}
    metric = logit_metric(-1, 5)
    eff = node_effects(model, saes, clean, metric, patch=patch, method="ig", steps=32)
    assert all(torch.isfinite(v).all() for v in eff.effect_z.values())
    nodes = eff.frame()
    full = faithfulness(model, saes, clean, metric, nodes, ablation="patch", patch=patch)
    assert full["faithfulness"] == pytest.approx(1.0, abs=1e-4)
    edges = edge_effects(model, eff, clean, nodes.groupby("hook").head(40))
    assert len(edges) and edges["effect"].notna().all()
