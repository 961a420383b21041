"""`Circuit`: node and edge DataFrames with thresholds, JSON export and storage; and
`find_circuit`, which computes nodes, edges and faithfulness in one call."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from featlab.circuits.edges import edge_effects
from featlab.circuits.faithfulness import faithfulness
from featlab.circuits.nodes import node_effects
from featlab.circuits.splice import Metric

NODE_COLUMNS = ["node_id", "hook", "layer", "sae_id", "feature", "pos", "kind", "effect"]
EDGE_COLUMNS = ["src", "dst", "effect"]
SWEEP_SCORES = ("faithfulness", "completeness", "faithfulness_in_sample",
                "completeness_in_sample")  # what meta["sweep"] records per budget


@dataclass
class Circuit:
    """nodes: NODE_COLUMNS (feature -1 = SAE error, pos -1 = summed over positions);
    edges: src, dst (node ids), effect. meta: method, metric name, thresholds, faithfulness."""

    nodes: pd.DataFrame
    edges: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def threshold(self, node_threshold: float | None = None,
                  edge_threshold: float | None = None, max_nodes: int | None = None) -> Circuit:
        """Keep nodes with |effect| >= node_threshold (at most `max_nodes` per hook, largest
        first) and edges between kept nodes with |effect| >= edge_threshold."""
        nodes = self.nodes
        if node_threshold is not None:
            nodes = nodes[nodes["effect"].abs() >= node_threshold]
        if max_nodes is not None:
            nodes = (nodes.assign(_a=nodes["effect"].abs())
                     .sort_values(["hook", "_a"], ascending=[True, False])
                     .groupby("hook", sort=False).head(max_nodes).drop(columns="_a"))
        ids = set(nodes["node_id"])
        edges = self.edges[self.edges["src"].isin(ids) & self.edges["dst"].isin(ids)]
        if edge_threshold is not None:
            edges = edges[edges["effect"].abs() >= edge_threshold]
        meta = {**self.meta}
        if node_threshold is not None:
            meta["node_threshold"] = node_threshold
        if edge_threshold is not None:
            meta["edge_threshold"] = edge_threshold
        return Circuit(nodes.reset_index(drop=True), edges.reset_index(drop=True), meta)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps({"meta": self.meta, "nodes": self.nodes.to_dict("records"),
                           "edges": self.edges.to_dict("records")}, indent=1, default=float)
        if path is not None:
            from featlab._atomic import atomic_write_bytes

            atomic_write_bytes(Path(path), text.encode())
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Circuit:
        p = Path(str(text_or_path))
        text = p.read_text() if len(str(text_or_path)) < 4096 and p.is_file() else str(text_or_path)
        data = json.loads(text)
        return cls(pd.DataFrame(data["nodes"], columns=NODE_COLUMNS),
                   pd.DataFrame(data["edges"], columns=EDGE_COLUMNS), data.get("meta", {}))

    def to_store(self, store: str | Path, circuit_id: str | None = None,
                 name: str | None = None, model: str | None = None) -> str:
        """Write nodes, edges and a `circuits` row into a feature store; returns the id."""
        from featlab.store.writer import now_iso, write_table

        cid = circuit_id or uuid.uuid4().hex[:12]
        m = self.meta
        write_table(store, "nodes", self.nodes.assign(circuit_id=cid)[["circuit_id",
                                                                       *NODE_COLUMNS]], name=cid)
        write_table(store, "edges", self.edges.assign(circuit_id=cid)[["circuit_id",
                                                                       *EDGE_COLUMNS]], name=cid)
        row = {
            "circuit_id": cid, "name": name or m.get("name", cid), "model": model or
            m.get("model"), "method": m.get("method"), "metric": m.get("metric"),
            "node_threshold": m.get("node_threshold"), "edge_threshold": m.get("edge_threshold"),
            "faithfulness": m.get("faithfulness"), "completeness": m.get("completeness"),
            "n_nodes": len(self.nodes), "n_edges": len(self.edges),
            "meta": json.dumps(m, default=str), "created_at": now_iso(),
        }
        write_table(store, "circuits", {k: [v] for k, v in row.items()}, name=cid)
        return cid


def find_circuit(
    model: Any,
    saes: Any,
    clean: torch.Tensor,
    metric: Metric,
    *,
    patch: torch.Tensor | None = None,
    baseline: str | None = None,
    method: str = "atp",
    steps: int = 10,
    per_position: bool = True,
    node_threshold: float = 0.1,
    edge_threshold: float = 0.01,
    max_nodes: int | Sequence[int] | None = 32,
    target_faithfulness: float | None = None,
    held_out: tuple[torch.Tensor, torch.Tensor | None, Metric] | None = None,
    edges: bool = True,
    ablation: str = "mean",
    metric_name: str = "metric",
    seed: int = 0,
) -> Circuit:
    """Sparse feature circuit: node effects, thresholded nodes (plus at most `max_nodes` per
    hook), edges between kept nodes of every two hooks joined by a direct path (see
    `edge_effects`), and faithfulness/completeness of the kept nodes by `ablation`.

    `max_nodes` may be a sequence of growing budgets, tried in turn until the faithfulness
    reaches `target_faithfulness` (the last is kept if none does): the smallest circuit that
    explains the behaviour. Node effects are computed once, edges only for the kept circuit,
    and ``meta["sweep"]`` records each budget's nodes, faithfulness and completeness.

    `held_out` = (clean, patch, metric) of other prompts of the same length: faithfulness and
    completeness (and so the budget chosen) are then measured on them, not on the prompts
    that ranked the nodes, which flatter a circuit fitted to them; the in-sample values stay
    in ``meta`` as ``faithfulness_in_sample`` / ``completeness_in_sample``."""
    budgets = list(max_nodes) if isinstance(max_nodes, Sequence) else [max_nodes]
    if not budgets:
        raise ValueError("max_nodes is an empty sequence; give at least one budget")
    if len(budgets) > 1 and target_faithfulness is None:
        raise ValueError("several max_nodes budgets need a target_faithfulness to choose by")
    if held_out is not None and held_out[0].shape[1:] != clean.shape[1:]:
        raise ValueError(f"held-out prompts of shape {tuple(held_out[0].shape)} do not match "
                         f"the ranking prompts {tuple(clean.shape)} past the batch: nodes "
                         "sit at positions, so both need the same length")
    torch.manual_seed(seed)
    eff = node_effects(model, saes, clean, metric, patch=patch, baseline=baseline,
                       method=method, steps=steps, per_position=per_position)
    full = Circuit(eff.frame(), pd.DataFrame(columns=EDGE_COLUMNS),
                   {"method": method, "steps": steps, "metric": metric_name,
                    "baseline": baseline or ("patch" if patch is not None else "zero"),
                    "m_clean": eff.m_clean, "per_position": per_position, "seed": seed})
    sweep = []
    for budget in budgets:
        kept = full.threshold(node_threshold=node_threshold, max_nodes=budget)
        scores = faithfulness(model, saes, clean, metric, kept.nodes, ablation=ablation,
                              patch=patch)
        if held_out is not None:
            h_clean, h_patch, h_metric = held_out
            scores = {**faithfulness(model, saes, h_clean, h_metric, kept.nodes,
                                     ablation=ablation, patch=h_patch),
                      **{f"{k}_in_sample": v for k, v in scores.items()}}
        row = {"max_nodes": budget, "n_nodes": len(kept.nodes)}
        row.update({k: scores[k] for k in SWEEP_SCORES if k in scores})
        sweep.append(row)
        if target_faithfulness is not None and row["faithfulness"] >= target_faithfulness:
            break
    if edges:
        kept.edges = edge_effects(model, eff, clean, kept.nodes)
        kept = kept.threshold(edge_threshold=edge_threshold)
    kept.meta.update({"ablation": ablation, "max_nodes": budget, **scores,
                      "faithfulness_on": "ranking prompts" if held_out is None else
                      f"{len(held_out[0])} held-out prompts"})
    if len(budgets) > 1 or target_faithfulness is not None:
        kept.meta.update({"sweep": sweep, "target_faithfulness": target_faithfulness})
    return kept
