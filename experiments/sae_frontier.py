"""Where featlab's SAE training defaults sit: a sweep over optimizer, learning rate, kind,
width and k, against sparsify's defaults at the same samples.

Each cell (data, kind, width, k) trains one SAE per (optimizer, lr multiple) on one pass over
the same batches (`train_saes`): "adam" (featlab's warm-up and linear decay), "signum"
(schedule-free sign descent, sparsify's optimizer) and "adam_sf" (schedule-free AdamW), each at
multiples of its own default lr (`featlab.sae.optim.default_lr`, which scales as
1 / sqrt(width)). On TopK cells sparsify's own SparseCoder is trained beside them as its
Trainer trains it (`_peers.train_sparsify`) when sparsify is installed (`make bench-peers`);
elsewhere its rows are absent and the run says so.

Data: "superposition" (ground-truth features, so MMCS is defined) and "mqar", the layer-0
residual of experiments/sae_variants.py's cached MQAR model (FVU only; the cell is skipped
when that model has not been trained here). FVU is measured on held-out rows. Each finished
cell is appended to ``cells.csv`` under ``--out``, so an interrupted sweep resumes at the next
cell.

    .venv-peers/bin/python experiments/sae_frontier.py [--quick] [--kinds topk,batchtopk]
        [--widths 1024,4096] [--ks 8,32] [--steps 400] [--out results/sae_frontier]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import installed, sparsify_lr  # noqa: E402
from _probe_common import comma_list, parse_args, print_tables, write_outputs  # noqa: E402
from _sae_common import endless_batches, heldout_fvu  # noqa: E402

NAME = "sae_frontier"
MQAR_MODEL, MQAR_HOOK = "runs/sae_variants_model", "blocks.0.hook_resid_post"
SIZES: dict[str, dict[str, Any]] = {
    "full": dict(d_in=64, n_features=512, l0=8.0, batch=1024, steps=400, n_eval=8192,
                 kinds="topk,batchtopk,matching_pursuit", widths="256,1024,4096", ks="8,32",
                 data="superposition,mqar", mults="0.5,1,2"),
    "quick": dict(d_in=16, n_features=48, l0=3.0, batch=128, steps=6, n_eval=256,
                  kinds="topk,matching_pursuit", widths="64", ks="4", data="superposition",
                  mults="1"),
}  # fmt: skip
# Adam's grid reaches down to Gao et al.'s 2e-4 at 2**14 latents (0.05 of featlab's default),
# featlab's default before this sweep
ADAM_MULTS = (0.05, 0.25, 0.5, 1.0, 2.0)
# the comma-separated flags and the type of their items
LISTS = {"kinds": str, "widths": int, "ks": int, "data": str, "mults": float}


def _flags(p: Any) -> None:
    for name, cast in LISTS.items():
        p.add_argument(f"--{name}", type=comma_list(cast), default=None,
                       help=f"comma-separated (default: the size's {name})")  # fmt: skip
    p.add_argument("--steps", type=int, default=None)


def make_data(name: str, n: int, size: dict[str, Any], seed: int) -> tuple[torch.Tensor, Any]:
    """Rows [n, d_in] and the true features (None for model activations)."""
    if name == "superposition":
        from featlab.datasets import make_superposition

        data = make_superposition(n, n_features=size["n_features"], d=size["d_in"],
                                  l0=size["l0"], seed=seed)  # fmt: skip
        return data.acts, data.features
    from featlab.models.io import load_model, load_task
    from featlab.runs.tasks import task_tokens
    from featlab.sae.activations import ActivationSource

    model = load_model(MQAR_MODEL)
    tokens = task_tokens(load_task(MQAR_MODEL), -(-n // model.cfg.n_ctx), seed)
    acts = ActivationSource(model, MQAR_HOOK, tokens).collect()[:n]
    return acts[torch.randperm(n, generator=torch.Generator().manual_seed(seed))], None


def arms(mults: list[float]) -> list[tuple[str, float]]:
    out = [("adam", m) for m in ADAM_MULTS]
    return out + [(opt, m) for opt in ("signum", "adam_sf") for m in mults]


def _scores(x_eval: torch.Tensor, x_hat: torch.Tensor, W_dec: torch.Tensor, feats: Any) -> dict:
    from featlab.sae.metrics import mmcs

    out = {"fvu": heldout_fvu(x_eval, x_hat)}
    out["mmcs"] = mmcs(W_dec, feats) if feats is not None else float("nan")
    return out


def run_cell(data: str, kind: str, width: int, k: int, size: dict, seed: int,
             mults: list[float]) -> list[dict]:  # fmt: skip
    from featlab.sae import train_saes
    from featlab.sae.optim import default_lr

    steps, batch = size["steps"], size["batch"]
    x, feats = make_data(data, steps * batch + size["n_eval"], size, seed)
    x, x_eval = x[: steps * batch], x[steps * batch :]
    grid = arms(mults)
    specs = [dict(kind=kind, d_sae=width, k=k, optimizer=opt, lr=m * default_lr(width, opt))
             for opt, m in grid]  # fmt: skip
    saes = train_saes(endless_batches(x, batch), specs, tokens=steps * batch, batch_size=batch,
                      seed=seed, progress=False)  # fmt: skip
    base = dict(data=data, kind=kind, d_sae=width, k=k, seed=seed, steps=steps)
    rows = []
    with torch.no_grad():
        for (opt, m), spec, sae in zip(grid, specs, saes, strict=True):
            fired = (sae.encode(x_eval) > 0).any(0).float().mean()
            rows.append({**base, "library": "featlab", "optimizer": opt, "lr_mult": m,
                         "lr": spec["lr"], "live_frac": float(fired),
                         **_scores(x_eval, sae(x_eval).x_hat, sae.W_dec, feats)})  # fmt: skip
    if kind == "topk" and installed("sparsify"):
        from _peers import sparsify_heldout, train_sparsify

        _, sp = train_sparsify(endless_batches(x, batch), x.shape[1], width, k, steps, seed)
        x_hat, live = sparsify_heldout(sp, x_eval)
        rows.append({**base, "library": "sparsify", "optimizer": "signum", "lr_mult": 1.0,
                     "lr": sparsify_lr(width), "live_frac": float(live.float().mean()),
                     **_scores(x_eval, x_hat, sp.W_dec, feats)})  # fmt: skip
    return rows


def _done(cells: pd.DataFrame, key: dict) -> bool:
    if cells.empty:
        return False
    hit = pd.Series(True, index=cells.index)
    for col, value in key.items():
        hit &= cells[col] == value
    return bool(hit.any())


def best_settings(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (data, kind, width, k): each optimizer's best lr multiple by FVU, with sparsify."""
    idx = cells.groupby(["data", "kind", "d_sae", "k", "library", "optimizer"])["fvu"].idxmin()
    best = cells.loc[idx].sort_values(["data", "kind", "d_sae", "k", "fvu"])
    cols = ["data", "kind", "d_sae", "k", "library", "optimizer", "lr_mult", "lr", "fvu",
            "mmcs", "live_frac"]  # fmt: skip
    return best[cols].reset_index(drop=True)


