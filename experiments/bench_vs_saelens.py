"""featlab vs SAELens SAE *training* on CPU: TopK and Matching Pursuit, side by side.

Both libraries train on the same activations (superposition data, `[n, d_in]`), with the same
width, k, batch, learning rate, constant LR schedule and number of steps, in one process.
SAELens runs its own training classes (`TopKTrainingSAE`, `MatchingPursuitTrainingSAE`) through
its own `SAETrainer.fit` loop fed by an iterator of batches; featlab runs `train_sae`. Runs
alternate (featlab, SAELens, featlab, ...) and the best of `--repeats` wall-clock times is kept,
so load from other processes hits both alike. FVU is measured on held-out rows with one formula
for both: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2.

Each library keeps its own defaults where they differ by design (documented in
docs/sae_pipeline.md): featlab initialises b_dec at the geometric median and decoder rows at
unit norm with W_enc = W_dec^T; SAELens TopK starts from its decoder_init_norm and zero b_dec.
Matching Pursuit: k pursuit steps in both (SAELens max_iterations=k, residual_threshold=0,
stop_on_duplicate_support=False).

    python experiments/bench_vs_saelens.py [--quick] [--seed 0] [--out results/bench_vs_saelens]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probe_common import positive_int  # noqa: E402
from _sae_common import endless_batches, heldout_fvu, write_figure, write_table  # noqa: E402

SIZES = {
    "full": dict(d_in=64, d_sae=1024, k=8, batch=1024, steps=60, n_features=2048, l0=8.0,
                 repeats=2, lr=1e-3, n_eval=8192),
    "quick": dict(d_in=16, d_sae=64, k=4, batch=128, steps=4, n_features=96, l0=3.0,
                  repeats=1, lr=1e-3, n_eval=512),
}  # fmt: skip


def run_featlab(kind: str, x: torch.Tensor, s: dict, seed: int) -> tuple[float, Any]:
    from featlab.sae import train_sae

    t0 = time.perf_counter()
    sae = train_sae(
        endless_batches(x, s["batch"]), kind=kind, d_sae=s["d_sae"], k=s["k"],
        tokens=s["steps"] * s["batch"], batch_size=s["batch"], lr=s["lr"], seed=seed,
        progress=False, warmup_steps=1, decay_frac=0.0,
    )  # fmt: skip
    seconds = time.perf_counter() - t0

    def recon(xe: torch.Tensor) -> torch.Tensor:
        return sae(xe).x_hat

    return seconds, recon


def run_saelens(kind: str, x: torch.Tensor, s: dict, seed: int) -> tuple[float, Any]:
    import sae_lens
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(seed)
    common = dict(d_in=s["d_in"], d_sae=s["d_sae"], dtype="float32", device="cpu")
    if kind == "topk":
        sae = sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(k=s["k"], **common))
    else:
        cfg = sae_lens.MatchingPursuitTrainingSAEConfig(
            max_iterations=s["k"], residual_threshold=0.0, stop_on_duplicate_support=False,
            **common,
        )  # fmt: skip
        sae = sae_lens.MatchingPursuitTrainingSAE(cfg)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=s["steps"] * s["batch"], train_batch_size_samples=s["batch"],
        lr=s["lr"], lr_end=s["lr"], lr_scheduler_name="constant", device="cpu",
    )  # fmt: skip
    trainer = SAETrainer(trainer_cfg, sae, endless_batches(x, s["batch"]))
    t0 = time.perf_counter()
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        trainer.fit()
    seconds = time.perf_counter() - t0
    sae.eval()
    return seconds, sae


def bench(s: dict, seed: int, profile: bool = False) -> pd.DataFrame:
    from featlab.datasets import make_superposition

    data = make_superposition(
        s["steps"] * s["batch"] + s["n_eval"], n_features=s["n_features"], d=s["d_in"],
        l0=s["l0"], seed=seed,
    )  # fmt: skip
    x, x_eval = data.acts[: -s["n_eval"]], data.acts[-s["n_eval"] :]
    # Untimed warm-up of both libraries (first-call imports, allocator, kernel dispatch).
    warm = {**s, "steps": 2}
    for kind, sl_kind in (("topk", "topk"), ("matching_pursuit", "mp")):
        run_featlab(kind, x, warm, seed)
        run_saelens(sl_kind, x, warm, seed)
    rows = []
    for kind, sl_kind in (("topk", "topk"), ("matching_pursuit", "mp")):
        best: dict[str, float] = {}
        fvus: dict[str, float] = {}
        for _ in range(s["repeats"]):
            for lib, fn in (("featlab", run_featlab), ("saelens", run_saelens)):
                secs, model = fn(kind if lib == "featlab" else sl_kind, x, s, seed)
                best[lib] = min(best.get(lib, float("inf")), secs)
                with torch.no_grad():
                    fvus[lib] = heldout_fvu(x_eval, model(x_eval))
        samples = s["steps"] * s["batch"]
        for lib in ("featlab", "saelens"):
            rows.append({
                "kind": kind, "library": lib, "d_in": s["d_in"], "d_sae": s["d_sae"],
                "k": s["k"], "batch": s["batch"], "steps": s["steps"],
                "seconds": best[lib], "samples_per_s": samples / best[lib], "fvu": fvus[lib],
            })  # fmt: skip
        rows.append({
            "kind": kind, "library": "ratio featlab/saelens",
            "samples_per_s": best["saelens"] / best["featlab"],
            "fvu": fvus["featlab"] / fvus["saelens"],
        })  # fmt: skip
        if profile:
            _profile(kind, x, s, seed)
    return pd.DataFrame(rows)


def _profile(kind: str, x: torch.Tensor, s: dict, seed: int) -> None:
    import cProfile
    import pstats

    for lib, fn, name in (("featlab", run_featlab, kind), ("saelens", run_saelens,
                          "topk" if kind == "topk" else "mp")):  # fmt: skip
        prof = cProfile.Profile()
        prof.enable()
        fn(name, x, s, seed)
        prof.disable()
        print(f"--- profile: {lib} {kind} (top 12 by own time) ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def figure(df: pd.DataFrame) -> Any:
    import plotly.express as px

    sub = df[df["library"] != "ratio featlab/saelens"]
    return px.bar(sub, x="kind", y="samples_per_s", color="library", barmode="group",
                  hover_data=["fvu", "seconds"],
                  title="SAE training throughput on CPU: featlab vs SAELens")  # fmt: skip


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/bench_vs_saelens"))
    p.add_argument("--steps", type=int, default=None, help="override the number of steps")
    p.add_argument("--repeats", type=positive_int, default=None, help="override the repeats")
    p.add_argument("--profile", action="store_true", help="also print cProfile tables")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", module="sae_lens")
    s = dict(SIZES["quick" if args.quick else "full"])
    s.update({k: v for k, v in (("steps", args.steps), ("repeats", args.repeats)) if v})
    df = bench(s, args.seed, args.profile)
    write_table(df, args.out, "bench_vs_saelens")
    note = write_figure(figure(df), args.out, "bench_vs_saelens")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    goal = {"topk": 3.0, "matching_pursuit": 3.0}
    for kind, target in goal.items():
        r = df[(df["kind"] == kind) & (df["library"] == "ratio featlab/saelens")].iloc[0]
        print(
            f"{kind}: featlab/saelens samples/s ratio {r['samples_per_s']:.2f}x "
            f"(goal >= {target:g}x), FVU ratio {r['fvu']:.3f} (<= 1: equal or better)"
        )
    if note:
        print(note)
    return df


if __name__ == "__main__":
    main()
