"""The language-model demo over several seeds: model, SAEs and the quote-closing circuit.

Runs (or loads, when finished) `featlab demo --seed S` for each seed into `--runs`/seedS
and tabulates what docs/demo.md reports: the model's held-out loss and bits per byte, each
SAE's FVU, L0, dead fraction and CE-loss recovered, and the circuit's nodes, edges,
faithfulness and completeness, with the whole budget sweep (faithfulness on the held-out
prompts against nodes, one line per seed) as the figure.

Writes ``model.{csv,md}``, ``saes.{csv,md}``, ``circuit.{csv,md}``, ``sweep.{csv,md}`` and
``faithfulness.{html,png}`` under `--out`. Run::

    OMP_NUM_THREADS=2 python experiments/demo_seeds.py [--seeds 0,1,2] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probe_common import comma_list  # noqa: E402
from _sae_common import write_figure, write_table  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    from featlab.runs import DemoConfig, run_demo

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=comma_list(int), default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--seed", type=int, default=None, help="one seed (overrides --seeds)")
    ap.add_argument("--quick", action="store_true", help="the quick demo (smoke test)")
    ap.add_argument("--out", type=Path, default=Path("results/demo_seeds"))
    ap.add_argument("--runs", type=Path, default=None, help="demo folders (default OUT/runs)")
    args = ap.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else args.seeds
    runs = args.runs or args.out / "runs"
    models, saes, circuits, sweeps = [], [], [], []
    for seed in seeds:
        res = run_demo(DemoConfig(seed=seed, quick=args.quick, out=runs / f"seed{seed}",
                                  serve=False, progress=False))
        first_run = res.stages[~res.stages["cached"]]["seconds"].sum()
        models.append({"seed": seed, **res.model.iloc[0].to_dict()})
        saes.append(res.saes.drop(columns=["kind"]).assign(seed=seed))
        c = res.circuit
        circuits.append({"seed": seed, "nodes": c["n_nodes"], "edges": c["n_edges"],
                         "faithfulness (held-out)": c["faithfulness"],
                         "completeness (held-out)": c["completeness"],
                         "faithfulness (ranking prompts)": c["faithfulness_in_sample"],
                         "ranking prompts": c["n_prompts"], "held-out prompts": c["n_held_out"],
                         "m_clean": c["m_clean"],
                         "seconds (this run)": round(first_run, 1)})
        sweeps.append(pd.DataFrame(c["sweep"]).assign(seed=seed))
    tables = {"model": pd.DataFrame(models),
              "saes": pd.concat(saes, ignore_index=True)[["seed", "sae_id", "hook", "d_sae",
                                                          "fvu", "l0", "dead_frac",
                                                          "ce_recovered"]],
              "circuit": pd.DataFrame(circuits),
              "sweep": pd.concat(sweeps, ignore_index=True)}
    for name, table in tables.items():
        write_table(table, args.out, name)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "\n")
    import plotly.graph_objects as go

    sweep = tables["sweep"]
    fig = go.Figure([go.Scatter(x=g["n_nodes"], y=g["faithfulness"], mode="lines+markers",
                                name=f"seed {s}") for s, g in sweep.groupby("seed")])
    fig.add_hline(y=0.8, line_dash="dot", annotation_text="target 0.8")
    fig.update_layout(title="Quote-closing circuit: faithfulness vs nodes (held-out prompts)",
                      xaxis={"title": "nodes (all four sites)", "type": "log"},
                      yaxis={"title": "faithfulness"})
    note = write_figure(fig, args.out, "faithfulness")
    if note:
        print(note)
    return tables


if __name__ == "__main__":
    main()
