"""Does AuxK revive dead latents? And what does Feature Choice's capacity floor do?

Gao et al. (2024) report that AuxK (fit the residual from the top k_aux dead latents) nearly
removes dead latents. Two data sets: (a) rank-8 Gaussian data, x = z @ A with z ~ N(0, I_8)
and A a random 8 x 64 matrix (the reviewer's setting of issue #14, shrunk to fit the budget),
where far more latents exist than directions; (b) featlab's superposition data (more true
features than dimensions) at lr 1e-2, a regime where latents die from the optimisation (at
the default lr none died there: measured, every arm 0.000 dead); (c) the MQAR residual
stream of `experiments/sae_variants.py`'s cached model (512 latents, k 8), the controlled
AuxK on/off check of its TopK dead fraction (skipped when that model is not on disk).
Arms, every one with the run-scaled dead window (`featlab.sae.config.default_dead_tokens`,
the default):

- TopK and BatchTopK: no AuxK; AuxK unnormalised (featlab's old form) at 1/32; AuxK
  normalised as Gao et al. at 1/32 (the default) and at 1;
- Feature Choice with the capacity floor on / off, at zipf_s 0 and 1.

Every arm of one seed trains on the same batches (`train_saes`), so differences between arms
are paired over seeds. Table: dead fraction at the end (latents silent for the window), FVU,
L0, mean over seeds with a Student-t 95 % interval; claims "AuxK reduces dead latents"
(dead without AuxK minus dead with it) and "the floor prevents dead latents" with verdicts
(`experiments/_claims.py`). Figure: dead fraction over training, mean over seeds.

    python experiments/auxk_revival.py [--quick] [--seeds 0 1 2] [--out results/auxk_revival]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import claim_row, claims_table, mean_ci  # noqa: E402
from _probe_common import parse_args, print_tables, seeds_flag, write_outputs  # noqa: E402
from _sae_common import gao_lr  # noqa: E402

NAME = "auxk_revival"
SIZES: dict[str, dict[str, Any]] = {
    "full": dict(d_in=64, rank=8, sp=dict(n_features=256, d=32, l0=4.0), d_sae=1024,
                 sp_d_sae=512, sp_lr=1e-2, k=4, tokens=98_304, batch_size=512, seeds=(0, 1, 2),
                 every=8,
                 # (c) the MQAR residual of experiments/sae_variants.py (its cached model, its
                 # SAE width and k); left out when that model has not been trained here
                 mqar=dict(model="runs/sae_variants_model", hook="blocks.0.hook_resid_post",
                           d_sae=512, k=8)),
    "quick": dict(d_in=16, rank=4, sp=dict(n_features=32, d=8, l0=2.0), d_sae=32,
                  sp_d_sae=32, sp_lr=1e-2, k=2, tokens=1_024, batch_size=128, seeds=(0, 1),
                  every=2, mqar=None),
}  # fmt: skip
AUX_ARMS = {  # arm -> AuxK hyperparameters (TopK and BatchTopK)
    "no AuxK": dict(aux_coef=0.0),
    "AuxK old 1/32": dict(aux_coef=1 / 32, aux_normalize=False),
    "AuxK norm 1/32": dict(aux_coef=1 / 32, aux_normalize=True),
    "AuxK norm 1": dict(aux_coef=1.0, aux_normalize=True),
}
FC_ARMS = {
    f"floor {'on' if floor else 'off'}, zipf {s:g}": dict(floor=floor, zipf_s=s)
    for s in (0.0, 1.0) for floor in (True, False)
}  # fmt: skip


def make_data(name: str, size: dict[str, Any], seed: int) -> torch.Tensor:
    n = size["tokens"]
    if name == "rank8":
        g = torch.Generator().manual_seed(1000 + seed)
        mix = torch.randn(size["rank"], size["d_in"], generator=g)
        return torch.randn(n, size["rank"], generator=g) @ mix
    if name == "mqar":
        from featlab.models.io import load_model, load_task
        from featlab.runs.tasks import task_tokens
        from featlab.sae.activations import ActivationSource

        spec = size["mqar"]
        model = load_model(spec["model"])
        n_seq = -(-n // model.cfg.n_ctx)
        tokens = task_tokens(load_task(spec["model"]), n_seq, seed)
        return ActivationSource(model, spec["hook"], tokens).collect()[:n]
    from featlab.datasets.superposition import make_superposition

    return make_superposition(n, seed=seed, **size["sp"]).acts


def data_names(size: dict[str, Any]) -> list[str]:
    """rank8, superposition and, when its model is on disk, the MQAR residual."""
    spec = size.get("mqar")
    if spec is not None and not Path(spec["model"]).is_dir():
        print(f"auxk_revival: no model in {spec['model']}, so the MQAR case is skipped "
              "(run experiments/sae_variants.py first)", file=sys.stderr)
        spec = None
    return ["rank8", "superposition"] + (["mqar"] if spec is not None else [])


def specs(size: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = [(kind, arm, hp) for kind in ("topk", "batchtopk") for arm, hp in AUX_ARMS.items()]
    return out + [("feature_choice", arm, hp) for arm, hp in FC_ARMS.items()]


def run_one(data_name: str, size: dict[str, Any], seed: int) -> tuple[list[dict], list[dict]]:
    from featlab.sae import train_saes
    from featlab.sae.config import default_dead_tokens

    x = make_data(data_name, size, seed)
    arms = specs(size)
    window = default_dead_tokens(size["tokens"], size["batch_size"])
    curves: list[dict] = []

    def watch(step: int, saes: list, logs: list) -> None:
        if step % size["every"] and step != size["tokens"] // size["batch_size"] - 1:
            return
        for (kind, arm, _), sae, log in zip(arms, saes, logs, strict=True):
            dead = sae.tokens_since_fired >= min(window, int(sae.tokens_seen))
            curves.append(dict(data=data_name, kind=kind, arm=arm, seed=seed,
                               tokens=int(sae.tokens_seen), aux=log["aux"],
                               dead_frac=float(dead.float().mean())))  # fmt: skip

    t0 = time.perf_counter()
    if data_name == "rank8":
        d_sae, k, lr = size["d_sae"], size["k"], gao_lr(size["d_sae"])
    elif data_name == "superposition":
        d_sae, k, lr = size["sp_d_sae"], size["k"], size["sp_lr"]
    else:
        d_sae, k, lr = size["mqar"]["d_sae"], size["mqar"]["k"], gao_lr(size["mqar"]["d_sae"])
    saes = train_saes(
        x, [dict(kind=kind, d_sae=d_sae, k=k, lr=lr, **hp) for kind, _, hp in arms],
        tokens=size["tokens"], batch_size=size["batch_size"], seed=seed, progress=False,
        callback=watch,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    rows = []
    xe = x[: 4 * size["batch_size"]]
    for (kind, arm, _), sae in zip(arms, saes, strict=True):
        with torch.no_grad():
            out = sae(xe)
            fvu = float((xe - out.x_hat).pow(2).sum() / (xe - xe.mean(0)).pow(2).sum())
            l0 = float((out.z > 0).float().sum(-1).mean())
        rows.append(dict(data=data_name, kind=kind, arm=arm, seed=seed, window=window,
                         dead_frac=float((sae.tokens_since_fired >= window).float().mean()),
                         fvu=fvu, l0=l0, wall_s=wall / len(arms)))  # fmt: skip
    return rows, curves


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (data, kind, arm), g in runs.groupby(["data", "kind", "arm"], sort=False):
        m, lo, hi = mean_ci(g["dead_frac"])
        rows.append(dict(data=data, kind=kind, arm=arm, window=int(g["window"].iloc[0]),
                         n_seeds=len(g), dead_frac=m, dead_ci_low=lo, dead_ci_high=hi,
                         fvu=g["fvu"].mean(), l0=g["l0"].mean()))  # fmt: skip
    return pd.DataFrame(rows)


def claims(runs: pd.DataFrame) -> pd.DataFrame:
    def dead(data: str, kind: str, arm: str) -> pd.Series:
        sel = runs[(runs["data"] == data) & (runs["kind"] == kind) & (runs["arm"] == arm)]
        return sel.set_index("seed")["dead_frac"].sort_index()

    rows = []
    for data in runs["data"].unique():
        for kind in ("topk", "batchtopk"):
            base = dead(data, kind, "no AuxK")
            for arm in list(AUX_ARMS)[1:]:
                diff = base - dead(data, kind, arm)  # paired by seed; > 0: AuxK helped
                claim = f"AuxK reduces dead latents ({data}, {kind}, {arm})"
                rows.append(claim_row(claim, diff.values, "dead(no AuxK) - dead(AuxK), paired"))
        for s in (0, 1):
            off = dead(data, "feature_choice", f"floor off, zipf {s}")
            diff = off - dead(data, "feature_choice", f"floor on, zipf {s}")
            claim = f"the floor prevents dead latents ({data}, zipf {s})"
            rows.append(claim_row(claim, diff.values, "dead(floor off) - dead(floor on), paired"))
    return claims_table(rows)


def figure(curves: pd.DataFrame) -> Any:
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    palette = qualitative.Plotly + qualitative.D3  # one colour per arm in every panel
    colour = dict(zip([*AUX_ARMS, *FC_ARMS], palette, strict=False))

    datas = list(curves["data"].unique())
    kinds = ["topk", "batchtopk", "feature_choice"]
    curves = curves.sort_values(["data", "kind", "arm", "tokens"])
    fig = make_subplots(rows=len(datas), cols=3, shared_yaxes=True,
                        subplot_titles=[f"{d}: {k}" for d in datas for k in kinds])  # fmt: skip
    mean = curves.groupby(["data", "kind", "arm", "tokens"])["dead_frac"].mean()
    for r, data in enumerate(datas, 1):
        for c, kind in enumerate(kinds, 1):
            sub = mean.loc[data, kind]
            for arm in sub.index.get_level_values(0).unique():
                line = sub.loc[arm]
                show = r == 1 and c != 2  # each arm once in the legend
                fig.add_scatter(x=line.index, y=line.values, mode="lines", name=arm,
                                line_color=colour[arm], legendgroup=arm, showlegend=show,
                                row=r, col=c)  # fmt: skip
    fig.update_xaxes(title_text="training tokens")
    fig.update_yaxes(title_text="dead fraction (silent for the window)", col=1)
    fig.update_layout(height=360 * len(datas), width=1200)
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__, argv, extra=seeds_flag)
    torch.set_num_threads(args.threads)
    size = SIZES["quick" if args.quick else "full"]
    seeds = args.seeds if args.seeds is not None else list(size["seeds"])
    t0 = time.perf_counter()
    rows, curves = [], []
    for data in data_names(size):
        for seed in seeds:
            r, c = run_one(data, size, seed)
            rows += r
            curves += c
    runs, curve_df = pd.DataFrame(rows), pd.DataFrame(curves)
    table, chk = summarise(runs), claims(runs)
    write_outputs(NAME, table, figure(curve_df), args.out,
                  {"claims": chk, "runs": runs, "curves": curve_df})  # fmt: skip
    print_tables(table, chk)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f}s")
    return table


if __name__ == "__main__":
    # numba's OpenMP pool defaults to one thread per core; with torch at fewer threads the
    # idle pool threads busy-wait after each CPU kernel and made every later op ~100x slower
    # on a shared box (measured). Set only for a process of its own, before numba starts:
    # numba refuses a changed value once its pool runs, so an in-process caller (the tests)
    # must never see the environment change.
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=int, default=1)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads.parse_known_args()[0].threads))
    main()
