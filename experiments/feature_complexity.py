"""Feature complexity, temporal decoding and importance on graded-complexity data.

After Fel et al., "Understanding Visual Feature Reliance through the Lens of Complexity"
(NeurIPS 2024), on the synthetic multi-feature task of Lampinen et al. (TMLR 2024). One ReLU
MLP (4 hidden layers of 64) is trained to output five binary features of one bit vector at
once: ``linear:1`` (a copied bit), ``linear:3`` (majority of 3), ``xor:2``, ``xor:3``,
``xor:4`` (parities), plus 8 distractor bits. For each feature, in two linear families:

- K = 1 - mean over the hidden layers of the normalised held-out V-information, at the end of
  training. The Gaussian family regresses the +-1 value (normalised I_V = held-out R^2); the
  logistic family classifies it (I_V / H(z)). The features are labels, so the logistic family
  is the one that asks "is it linearly readable"; the Gaussian one also asks "is the value a
  linear function", which a threshold feature such as ``linear:3`` is not.
- the first checkpoint at which the last hidden layer decodes it (normalised I_V >= 0.9), in
  the same family;
- importance = E |z dy/dz| for the feature's own output logit, with z the projection of the
  last hidden layer on the feature's linear-probe direction, measured from its mean.

Expected: simpler features have lower K, become decodable earlier in training and are more
important. Each expectation is a row of ``claims.csv`` (per-seed values, Student-t interval).

    python experiments/feature_complexity.py            # default run (docs/probes.md)
    python experiments/feature_complexity.py --quick    # seconds, for the tests
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import claim_row, claims_table  # noqa: E402
from _probe_common import parse_args, to_markdown, write_outputs  # noqa: E402

from featlab.complexity import (  # noqa: E402
    complexity_table,
    first_decodable,
    importance,
    temporal_decoding,
)
from featlab.datasets.graded import make_graded_dataset  # noqa: E402
from featlab.models.fit import fit_classifier, predict_logits  # noqa: E402
from featlab.models.mlp import HookedMLP  # noqa: E402
from featlab.probes import probe_direction  # noqa: E402

NAME = "feature_complexity"
FEATURES = ("linear:1", "linear:3", "xor:2", "xor:3", "xor:4")
FAMILIES = ("gaussian", "logistic")
PARITIES = ("xor:2", "xor:3", "xor:4")


def one_seed(seed: int, *, n_train: int, n_eval: int, depth: int, width: int, epochs: int,
             checkpoints: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = make_graded_dataset(n_train + n_eval, features=FEATURES, n_distractors=8, seed=seed)
    train, ev = data.split(n_train)
    torch.manual_seed(seed)
    net = HookedMLP(d_in=data.X.shape[1], d_out=len(FEATURES), depth=depth, width=width)
    res = fit_classifier(net, train.X, train.Y, epochs=epochs, lr=3e-3, batch_size=128,
                         seed=seed, checkpoints=checkpoints)
    feats = {f: ev.feature(f) for f in FEATURES}
    layers = net.layer_hooks()
    _, cache = net.run_with_cache(ev.X, names_filter=layers)
    acc = ((predict_logits(net, ev.X) > 0).float() == ev.Y).float().mean(0).numpy()
    rows = {f: dict(seed=seed, feature=f, eval_acc=float(acc[j])) for j, f in enumerate(FEATURES)}
    temps = []
    for fam in FAMILIES:
        temporal = temporal_decoding(net, res.snapshots, ev.X, feats, layers=layers, seed=seed,
                                     family=fam)
        k = complexity_table({h: cache[h] for h in layers}, feats, seed=seed, family=fam)
        k = k.groupby("feature", sort=False).K.first()
        first = first_decodable(temporal, threshold=0.9).set_index("feature").checkpoint
        for f in FEATURES:
            rows[f][f"K_{fam}"] = float(k[f])
            rows[f][f"first_{fam}"] = first[f]
        temps.append(temporal)
    last = cache[layers[-1]]
    for j, f in enumerate(FEATURES):
        direction = probe_direction(last, feats[f], kind="linear", seed=seed)[None]
        imp = importance(net, ev.X, layers[-1], direction, output_index=j)
        raw = importance(net, ev.X, layers[-1], direction, output_index=j, zero="raw")
        rows[f].update(importance=float(imp.importance[0]),
                       importance_raw=float(raw.importance[0]), z_offset=float(imp.z_offset[0]),
                       z_sd=float((last.numpy() @ direction[0]).std()))
    temporal = pd.concat(temps, ignore_index=True)
    temporal.insert(0, "seed", seed)
    return pd.DataFrame(list(rows.values())), temporal


def _spearman(a: pd.Series, b: pd.Series) -> float:
    """Rank correlation with ties averaged; NaN when either side has no spread."""
    ra, rb = a.rank(), b.rank()
    if ra.nunique() < 2 or rb.nunique() < 2:
        return float("nan")
    return float(ra.corr(rb))


def claims(raw: pd.DataFrame, never: float) -> pd.DataFrame:
    """Per seed, one number per claim; positive means the claim holds on that seed. A feature
    the last layer never decodes counts as decodable after the last checkpoint (`never`)."""
    rows = []
    arity = pd.Series({f: int(f.split(":")[1]) for f in PARITIES})
    for fam in FAMILIES:
        per = {"rank": [], "parity": [], "split": [], "importance": []}
        for _, g in raw.groupby("seed"):
            g = g.set_index("feature")
            first = g[f"first_{fam}"].fillna(never)
            per["rank"].append(_spearman(g[f"K_{fam}"], first))
            per["parity"].append(_spearman(arity, first[list(PARITIES)]))
            per["split"].append(g.loc[list(PARITIES), f"K_{fam}"].min()
                                - g.loc[["linear:1", "linear:3"], f"K_{fam}"].max())
            per["importance"].append(-_spearman(g[f"K_{fam}"], g.importance))
        text = {
            "rank": "K ranks features by complexity: Spearman(K, first_decodable)",
            "parity": "harder parity features decodable later: Spearman(k of xor:k, "
                      "first_decodable)",
            "split": "every linear feature simpler than every parity: min K(xor) - max "
                     "K(linear)",
            "importance": "simple features more important: -Spearman(K, importance)",
        }
        for key, vals in per.items():
            r = claim_row(f"{text[key]} [{fam}]", vals)
            r["reason"] = _reason(key, fam, raw, vals) if r["verdict"] != "holds" else ""
            rows.append(r)
    return claims_table(rows)


def _reason(key: str, fam: str, raw: pd.DataFrame, vals: list[float]) -> str:
    means = raw.groupby("feature", sort=False)
    if key == "importance":
        return "mean importance: " + ", ".join(
            f"{f} {v:.3f}" for f, v in means.importance.mean().items())
    if key == "parity" or (key == "rank" and not np.isfinite(vals).all()):
        firsts = means[f"first_{fam}"].agg(lambda s: ",".join(
            "never" if np.isnan(v) else f"{v:g}" for v in s))
        return "first decodable per seed: " + "; ".join(f"{f} {v}" for f, v in firsts.items())
    return f"mean K [{fam}]: " + ", ".join(
        f"{f} {v:.3f}" for f, v in means[f"K_{fam}"].mean().items())


def run(args) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    torch.set_num_threads(args.threads)
    if args.quick:
        seeds = [args.seed]
        kw = dict(n_train=400, n_eval=300, depth=2, width=16, epochs=3, checkpoints=[0, 1, 3])
    else:
        seeds = [args.seed + i for i in range(args.seeds)]
        kw = dict(n_train=4000, n_eval=2000, depth=4, width=64, epochs=60,
                  checkpoints=[0, 1, 2, 4, 8, 16, 32, 60])
    per, temps = [], []
    t0 = time.perf_counter()
    for s in seeds:
        p, t = one_seed(s, **kw)
        per.append(p)
        temps.append(t)
        print(f"  seed {s}: done ({time.perf_counter() - t0:.0f}s)", flush=True)
    raw = pd.concat(per, ignore_index=True)
    temporal = pd.concat(temps, ignore_index=True)
    agg = {f"{c}": (c, "mean") for fam in FAMILIES for c in (f"K_{fam}", f"first_{fam}")}
    table = raw.groupby("feature", sort=False).agg(
        **agg, importance=("importance", "mean"), importance_raw=("importance_raw", "mean"),
        z_offset=("z_offset", "mean"), z_sd=("z_sd", "mean"), eval_acc=("eval_acc", "mean"),
        n_seeds=("seed", "count"),
    ).reset_index()
    # first_*: mean over the seeds that reached the threshold (never: left out, counted here)
    for fam in FAMILIES:
        never = raw.groupby("feature", sort=False)[f"first_{fam}"].agg(lambda s: s.isna().sum())
        table[f"never_{fam}"] = table.feature.map(never)
    return table, raw, temporal, claims(raw, never=2.0 * max(kw["checkpoints"]))


def figure(raw: pd.DataFrame, temporal: pd.DataFrame):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=4, subplot_titles=(
        "I_V by layer (end)", "I_V over training (last layer)", "K: Gaussian vs logistic",
        "importance vs K (logistic)"))
    last_ckpt = temporal.checkpoint.max()
    deepest = temporal.depth.max()
    colours = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a"]
    for c, f in zip(colours, FEATURES, strict=True):
        for fam, dash in (("logistic", "solid"), ("gaussian", "dot")):
            t = temporal[(temporal.feature == f) & (temporal.family == fam)]
            end = t[t.checkpoint == last_ckpt].groupby("depth").normalised.mean()
            show = fam == "logistic"
            fig.add_trace(go.Scatter(x=end.index, y=end.values, name=f, legendgroup=f,
                                     showlegend=show, line=dict(color=c, dash=dash),
                                     mode="lines+markers"), row=1, col=1)
            over = t[t.depth == deepest].groupby("checkpoint").normalised.mean()
            fig.add_trace(go.Scatter(x=over.index, y=over.values, name=f, legendgroup=f,
                                     showlegend=False, line=dict(color=c, dash=dash),
                                     mode="lines+markers"), row=1, col=2)
        r = raw[raw.feature == f]
        fig.add_trace(go.Scatter(x=r.K_gaussian, y=r.K_logistic, name=f, legendgroup=f,
                                 showlegend=False, mode="markers",
                                 marker=dict(color=c, size=9)), row=1, col=3)
        fig.add_trace(go.Scatter(x=r.K_logistic, y=r.importance, name=f, legendgroup=f,
                                 showlegend=False, mode="markers",
                                 marker=dict(color=c, size=9)), row=1, col=4)
    fig.update_xaxes(title_text="hidden layer", row=1, col=1)
    fig.update_xaxes(title_text="epoch", type="log", row=1, col=2)
    fig.update_xaxes(title_text="K (Gaussian)", row=1, col=3)
    fig.update_yaxes(title_text="K (logistic)", row=1, col=3)
    fig.update_xaxes(title_text="K (logistic)", row=1, col=4)
    fig.update_yaxes(title_text="normalised I_V (solid logistic, dotted Gaussian)", row=1, col=1)
    fig.update_layout(template="plotly_white", title="Feature complexity on graded data")
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame:
    def extra(p):
        p.add_argument("--seeds", type=int, default=5)

    args = parse_args(NAME, __doc__, argv, extra)
    table, raw, temporal, claim_tab = run(args)
    # log-x needs a positive first checkpoint on the plot; epoch 0 is drawn at 0.5
    temporal_plot = temporal.assign(checkpoint=temporal.checkpoint.replace(0, 0.5))
    write_outputs(NAME, table, figure(raw, temporal_plot), args.out,
                  {f"{NAME}_runs": raw, f"{NAME}_temporal": temporal, "claims": claim_tab})
    print(to_markdown(table))
    print(to_markdown(claim_tab))
    return table


if __name__ == "__main__":
    main()
