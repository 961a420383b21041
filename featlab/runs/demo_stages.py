"""The demo's analysis stages: a circuit, attribution maps and complexity, into its store.

Each stage takes the demo's model and SAEs and writes through the store's API
(`featlab.store.write_table`, `update_features`); `featlab.runs.demo` decides when a stage
has to run. `DemoSize` holds every size knob of the demo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from featlab.datasets.mqar import MQARConfig, recall_pairs, token_names

HOOK = "blocks.0.hook_resid_post"  # between the GDN and the attention layer
KINDS = ("topk", "batchtopk")


@dataclass(frozen=True)
class DemoSize:
    """Every size knob of the demo (model, SAEs, analysis, circuit, probes)."""

    d_model: int = 32
    seq_len: int = 32
    vocab_size: int = 32
    kv: int = 2
    n_train: int = 8_000
    steps: int = 600
    batch: int = 32
    d_sae: int = 256
    k: int = 8
    sae_tokens: int = 200_000
    n_analyze: int = 1_024  # sequences run through `analyze`
    n_examples: int = 10
    n_clean: int = 64  # clean/corrupt pairs for the circuit and importance
    ig_steps: int = 16
    max_nodes: int = 8
    n_attr: int = 8  # attribution maps stored
    attr_steps: int = 32
    n_complexity: int = 48  # latents per SAE given a complexity score
    complexity_tokens: int = 4_000


SIZES = {
    "default": DemoSize(),
    "quick": DemoSize(d_model=16, seq_len=16, vocab_size=16, kv=2, n_train=256, steps=5, batch=8,
                      d_sae=32, k=4, sae_tokens=4_096, n_analyze=32, n_examples=4, n_clean=8,
                      ig_steps=4, max_nodes=4, n_attr=4, attr_steps=8, n_complexity=6,
                      complexity_tokens=400),
}


def mqar_task(size: DemoSize) -> MQARConfig:
    return MQARConfig(vocab_size=size.vocab_size, seq_len=size.seq_len, num_kv_pairs=size.kv)


def circuit(model: Any, saes: dict[str, Any], size: DemoSize, seed: int,
            store: Path) -> dict[str, Any]:
    """The TopK SAE's feature circuit for recalling the queried value (IG node effects)."""
    from featlab.circuits import find_circuit, logit_diff_metric

    clean, corrupt, p, answer, other = recall_pairs(mqar_task(size), size.n_clean, seed)
    circuit = find_circuit(
        model, {"topk": saes["topk"]}, clean, logit_diff_metric(p, answer, other),
        patch=corrupt, method="ig", steps=size.ig_steps, node_threshold=0.0,
        max_nodes=size.max_nodes, edge_threshold=0.0, ablation="patch",
        metric_name="logit diff (clean value - corrupt value) at query", seed=seed,
    )
    cid = f"mqar-recall-seed{seed}"
    circuit.to_store(store, circuit_id=cid, name="MQAR value recall", model="gdn+attn")
    m = circuit.meta
    return {"circuit_id": cid, "n_nodes": len(circuit.nodes), "n_edges": len(circuit.edges),
            "m_clean": float(m["m_clean"]), "faithfulness": float(m["faithfulness"]),
            "completeness": float(m["completeness"])}


def attributions(model: Any, size: DemoSize, seed: int, store: Path) -> dict[str, Any]:
    """Integrated-gradients maps of the answer logit over the input tokens."""
    from featlab.circuits import attributions_to_store, logit_target, token_attribution

    mqar = mqar_task(size)
    clean, _, p, answer, _ = recall_pairs(mqar, size.n_clean, seed)
    few, ans = clean[: size.n_attr], answer[: size.n_attr]
    attr, gap = token_attribution(model, few, logit_target(p, ans), method="ig",
                                  steps=size.attr_steps)
    names = token_names(mqar)
    ids = attributions_to_store(store, attr, kind="tokens", method="ig",
                                target=f"answer logit at position {p}",
                                tokens=[[names[t] for t in row] for row in few.tolist()],
                                id_prefix=f"mqar-answer-ig-seed{seed}")
    return {"n_maps": len(ids), "max_abs_gap": float(gap.abs().max())}


