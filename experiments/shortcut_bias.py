"""Shortcut bias of linear and nonlinear MLPs over amplification and nesting depth.

After Hermann et al., "On the Foundations of Shortcut Learning" (ICLR 2024). Core and shortcut
latents are equally predictive (rho_core = rho_short = 0.9), so the Bayes-optimal classifier
has zero reliance on either and any shortcut bias comes from the model. Two sweeps:

- amplification: alpha_short in 1..5 (core alpha 1, no nesting);
- nesting: the *core* passes through eta_core in 0..3 random tanh layers (alpha 1, each layer's
  pre-activations normalised to RMS 1 so few units saturate; the share that does is reported),
  which makes the core less available and the shortcut relatively more so.

Models: linear (depth 0), 1-hidden-layer ReLU, 1-hidden-layer Tanh, 3-hidden-layer ReLU.

Regime (why it matters): the bias the paper reports is an *inductive bias*, i.e. what a model
does off the data when the data do not pin the decision boundary down. So every model is
trained on few samples (200 by default) with full-batch Adam for a fixed, large number of steps
(1000) -- to convergence, not stopped early. Early-stopped gradient descent on an amplified
input is ill-conditioned and biases even a linear model towards the amplified feature (a
speed effect, gone at convergence, where logistic regression is invariant to rescaling a
feature); with thousands of samples every model learns the diagonal Bayes boundary inside the
data and the bias shrinks towards 0 for all of them.

Bias = reliance(model) - reliance(Bayes) on the 64 x 64 probe grid over (z_short, z_core) (no
point on a diagonal, so the measure does not jump at the Bayes boundary). Under nesting no
linear model can express the Bayes rule, so the bias is also given relative to the *best
classifier of the same family*: the same architecture and optimiser (Adam, same lr and steps)
on 20 000 samples of the same task, in minibatches of 500 (full batches of 20 000 would cost
100 times the budget). Seeds index the sampled training set, the embedding and the
initialisation; the same seeds are used in every cell, so differences between cells and
models are paired. Every claim of docs/probes.md is a row of ``claims.csv``: mean, Student-t
95 % interval over seeds and a verdict (experiments/_claims.py).

The models of one cell (one value, one architecture, all seeds) are trained together as an
ensemble with ``torch.func.vmap``: each member is an ordinary `HookedMLP`, its own loss is
the mean over its own training set, and Adam is element-wise, so this is the same as training
them one by one, only faster.

    python experiments/shortcut_bias.py            # default run (docs/probes.md)
    python experiments/shortcut_bias.py --quick    # seconds, for the tests
"""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import FAILS, HOLDS, NOISE, claim_row, mean_ci  # noqa: E402
from _probe_common import parse_args, to_markdown, write_outputs  # noqa: E402

from featlab.datasets.shortcut import make_shortcut_dataset, probe_grid  # noqa: E402
from featlab.models.fit import predict_logits  # noqa: E402
from featlab.models.mlp import HookedMLP  # noqa: E402
from featlab.probes.shortcut import shortcut_report  # noqa: E402

NAME = "shortcut_bias"
MODELS = {  # name -> (depth, activation)
    "linear": (0, "linear"),
    "relu-1": (1, "relu"),
    "tanh-1": (1, "tanh"),
    "relu-3": (3, "relu"),
}
N_TEST = 2000
FAMILY_SEED = 1_000_000  # offset: the family's samples and init never coincide with a model's
# "Unbiased" claims hold when the whole interval lies within +-NULL_MARGIN: the smallest
# nonlinear amplification effect the previous run reported (+0.03).
NULL_MARGIN = 0.03


def train_ensemble(nets: list[HookedMLP], X: torch.Tensor, y: torch.Tensor, *, steps: int,
                   lr: float, batch: int | None = None, seed: int = 0) -> np.ndarray:
    """Adam on each net's own data, all at once; returns the final losses on all the data.

    X: [members, n, d]; y: [members, n] in {-1, +1}. Full batches unless `batch` < n, then a
    random minibatch (the same rows for every member, drawn from `seed`) at each step. The
    nets are updated in place.
    """
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")

    def logits(p, b, x):
        return functional_call(base, (p, b), (x,))[:, 0]

    forward = vmap(logits)
    target = (y > 0).float()
    n = X.shape[1]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params.values(), lr=lr)
    for step in range(steps):
        xb, tb = X, target
        if batch is not None and batch < n:
            idx = torch.randint(n, (batch,), generator=gen)
            xb, tb = X[:, idx], target[:, idx]
        # Sum over members of each member's mean loss: member gradients stay independent.
        loss = F.binary_cross_entropy_with_logits(
            forward(params, buffers, xb), tb, reduction="none").mean(1)
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        final = F.binary_cross_entropy_with_logits(
            forward(params, buffers, X), target, reduction="none").mean(1)
        for i, net in enumerate(nets):
            net.load_state_dict({k: v[i] for k, v in {**params, **buffers}.items()})
            net.eval()
    return final.numpy()


