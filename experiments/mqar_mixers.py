"""MQAR across mixers with a per-mixer learning-rate sweep (Zoology's protocol), on CPU.

An arm is two layers of one mixer (``gla``, ``gdn``, ...), GLA with its short convolution
(``gla_conv``: ``HybridConfig(gla_use_short_conv=True)``) or a hybrid (``gdn+attn``). For
every arm:

1. sweep: train once at each of ``--lrs`` (seed ``--seed``) and keep the lr with the best
   *validation* accuracy (runs that reached ``--target`` tie, and the fewest steps wins;
   then the smaller lr);
2. seeds: train at that lr with ``--seeds`` seeds (the sweep's run is the first) and report
   the held-out *test* accuracy's mean and Student-t 95 % interval (`_claims.mean_ci`);
3. claims, paired by seed (a seed fixes the data, the initialisation and the batch order,
   so both arms of a pair see the same sequences), each arm at its own best lr: "gla_conv
   beats gla" and "gdn beats gla_conv" (`_claims.claim_row`).

Every run gets the same AdamW settings apart from the lr and stops early once a held-out
validation set (not the test set) reaches ``--target``, checked every ``--eval-every`` steps.
Finished runs are kept in ``mqar_mixers_runs.partial.csv``; a rerun with the same settings
skips them (removed once the tables are written).

    python experiments/mqar_mixers.py            # full run (sizes: docs/models_recurrent.md)
    python experiments/mqar_mixers.py --quick    # smoke test, seconds
    python experiments/mqar_mixers.py --only attn,gdn+attn,conv+attn,swa,deltanet,ssd,conv
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import claim_row, mean_ci  # noqa: E402
from _probe_common import to_markdown, write_outputs  # noqa: E402

from featlab._atomic import atomic_path  # noqa: E402
from featlab.datasets import MQARConfig, make_mqar  # noqa: E402
from featlab.models import (  # noqa: E402
    MIXERS,
    HookedHybrid,
    HybridConfig,
    evaluate_accuracy,
    train_model,
)

NAME = "mqar_mixers"
GLA_CONV = "gla_conv"
# (better, worse): the claim is "accuracy(better) - accuracy(worse) > 0", paired by seed.
CLAIMS = [(GLA_CONV, "gla"), ("gdn", GLA_CONV)]
DEFAULT_ARMS = "gla,gla_conv,gdn"


def arm_config(arm: str, args: argparse.Namespace, seed: int) -> HybridConfig:
    """``gla_conv`` -> GLA x2 with the short conv; ``a+b`` -> hybrid; ``m`` -> m x2."""
    if arm == GLA_CONV:
        layers, extra = ("gla", "gla"), {"gla_use_short_conv": True}
    elif "+" in arm:
        layers, extra = tuple(arm.split("+")), {}
    else:
        layers, extra = (arm, arm), {}
    unknown = [m for m in layers if m not in MIXERS]
    if unknown:
        raise ValueError(
            f"--only arm {arm!r} names unknown mixer(s) {unknown}; use registered mixers "
            f"{sorted(MIXERS)}, {GLA_CONV!r} or hybrids such as 'gdn+attn'"
        )
    return HybridConfig(layers=layers, d_model=args.d_model, n_heads=2, d_vocab=args.vocab,
                        n_ctx=args.seq_len, seed=seed, **extra)


def arm_label(arm: str) -> str:
    return arm if "+" in arm else f"{arm} x2"


def datasets(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    mqar = MQARConfig(vocab_size=args.vocab, seq_len=args.seq_len, num_kv_pairs=args.kv_pairs)
    # Offsets keep one seed's test and validation sets apart from every seed's training set.
    return {"train": make_mqar(mqar, args.n_train, seed=seed),
            "test": make_mqar(mqar, args.n_test, seed=seed + 10_000),
            "val": make_mqar(mqar, args.n_val, seed=seed + 20_000)}


def train_one(arm: str, lr: float, seed: int, data: dict[str, Any],
              args: argparse.Namespace) -> dict[str, Any]:
    model = HookedHybrid(arm_config(arm, args, seed))
    val: list[float] = []

    def early_stop(step: int, loss: float) -> bool:
        # Stop once the *validation* set is solved; the test set stays unseen until the end.
        if step % args.eval_every and step != args.steps:
            return False
        val.append(evaluate_accuracy(model, *data["val"].as_tuple()))
        return val[-1] >= args.target

    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = train_model(model, data["train"].as_tuple(), steps=args.steps,
                         batch_size=args.batch_size, lr=lr, warmup=min(args.warmup, args.steps),
                         seed=seed, progress=False, callback=early_stop)
    floats = result.model.state_floats(args.seq_len)
    return {
        "arm": arm, "model": arm_label(arm), "lr": lr, "seed": seed,
        "val accuracy": val[-1] if val else float("nan"),
        "accuracy": evaluate_accuracy(result.model, *data["test"].as_tuple()),
        "params": sum(p.numel() for p in model.parameters()),
        "state floats / seq": floats, "state KiB (fp32)": round(4 * floats / 1024, 1),
        "steps": result.steps, "final loss": round(result.final_loss, 4),
        "cpu s": round(time.process_time() - cpu0, 1),
        "train s": round(time.perf_counter() - wall0, 1),
    }


def settings_key(args: argparse.Namespace) -> str:
    """What makes two runs comparable: every option but the output and those a run's row
    records itself (arm, lr, seed)."""
    skip = {"out", "only", "lrs", "seed", "seeds", "threads", "jobs", "quick"}
    return json.dumps({k: str(v) for k, v in sorted(vars(args).items()) if k not in skip})


def train_task(task: tuple[str, float, int], args: argparse.Namespace) -> dict[str, Any]:
    """One (arm, lr, seed) run in a worker process: its own data, one torch thread."""
    torch.set_num_threads(args.threads)
    arm, lr, seed = task
    return train_one(arm, lr, seed, datasets(args, seed), args)


class Runs:
    """Finished runs, kept on disk (atomically) so a cut-short run resumes where it stopped."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.key = args, settings_key(args)
        self.path = args.out / f"{NAME}_runs.partial.csv"
        old = pd.read_csv(self.path) if self.path.exists() else pd.DataFrame()
        keep = old[old["settings"] == self.key] if "settings" in old else old.iloc[:0]
        rows = keep.drop(columns="settings", errors="ignore").to_dict("records")
        self.done = {(r["arm"], float(r["lr"]), int(r["seed"])): r for r in rows}

    def _add(self, row: dict[str, Any]) -> None:
        self.done[(row["arm"], row["lr"], row["seed"])] = row
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows).assign(settings=self.key).to_csv(tmp, index=False)
        print(f"{row['model']:>14} lr {row['lr']:.0e} seed {row['seed']}: "
              f"val {row['val accuracy']:.3f} test {row['accuracy']:.3f} "
              f"({row['steps']} steps, {row['cpu s']:.0f} cpu s)", flush=True)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.done.values())

    def get(self, tasks: list[tuple[str, float, int]]) -> list[dict[str, Any]]:
        """The rows of `tasks` ``(arm, lr, seed)``, training those not done (``--jobs``
        processes at a time)."""
        todo = [t for t in dict.fromkeys(tasks) if t not in self.done]
        if self.args.jobs == 1:
            data: dict[int, Any] = {}
            for arm, lr, seed in todo:
                if seed not in data:
                    data = {seed: datasets(self.args, seed)}  # one seed's data at a time
                self._add(train_one(arm, lr, seed, data[seed], self.args))
        elif todo:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(self.args.jobs, mp_context=ctx) as pool:
                for future in as_completed([pool.submit(train_task, t, self.args) for t in todo]):
                    self._add(future.result())
        return [self.done[t] for t in tasks]


