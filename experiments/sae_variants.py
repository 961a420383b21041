"""Every SAE kind on three kinds of data, over seeds, with the papers' claims as verdicts.

(a) superposition data whose true L0 varies per sample (`featlab.datasets.superposition`),
(b) the hierarchical tree data of the Matching Pursuit paper (`featlab.datasets.hierarchical`),
(c) the residual stream after layer 0 of a ["gdn", "attn"] HookedHybrid trained on MQAR
    (trained once, seed 0, with `featlab.runs.train_mqar_model`, kept under `runs/`; the
    SAE seeds vary, the model does not).

Tables: `sae_variants` (a row per seed, dataset, kind, k; CE-loss recovered over all positions
and at the MQAR query positions), `summary` (mean and 95 % half-width over seeds), `claims`
(paired-by-seed differences with verdicts, `_claims.py`), `mmcs_gap[_summary]` (`gap_row`),
`mmcs_curve`. Figures: `fvu_vs_l0`, `mmcs_vs_steps`. Layout as in docs/sae_pipeline.md.

    python experiments/sae_variants.py [--quick] [--seeds 0,1,2] [--out results/sae_variants]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import gao_lr, seed_summary, write_figure, write_table  # noqa: E402

KINDS = ("relu", "topk", "batchtopk", "feature_choice", "matching_pursuit")
# ReLU has no k: its sparsity is set by the L1 coefficient; these give L0s in the range of
# the k sweep on the superposition data (measured, not derived).
RELU_L1 = {3: 10.0, 5: 3.0, 8: 1.0}
MODEL = "mqar_gdn_attn_resid0"
TREE = "hierarchical"
SP = "superposition"

SIZES: dict[str, dict[str, Any]] = {
    "full": dict(
        sp=dict(n_features=256, d=32, l0=5.0, l0_dispersion=1.0), sp_d_sae=256, sp_ks=(3, 5, 8),
        tree=dict(n_parents=16, children_per_parent=4, d=64, p_parent=0.2), tree_d_sae=128,
        tree_k=6, sp_tokens=512_000, tree_tokens=512_000, n_eval=8_192, batch_size=256,
        # 5x featlab's default LR for width 256: TopK's MMCS flattens within the 2,000 steps
        # (0.90 at step 1,400, 0.92 at 2,000; at the default LR it was 0.82 after 4,000)
        lr=8e-3, curve_every=100, sweep_kinds=("topk", "batchtopk", "matching_pursuit"),
        # Every setting pinned: a cached model is reused only if all of them match.
        model=dict(layers=("gdn", "attn"), d_model=64, n_heads=2, vocab_size=64, seq_len=64,
                   num_kv_pairs=4, n_train=20_000, steps=1_500, batch_size=64, lr=3e-3),
        model_out="runs/sae_variants_model", model_batch=512,
        model_d_sae=512, model_k=8, model_tokens=60_000, model_eval_seqs=128,
        # featlab 0.1's default lr, at which docs/sae_pipeline.md's numbers were measured
        model_lr=gao_lr(512),
    ),
    "quick": dict(
        sp=dict(n_features=32, d=8, l0=2.0, l0_dispersion=1.0), sp_d_sae=32, sp_ks=(2, 3),
        tree=dict(n_parents=4, children_per_parent=3, d=16, p_parent=0.3), tree_d_sae=24,
        tree_k=3, sp_tokens=2_048, tree_tokens=2_048, n_eval=512, batch_size=256,
        lr=None, curve_every=2, sweep_kinds=("topk", "batchtopk", "matching_pursuit"),
        model=dict(layers=("gdn", "attn"), d_model=16, seq_len=32, vocab_size=32,
                   n_train=64, n_test=16, steps=3, batch_size=8),
        model_out=None, model_batch=256, model_d_sae=32, model_k=4, model_tokens=2_048,
        model_eval_seqs=8, model_lr=gao_lr(32),
    ),
}  # fmt: skip


def _train(acts: Any, kind: str, d_sae: int, k: int, tokens: int, batch: int, seed: int,
           callback: Any = None, lr: float | None = None, **kw: Any) -> tuple:
    from featlab.sae import train_saes

    spec = {"kind": kind, "d_sae": d_sae, "k": None if kind == "relu" else k, "lr": lr}
    if kind == "relu":
        spec["l1_coef"] = RELU_L1.get(k, 3.0)
    t0, c0 = time.perf_counter(), time.process_time()
    sae = train_saes(acts, [spec], tokens=tokens, batch_size=batch, seed=seed,
                     progress=False, callback=callback, **kw)[0]  # fmt: skip
    return sae, tokens / (time.perf_counter() - t0), time.process_time() - c0


def _row(seed: int, dataset: str, kind: str, k: int, sae: Any, m: Any, sps: float,
         cpu: float) -> dict[str, Any]:
    # For "relu", k is the sweep point only: its sparsity comes from l1_coef.
    print(f"  seed {seed} {dataset:>20} {kind:>16} k={k}: fvu {m.fvu:.3f} l0 {m.l0:.2f} "
          f"({cpu:.0f} CPU s)", file=sys.stderr, flush=True)  # fmt: skip
    return {
        "seed": seed, "dataset": dataset, "kind": kind, "d_sae": sae.d_sae, "k": k,
        "l1_coef": RELU_L1.get(k, 3.0) if kind == "relu" else None,
        "fvu": m.fvu, "l0": m.l0, "dead_pct": 100 * m.dead_frac, "mmcs": m.mmcs,
        "samples_per_s": sps, "cpu_s": cpu,
    }  # fmt: skip


def _curve(store: list, seed: int, dataset: str, kind: str, k: int, truth: torch.Tensor,
           every: int) -> Any:
    """A training callback that records MMCS against the true features (and the trainer's
    dead fraction) every `every` steps."""
    from featlab.sae import mmcs

    def record(step: int, saes: list, logs: list) -> None:
        if (step + 1) % every == 0:
            store.append({"seed": seed, "dataset": dataset, "kind": kind, "k": k,
                          "step": step + 1, "mmcs": mmcs(saes[0].W_dec, truth),
                          "dead_frac": logs[0].get("dead_frac")})  # fmt: skip

    return record


def gap_row(sae: Any, x: torch.Tensor, truth: torch.Tensor, m: Any) -> dict[str, float]:
    """What lies behind an MMCS: how each true feature is matched, duplicates, where the
    firings go, and (BatchTopK) whether the inference threshold or the batch selection is
    measured."""
    from featlab.sae.metrics import _cosines

    cos = _cosines(sae.W_dec, truth)  # [n_true, d_sae]
    best = cos.max(dim=1).values
    latent_best, latent_match = cos.max(dim=0)
    good = latent_best > 0.9
    # share of all firings spent on latents that match no true feature (best cosine < 0.5)
    fires = m.feature_density
    junk = float(fires[latent_best < 0.5].sum() / fires.sum().clamp(min=1e-12))
    live, nan = bool((fires > 0).any()), float("nan")
    others = (truth @ truth.T).fill_diagonal_(-1).max(dim=1).values  # crowding of each feature
    row = {
        "mmcs": m.mmcs, "hungarian": m.hungarian_cosine, "fvu": m.fvu, "l0": m.l0,
        "dead_frac": m.dead_frac,
        # MMCS over the latents that fire at all: is the gap dead latents or bad live ones?
        "mmcs_live": float(cos[:, fires > 0].max(dim=1).values.mean()) if live else nan,
        "best_cos_q10": float(best.quantile(0.1)), "best_cos_q50": float(best.median()),
        "found_frac": float((best > 0.9).double().mean()),
        "latents_matched": int(good.sum()),
        "duplicates": int(good.sum()) - int(latent_match[good].unique().numel()),
        "junk_fire_share": junk, "max_density": float(fires.max()),
        "density_cv": float(fires.std() / fires.mean().clamp(min=1e-12)),
        "crowding_rho": float(pd.Series(best.numpy()).corr(pd.Series(others.numpy()),
                                                           method="spearman")),
        "fvu_batch_mode": nan, "l0_batch_mode": nan,
    }  # fmt: skip
    if sae.kind == "batchtopk":
        from featlab.sae.batchtopk import batch_topk_select

        with torch.no_grad():
            vals, rows, cols = batch_topk_select(sae._pre(x).relu(), sae.cfg.k * x.shape[0])
            z = torch.zeros(x.shape[0], sae.d_sae)
            z[rows, cols] = vals
            err = (x - sae.decode(z)).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
        row["fvu_batch_mode"], row["l0_batch_mode"] = float(err), vals.numel() / x.shape[0]
    return row


def run_superposition(s: dict, seed: int, curves: list, gaps: list) -> list[dict[str, Any]]:
    from featlab.datasets import make_superposition
    from featlab.sae import evaluate

    n = s["sp_tokens"]
    data = make_superposition(n + s["n_eval"], seed=seed, **s["sp"])
    x, x_eval = data.acts[:n], data.acts[n:]
    main_k = s["sp_ks"][len(s["sp_ks"]) // 2]
    rows = []
    for k in s["sp_ks"]:
        # every kind at the middle k; the sweep (the FVU-L0 curve) only for the kinds the
        # claims compare there, to fit the CPU budget
        for kind in KINDS if k == main_k else s["sweep_kinds"]:
            watch = k == main_k and kind in ("topk", "batchtopk")
            cb = _curve(curves, seed, SP, kind, k, data.features, s["curve_every"])
            sae, sps, cpu = _train(x, kind, s["sp_d_sae"], k, n, s["batch_size"], seed,
                                   callback=cb if watch else None, lr=s["lr"])  # fmt: skip
            m = evaluate(sae, x_eval, true_features=data.features)
            rows.append(_row(seed, SP, kind, k, sae, m, sps, cpu))
            if watch:
                gaps.append({"seed": seed, "kind": kind, "k": k,
                             **gap_row(sae, x_eval, data.features, m)})  # fmt: skip
    return rows


def run_tree(s: dict, seed: int, curves: list) -> list[dict[str, Any]]:
    from featlab.datasets import make_hierarchical
    from featlab.sae import evaluate, mmcs

    n = s["tree_tokens"]
    data = make_hierarchical(n + s["n_eval"], seed=seed, **s["tree"])
    x, x_eval = data.acts[:n], data.acts[n:]
    rows = []
    for kind in KINDS:
        cb = _curve(curves, seed, TREE, kind, s["tree_k"], data.children, s["curve_every"])
        sae, sps, cpu = _train(x, kind, s["tree_d_sae"], s["tree_k"], n, s["batch_size"], seed,
                               callback=cb, lr=s["lr"])  # fmt: skip
        m = evaluate(sae, x_eval, true_features=data.features)
        row = _row(seed, TREE, kind, s["tree_k"], sae, m, sps, cpu)
        row["mmcs_children"] = mmcs(sae.W_dec, data.children)
        row["mmcs_parents"] = mmcs(sae.W_dec, data.parents)
        rows.append(row)
    return rows


def load_model_case(s: dict, out: Path) -> tuple[Any, Any, float]:
    """The MQAR model (trained once, cached) and its task; seed 0 whatever the SAE seeds."""
    from featlab.models import load_task
    from featlab.runs import MQARModelConfig, train_mqar_model

    model_dir = Path(s["model_out"]) if s["model_out"] else out / "model"
    run = train_mqar_model(MQARModelConfig(**s["model"], out=model_dir, seed=0,
                                           progress=False))  # fmt: skip
    return run.model, load_task(model_dir), float(run.table["accuracy"].iloc[0])


def run_model(s: dict, seed: int, case: tuple) -> list[dict[str, Any]]:
    from featlab.datasets import make_mqar
    from featlab.runs.tasks import task_config, task_tokens
    from featlab.sae import ce_loss_recovered, evaluate
    from featlab.sae.activations import ActivationSource

    model, task, acc = case
    hook = "blocks.0.hook_resid_post"
    n_seq = -(-s["model_tokens"] // model.cfg.n_ctx)
    train_toks = task_tokens(task, n_seq, seed)
    held_out = make_mqar(task_config(task), s["model_eval_seqs"], seed=seed + 10_007)
    eval_toks = held_out.inputs
    x_eval = ActivationSource(model, hook, eval_toks).collect()
    rows = []
    for kind in KINDS:
        # A fresh source per kind: every kind pays for the model forward passes it needs.
        src = ActivationSource(model, hook, train_toks, seed=seed, buffer_size=16_384)
        sae, sps, cpu = _train(src, kind, s["model_d_sae"], s["model_k"], s["model_tokens"],
                               s["model_batch"], seed, hook_name=hook,
                               lr=s["model_lr"])  # fmt: skip
        m = evaluate(sae, x_eval, model=model, tokens=eval_toks)
        query = ce_loss_recovered(model, sae, eval_toks, labels=held_out.labels)
        row = _row(seed, MODEL, kind, s["model_k"], sae, m, sps, cpu)
        row["ce_recovered_all"] = m.ce_loss_recovered
        row["ce_recovered_query"] = query["ce_loss_recovered"]
        row["ce_query_clean"], row["ce_query_zero"] = query["ce_clean"], query["ce_zero"]
        row["mqar_acc"] = acc
        rows.append(row)
    return rows


def run_seed(s: dict, seed: int, out: Path, skip_model: bool, threads: int) -> tuple:
    """Every dataset for one seed: (rows, MMCS curve points, gap rows, CPU seconds)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    c0 = time.process_time()
    curves: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    rows = run_superposition(s, seed, curves, gaps) + run_tree(s, seed, curves)
    if not skip_model:
        rows += run_model(s, seed, load_model_case(s, out))
    return rows, curves, gaps, time.process_time() - c0


