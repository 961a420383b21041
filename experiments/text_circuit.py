"""A feature circuit for closing a quote in a small language model trained on real text.

1. Train (or load from `--runs`) a gdn/attn/gdn/attn HookedHybrid on the offline corpus of
   Python's documentation (`featlab train-lm`), and a TopK SAE on the residual stream after
   every layer, on the model's training documents.
2. Prompts from the model's **held-out** documents: a stretch of text, then an opening
   token and a few words. Clean: the opening token is a double quote (``␣"``). Corrupt: the
   same prompt with a parenthesis (``␣(``) there, so what should close changes.
   Metric: logit(``"``) - logit(``)``) at the last position.
3. Node effects by integrated gradients at every site, edges between successive sites, and
   the faithfulness and completeness of the top-N nodes for a range of N (patch ablation).

Writes ``faithfulness.{csv,md,html,png}``, ``nodes.{csv,md}``, ``circuit.json`` and the
model's held-out loss under `--out`. Run::

    OMP_NUM_THREADS=2 python experiments/text_circuit.py [--quick] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import write_figure, write_table  # noqa: E402

SIZES = {
    # ~6 min for the model on 2 CPU cores (1.1 s a step), ~1 min per SAE
    "default": dict(layers=("gdn", "attn", "gdn", "attn"), d_model=128, n_heads=4,
                    vocab=4096, corpus=2_500_000, context=128, steps=300, batch=32,
                    d_sae=1024, k=16, sae_tokens=150_000, n_prompts=48, prefix=24, words=3,
                    ig_steps=8, budgets=(1, 2, 4, 8, 16, 32, 64, 128)),
    "quick": dict(layers=("gdn", "attn"), d_model=32, n_heads=2, vocab=512, corpus=150_000,
                  context=32, steps=20, batch=8, d_sae=64, k=4, sae_tokens=2_048,
                  n_prompts=6, prefix=8, words=2, ig_steps=2, budgets=(1, 4)),
}


def build(size: dict, seed: int, runs: Path, progress: bool):
    """The language model and one TopK SAE per layer, as runs under `runs` (trained once)."""
    from featlab.runs import SAERunConfig, TextModelConfig, train_sae_run, train_text_model

    lm = train_text_model(TextModelConfig(
        layers=size["layers"], d_model=size["d_model"], n_heads=size["n_heads"],
        vocab_size=size["vocab"], corpus_bytes=size["corpus"], context_size=size["context"],
        steps=size["steps"], batch_size=size["batch"], seed=seed, out=runs / "lm",
        progress=progress))
    saes = {}
    for layer in range(len(size["layers"])):
        hook = f"blocks.{layer}.hook_resid_post"
        run = train_sae_run(SAERunConfig(
            model=runs / "lm", hook=hook, kind="topk", width=size["d_sae"], k=size["k"],
            tokens=size["sae_tokens"], batch_size=256, seed=seed * 10 + layer,
            n_eval_seqs=16, out=runs / f"sae_l{layer}", progress=progress))
        saes[hook] = run.sae.eval()
        saes[hook].metrics = run.metrics
    return lm, saes


def main(argv: list[str] | None = None) -> pd.DataFrame:
    from featlab.circuits import find_circuit, logit_diff_metric
    from featlab.datasets.text_pairs import quote_pairs
    from featlab.models import load_task
    from featlab.runs.tasks import task_tokens

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/text_circuit"))
    ap.add_argument("--runs", type=Path, default=None, help="run folders (default OUT/runs)")
    args = ap.parse_args(argv)
    size = SIZES["quick" if args.quick else "default"]
    runs = args.runs or args.out / "runs"
    t0 = time.perf_counter()
    lm, saes = build(size, args.seed, runs, progress=not args.quick)
    model = lm.model
    model.task = load_task(runs / "lm")
    held = task_tokens(model.task, size["n_prompts"], args.seed + 101, model.tokenizer,
                       part="held_out")
    pairs = quote_pairs(model.tokenizer, held[: size["n_prompts"]], prefix=size["prefix"],
                        words=size["words"], seed=args.seed)
    clean, corrupt = pairs.clean, pairs.corrupt
    metric = logit_diff_metric(pairs.pos, pairs.answer, pairs.other)
    with torch.no_grad():
        m_clean = float(metric(model(clean)).mean())
        m_corrupt = float(metric(model(corrupt)).mean())
    rows, kept = [], None
    for n in size["budgets"]:
        circuit = find_circuit(model, saes, clean, metric, patch=corrupt, method="ig",
                               steps=size["ig_steps"], node_threshold=0.0, max_nodes=n,
                               edge_threshold=0.0, ablation="patch", seed=args.seed,
                               metric_name='logit(") - logit()) at the last token')
        m = circuit.meta
        rows.append({"nodes per site": n, "nodes": len(circuit.nodes),
                     "edges": len(circuit.edges), "faithfulness": m["faithfulness"],
                     "completeness": m["completeness"]})
        kept = circuit
    table = pd.DataFrame(rows)
    out = args.out
    write_table(table, out, "faithfulness")
    saes_table = pd.DataFrame([{"hook": h, **{k: s.metrics.get(k) for k in
                                              ("fvu", "l0", "dead_frac", "ce_loss_recovered")}}
                               for h, s in saes.items()])
    write_table(saes_table, out, "saes")
    if kept is not None:
        write_table(kept.nodes, out, "nodes")
        kept.to_json(out / "circuit.json")
    (out / "model.json").write_text(json.dumps({**lm.metrics, "m_clean": m_clean,
                                                "m_corrupt": m_corrupt,
                                                "n_prompts": len(clean)}, indent=2))
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=table["nodes"], y=table["faithfulness"], mode="lines+markers"))
    fig.update_layout(title="Quote-closing circuit: faithfulness vs nodes (held-out prompts)",
                      xaxis={"title": "nodes", "type": "log"}, yaxis={"title": "faithfulness"})
    note = write_figure(fig, out, "faithfulness")
    print(f"model: {lm.metrics}")
    print(f"metric clean {m_clean:.3f}, corrupt {m_corrupt:.3f}, {len(clean)} prompts")
    print(saes_table.to_string(index=False))
    print(table.to_string(index=False))
    print(f"{time.perf_counter() - t0:.0f} s")
    if note:
        print(note)
    return table


if __name__ == "__main__":
    main()
