"""The sparse feature circuit that recalls a value in a trained MQAR hybrid.

1. Train (or load from `runs/`) a ["gdn", "attn"] HookedHybrid on MQAR.
2. Train a TopK SAE on the residual stream after each layer.
3. Clean inputs: examples whose first query sits right after the key-value block (position
   P). Corrupted inputs: the same sequences with the queried key's value replaced in the
   context, so the correct answer changes. Metric: logit(clean value) - logit(corrupt value)
   at P.
4. Node effects by integrated gradients and by attribution patching (patch baseline), edges
   between the two layers, and faithfulness of the top-N nodes for a range of N.

Writes `faithfulness.{csv,md}` (N nodes -> faithfulness per method), `nodes.{csv,md}` (the
feature nodes at the query position), `positions.{csv,md}` (share of |effect| per hook and
position), `circuit.json`, a store with the circuit, and
`faithfulness.{html,png}`. Run: `python experiments/mqar_circuit.py [--quick] [--seed 0]`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from featlab._tables import markdown_table
from featlab.datasets.mqar import recall_pairs, token_names

H0, H1 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"

SIZES = {
    # trains in ~1.5 min on 2 CPU cores to 100% held-out recall
    "default": dict(d_model=32, seq_len=32, vocab_size=32, kv=2, n_train=8_000, steps=600,
                    batch=32, d_sae=256, k=8, sae_tokens=200_000, n_clean=64,
                    budgets=(1, 2, 4, 8, 16, 32, 64, 128, 256), ig_steps=16),
    "quick": dict(d_model=16, seq_len=16, vocab_size=16, kv=2, n_train=256, steps=5, batch=8,
                  d_sae=32, k=4, sae_tokens=4_096, n_clean=8, budgets=(1, 4, 16), ig_steps=4),
}


def build(size: dict, seed: int, runs: Path, progress: bool):
    """The model and one TopK SAE per hook, as runs under `runs` (trained once, then loaded:
    `featlab.runs` refuses a folder that holds other settings)."""
    from featlab.datasets import MQARConfig
    from featlab.runs import MQARModelConfig, SAERunConfig, train_mqar_model, train_sae_run

    run = train_mqar_model(MQARModelConfig(
        layers=("gdn", "attn"), d_model=size["d_model"], n_heads=2,
        vocab_size=size["vocab_size"], seq_len=size["seq_len"], num_kv_pairs=size["kv"],
        n_train=size["n_train"], steps=size["steps"], batch_size=size["batch"], seed=seed,
        out=runs / "model", n_test=500, progress=progress,
    ))
    saes = {}
    for i, hook in enumerate((H0, H1)):  # distinct seeds, so the SAEs share no init
        sae_run = train_sae_run(SAERunConfig(
            model=runs / "model", hook=hook, kind="topk", width=size["d_sae"], k=size["k"],
            tokens=size["sae_tokens"], batch_size=256, seed=seed * 10 + i,
            out=runs / f"sae_{hook.replace('.', '_')}", progress=progress,
        ))
        saes[hook] = sae_run.sae.eval()
    mqar = MQARConfig(vocab_size=size["vocab_size"], seq_len=size["seq_len"],
                      num_kv_pairs=size["kv"])
    return run.model.eval(), saes, mqar, run.table


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/mqar_circuit"))
    ap.add_argument("--runs", type=Path, default=None, help="model/SAE cache (default runs/...)")
    args = ap.parse_args(argv)
    size = SIZES["quick" if args.quick else "default"]
    runs = args.runs or (args.out / "runs" if args.quick else Path("runs/mqar_circuit"))
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    from featlab.circuits import faithfulness, find_circuit, logit_diff_metric, node_effects

    model, saes, mqar, acc = build(size, args.seed, runs, progress=not args.quick)
    clean, corrupt, p, answer, other = recall_pairs(mqar, size["n_clean"], args.seed)
    metric = logit_diff_metric(p, answer, other)

    rows = []
    effects = {}
    for method in ("ig", "atp"):
        eff = node_effects(model, saes, clean, metric, patch=corrupt, method=method,
                           steps=size["ig_steps"])
        frame = eff.frame()
        effects[method] = frame
        ranked = frame.reindex(frame["effect"].abs().sort_values(ascending=False).index)
        for n in size["budgets"]:
            scores = faithfulness(model, saes, clean, metric, ranked.head(n), ablation="patch",
                                  patch=corrupt)
            rows.append({"method": method, "n_nodes": n, **{k: round(v, 4) for k, v in
                                                           scores.items()}})
    table = pd.DataFrame(rows)
    circuit = find_circuit(model, saes, clean, metric, patch=corrupt, method="ig",
                           steps=size["ig_steps"], node_threshold=0.0,
                           max_nodes=8, edge_threshold=0.0, ablation="patch",
                           metric_name="logit diff (clean value - corrupt value) at query",
                           seed=args.seed)
    ig = effects["ig"]
    at_query = ig[(ig["pos"] == p)].copy()
    at_query = at_query.reindex(at_query["effect"].abs().sort_values(ascending=False).index)
    nodes = at_query.head(10)[["node_id", "hook", "feature", "kind", "effect"]]
    # where the effect lives: total |effect| per hook and position (P = query)
    mass = ig.assign(abs_effect=ig["effect"].abs()).groupby(["hook", "pos"], as_index=False)[
        "abs_effect"].sum()
    # full precision in the CSV: shares rounded one by one can sum past 1
    mass["share"] = mass["abs_effect"] / mass["abs_effect"].sum()
    mass["role"] = [("key" if q % 2 == 0 else "value") if q < p else ("query" if q == p else
                    "after query") for q in mass["pos"]]
    mass = mass.sort_values("abs_effect", ascending=False).head(8)

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "faithfulness.csv", index=False)
    (args.out / "faithfulness.md").write_text(markdown_table(table))
    nodes.to_csv(args.out / "nodes.csv", index=False)
    (args.out / "nodes.md").write_text(markdown_table(nodes))
    mass.to_csv(args.out / "positions.csv", index=False)
    (args.out / "positions.md").write_text(markdown_table(mass))
    circuit.to_json(args.out / "circuit.json")
    circuit.to_store(args.out / "store", circuit_id=f"mqar-seed{args.seed}",
                     name="MQAR value recall", model="gdn+attn")
    fill_store(model, saes, mqar, clean, answer, p, args.out / "store", size, args.seed)
    _figure(table, args.out)
    print(acc.to_string(index=False))
    print(f"query position P={p}; clean metric {circuit.meta['m_clean']:.3f}; "
          f"circuit (<= 8 nodes/hook, {len(circuit.nodes)} nodes, {len(circuit.edges)} edges) "
          f"faithfulness {circuit.meta['faithfulness']:.3f}, "
          f"completeness {circuit.meta['completeness']:.3f}")
    print(table.to_string(index=False))
    print(nodes.to_string(index=False))
    print(mass.to_string(index=False))
    print(f"done in {time.perf_counter() - t0:.1f} s; files in {args.out}")
    return table


def fill_store(model, saes, mqar, clean, answer, p, store, size, seed) -> None:
    """Feature tables of both SAEs and token attribution maps of the answer logit, so the
    app can browse the circuit's features next to it."""
    from featlab.circuits import attributions_to_store, logit_target, token_attribution
    from featlab.datasets import make_mqar
    from featlab.store import analyze

    names = token_names(mqar)
    data = make_mqar(mqar, size["n_clean"] * 16, seed=seed + 13)
    analyze(model, saes, data.inputs, store, batch_size=32, n_examples=10, seed=seed,
            vocab=names, progress=False, model_name="mqar gdn+attn")
    few = clean[:8]
    attr, _ = token_attribution(model, few, logit_target(p, answer[:8]), method="ig",
                                steps=32)
    attributions_to_store(store, attr, kind="tokens", method="ig",
                          target=f"answer logit at position {p}",
                          tokens=[[names[t] for t in row] for row in few.tolist()],
                          id_prefix=f"mqar-answer-ig-seed{seed}")


def _figure(table: pd.DataFrame, out: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for method, df in table.groupby("method"):
        fig.add_trace(go.Scatter(x=df["n_nodes"], y=df["faithfulness"], mode="lines+markers",
                                 name=f"{method} ranking"))
    fig.update_layout(title="MQAR recall circuit: faithfulness of the top-N nodes",
                      xaxis_title="nodes kept (top |effect|)", yaxis_title="faithfulness",
                      xaxis_type="log", template="plotly_white")
    fig.write_html(out / "faithfulness.html", include_plotlyjs="cdn")
    try:
        fig.write_image(out / "faithfulness.png", width=800, height=500)
    except Exception as exc:  # noqa: BLE001 - kaleido needs a browser; say so, keep going
        print(f"PNG export failed ({type(exc).__name__}: {exc}); HTML written")


if __name__ == "__main__":
    main()