def _fit(model: str, datasets: list, seeds: list[int], *, d: int, width: int, steps: int,
         lr: float, batch: int | None = None) -> tuple[list[HookedMLP], np.ndarray]:
    depth, act = MODELS[model]
    nets = []
    for s in seeds:
        torch.manual_seed(s)
        nets.append(HookedMLP(d_in=d, depth=depth, width=width, act=act))
    losses = train_ensemble(nets, torch.stack([ds.X for ds in datasets]),
                            torch.stack([ds.y for ds in datasets]), steps=steps, lr=lr,
                            batch=batch, seed=seeds[0])
    return nets, losses


def _acc(net: HookedMLP, part) -> float:
    return float(((predict_logits(net, part.X)[:, 0] > 0).float() * 2 - 1 == part.y)
                 .float().mean())


def _logistic_optimum(ds):
    """The converged, (almost) unregularised logistic regression on `ds` as a model."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e6, tol=1e-8, max_iter=10_000).fit(ds.X.numpy(), ds.y.numpy())
    w = torch.as_tensor(clf.coef_[0], dtype=torch.float32)
    b = float(clf.intercept_[0])
    return lambda X: X @ w + b


def run_cell(model: str, *, alpha: float, eta_core: int, seeds: list[int], n: int, d: int,
             width: int, steps: int, lr: float, n_family: int = 0,
             family_batch: int = 500) -> list[dict]:
    """One (value, architecture) cell: a model per seed, each on its own sampled data and
    embedding; with `n_family` > 0 also the best-in-family fit per seed (same embedding)."""
    task = dict(rho_core=0.9, rho_short=0.9, alpha_short=alpha, eta_core=eta_core, d=d)
    datasets = [make_shortcut_dataset(n + N_TEST, seed=s, **task) for s in seeds]
    splits = [ds.split(n) for ds in datasets]
    fit = dict(d=d, width=width, steps=steps, lr=lr)
    nets, losses = _fit(model, [tr for tr, _ in splits], seeds, **fit)
    family, optimum = [None] * len(seeds), [None] * len(seeds)
    if n_family:
        big = [make_shortcut_dataset(n_family, seed=FAMILY_SEED + s, embed_seed=s, **task)
               for s in seeds]
        family, _ = _fit(model, big, [FAMILY_SEED + s for s in seeds], batch=family_batch,
                         **fit)
        if model == "linear":  # convex: the family's true optimum, for comparison
            optimum = [_logistic_optimum(b) for b in big]
    rows = []
    for s, net, ref, opt, ds, (train, test), loss in zip(seeds, nets, family, optimum,
                                                         datasets, splits, losses, strict=True):
        grid = probe_grid(ds)
        rep = shortcut_report(net, ds, grid=grid, reference=ref).iloc[0]
        vs_opt = (shortcut_report(net, ds, grid=grid, reference=opt).bias_vs_reference[0]
                  if opt is not None else math.nan)
        bayes_acc = float((test.bayes_predict(test.z[:, 0], test.z[:, 1]) == test.y)
                          .float().mean())
        rows.append(dict(
            model=model, seed=s, reliance=rep.reliance, shortcut_bias=rep.shortcut_bias,
            bias_vs_family=rep.get("bias_vs_reference", math.nan),
            family_bias=rep.get("reliance_reference", math.nan) - rep.reliance_bayes,
            bias_vs_optimum=vs_opt,
            saturated=ds.embed_core.saturated_fraction(ds.z[:, 0].double().numpy()),
            train_loss=float(loss), train_acc=_acc(net, train), test_acc=_acc(net, test),
            family_test_acc=_acc(ref, test) if ref is not None else math.nan,
            bayes_acc=bayes_acc))
    return rows


def run(args) -> tuple[pd.DataFrame, pd.DataFrame]:
    torch.set_num_threads(args.threads)
    if args.quick:
        alphas, etas, seeds = [1.0, 5.0], [0, 2], [args.seed, args.seed + 1]
        kw = dict(n=64, d=8, width=16, steps=40, lr=1e-2, family_batch=64)
        n_family = 512
    else:
        alphas, etas = [1.0, 2.0, 3.0, 4.0, 5.0], [0, 1, 2, 3]
        seeds = [args.seed + i for i in range(args.seeds)]
        kw = dict(n=args.n_train, d=20, width=128, steps=args.steps, lr=1e-2, family_batch=500)
        n_family = args.n_family
    runs = []
    cells: dict[tuple, list[dict]] = {}  # (alpha, eta, model) -> rows; eta 0 = alpha 1 cell
    t0 = time.perf_counter()
    for sweep, values in (("amplification", alphas), ("nesting", etas)):
        for v in values:
            alpha, eta = (v, 0) if sweep == "amplification" else (1.0, int(v))
            # The family reference where the claims use it: every nesting cell, top alpha.
            fam = n_family if alpha in (1.0, max(alphas)) else 0
            for model in MODELS:
                key = (alpha, eta, model)
                if key not in cells:
                    cells[key] = run_cell(model, alpha=alpha, eta_core=eta, seeds=seeds,
                                          n_family=fam, **kw)
                runs.extend(dict(sweep=sweep, value=float(v), **r) for r in cells[key])
            print(f"  {sweep}={v}: done ({time.perf_counter() - t0:.0f}s)", flush=True)
    raw = pd.DataFrame(runs)
    # Paired by seed (same training set): how much more biased than the linear model.
    lin = raw[raw.model == "linear"].set_index(["sweep", "value", "seed"]).shortcut_bias
    keys = list(zip(raw.sweep, raw.value, raw.seed, strict=True))
    raw["bias_minus_linear"] = raw.shortcut_bias.to_numpy() - lin.loc[keys].to_numpy()

    rows = []
    for (sweep, value, model), g in raw.groupby(["sweep", "value", "model"], sort=False):
        row = dict(sweep=sweep, value=value, model=model)
        for col, name in (("shortcut_bias", "bias"), ("bias_minus_linear", "minus_linear"),
                          ("bias_vs_family", "vs_family"),
                          ("bias_vs_optimum", "vs_optimum")):
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = mean_ci(g[col])
        row.update(g[["saturated", "train_loss", "test_acc", "family_test_acc", "bayes_acc"]]
                   .mean().to_dict(), n_seeds=len(g))
        rows.append(row)
    return pd.DataFrame(rows), raw


def _seeds(raw: pd.DataFrame, sweep: str, value: float, model: str,
           col: str = "shortcut_bias") -> pd.Series:
    sel = raw[(raw.sweep == sweep) & (raw.value == value) & (raw.model == model)]
    return sel.set_index("seed")[col]


def _reason(row: dict, null: bool) -> str:
    lo, hi = row["ci_low"], row["ci_high"]
    where = f"interval [{lo:+.3f}, {hi:+.3f}]"
    if row["verdict"] == HOLDS:
        return ""
    if null:
        return f"{where} {'lies outside' if row['verdict'] == FAILS else 'crosses'} " \
               f"+-{NULL_MARGIN}"
    return f"{where} {'is at or below 0' if row['verdict'] == FAILS else 'contains 0'}"


def _claim(claim: str, values: pd.Series, null: bool = False) -> dict:
    """A '> 0' claim, or with `null` an 'about 0' one: holds inside +-NULL_MARGIN."""
    row = claim_row(claim, values.to_numpy())
    if null:
        lo, hi = row["ci_low"], row["ci_high"]
        row["verdict"] = (NOISE if not (math.isfinite(lo) and math.isfinite(hi)) else
                          HOLDS if -NULL_MARGIN < lo and hi < NULL_MARGIN else
                          FAILS if lo >= NULL_MARGIN or hi <= -NULL_MARGIN else NOISE)
    row["reason"] = _reason(row, null)
    return row


def claims(raw: pd.DataFrame) -> pd.DataFrame:
    """Every claim of the shortcut_bias section as a seed-paired quantity and its verdict."""
    amp = raw[raw.sweep == "amplification"]
    a_lo, a_hi = amp.value.min(), amp.value.max()
    etas = sorted(raw[raw.sweep == "nesting"].value.unique())
    nested = [e for e in etas if e > 0]
    nest_tag = f"eta {int(nested[0])}..{int(nested[-1])}"

    def nest_mean(model: str, col: str) -> pd.Series:
        tab = pd.concat([_seeds(raw, "nesting", e, model, col) for e in nested], axis=1)
        return tab.mean(axis=1)

    def slope(sweep: str, model: str) -> pd.Series:
        vals = sorted(raw[raw.sweep == sweep].value.unique())
        tab = pd.concat([_seeds(raw, sweep, v, model) for v in vals], axis=1)
        return tab.apply(lambda r: np.polyfit(vals, r.to_numpy(), 1)[0], axis=1)

    def amp_at(model, value, col="shortcut_bias"):
        return _seeds(raw, "amplification", value, model, col)

    rows = [
        _claim(f"linear: bias at alpha {a_hi:g} is ~0", amp_at("linear", a_hi), null=True),
        _claim(f"linear: bias rise alpha {a_lo:g} -> {a_hi:g} is ~0 (paired)",
               amp_at("linear", a_hi) - amp_at("linear", a_lo), null=True),
    ]
    for m in [m for m in MODELS if m != "linear"]:
        rows += [
            _claim(f"{m}: biased towards the amplified shortcut at alpha {a_hi:g} (vs Bayes)",
                   amp_at(m, a_hi)),
            _claim(f"{m}: bias rises from alpha {a_lo:g} to {a_hi:g} (paired)",
                   amp_at(m, a_hi) - amp_at(m, a_lo)),
            _claim(f"{m}: bias rises with alpha (per-seed slope)", slope("amplification", m)),
            _claim(f"{m}: more biased than linear at alpha {a_hi:g} (paired)",
                   amp_at(m, a_hi, "bias_minus_linear")),
        ]
    for m in MODELS:
        rows += [
            _claim(f"{m}: nesting ({nest_tag}) biases towards the shortcut, vs Bayes",
                   nest_mean(m, "shortcut_bias")),
            _claim(f"{m}: nesting ({nest_tag}) biases towards the shortcut, vs best in family",
                   nest_mean(m, "bias_vs_family")),
            _claim(f"{m}: bias rises with nesting depth (per-seed slope, vs Bayes)",
                   slope("nesting", m)),
        ]
        if m == "linear":
            rows.insert(-1, _claim(
                f"linear: nesting ({nest_tag}) biases towards the shortcut, vs the converged "
                f"logistic regression on the family's samples", nest_mean(m, "bias_vs_optimum")))
    rows += [
        _claim(f"deeper: relu-3 more biased than relu-1 at alpha {a_hi:g} (paired)",
               amp_at("relu-3", a_hi) - amp_at("relu-1", a_hi)),
        _claim(f"deeper: relu-3 more biased than relu-1 under nesting ({nest_tag}), vs Bayes",
               nest_mean("relu-3", "shortcut_bias") - nest_mean("relu-1", "shortcut_bias")),
        _claim(f"deeper: relu-3 more biased than relu-1 under nesting ({nest_tag}), "
               f"vs best in family",
               nest_mean("relu-3", "bias_vs_family") - nest_mean("relu-1", "bias_vs_family")),
    ]
    return pd.DataFrame(rows)


def figure(table: pd.DataFrame):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = (("amplification", "bias", "amplification alpha_short (vs Bayes)"),
              ("nesting", "bias", "nesting depth eta_core (vs Bayes)"),
              ("nesting", "vs_family", "nesting depth eta_core (vs best in family)"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[2] for p in panels])
    colours = dict(zip(MODELS, ["#636efa", "#ef553b", "#00cc96", "#ab63fa"], strict=True))
    for col, (sweep, y, _) in enumerate(panels, start=1):
        sub = table[table.sweep == sweep]
        for model in MODELS:
            m = sub[sub.model == model]
            fig.add_trace(go.Scatter(
                x=m.value, y=m[y], mode="lines+markers", name=model, legendgroup=model,
                error_y=dict(type="data", array=m[f"{y}_hi"] - m[y],
                             arrayminus=m[y] - m[f"{y}_lo"]),
                showlegend=col == 1, line=dict(color=colours[model])), row=1, col=col)
    fig.update_yaxes(title_text="shortcut bias (reliance - reference)", row=1, col=1)
    fig.update_layout(template="plotly_white", title="Shortcut bias, rho_core = rho_short = "
                      "0.9; mean and 95 % interval over seeds")
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame:
    def extra(p):
        p.add_argument("--seeds", type=int, default=16)
        p.add_argument("--steps", type=int, default=1000, help="full-batch Adam steps")
        p.add_argument("--n-train", type=int, default=200, help="training samples per model")
        p.add_argument("--n-family", type=int, default=20_000,
                       help="samples of the best-in-family fit (0: skip it)")

    args = parse_args(NAME, __doc__, argv, extra)
    table, raw = run(args)
    claim_tab = claims(raw)
    write_outputs(NAME, table, figure(table), args.out,
                  {f"{NAME}_runs": raw, "claims": claim_tab})
    print(to_markdown(table))
    print(to_markdown(claim_tab))
    return table


if __name__ == "__main__":
    main()