def _by_seed(df: pd.DataFrame, col: str, **where: Any) -> pd.Series:
    sub = df
    for key, val in where.items():
        sub = sub[sub[key] == val]
    return sub.set_index("seed")[col].sort_index()


def _fvu_at(sweep: pd.DataFrame, l0: float) -> float:
    """FVU at `l0` on the straight line through the two sweep points nearest to it."""
    near = sweep.iloc[(sweep["l0"] - l0).abs().argsort()[:2]]
    if len(near) < 2 or near["l0"].iloc[0] == near["l0"].iloc[1]:
        return float(near["fvu"].iloc[0])
    (x0, x1), (y0, y1) = near["l0"].to_numpy(), near["fvu"].to_numpy()
    return float(y0 + (y1 - y0) * (l0 - x0) / (x1 - x0))


def claims(df: pd.DataFrame, s: dict) -> pd.DataFrame:
    """Each claim as a per-seed difference the paper says is > 0 (paired: both sides share
    the seed's data), with the numbers behind the verdict in `reason`."""
    from _claims import claim_row

    rows = []
    main_k = {SP: s["sp_ks"][len(s["sp_ks"]) // 2], TREE: s["tree_k"], MODEL: s["model_k"]}
    for ds in [d for d in (SP, TREE, MODEL) if d in set(df["dataset"])]:
        sub = df[(df["dataset"] == ds) & (df["k"] == main_k[ds])]
        piv = sub.pivot(index="seed", columns="kind", values="dead_pct")
        others = piv.drop(columns="feature_choice")
        gain = others.min(axis=1) - piv["feature_choice"]
        row = claim_row(f"Feature Choice has the fewest dead latents ({ds})", gain, unit="dead %")
        fc, best = piv["feature_choice"].mean(), others.mean()
        tie = " (a tie)" if (gain == 0).all() else ""
        row["reason"] = (f"dead %: FC {fc:.1f} vs the best other kind, {best.idxmin()}, "
                         f"{best.min():.1f}{tie}")  # fmt: skip
        rows.append(row)
        fvu = sub.pivot(index="seed", columns="kind", values="fvu")
        lead = fvu.drop(columns="matching_pursuit").min(axis=1) - fvu["matching_pursuit"]
        row = claim_row(f"Matching Pursuit has the lowest FVU ({ds}, k={main_k[ds]})", lead,
                        unit="FVU")  # fmt: skip
        rest = fvu.drop(columns="matching_pursuit").mean()
        row["reason"] = (f"FVU: MP {fvu['matching_pursuit'].mean():.4f} vs the next best, "
                         f"{rest.idxmin()}, {rest.min():.4f}")  # fmt: skip
        rows.append(row)
    for k in s["sp_ks"]:
        t = _by_seed(df, "fvu", dataset=SP, kind="topk", k=k)
        b = _by_seed(df, "fvu", dataset=SP, kind="batchtopk", k=k)
        tl0 = _by_seed(df, "l0", dataset=SP, kind="topk", k=k)
        bl0 = _by_seed(df, "l0", dataset=SP, kind="batchtopk", k=k)
        row = claim_row(f"BatchTopK beats TopK at equal k, true L0 varies (k={k})", t - b,
                        unit="TopK FVU - BatchTopK FVU")  # fmt: skip
        row["reason"] = (f"FVU TopK {t.mean():.4f} vs BatchTopK {b.mean():.4f}; held-out L0 "
                         f"TopK {tl0.mean():.2f} (ReLU after the top k zeroes some) vs "
                         f"BatchTopK {bl0.mean():.2f}")  # fmt: skip
        rows.append(row)
        # the same at matched L0: TopK's FVU-L0 line (its k sweep) read at BatchTopK's L0
        at = pd.Series({sd: _fvu_at(df[(df["seed"] == sd) & (df["dataset"] == SP)
                                       & (df["kind"] == "topk")], bl0[sd]) for sd in bl0.index})
        row = claim_row(f"BatchTopK beats TopK at matched L0, true L0 varies (k={k})", at - b,
                        unit="TopK FVU at BatchTopK's L0 - BatchTopK FVU")  # fmt: skip
        row["reason"] = (f"TopK FVU read at L0 {bl0.mean():.2f} from its k sweep: "
                         f"{at.mean():.4f} vs BatchTopK {b.mean():.4f}")  # fmt: skip
        rows.append(row)
    if TREE in set(df["dataset"]):
        mp = _by_seed(df, "mmcs_children", dataset=TREE, kind="matching_pursuit")
        tk = _by_seed(df, "mmcs_children", dataset=TREE, kind="topk")
        row = claim_row("Matching Pursuit matches child features better than TopK (tree data)",
                        mp - tk, unit="MMCS children")  # fmt: skip
        row["reason"] = f"children MMCS: MP {mp.mean():.3f} vs TopK {tk.mean():.3f}"
        rows.append(row)
    if MODEL in set(df["dataset"]):
        sub = df[df["dataset"] == MODEL]
        for col, where in (("ce_recovered_all", "all positions"),
                           ("ce_recovered_query", "query positions")):  # fmt: skip
            # Spearman over the kinds: lower FVU should mean more CE recovered
            rho = sub.groupby("seed").apply(
                lambda g, c=col: (-g["fvu"]).corr(g[c], method="spearman"), include_groups=False
            )
            row = claim_row(f"CE-loss recovered follows FVU across kinds (MQAR, {where})", rho,
                            unit="Spearman(-FVU, CE recovered)")  # fmt: skip
            row["reason"] = "rank correlation over the 5 kinds, one value per seed"
            rows.append(row)
    return pd.DataFrame(rows)


def figures(summary: pd.DataFrame, curve: pd.DataFrame) -> tuple[Any, Any]:
    import plotly.express as px

    sp = summary[summary["dataset"] == SP].sort_values(["kind", "l0"])
    fvu = px.line(sp, x="l0", y="fvu", color="kind", markers=True, error_y="fvu_ci",
                  title="FVU vs L0 on superposition data (mean and 95% interval over seeds)")
    fvu.update_layout(xaxis_title="L0 (held-out mean)", yaxis_title="FVU (held-out)")
    mean = curve.groupby(["dataset", "kind", "step"], as_index=False)["mmcs"].mean()
    mean["curve"] = mean["kind"] + " (" + mean["dataset"] + ")"
    steps = px.line(mean, x="step", y="mmcs", color="curve",
                    title="MMCS vs training step (mean over seeds; tree data: children)")
    steps.update_layout(xaxis_title="training step", yaxis_title="MMCS")
    return fvu, steps


def _seeds(text: str) -> list[int]:
    seeds = [v.strip() for v in text.split(",") if v.strip()]
    if not seeds or not all(v.lstrip("-").isdigit() for v in seeds) or len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give distinct integers, e.g. 0,1,2")
    return [int(v) for v in seeds]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (seconds)")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated")
    p.add_argument("--seed", type=int, help="a single seed (same as --seeds N)")
    p.add_argument("--out", type=Path, default=Path("results/sae_variants"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared box)")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    p.add_argument("--skip-model", action="store_true", help="leave out the model case (c)")
    args = p.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else args.seeds
    s = SIZES["quick" if args.quick else "full"]
    t0 = time.perf_counter()
    if not args.skip_model:
        load_model_case(s, args.out)  # train it once here, before the seeds load it
    jobs = [(s, seed, args.out, args.skip_model, args.threads) for seed in seeds]
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.jobs, len(seeds))) as pool:
            done = list(pool.map(run_seed, *zip(*jobs, strict=True)))
    else:
        done = [run_seed(*job) for job in jobs]
    rows, curves, gaps = ([r for d in done for r in d[i]] for i in range(3))
    cpu = sum(d[3] for d in done)
    df = pd.DataFrame(rows)
    cols = ["fvu", "l0", "dead_pct", "mmcs", "mmcs_children", "mmcs_parents",
            "ce_recovered_all", "ce_recovered_query", "samples_per_s"]  # fmt: skip
    summary = seed_summary(df, ["dataset", "kind", "k"], cols)
    chk, gap, curve = claims(df, s), pd.DataFrame(gaps), pd.DataFrame(curves)
    gap_sum = seed_summary(gap, ["kind", "k"], [c for c in gap if c not in ("seed", "kind", "k")])
    for name, table in (("sae_variants", df), ("summary", summary), ("claims", chk),
                        ("mmcs_gap", gap), ("mmcs_gap_summary", gap_sum),
                        ("mmcs_curve", curve)):  # fmt: skip
        write_table(table, args.out, name)
    fig_fvu, fig_steps = figures(summary, curve)
    notes = [write_figure(fig_fvu, args.out, "fvu_vs_l0"),
             write_figure(fig_steps, args.out, "mmcs_vs_steps")]  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_columns", 30,
                           "display.max_colwidth", 90):  # fmt: skip
        for table in (summary, gap_sum, chk):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), end="\n\n")
    for note in notes:
        if note:
            print(note)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f}s wall, {cpu:.0f} CPU s in "
          f"the seeds ({len(seeds)} seeds, {args.jobs} jobs, torch threads {args.threads})")
    return df


if __name__ == "__main__":
    main()
