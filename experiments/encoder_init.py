"""The encoder's initial norm: TopK-family SAEs whose encoder starts as the decoder's transpose
times ``encoder_init_norm`` (1: the plain transpose, featlab's old init; 0.1: Anthropic's
April 2024 "heuristic" init, which SAELens applies through ``decoder_init_norm``), against
sparsify's defaults, over several seeds.

Each (kind, width, k, seed) trains one SAE per norm on one pass over the same superposition
batches (`train_saes`, featlab's default optimizer and lr); on TopK cells sparsify's
SparseCoder trains beside them as its Trainer trains it (`_peers.train_sparsify`) when
sparsify is installed (`make bench-peers`). Scores: held-out FVU, MMCS against the true
features, the fraction of latents that fire on the held-out rows, and (featlab) the fraction
dead at the end of training by the run's own AuxK window. Finished cells are
appended to ``cells.csv`` under ``--out``, so an interrupted run resumes at the next cell.

``--regime surplus`` is the regime where latents die: twice as many latents as true features
(512 for 256), k 4, a short run at lr 1e-2 with a dead window of 8192 tokens and no decay
(tests/sae/test_topk.py's AuxK test). Each norm there also trains with AuxK off, which says
whether AuxK still revives latents at that norm.

    .venv-peers/bin/python experiments/encoder_init.py [--quick] [--regime superposition]
        [--kinds topk,batchtopk] [--widths 256,1024,4096] [--ks 8,32] [--norms 1,0.3,0.1]
        [--seeds 0 1 2] [--lr LR] [--out results/encoder_init]
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import mean_ci  # noqa: E402
from _peers import installed  # noqa: E402
from _probe_common import comma_list, parse_args, print_tables, seeds_flag, write_outputs  # noqa: E402
from _sae_common import endless_batches, heldout_fvu  # noqa: E402

NAME = "encoder_init"
SIZES: dict[str, dict[str, Any]] = {
    "superposition": dict(d_in=64, n_features=512, l0=8.0, batch=1024, steps=400, n_eval=8192,
                          kinds="topk,batchtopk", widths="1024", ks="8,32", norms="1,0.3,0.1",
                          seeds=(0, 1, 2), aux_off_arms=False, spec={}, train={}),
    "surplus": dict(d_in=32, n_features=256, l0=4.0, batch=256, steps=128, n_eval=4096,
                    kinds="topk", widths="512", ks="4", norms="1,0.3,0.1", seeds=(0, 1, 2),
                    aux_off_arms=True, spec=dict(lr=1e-2, dead_tokens=8192),
                    train=dict(decay_frac=0.0)),
    "quick": dict(d_in=16, n_features=48, l0=3.0, batch=128, steps=6, n_eval=256,
                  kinds="topk", widths="64", ks="4", norms="1,0.1", seeds=(0,),
                  aux_off_arms=True, spec={}, train={}),
}  # fmt: skip
KEYS = ["regime", "kind", "d_sae", "k", "seed", "steps"]
# the comma-separated flags and the type of their items
LISTS = {"kinds": str, "widths": int, "ks": int, "norms": float}


def _flags(p: Any) -> None:
    seeds_flag(p)
    p.add_argument("--regime", choices=["superposition", "surplus"], default="superposition",
                   help="the data and cells (see the module docstring)")
    for name, cast in LISTS.items():
        p.add_argument(f"--{name}", type=comma_list(cast), default=None,
                       help=f"comma-separated (default: the size's {name})")  # fmt: skip
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None,
                   help="featlab's lr for every arm (default: the regime's, else featlab's)")


def _scores(x_eval: torch.Tensor, x_hat: torch.Tensor, W_dec: torch.Tensor, feats: Any,
            live: torch.Tensor) -> dict:  # fmt: skip
    from featlab.sae.metrics import mmcs

    return dict(fvu=heldout_fvu(x_eval, x_hat), mmcs=mmcs(W_dec, feats),
                live_frac=float(live.float().mean()))  # fmt: skip


def run_cell(regime: str, kind: str, width: int, k: int, seed: int, size: dict,
             norms: list[float]) -> list:  # fmt: skip
    from featlab.datasets import make_superposition
    from featlab.sae import train_saes

    steps, batch = size["steps"], size["batch"]
    data = make_superposition(steps * batch + size["n_eval"], n_features=size["n_features"],
                              d=size["d_in"], l0=size["l0"], seed=seed)  # fmt: skip
    x, x_eval = data.acts[: steps * batch], data.acts[steps * batch :]
    arms = {f"featlab, encoder_init_norm {n:g}": dict(encoder_init_norm=n) for n in norms}
    if size["aux_off_arms"]:
        arms |= {f"featlab, encoder_init_norm {n:g}, AuxK off": dict(encoder_init_norm=n,
                                                                      aux_coef=0.0)
                 for n in norms}  # fmt: skip
    specs = [dict(kind=kind, d_sae=width, k=k, **size["spec"], **hp) for hp in arms.values()]
    saes = train_saes(endless_batches(x, batch), specs, tokens=steps * batch, batch_size=batch,
                      seed=seed, progress=False, **size["train"])  # fmt: skip
    base = dict(regime=regime, kind=kind, d_sae=width, k=k, seed=seed, steps=steps)
    rows = []
    with torch.no_grad():
        for arm, sae in zip(arms, saes, strict=True):
            live = (sae.encode(x_eval) > 0).any(0)
            rows.append({**base, "arm": arm,
                         **_scores(x_eval, sae(x_eval).x_hat, sae.W_dec, data.features, live),
                         "dead_frac": float(sae.dead_mask().float().mean())})  # fmt: skip
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
    cols = ["regime", "kind", "d_sae", "k", "arm"]
    for key, g in cells.groupby(cols, sort=False):
        row: dict[str, Any] = dict(zip(cols, key, strict=True))
        row["n_seeds"] = len(g)
        for col in ("fvu", "mmcs", "live_frac", "dead_frac"):
            m, lo, hi = mean_ci(g[col] if col in g else [])
            row[col], row[f"{col}_ci"] = m, (hi - lo) / 2
        out.append(row)
    return pd.DataFrame(out)


def figure(cells: pd.DataFrame) -> Any:
    import plotly.express as px

    df = cells.assign(cell=cells["regime"] + ", " + cells["kind"] + " "
                      + cells["d_sae"].astype(str) + " latents, k " + cells["k"].astype(str))
    return px.scatter(df, x="fvu", y="mmcs", color="arm", facet_col="cell", facet_col_wrap=3,
                      hover_data=["seed", "live_frac"],
                      title="The encoder's initial norm: held-out FVU and MMCS per seed")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__, argv, extra=_flags)
    torch.set_num_threads(args.threads)
    regime = args.regime
    size = dict(SIZES["quick" if args.quick else regime])
    for key, cast in LISTS.items():
        size[key] = getattr(args, key) or comma_list(cast)(size[key])
    if args.steps:
        size["steps"] = args.steps
    if args.lr is not None:
        size["spec"] = {**size["spec"], "lr": args.lr}
    norms = size["norms"]
    if "topk" in size["kinds"] and not installed("sparsify"):
        print(f"{NAME}: sparsify is not installed, so its rows are skipped "
              "(make bench-peers, then run with .venv-peers/bin/python)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    done_path = args.out / "cells.csv"
    cells = pd.read_csv(done_path) if done_path.exists() and not args.quick else pd.DataFrame()
    if not cells.empty and "regime" not in cells:  # written before --regime existed
        cells.insert(0, "regime", "superposition")
    grid = itertools.product(size["kinds"], size["widths"], size["ks"],
                             list(args.seeds or size["seeds"]))  # fmt: skip
    for kind, width, k, seed in grid:
        key = dict(regime=regime, kind=kind, d_sae=width, k=k, seed=seed, steps=size["steps"])
        if not cells.empty and (cells[KEYS] == pd.Series(key)).all(axis=1).any():
            continue
        rows = run_cell(regime, kind, width, k, seed, size, norms)
        cells = pd.concat([cells, pd.DataFrame(rows)], ignore_index=True)
        if not args.quick:
            from featlab._atomic import atomic_path

            with atomic_path(done_path) as tmp:
                cells.to_csv(tmp, index=False)
        print(f"{NAME}: {regime} {kind} d_sae={width} k={k} seed={seed} done", file=sys.stderr)
    table = summary(cells)
    write_outputs(NAME, table, figure(cells), args.out, extra_tables={f"{NAME}_runs": cells})
    print_tables(table)
    return table


if __name__ == "__main__":
    main()
