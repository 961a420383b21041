"""The demo's analysis stages: a circuit, attribution maps and complexity, into its store.

Each stage takes the model, its SAEs (store id -> SAE) and clean / corrupt prompt pairs
(`featlab.datasets.text_pairs.PromptPairs`, or MQAR's recall pairs in the same form) and
writes through the store's API (`Circuit.to_store`, `attributions_to_store`, `write_table`,
`update_features`). The demo's recipes (`demo_text`, `demo_mqar`) choose the prompts and
sizes; `featlab.runs.demo` decides when a stage has to run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from featlab.datasets.text_pairs import PromptPairs


def circuit(model: Any, saes: dict[str, Any], pairs: PromptPairs, store: Path, *,
            circuit_id: str, name: str, model_name: str, metric_name: str, ig_steps: int,
            budgets: Sequence[int], target: float | None, seed: int,
            held_out: PromptPairs | None = None,
            tokens: list[str] | None = None) -> dict[str, Any]:
    """The feature circuit of `pairs` over every SAE (IG node effects, patch ablation).

    Node budgets (per site, growing) are tried in turn and the first whose faithfulness
    (on the `held_out` pairs when given) reaches `target` is stored, else the last; see
    `find_circuit`. `tokens` (the first clean prompt, readable) label the circuit page's
    positions."""
    from featlab.circuits import find_circuit, logit_diff_metric

    def metric(p: PromptPairs) -> Any:
        return logit_diff_metric(p.pos, p.answer, p.other)

    found = find_circuit(
        model, saes, pairs.clean, metric(pairs), patch=pairs.corrupt, method="ig",
        steps=ig_steps, node_threshold=0.0, max_nodes=list(budgets),
        target_faithfulness=target, edge_threshold=0.0, ablation="patch",
        held_out=None if held_out is None else (held_out.clean, held_out.corrupt,
                                                metric(held_out)),
        metric_name=metric_name, seed=seed)
    found.meta.update({"n_prompts": len(pairs.clean), "tokens": tokens,
                       "n_held_out": 0 if held_out is None else len(held_out.clean)})
    found.to_store(store, circuit_id=circuit_id, name=name, model=model_name)
    m = found.meta
    return {"circuit_id": circuit_id, "n_nodes": len(found.nodes),
            "n_edges": len(found.edges), "m_clean": float(m["m_clean"]),
            "faithfulness": float(m["faithfulness"]),
            "completeness": float(m["completeness"]), "n_prompts": len(pairs.clean),
            "n_held_out": m["n_held_out"],
            "faithfulness_in_sample": float(m.get("faithfulness_in_sample",
                                                  m["faithfulness"])),
            "sweep": m.get("sweep", [])}


def attributions(model: Any, pairs: PromptPairs, store: Path, *, n: int, steps: int,
                 names: list[list[str]], target: str, id_prefix: str) -> dict[str, Any]:
    """Integrated-gradients maps of the answer logit over the input tokens of `n` clean
    prompts (`names`: their readable tokens)."""
    from featlab.circuits import attributions_to_store, logit_target, token_attribution

    few, ans = pairs.clean[:n], pairs.answer[:n]
    attr, gap = token_attribution(model, few, logit_target(pairs.pos, ans), method="ig",
                                  steps=steps)
    ids = attributions_to_store(store, attr, kind="tokens", method="ig", target=target,
                                tokens=names[:n], id_prefix=id_prefix)
    return {"n_maps": len(ids), "max_abs_gap": float(gap.abs().max())}


class _AnswerLogit(torch.nn.Module):
    """`importance` wants a model whose output is `[n, outputs]`; this one returns the
    answer's logit at `pos`, reading the answer from an extra last input column."""

    def __init__(self, model: Any, pos: int) -> None:
        super().__init__()
        self.model, self.pos = model, pos
        self.hook_dict = model.hook_dict

    def run_with_hooks(self, x: torch.Tensor, fwd_hooks: list) -> torch.Tensor:
        logits = self.model.run_with_hooks(x[:, :-1], fwd_hooks=fwd_hooks)
        return logits[torch.arange(len(x)), self.pos, x[:, -1]][:, None]


def complexity(model: Any, saes: dict[str, Any], pairs: PromptPairs, store: Path, *,
               layers: list[str], data: torch.Tensor, n_tokens: int, n_latents: int,
               seed: int) -> dict[str, Any]:
    """Per-latent complexity K (readability over `layers`, on `n_tokens` random tokens of
    `data`) for the `n_latents` most often active latents of each SAE, and every latent's
    importance E|z dy/dz| for the answer logit of `pairs` at their answer position."""
    from featlab.complexity import complexity_table, importance
    from featlab.store import update_features, write_table

    hooks = {sid: sae.cfg.hook_name for sid, sae in saes.items()}
    names = sorted(set(layers) | set(hooks.values()), key=list(model.hook_dict).index)
    with torch.no_grad():
        _, cache = model.run_with_cache(data, names_filter=names)
        _, at_prompt = model.run_with_cache(pairs.clean, names_filter=list(hooks.values()))
    g = torch.Generator().manual_seed(seed)
    n_all = data.numel()
    rows = torch.randperm(n_all, generator=g)[:n_tokens]
    acts = {name: cache[name].reshape(n_all, -1)[rows] for name in names}
    wrapped = _AnswerLogit(model, pairs.pos)
    x_imp = torch.cat([pairs.clean, pairs.answer[:, None]], dim=1)
    seq_len = pairs.clean.shape[1]
    summary = {}
    for sid, sae in saes.items():
        hook = hooks[sid]
        with torch.no_grad():
            z = sae.encode(acts[hook]).float()
            z_p = sae.encode(at_prompt[hook][:, pairs.pos]).float()
        # Score the most active latents: K is undefined for a latent that never fires.
        active = (z > 0).float().mean(0)
        order = torch.argsort(active, descending=True)
        feats = [int(f) for f in order[:n_latents] if active[f] > 0]
        table = complexity_table({k: acts[k].numpy() for k in layers},
                                 {str(f): z[:, f].numpy() for f in feats}, seed=seed)
        table["feature"] = table["feature"].astype(int)
        write_table(store, "complexity", pd.DataFrame({
            "sae_id": sid, "feature": table["feature"], "name": table["layer"],
            "layer": table["depth"], "metric": "v_info", "value": table["normalised"],
            "meta": [json.dumps({"i_v": float(v), "units": u})
                     for v, u in zip(table["i_v"], table["units"], strict=True)],
        }), name=sid)
        # Importance of every latent at the answer position: the decoder row placed there
        # in the flattened [pos * d_model] activation, with the latent's value as the code.
        d_pos = torch.zeros(sae.W_dec.shape[0], seq_len, sae.W_dec.shape[1])
        d_pos[:, pairs.pos] = sae.W_dec.detach()
        imp = importance(wrapped, x_imp, hook, d_pos.flatten(1).numpy(), codes=z_p.numpy(),
                         batch_size=256)
        k_by_feat = table.groupby("feature")["K"].first()
        update_features(store, sid, pd.DataFrame({
            "feature": range(len(imp)), "complexity": k_by_feat.reindex(range(len(imp))),
            "importance": imp["importance"].to_numpy(),
        }))  # NaN complexity: a latent not scored
        summary[sid] = {"n_scored": len(feats), "mean_K": float(k_by_feat.mean()),
                        "max_importance": float(imp["importance"].max())}
    return {"complexity": summary}
