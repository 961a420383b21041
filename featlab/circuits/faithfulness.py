"""Faithfulness and completeness of a circuit by ablation (Marks et al. 2024).

m(C): the metric when every node outside C is set to its ablation value ("mean" over the
clean batch at each position, "mean_all" over batch and positions, "zero", or a corrupted
run's "patch"; `splice.baseline_states`) while the nodes in C keep
the values the model computes. Faithfulness F(C) = (m(C) - m(empty)) / (m(full) - m(empty)),
so the full model scores 1 and the empty circuit 0; completeness reports F of the complement
(small when the circuit holds everything that matters).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from featlab.circuits.splice import (
    Metric,
    Site,
    baseline_states,
    capture,
    decode,
    encode,
    flat,
    reduce_metric,
    sites,
    upcast,
)


def node_masks(site_list: list[Site], nodes: pd.DataFrame, seq_len: int,
               d_sae: dict[str, int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Boolean (features `[pos, d_sae]`, error `[pos]`) masks of the nodes in `nodes`;
    pos -1 marks every position."""
    masks = {}
    for s in site_list:
        mz = torch.zeros(seq_len, d_sae[s.hook], dtype=torch.bool)
        me = torch.zeros(seq_len, dtype=torch.bool)
        rows = nodes[nodes["hook"] == s.hook] if len(nodes) else nodes
        for f, p in zip(rows.get("feature", []), rows.get("pos", []), strict=True):
            f, p = int(f), int(p)
            pos = slice(None) if p < 0 else p
            if f < 0:
                me[pos] = True
            else:
                mz[pos, f] = True
        masks[s.hook] = (mz, me)
    return masks


@torch.no_grad()
def ablated_metric(model: Any, site_list: list[Site], tokens: torch.Tensor, metric: Metric,
                   masks: dict, ablation: dict) -> float:
    """Metric with nodes outside `masks` replaced by `ablation` values at every site."""

    def make(site: Site):
        mz, me = masks[site.hook]
        az, ae = ablation[site.hook]

        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            xf = upcast(flat(x))
            z = encode(site.sae, xf)
            e = xf - decode(site.sae, z)
            z = torch.where(mz, z, az)
            e = torch.where(me.unsqueeze(-1), e, ae)
            return (decode(site.sae, z) + e).to(x.dtype).reshape(x.shape)

        return hook

    logits = model.run_with_hooks(tokens, fwd_hooks=[(s.hook, make(s)) for s in site_list])
    return float(reduce_metric(metric(logits)))


def faithfulness(
    model: Any,
    saes: Any,
    tokens: torch.Tensor,
    metric: Metric,
    nodes: pd.DataFrame,
    *,
    ablation: str = "mean",
    patch: torch.Tensor | None = None,
) -> dict[str, float]:
    """faithfulness, completeness and the four metric values (full, empty, circuit,
    complement) of the circuit given by `nodes` (columns hook, feature, pos)."""
    site_list = sites(model, saes)
    states = capture(model, site_list, tokens)
    abl = baseline_states(model, site_list, states, patch, ablation)
    d_sae = {h: z.shape[-1] for h, (z, _) in states.items()}
    seq_len = tokens.shape[1]
    all_nodes = node_masks(site_list, pd.DataFrame(), seq_len, d_sae)
    full = {h: (~mz, ~me) for h, (mz, me) in all_nodes.items()}
    circuit = node_masks(site_list, nodes, seq_len, d_sae)
    complement = {h: (~mz, ~me) for h, (mz, me) in circuit.items()}
    m_full = ablated_metric(model, site_list, tokens, metric, full, abl)
    m_empty = ablated_metric(model, site_list, tokens, metric, all_nodes, abl)
    m_c = ablated_metric(model, site_list, tokens, metric, circuit, abl)
    m_comp = ablated_metric(model, site_list, tokens, metric, complement, abl)
    denom = m_full - m_empty
    ratio = (lambda m: (m - m_empty) / denom) if abs(denom) > 1e-12 else (lambda m: float("nan"))
    return {"faithfulness": ratio(m_c), "completeness": ratio(m_comp), "m_full": m_full,
            "m_empty": m_empty, "m_circuit": m_c, "m_complement": m_comp}
