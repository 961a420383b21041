"""featlab vs EleutherAI's sparsify, TopK SAE training on CPU, each at its own defaults.

Both train on the same superposition batches in the same order, in one process: featlab's
`train_sae` with nothing but width, k, tokens and batch given; sparsify's SparseCoder as its
`Trainer` trains it with its defaults (`_peers.train_sparsify`: FVU loss, schedule-free
Signum at 5e-3 / sqrt(d_sae / 2**14), b_dec at the batch mean). A third arm is featlab's
previous default (Adam at Gao et al.'s 2e-4 / sqrt(d_sae / 2**14), the encoder started at
the decoder's plain transpose), so the table shows the before and after; a fourth is
featlab's defaults with AuxK off (`aux_coef=0`), as sparsify's defaults have it
(`auxk_alpha=0`), which prices featlab's AuxK in the same process. Runs alternate
(featlab, ..., sparsify, featlab, ...) and each arm's best of ``--repeats`` wall-clock times
per seed is kept: the VM's speed drifts by up to 30 % within minutes, and a slow spell
lengthens a run but never shortens one. Every repeat trains the same weights (same seed, same
batches), so FVU and MMCS come from the last.
FVU is measured on held-out rows with one formula for all; MMCS is the mean over true
features of the best cosine with a decoder row.

Needs sparsify: run in the venv `make bench-peers` builds.

    .venv-peers/bin/python experiments/bench_vs_sparsify.py [--quick] [--widths 1024]
        [--ks 8] [--steps 800] [--seeds 0 1 2] [--repeats 2] [--out results/bench_vs_sparsify]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import mean_ci  # noqa: E402
from _peers import require, train_sparsify  # noqa: E402
from _probe_common import (  # noqa: E402
    comma_list,
    parse_args,
    positive_int,
    print_tables,
    seeds_flag,
    write_outputs,
)
from _sae_common import endless_batches, gao_lr, heldout_fvu  # noqa: E402

NAME = "bench_vs_sparsify"
SIZES: dict[str, dict[str, Any]] = {
    "full": dict(d_in=64, n_features=512, l0=8.0, batch=1024, steps=800, n_eval=8192,
                 widths="1024", ks="8", seeds=(0, 1, 2), repeats=2),
    "quick": dict(d_in=16, n_features=48, l0=3.0, batch=128, steps=4, n_eval=256,
                  widths="64", ks="4", seeds=(0,), repeats=1),
}  # fmt: skip
ARMS = ("featlab", "featlab, AuxK off", "featlab 0.1 (Adam 2e-4)", "sparsify")
_ARM_KWARGS: dict[str, Any] = {
    "featlab": lambda width: {},
    "featlab, AuxK off": lambda width: dict(aux_coef=0.0),
    "featlab 0.1 (Adam 2e-4)": lambda width: dict(optimizer="adam", lr=gao_lr(width),
                                                  encoder_init_norm=1.0),
}  # fmt: skip


def _flags(p: Any) -> None:
    seeds_flag(p)
    p.add_argument("--widths", type=comma_list(int), default=None,
                   help="comma-separated latents (default: 1024)")
    p.add_argument("--ks", type=comma_list(int), default=None,
                   help="comma-separated k (default: 8)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed runs per arm and seed, the best kept (default: 2)")


def train_arm(arm: str, x: torch.Tensor, width: int, k: int, size: dict, seed: int) -> tuple:
    """(seconds, reconstruct, W_dec) of one arm."""
    steps, batch = size["steps"], size["batch"]
    if arm == "sparsify":
        seconds, sae = train_sparsify(endless_batches(x, batch), x.shape[1], width, k, steps, seed)
        return seconds, lambda xe: sae(xe).sae_out, sae.W_dec
    from featlab.sae import train_sae

    kwargs = _ARM_KWARGS[arm](width)
    t0 = time.perf_counter()
    sae = train_sae(endless_batches(x, batch), kind="topk", d_sae=width, k=k, tokens=steps * batch,
                    batch_size=batch, seed=seed, progress=False, **kwargs)  # fmt: skip
    return time.perf_counter() - t0, lambda xe: sae(xe).x_hat, sae.W_dec


def bench(size: dict, widths: list[int], ks: list[int], seeds: list[int]) -> pd.DataFrame:
    from featlab.datasets import make_superposition
    from featlab.sae.metrics import mmcs

    rows = []
    n = size["steps"] * size["batch"]
    for seed in seeds:
        data = make_superposition(n + size["n_eval"], n_features=size["n_features"],
                                  d=size["d_in"], l0=size["l0"], seed=seed)  # fmt: skip
        x, x_eval = data.acts[:n], data.acts[n:]
        for width in widths:
            for k in ks:
                for arm in ARMS:  # untimed: first-call compilation and allocation
                    train_arm(arm, x, width, k, {**size, "steps": 2}, seed)
                best: dict[str, float] = {}
                for rep in range(size["repeats"]):
                    for arm in ARMS:
                        seconds, recon, W_dec = train_arm(arm, x, width, k, size, seed)
                        best[arm] = min(seconds, best.get(arm, seconds))
                        if rep < size["repeats"] - 1:
                            continue
                        with torch.no_grad():
                            rows.append(dict(arm=arm, d_sae=width, k=k, seed=seed,
                                             seconds=best[arm], samples_per_s=n / best[arm],
                                             fvu=heldout_fvu(x_eval, recon(x_eval)),
                                             mmcs=mmcs(W_dec, data.features)))  # fmt: skip
    return pd.DataFrame(rows)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm and cell: mean and 95 % interval over seeds; speed as a ratio to sparsify's
    run of the same seed."""
    ref = runs[runs["arm"] == "sparsify"].set_index(["d_sae", "k", "seed"])["samples_per_s"]
    runs = runs.assign(speed_vs_sparsify=[
        r.samples_per_s / ref[(r.d_sae, r.k, r.seed)] for r in runs.itertuples()])
    out = []
    for (arm, width, k), g in runs.groupby(["arm", "d_sae", "k"], sort=False):
        row: dict[str, Any] = dict(arm=arm, d_sae=width, k=k, n_seeds=len(g))
        for col in ("samples_per_s", "speed_vs_sparsify", "fvu", "mmcs"):
            m, lo, hi = mean_ci(g[col])
            row[col], row[f"{col}_ci"] = m, (hi - lo) / 2
        out.append(row)
    return pd.DataFrame(out)


def figure(runs: pd.DataFrame) -> Any:
    import plotly.express as px

    return px.scatter(runs, x="samples_per_s", y="fvu", color="arm", symbol="d_sae",
                      hover_data=["seed", "mmcs", "k"], log_x=True,
                      title="TopK on CPU: held-out FVU against training throughput")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(NAME, __doc__, argv, extra=_flags)
    torch.set_num_threads(args.threads)
    require("sparsify")
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.steps:
        size["steps"] = args.steps
    if args.repeats:
        size["repeats"] = args.repeats
    widths = args.widths or comma_list(int)(size["widths"])
    ks = args.ks or comma_list(int)(size["ks"])
    runs = bench(size, widths, ks, list(args.seeds or size["seeds"]))
    table = summary(runs)
    write_outputs(NAME, table, figure(runs), args.out, extra_tables={f"{NAME}_runs": runs})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU, "
          f"{size['steps']} steps of {size['batch']}")  # fmt: skip
    print_tables(table)
    return table


if __name__ == "__main__":
    main()
