"""Every SAE kind on three kinds of data, with the papers' claims checked.

(a) superposition data whose true L0 varies per sample (`featlab.datasets.superposition`),
(b) the hierarchical tree data of the Matching Pursuit paper (`featlab.datasets.hierarchical`),
(c) the residual stream after layer 0 of a ["gdn", "attn"] HookedHybrid trained on MQAR
    (trained once with `featlab.runs.train_mqar_model`, kept under `runs/`).

Table: FVU, L0, dead %, MMCS (ground truth: all features; tree data also children and
parents separately), CE-loss recovered (model), samples/s (training wall clock; the model
case includes running the model). Figure: FVU against L0 on the superposition sweep.

Claims checked and reported as measured (`checks.md`):
  1. Feature Choice has the fewest dead latents (Ayonrinde et al.).
  2. BatchTopK beats TopK at equal mean L0 when the true L0 varies (Bussmann et al.).
  3. Matching Pursuit matches child features better than TopK on tree data (Costa et al.).

    python experiments/sae_variants.py [--quick] [--seed 0] [--out results/sae_variants]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import write_figure, write_table  # noqa: E402

if TYPE_CHECKING:
    from featlab.sae import SAEMetrics

KINDS = ("relu", "topk", "batchtopk", "feature_choice", "matching_pursuit")
# ReLU has no k: its sparsity is set by the L1 coefficient; these give L0s in the range of
# the k sweep on the superposition data (measured, not derived).
RELU_L1 = {3: 10.0, 5: 3.0, 8: 1.0}

SIZES: dict[str, dict[str, Any]] = {
    "full": dict(
        sp=dict(n_features=256, d=32, l0=5.0, l0_dispersion=1.0), sp_d_sae=256, sp_ks=(3, 5, 8),
        tree=dict(n_parents=16, children_per_parent=4, d=64, p_parent=0.2), tree_d_sae=128,
        tree_k=6, tokens=240_000, n_eval=8_192, batch_size=512,
        # Every setting pinned: a cached model is reused only if all of them match.
        model=dict(layers=("gdn", "attn"), d_model=64, n_heads=2, vocab_size=64, seq_len=64,
                   num_kv_pairs=4, n_train=20_000, steps=1_500, batch_size=64, lr=3e-3),
        model_out="runs/sae_variants_model",
        model_d_sae=512, model_k=8, model_tokens=60_000, model_eval_seqs=128,
    ),
    "quick": dict(
        sp=dict(n_features=32, d=8, l0=2.0, l0_dispersion=1.0), sp_d_sae=32, sp_ks=(2, 3),
        tree=dict(n_parents=4, children_per_parent=3, d=16, p_parent=0.3), tree_d_sae=24,
        tree_k=3, tokens=2_048, n_eval=512, batch_size=256,
        model=dict(layers=("gdn", "attn"), d_model=16, seq_len=32, vocab_size=32,
                   n_train=64, n_test=16, steps=3, batch_size=8),
        model_out=None, model_d_sae=32, model_k=4, model_tokens=2_048, model_eval_seqs=8,
    ),
}  # fmt: skip


def _train(acts: Any, kind: str, d_sae: int, k: int, s: dict, seed: int, **kw: Any) -> tuple:
    from featlab.sae import train_sae

    extra = {"l1_coef": RELU_L1.get(k, 3.0)} if kind == "relu" else {}
    t0 = time.perf_counter()
    sae = train_sae(
        acts, kind=kind, d_sae=d_sae, k=None if kind == "relu" else k, tokens=s["tokens"],
        batch_size=s["batch_size"], seed=seed, progress=False, **extra, **kw,
    )  # fmt: skip
    return sae, s["tokens"] / (time.perf_counter() - t0)


def _row(dataset: str, kind: str, k: int, sae: Any, m: SAEMetrics, sps: float) -> dict[str, Any]:
    # For "relu", k is the sweep point only: its sparsity comes from l1_coef.
    print(f"  {dataset:>20} {kind:>16} k={k}: fvu {m.fvu:.3f} l0 {m.l0:.2f} "
          f"({sps:.0f} samples/s)", file=sys.stderr, flush=True)  # fmt: skip
    return {
        "dataset": dataset, "kind": kind, "d_sae": sae.d_sae, "k": k,
        "l1_coef": RELU_L1.get(k, 3.0) if kind == "relu" else None,
        "fvu": m.fvu, "l0": m.l0, "dead_pct": 100 * m.dead_frac,
        "mmcs": m.mmcs, "samples_per_s": sps,
    }  # fmt: skip


def run_superposition(s: dict, seed: int) -> list[dict[str, Any]]:
    from featlab.datasets import make_superposition
    from featlab.sae import evaluate

    data = make_superposition(s["tokens"] + s["n_eval"], seed=seed, **s["sp"])
    x, x_eval = data.acts[: s["tokens"]], data.acts[s["tokens"] :]
    rows = []
    for k in s["sp_ks"]:
        for kind in KINDS:
            sae, sps = _train(x, kind, s["sp_d_sae"], k, s, seed)
            m = evaluate(sae, x_eval, true_features=data.features)
            rows.append(_row("superposition", kind, k, sae, m, sps))
    return rows


def run_tree(s: dict, seed: int) -> list[dict[str, Any]]:
    from featlab.datasets import make_hierarchical
    from featlab.sae import evaluate, mmcs

    data = make_hierarchical(s["tokens"] + s["n_eval"], seed=seed, **s["tree"])
    x, x_eval = data.acts[: s["tokens"]], data.acts[s["tokens"] :]
    rows = []
    for kind in KINDS:
        sae, sps = _train(x, kind, s["tree_d_sae"], s["tree_k"], s, seed)
        m = evaluate(sae, x_eval, true_features=data.features)
        row = _row("hierarchical", kind, s["tree_k"], sae, m, sps)
        row["mmcs_children"] = mmcs(sae.W_dec, data.children)
        row["mmcs_parents"] = mmcs(sae.W_dec, data.parents)
        rows.append(row)
    return rows


def run_model(s: dict, seed: int, out: Path) -> list[dict[str, Any]]:
    from featlab.models import load_task
    from featlab.runs import MQARModelConfig, train_mqar_model
    from featlab.runs.tasks import task_tokens
    from featlab.sae import evaluate
    from featlab.sae.activations import ActivationSource

    model_dir = Path(s["model_out"]) if s["model_out"] else out / "model"
    run = train_mqar_model(MQARModelConfig(**s["model"], out=model_dir, seed=seed,
                                           progress=False))
    model = run.model
    hook = "blocks.0.hook_resid_post"
    n_seq = -(-s["model_tokens"] // model.cfg.n_ctx)
    task = load_task(model_dir)
    train_toks = task_tokens(task, n_seq, seed)
    eval_toks = task_tokens(task, s["model_eval_seqs"], seed + 10_007)
    x_eval = ActivationSource(model, hook, eval_toks).collect()
    rows = []
    for kind in KINDS:
        # A fresh source per kind: every kind pays for the model forward passes it needs.
        src = ActivationSource(model, hook, train_toks, seed=seed, buffer_size=16_384)
        sae, sps = _train(
            src, kind, s["model_d_sae"], s["model_k"], {**s, "tokens": s["model_tokens"]}, seed,
            hook_name=hook,
        )  # fmt: skip
        m = evaluate(sae, x_eval, model=model, tokens=eval_toks)
        row = _row("mqar_gdn_attn_resid0", kind, s["model_k"], sae, m, sps)
        row["ce_loss_recovered"] = m.ce_loss_recovered
        row["mqar_acc"] = float(run.table["accuracy"].iloc[0])
        rows.append(row)
    return rows


def checks(df: pd.DataFrame, s: dict) -> pd.DataFrame:
    """The three claims, each as measured: holds / does not hold and the numbers behind it."""
    out = []
    main_k = {"superposition": s["sp_ks"][len(s["sp_ks"]) // 2], "hierarchical": s["tree_k"]}
    for ds in df["dataset"].unique():
        sub = df[(df["dataset"] == ds) & (df["k"] == main_k.get(ds, s["model_k"]))]
        fc = sub.loc[sub["kind"] == "feature_choice", "dead_pct"].iloc[0]
        others = sub.loc[sub["kind"] != "feature_choice", "dead_pct"]
        out.append({
            "claim": f"Feature Choice fewest dead latents ({ds})",
            "holds": "no" if fc > others.min() else ("tie" if fc == others.min() else "yes"),
            "evidence": f"FC {fc:.1f}% dead vs others min {others.min():.1f}% / "
            f"max {others.max():.1f}%",
        })  # fmt: skip
    sp = df[df["dataset"] == "superposition"]
    wins, parts = 0, []
    for k in s["sp_ks"]:
        t = sp[(sp["kind"] == "topk") & (sp["k"] == k)].iloc[0]
        b = sp[(sp["kind"] == "batchtopk") & (sp["k"] == k)].iloc[0]
        wins += int(b["fvu"] < t["fvu"])
        parts.append(f"k={k}: BatchTopK FVU {b['fvu']:.3f} (L0 {b['l0']:.2f}) vs TopK "
                     f"{t['fvu']:.3f} (L0 {t['l0']:.2f})")  # fmt: skip
    out.append({
        "claim": "BatchTopK beats TopK at equal mean L0 (true L0 varies)",
        "holds": "yes" if wins == len(s["sp_ks"]) else ("no" if wins == 0 else "partly"),
        "evidence": "; ".join(parts),
    })  # fmt: skip
    tr = df[df["dataset"] == "hierarchical"].set_index("kind")
    mp, tk = tr.loc["matching_pursuit", "mmcs_children"], tr.loc["topk", "mmcs_children"]
    out.append({
        "claim": "Matching Pursuit matches child features better than TopK (tree data)",
        "holds": "yes" if mp > tk else "no",
        "evidence": f"MMCS over children: MP {mp:.3f} vs TopK {tk:.3f}; parents: MP "
        f"{tr.loc['matching_pursuit', 'mmcs_parents']:.3f} vs TopK "
        f"{tr.loc['topk', 'mmcs_parents']:.3f}",
    })  # fmt: skip
    return pd.DataFrame(out)


def figure(df: pd.DataFrame) -> Any:
    import plotly.express as px

    sub = df[df["dataset"] == "superposition"].sort_values(["kind", "l0"])
    fig = px.line(sub, x="l0", y="fvu", color="kind", markers=True,
                  title="FVU vs L0 on superposition data (true L0 varies per sample)")  # fmt: skip
    others = df[df["dataset"] != "superposition"]
    for (ds, kind), g in others.groupby(["dataset", "kind"]):
        fig.add_scatter(x=g["l0"], y=g["fvu"], mode="markers", name=f"{kind} ({ds})",
                        marker_symbol="diamond" if ds == "hierarchical" else "square")  # fmt: skip
    fig.update_layout(xaxis_title="L0 (held-out mean)", yaxis_title="FVU (held-out)")
    return fig


def write(df: pd.DataFrame, chk: pd.DataFrame, fig: Any, out: Path) -> list[str]:
    write_table(df, out, "sae_variants")
    write_table(chk, out, "checks")
    note = write_figure(fig, out, "fvu_vs_l0")
    return [note] if note else []


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/sae_variants"))
    p.add_argument("--skip-model", action="store_true", help="leave out the model case (c)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    s = SIZES["quick" if args.quick else "full"]
    t0 = time.perf_counter()
    rows = run_superposition(s, args.seed) + run_tree(s, args.seed)
    if not args.skip_model:
        rows += run_model(s, args.seed, args.out)
    df = pd.DataFrame(rows)
    chk = checks(df, s)
    notes = write(df, chk, figure(df), args.out)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print()
        print(chk.to_string(index=False))
    for note in notes:
        print(note)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f}s")
    return df


if __name__ == "__main__":
    main()