class _AnswerLogit(torch.nn.Module):
    """`importance` wants a model whose output is `[n, outputs]`; this one returns the
    answer's logit at P, reading the answer from an extra last input column."""

    def __init__(self, model: Any, pos: int) -> None:
        super().__init__()
        self.model, self.pos = model, pos
        self.hook_dict = model.hook_dict

    def run_with_hooks(self, x: torch.Tensor, fwd_hooks: list) -> torch.Tensor:
        logits = self.model.run_with_hooks(x[:, :-1], fwd_hooks=fwd_hooks)
        return logits[torch.arange(len(x)), self.pos, x[:, -1]][:, None]


def complexity(model: Any, saes: dict[str, Any], size: DemoSize, seed: int,
               store: Path) -> dict[str, Any]:
    """Per-latent complexity K (readability over layers) and importance (|z dy/dz|)."""
    from featlab.complexity import complexity_table, importance
    from featlab.datasets import make_mqar
    from featlab.store import update_features, write_table

    mqar = mqar_task(size)
    layers = ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    data = make_mqar(mqar, max(size.complexity_tokens // size.seq_len + 1, 8), seed=seed + 17)
    with torch.no_grad():
        _, cache = model.run_with_cache(data.inputs, names_filter=layers)
    g = torch.Generator().manual_seed(seed)
    n_tok = data.inputs.numel()
    rows = torch.randperm(n_tok, generator=g)[: size.complexity_tokens]
    acts = {name: cache[name].reshape(n_tok, -1)[rows] for name in layers}
    clean, _, p, answer, _ = recall_pairs(mqar, size.n_clean, seed)
    wrapped = _AnswerLogit(model, p)
    x_imp = torch.cat([clean, answer[:, None]], dim=1)
    summary = {}
    for sid, sae in saes.items():
        with torch.no_grad():
            z = sae.encode(acts[HOOK]).float()
            z_p = sae.encode(cache_at(model, clean, HOOK)[:, p]).float()
        # Score the most active latents: K is undefined for a latent that never fires.
        active = (z > 0).float().mean(0)
        order = torch.argsort(active, descending=True)
        feats = [int(f) for f in order[: size.n_complexity] if active[f] > 0]
        table = complexity_table({k: v.numpy() for k, v in acts.items()},
                                 {str(f): z[:, f].numpy() for f in feats}, seed=seed)
        table["feature"] = table["feature"].astype(int)
        write_table(store, "complexity", pd.DataFrame({
            "sae_id": sid, "feature": table["feature"], "name": table["layer"],
            "layer": table["depth"], "metric": "v_info", "value": table["normalised"],
            "meta": [json.dumps({"i_v": float(v), "units": u})
                     for v, u in zip(table["i_v"], table["units"], strict=True)],
        }), name=sid)
        # Importance of every latent at P: the decoder row placed at P in the flattened
        # [pos * d_model] activation, with the latent's value as the code.
        d_pos = torch.zeros(sae.W_dec.shape[0], size.seq_len, sae.W_dec.shape[1])
        d_pos[:, p] = sae.W_dec.detach()
        imp = importance(wrapped, x_imp, HOOK, d_pos.flatten(1).numpy(), codes=z_p.numpy(),
                         batch_size=256)
        k_by_feat = table.groupby("feature")["K"].first()
        update_features(store, sid, pd.DataFrame({
            "feature": range(len(imp)), "complexity": k_by_feat.reindex(range(len(imp))),
            "importance": imp["importance"].to_numpy(),
        }))  # NaN complexity: a latent not scored
        summary[sid] = {"n_scored": len(feats), "mean_K": float(k_by_feat.mean()),
                        "max_importance": float(imp["importance"].max())}
    return {"complexity": summary}


def cache_at(model: Any, tokens: torch.Tensor, hook: str) -> torch.Tensor:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
    return cache[hook]
