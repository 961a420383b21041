"""The encoder's initial norm: TopK-family SAEs whose encoder starts as the decoder's transpose
times ``encoder_init_norm`` (1: the plain transpose, featlab's old init; 0.1: Anthropic's
April 2024 "heuristic" init, which SAELens applies through ``decoder_init_norm``), against
sparsify's defaults, over several seeds.

Each (kind, width, k, seed) trains one SAE per norm on one pass over the same superposition
batches (`train_saes`, featlab's default optimizer and lr); on TopK cells sparsify's
SparseCoder trains beside them as its Trainer trains it (`_peers.train_sparsify`) when
sparsify is installed (`make bench-peers`). Scores: held-out FVU, MMCS against the true
features, and the fraction of latents that fire on the held-out rows. Finished cells are
appended to ``cells.csv`` under ``--out``, so an interrupted run resumes at the next cell.

    .venv-peers/bin/python experiments/encoder_init.py [--quick] [--kinds topk,batchtopk]
        [--widths 256,1024,4096] [--ks 8,32] [--norms 1,0.1] [--seeds 0 1 2]
        [--out results/encoder_init]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import mean_ci  # noqa: E402
from _peers import installed  # noqa: E402
from _probe_common import parse_args, print_tables, seeds_flag, write_outputs  # noqa: E402
from _sae_common import endless_batches, heldout_fvu  # noqa: E402

NAME = "encoder_init"
SIZES: dict[str, dict[str, Any]] = {
    "full": dict(d_in=64, n_features=512, l0=8.0, batch=1024, steps=400, n_eval=8192,
                 kinds="topk,batchtopk", widths="1024", ks="8,32", norms="1,0.1",
                 seeds=(0, 1, 2)),
    "quick": dict(d_in=16, n_features=48, l0=3.0, batch=128, steps=6, n_eval=256,
                  kinds="topk", widths="64", ks="4", norms="1,0.1", seeds=(0,)),
}  # fmt: skip
KEYS = ["kind", "d_sae", "k", "seed", "steps"]


def _flags(p: Any) -> None:
    seeds_flag(p)
    for name in ("kinds", "widths", "ks", "norms"):
        p.add_argument(f"--{name}", default=None,
                       help=f"comma-separated (default: the size's {name})")  # fmt: skip
    p.add_argument("--steps", type=int, default=None)


def _scores(x_eval: torch.Tensor, x_hat: torch.Tensor, W_dec: torch.Tensor, feats: Any,
            live: torch.Tensor) -> dict:  # fmt: skip
    from featlab.sae.metrics import mmcs

    return dict(fvu=heldout_fvu(x_eval, x_hat), mmcs=mmcs(W_dec, feats),
                live_frac=float(live.float().mean()))  # fmt: skip


def run_cell(kind: str, width: int, k: int, seed: int, size: dict, norms: list[float]) -> list:
    from featlab.datasets import make_superposition
    from featlab.sae import train_saes

    steps, batch = size["steps"], size["batch"]
    data = make_superposition(steps * batch + size["n_eval"], n_features=size["n_features"],
                              d=size["d_in"], l0=size["l0"], seed=seed)  # fmt: skip
    x, x_eval = data.acts[: steps * batch], data.acts[steps * batch :]
    specs = [dict(kind=kind, d_sae=width, k=k, encoder_init_norm=n) for n in norms]
    saes = train_saes(endless_batches(x, batch), specs, tokens=steps * batch, batch_size=batch,
                      seed=seed, progress=False)  # fmt: skip
    base = dict(kind=kind, d_sae=width, k=k, seed=seed, steps=steps)
    rows = []
    with torch.no_grad():
        for norm, sae in zip(norms, saes, strict=True):
            live = (sae.encode(x_eval) > 0).any(0)
            rows.append({**base, "arm": f"featlab, encoder_init_norm {norm:g}",
                         **_scores(x_eval, sae(x_eval).x_hat, sae.W_dec, data.features, live)})
    if kind == "topk" and installed("sparsify"):
        from _peers import sparsify_heldout, train_sparsify

        _, sp = train_sparsify(endless_batches(x, batch), x.shape[1], width, k, steps, seed)
        x_hat, live = sparsify_heldout(sp, x_eval)
        rows.append({**base, "arm": "sparsify defaults",
                     **_scores(x_eval, x_hat, sp.W_dec, data.features, live)})
    return rows


def summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, width, k, arm): mean and 95 % interval half-width over seeds."""
    out = []
    for key, g in cells.groupby(["kind", "d_sae", "k", "arm"], sort=False):
        row: dict[str, Any] = dict(zip(["kind", "d_sae", "k", "arm"], key, strict=True))
        row["n_seeds"] = len(g)
        for col in ("fvu", "mmcs", "live_frac"):
            m, lo, hi = mean_ci(g[col])
            row[col], row[f"{col}_ci"] = m, (hi - lo) / 2
        out.append(row)
    return pd.DataFrame(out)


def figure(cells: pd.DataFrame) -> Any:
    import plotly.express as px

    df = cells.assign(cell=cells["kind"] + " " + cells["d_sae"].astype(str) + " latents, k "
                      + cells["k"].astype(str))  # fmt: skip
    return px.scatter(df, x="fvu", y="mmcs", color="arm", facet_col="cell", facet_col_wrap=3,
                      hover_data=["seed", "live_frac"],
                      title="The encoder's initial norm: held-out FVU and MMCS per seed")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__, argv, extra=_flags)
    torch.set_num_threads(args.threads)
    size = dict(SIZES["quick" if args.quick else "full"])
    for key in ("kinds", "widths", "ks", "norms"):
        size[key] = getattr(args, key) or size[key]
    if args.steps:
        size["steps"] = args.steps
    norms = [float(v) for v in size["norms"].split(",")]
    if "topk" in size["kinds"] and not installed("sparsify"):
        print(f"{NAME}: sparsify is not installed, so its rows are skipped "
              "(make bench-peers, then run with .venv-peers/bin/python)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    done_path = args.out / "cells.csv"
    cells = pd.read_csv(done_path) if done_path.exists() and not args.quick else pd.DataFrame()
    for kind in size["kinds"].split(","):
        for width in [int(v) for v in size["widths"].split(",")]:
            for k in [int(v) for v in size["ks"].split(",")]:
                for seed in list(args.seeds or size["seeds"]):
                    key = dict(kind=kind, d_sae=width, k=k, seed=seed, steps=size["steps"])
                    if not cells.empty and (cells[KEYS] == pd.Series(key)).all(axis=1).any():
                        continue
                    rows = run_cell(kind, width, k, seed, size, norms)
                    cells = pd.concat([cells, pd.DataFrame(rows)], ignore_index=True)
                    if not args.quick:
                        from featlab._atomic import atomic_path

                        with atomic_path(done_path) as tmp:
                            cells.to_csv(tmp, index=False)
                    print(f"{NAME}: {kind} d_sae={width} k={k} seed={seed} done", file=sys.stderr)
    table = summary(cells)
    write_outputs(NAME, table, figure(cells), args.out, extra_tables={f"{NAME}_runs": cells})
    print_tables(table)
    return table


if __name__ == "__main__":
    main()