def best_lr(sweep: list[dict[str, Any]], target: float) -> float:
    """The lr with the best validation accuracy, counting every run that reached ``target``
    as equal (it stopped just past the target, so the rest of its accuracy is noise); among
    those the fewest steps wins, then the smaller lr."""
    return min(sweep, key=lambda r: (-min(r["val accuracy"], target), r["steps"], r["lr"]))["lr"]


def run(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    torch.set_num_threads(args.threads)
    arms = [a.strip() for a in args.only.split(",") if a.strip()]
    for arm in arms:
        arm_config(arm, args, args.seed)  # fail on a bad arm before any training
    runs, seeds = Runs(args), [args.seed + i for i in range(args.seeds)]
    # The sweep of every arm first, so a cut-short run still compares them.
    sweeps = runs.get([(arm, lr, args.seed) for arm in arms for lr in args.lrs])
    by_arm: dict[str, dict[str, Any]] = {}
    for arm in arms:
        sweep = [r for r in sweeps if r["arm"] == arm]
        by_arm[arm] = {"sweep": sweep, "lr": best_lr(sweep, args.target)}
    runs.get([(arm, by_arm[arm]["lr"], s) for arm in arms for s in seeds])
    summary = []
    for arm in arms:
        lr = by_arm[arm]["lr"]
        rows = by_arm[arm]["seeds"] = runs.get([(arm, lr, s) for s in seeds])
        acc, low, high = mean_ci(r["accuracy"] for r in rows)
        first = rows[0]
        summary.append({
            "model": first["model"], "best lr": lr, "n_seeds": len(rows), "accuracy": acc,
            "ci_low": low, "ci_high": high, "min": min(r["accuracy"] for r in rows),
            "params": first["params"], "state floats / seq": first["state floats / seq"],
            "state KiB (fp32)": first["state KiB (fp32)"],
            "steps (mean)": sum(r["steps"] for r in rows) / len(rows),
        })
    claims = []
    for better, worse in CLAIMS:
        if better in by_arm and worse in by_arm:
            a = {r["seed"]: r["accuracy"] for r in by_arm[better]["seeds"]}
            b = {r["seed"]: r["accuracy"] for r in by_arm[worse]["seeds"]}
            diffs = [a[s] - b[s] for s in seeds]
            claims.append(claim_row(
                f"{better} beats {worse} (test accuracy)", diffs,
                reason=f"paired by seed; lr {by_arm[better]['lr']:.0e} vs "
                       f"{by_arm[worse]['lr']:.0e} (each arm's best on validation)",
                mean_better=sum(a.values()) / len(a), mean_worse=sum(b.values()) / len(b)))
    order = {arm: i for i, arm in enumerate(arms)}
    mine = sorted((r for r in runs.rows if r["arm"] in order),
                  key=lambda r: (order[r["arm"]], r["lr"], r["seed"]))
    all_runs = pd.DataFrame(mine)
    return pd.DataFrame(summary), all_runs, pd.DataFrame(claims)


def figure(summary: pd.DataFrame, runs: pd.DataFrame, args: argparse.Namespace):  # -> Figure
    import plotly.graph_objects as go

    fig = go.Figure()
    sweep = runs[runs["seed"] == args.seed].sort_values("lr")
    for model, rows in sweep.groupby("model", sort=False):
        fig.add_trace(go.Scatter(x=rows["lr"], y=rows["val accuracy"], mode="lines+markers",
                                 name=f"{model}: sweep (val, seed {args.seed})"))
    fig.add_trace(go.Scatter(
        x=summary["best lr"], y=summary["accuracy"], mode="markers+text", text=summary["model"],
        textposition="middle right", marker=dict(size=11, symbol="diamond", color="black"),
        error_y=dict(type="data", symmetric=False,
                     array=(summary["ci_high"] - summary["accuracy"]).fillna(0),
                     arrayminus=(summary["accuracy"] - summary["ci_low"]).fillna(0)),
        name=f"best lr: test mean, 95% CI ({args.seeds} seeds)"))
    fig.update_layout(
        title=(f"MQAR: lr sweep per mixer (d_model {args.d_model}, seq {args.seq_len}, "
               f"{args.kv_pairs} kv pairs, <= {args.steps} steps)"),
        xaxis=dict(type="log", title="learning rate"), yaxis=dict(range=[0, 1.05],
        title="accuracy"), template="plotly_white")
    return fig


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run (seconds); overrides the sizes, lrs and seeds")
    p.add_argument("--seed", type=int, default=0, help="sweep seed and first of --seeds")
    p.add_argument("--seeds", type=int, default=3, help="seeds at each arm's best lr")
    p.add_argument("--out", type=Path, default=Path("results") / NAME)
    p.add_argument("--only", default=DEFAULT_ARMS, help="comma list of arms, e.g. 'gla,gdn+attn'")
    p.add_argument("--lrs", default="1e-3,3e-3,1e-2", help="comma list, swept per arm")
    p.add_argument("--steps", type=int, default=400, help="at most this many steps per run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=100, help="validation interval (steps)")
    p.add_argument("--target", type=float, default=0.995, help="stop at this val accuracy")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--kv-pairs", type=int, default=4)
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--n-val", type=int, default=300)
    p.add_argument("--n-test", type=int, default=1_000)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes")
    args = p.parse_args(argv)
    if args.quick:  # every arm and claim, at a size that trains in a fraction of a second
        args.__dict__.update(steps=4, warmup=2, eval_every=2, d_model=16, seq_len=32,
                             n_train=256, n_val=64, n_test=64, lrs="1e-3,1e-2", seeds=2)
    try:
        args.lrs = [float(x) for x in args.lrs.split(",")]
    except ValueError:
        p.error(f"--lrs {args.lrs!r}: give comma-separated numbers, e.g. 1e-3,3e-3,1e-2")
    if not args.lrs or min(args.lrs) <= 0 or args.seeds < 1 or args.jobs < 1:
        p.error("--lrs needs positive learning rates, --seeds and --jobs at least 1")
    return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse(argv)
    summary, runs, claims = run(args)
    write_outputs(NAME, summary, figure(summary, runs, args), args.out,
                  extra_tables={f"{NAME}_runs": runs, f"{NAME}_claims": claims})
    (args.out / f"{NAME}_runs.partial.csv").unlink(missing_ok=True)
    for table in (summary, claims):
        print(to_markdown(table), end="\n")
    return summary


if __name__ == "__main__":
    main()