def figure(cells: pd.DataFrame) -> Any:
    import plotly.express as px

    df = cells.assign(arm=cells["library"] + " " + cells["optimizer"],
                      cell=cells["kind"] + " k" + cells["k"].astype(str))  # fmt: skip
    fig = px.line(df.sort_values("lr"), x="lr", y="fvu", color="arm", line_dash="data",
                  facet_col="cell", facet_row="d_sae", markers=True, log_x=True, log_y=True,
                  hover_data=["lr_mult", "mmcs", "live_frac"],
                  title="Held-out FVU against learning rate, per optimizer")  # fmt: skip
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__, argv, extra=_flags)
    torch.set_num_threads(args.threads)
    size = dict(SIZES["quick" if args.quick else "full"])
    for key, cast in LISTS.items():
        size[key] = getattr(args, key) or comma_list(cast)(size[key])
    if args.steps:
        size["steps"] = args.steps
    kinds, widths, ks, mults, datas = (size[key] for key in ("kinds", "widths", "ks", "mults",
                                                              "data"))
    if "mqar" in datas and not Path(MQAR_MODEL).is_dir():
        print(f"{NAME}: no model in {MQAR_MODEL}, so the mqar cells are skipped "
              "(run experiments/sae_variants.py first)", file=sys.stderr)  # fmt: skip
        datas.remove("mqar")
    if "topk" in kinds and not installed("sparsify"):
        print(f"{NAME}: sparsify is not installed, so its rows are skipped "
              "(make bench-peers, then run with .venv-peers/bin/python)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    done_path = args.out / "cells.csv"
    cells = pd.read_csv(done_path) if done_path.exists() and not args.quick else pd.DataFrame()
    for data in datas:
        for kind in kinds:
            for width in widths:
                for k in ks:
                    key = dict(data=data, kind=kind, d_sae=width, k=k, seed=args.seed,
                               steps=size["steps"])  # fmt: skip
                    if _done(cells, key):
                        continue
                    rows = run_cell(data, kind, width, k, size, args.seed, mults)
                    cells = pd.concat([cells, pd.DataFrame(rows)], ignore_index=True)
                    if not args.quick:
                        from featlab._atomic import atomic_path

                        with atomic_path(done_path) as tmp:
                            cells.to_csv(tmp, index=False)
                    print(f"{NAME}: {data} {kind} d_sae={width} k={k} done", file=sys.stderr)
    best = best_settings(cells)
    write_outputs(NAME, cells, figure(cells), args.out, extra_tables={"best": best})
    print_tables(best)
    return best


if __name__ == "__main__":
    main()
