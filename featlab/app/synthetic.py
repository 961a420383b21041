"""A synthetic store with every table filled: for the app's tests, its benchmark and for
trying the app without training anything.

The numbers are random but shaped like `analyze` output (log-normal densities, examples whose
peak is the window's largest activation, log-spaced histograms, a layered circuit), written
through the store's own writer so the reader sees exactly the real format.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa


@dataclass(frozen=True)
class SyntheticStoreConfig:
    n_features: int = 64
    n_saes: int = 2
    d_in: int = 32
    vocab_size: int = 64
    n_top: int = 8  # top-activation examples per feature
    n_bands: int = 3  # quantile bands
    per_band: int = 3  # examples per band
    window: int = 12  # tokens per example
    n_logits: int = 8  # per side
    n_neighbours: int = 5  # per kind
    hist_bins: int = 20
    n_layers: int = 3
    circuit_positions: int = 6
    circuit_nodes_per_cell: int = 4
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _lists(values: np.ndarray, width: int, typ: pa.DataType) -> pa.Array:
    """[n, width] array -> a pyarrow list array of n lists (fast: no Python loop)."""
    n = values.shape[0]
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=typ))


def _sae_tables(cfg: SyntheticStoreConfig, sae_id: str, other: str | None,
                rng: np.random.Generator) -> dict[str, pa.Table | pd.DataFrame]:
    f = cfg.n_features
    feats = np.arange(f, dtype=np.int64)
    dead = rng.random(f) < 0.05
    density = np.where(dead, 0.0, 10 ** rng.normal(-2.5, 0.8, f).clip(-6, -0.3))
    max_act = np.where(dead, 0.0, rng.gamma(3.0, 2.0, f))
    edges = np.linspace(-3, 2, cfg.hist_bins + 1)
    hist = rng.poisson(50, (f, cfg.hist_bins)) * (~dead)[:, None]
    xy = rng.normal(size=(f, 2))
    top_token = rng.integers(0, cfg.vocab_size, f)
    features = pa.table({
        "sae_id": pa.array([sae_id] * f), "feature": feats, "density": density,
        "max_act": max_act, "mean_act": max_act * 0.4, "dead": dead,
        "hist": _lists(hist.astype(np.int64), cfg.hist_bins, pa.int64()),
        "x": xy[:, 0], "y": xy[:, 1], "top_token": pa.array([f"t{t}" for t in top_token]),
        "complexity": rng.random(f), "importance": rng.gamma(1.0, 0.1, f),
    })
    # Examples: top windows then per-band samples, rows sorted by feature (row-group pruning).
    bands = ["top"] * cfg.n_top + [f"q{b}" for b in range(cfg.n_bands) for _ in range(cfg.per_band)]
    ranks = list(range(cfg.n_top)) + [r for _ in range(cfg.n_bands) for r in range(cfg.per_band)]
    per = len(bands)
    n = f * per
    w = cfg.window
    acts = rng.random((n, w)).astype(np.float32) * (rng.random((n, w)) < 0.3)
    peak_pos = rng.integers(0, w, n)
    scale = np.repeat(np.maximum(max_act, 1e-3), per)
    band_scale = np.tile(np.array([1.0] * cfg.n_top + [(b + 1) / (cfg.n_bands + 1)
                                                       for b in range(cfg.n_bands)
                                                       for _ in range(cfg.per_band)]), f)
    peak = (scale * band_scale * (1 - 0.02 * np.tile(np.array(ranks), f))).astype(np.float32)
    acts = acts * peak[:, None] * 0.8
    acts[np.arange(n), peak_pos] = peak
    token_ids = rng.integers(0, cfg.vocab_size, (n, w))
    examples = pa.table({
        "sae_id": pa.array([sae_id] * n), "feature": np.repeat(feats, per),
        "band": pa.array(bands * f), "rank": np.tile(np.array(ranks, dtype=np.int64), f),
        "seq": rng.integers(0, 1000, n), "pos": peak_pos.astype(np.int64) + 5,
        "start": np.full(n, 5, dtype=np.int64), "peak": peak.astype(np.float64),
        "peak_token": token_ids[np.arange(n), peak_pos],
        "token_ids": _lists(token_ids.astype(np.int64), w, pa.int64()),
        "acts": _lists(acts, w, pa.float32()),
    })
    k = cfg.n_logits
    logit_vals = np.sort(rng.normal(size=(f, 2 * k)), axis=1)
    logits = pa.table({
        "sae_id": pa.array([sae_id] * f * 2 * k), "feature": np.repeat(feats, 2 * k),
        "side": pa.array((["top"] * k + ["bottom"] * k) * f),
        "rank": np.tile(np.r_[np.arange(k), np.arange(k)], f).astype(np.int64),
        "token_id": rng.integers(0, cfg.vocab_size, f * 2 * k),
        "value": np.concatenate([logit_vals[:, ::-1][:, :k], logit_vals[:, :k]], axis=1).ravel(),
    })
    kinds = ["decoder_cosine", "act_correlation"] + (["cross_sae"] if other else [])
    m = cfg.n_neighbours
    rows = f * len(kinds) * m
    kind_col = np.tile(np.repeat(np.array(kinds), m), f)
    neighbours = pa.table({
        "sae_id": pa.array([sae_id] * rows), "feature": np.repeat(feats, len(kinds) * m),
        "kind": pa.array(kind_col.tolist()),
        "rank": np.tile(np.arange(m, dtype=np.int64), f * len(kinds)),
        "other_sae": pa.array(np.where(kind_col == "cross_sae", other or sae_id, sae_id).tolist()),
        "other_feature": rng.integers(0, f, rows),
        "value": np.tile(np.linspace(0.9, 0.5, m), f * len(kinds)) * rng.uniform(0.8, 1.0, rows),
    })
    explained = rng.choice(f, size=max(1, f // 4), replace=False)
    explanations = pd.DataFrame({
        "sae_id": sae_id, "feature": np.sort(explained),
        "text": [f"fires on token t{top_token[i]}" for i in np.sort(explained)],
        "source": "auto", "updated_at": "2026-01-01T00:00:00+00:00",
    })
    layer = int(sae_id.split("-")[0][1:]) if sae_id.startswith("L") else 0
    saes = pd.DataFrame([{
        "sae_id": sae_id, "model": "synthetic-hybrid", "hook": f"blocks.{layer}.hook_resid_post",
        "kind": "topk" if layer % 2 == 0 else "batchtopk", "d_in": cfg.d_in, "d_sae": f, "k": 8,
        "l0": 8.0, "fvu": float(rng.uniform(0.05, 0.3)), "dead_frac": float(dead.mean()),
        "ce_recovered": float(rng.uniform(0.8, 0.99)), "n_tokens": 100_000,
        "hist_edges": edges.tolist(), "config": cfg.to_json(), "created_at": "2026-01-01",
    }])
    return {"saes": saes, "features": features, "examples": examples, "logits": logits,
            "neighbours": neighbours, "explanations": explanations}


def _circuit_tables(cfg: SyntheticStoreConfig, sae_ids: list[str],
                    rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    rows = []
    for layer in range(cfg.n_layers):
        sae_id = sae_ids[layer % len(sae_ids)]
        for pos in range(cfg.circuit_positions):
            for j in range(cfg.circuit_nodes_per_cell):
                feat = int(rng.integers(0, cfg.n_features)) if j else -1
                rows.append({"circuit_id": "c0", "node_id": f"L{layer}/p{pos}/{feat}#{j}",
                             "hook": f"blocks.{layer}.hook_resid_post", "layer": layer,
                             "sae_id": sae_id, "feature": feat, "pos": pos,
                             "kind": "error" if feat < 0 else "feature",
                             "effect": float(rng.normal() * (1 + layer))})
    nodes = pd.DataFrame(rows)
    edges = []
    for layer in range(cfg.n_layers - 1):
        up = nodes[nodes["layer"] == layer]["node_id"].tolist()
        down = nodes[nodes["layer"] == layer + 1]["node_id"].tolist()
        for a in up:
            for b in rng.choice(down, size=min(3, len(down)), replace=False):
                edges.append({"circuit_id": "c0", "src": a, "dst": str(b),
                              "effect": float(rng.normal())})
    circuits = pd.DataFrame([{
        "circuit_id": "c0", "name": "synthetic recall circuit", "model": "synthetic-hybrid",
        "method": "attribution_patching", "metric": "logit_diff", "node_threshold": 0.0,
        "edge_threshold": 0.0, "faithfulness": 0.9, "completeness": 0.8,
        "n_nodes": len(nodes), "n_edges": len(edges), "created_at": "2026-01-01",
        # the prompt's tokens label the positions, as `demo_stages.circuit` records them
        "meta": json.dumps({"tokens": [f" t{p}" for p in range(cfg.circuit_positions)]}),
    }])
    return {"circuits": circuits, "nodes": nodes, "edges": pd.DataFrame(edges)}


def write_demo_tables(store: str | Path, sae_ids: list[str], n_features: int,
                      config: SyntheticStoreConfig | None = None) -> None:
    """Add synthetic circuit, attribution, complexity and shortcut tables to a store whose
    SAEs (`sae_ids`, each with `n_features` latents) are already there: lets the app's
    circuit, attribution and complexity pages be tried on a store from a real `analyze`."""
    from featlab.store import write_table

    cfg = dataclasses.replace(config or SyntheticStoreConfig(), n_features=n_features)
    rng = np.random.default_rng(cfg.seed + 1)
    for table, data in _circuit_tables(cfg, sae_ids, rng).items():
        write_table(store, table, data, name="c0")
    toks = [f"t{int(t)}" for t in rng.integers(0, cfg.vocab_size, 10)]
    img = rng.normal(size=(8, 8))
    img[0, 0] = 50.0  # one outlier, so clipping has something to do
    write_table(store, "attributions", pd.DataFrame([
        {"id": "a-tokens", "kind": "tokens", "method": "integrated_gradients",
         "target": "logit t3", "example": 0, "tokens": toks, "shape": [len(toks)],
         "values": rng.normal(size=len(toks)).tolist(), "meta": "{}", "created_at": "1"},
        {"id": "a-image", "kind": "image", "method": "grad_x_input", "target": "class 1",
         "example": 1, "tokens": [], "shape": [8, 8], "values": img.ravel().tolist(),
         "meta": "{}", "created_at": "2"},
    ]), name="demo")
    n = min(n_features, 30)
    for sae_id in sae_ids:
        write_table(store, "complexity", pd.DataFrame({
            "sae_id": sae_id, "feature": np.repeat(np.arange(n), cfg.n_layers),
            "name": "", "layer": np.tile(np.arange(cfg.n_layers), n),
            "metric": "v_info", "value": rng.random(n * cfg.n_layers), "meta": "{}",
        }), name=sae_id)
    write_table(store, "shortcut", pd.DataFrame([
        {"run_id": f"run{i}", "model": "mlp", "rho_core": 0.9, "rho_short": 0.95 - 0.05 * i,
         "alpha_core": 1.0, "alpha_short": 1.0, "eta_core": i, "eta_short": 0,
         "accuracy": 0.9, "reliance": 0.5 - 0.2 * i, "bayes_reliance": 0.1,
         "shortcut_bias": 0.4 - 0.2 * i, "meta": "{}"} for i in range(3)
    ]), name="demo")


def build_synthetic_store(path: str | Path, config: SyntheticStoreConfig | None = None) -> Path:
    """Write a complete synthetic store at `path` (a new or empty directory) and return it."""
    from featlab.store import init_store, write_table

    cfg = config or SyntheticStoreConfig()
    rng = np.random.default_rng(cfg.seed)
    root = init_store(path)
    ids = [f"L{i}-{'topk' if i % 2 == 0 else 'batchtopk'}" for i in range(cfg.n_saes)]
    for i, sae_id in enumerate(ids):
        other = ids[(i + 1) % len(ids)] if len(ids) > 1 else None
        for table, data in _sae_tables(cfg, sae_id, other, rng).items():
            write_table(root, table, data, name=f"{sae_id}")
    write_table(root, "vocab", pd.DataFrame({"token_id": np.arange(cfg.vocab_size),
                                             "token": [f"t{i}" for i in range(cfg.vocab_size)]}))
    write_demo_tables(root, ids, cfg.n_features, cfg)
    return root
