"""Representation bias: an easy and a hard feature, both learnt, take unequal shares.

After Lampinen, Chan & Hermann, "Learned feature representations are biased by complexity,
learning order, position, and more" (TMLR 2024). ReLU MLPs of 1 to 4 hidden layers learn two
binary outputs of one bit vector at once: an easy one (``linear:3``, majority of 3 bits) and a
hard one (``xor:3``, parity of 3 other bits), plus 6 distractor bits. Once both are learnt to
~100% held-out accuracy we ask, at every hidden layer:

- representation strength: held-out R^2 of a linear map *from* the feature to the centred
  representation (the share of the layer's variance the feature explains), pooled over units
  and, as a check on the measure, averaged over units;
- pc1_r2: squared correlation of the feature with the top principal component.

Expected: the easy feature has the larger strength and dominates the top PC, more so with depth.
The imbalance is ``log(strength_easy / strength_hard)`` per seed; "more so with depth" is its
per-seed slope against the number of hidden layers. Width 64 is the main setting; the other
widths, the first hidden layer, all hidden layers, the per-unit average, mid-training and
initialisation are there to tell whether the depth trend is in the models or in the measure.

    python experiments/representation_bias.py            # default run (docs/probes.md)
    python experiments/representation_bias.py --quick    # seconds, for the tests
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
from _probe_common import comma_list, parse_args, to_markdown, write_outputs  # noqa: E402

from featlab.complexity import strength_table  # noqa: E402
from featlab.datasets.graded import make_graded_dataset  # noqa: E402
from featlab.models.fit import fit_classifier, predict_logits  # noqa: E402
from featlab.models.mlp import HookedMLP  # noqa: E402

NAME = "representation_bias"
EASY, HARD = "linear:3", "xor:3"
# A held-out R^2 can be ~0 or below (the hard feature at initialisation); the log ratio
# counts anything under this floor as the floor rather than dividing by noise.
FLOOR = 1e-3


def one_run(depth: int, width: int, seed: int, *, n_train: int, n_eval: int, epochs: int,
            checkpoints: list[int]) -> pd.DataFrame:
    data = make_graded_dataset(n_train + n_eval, features=(EASY, HARD), n_distractors=6,
                               seed=seed)
    train, ev = data.split(n_train)
    torch.manual_seed(seed)
    net = HookedMLP(d_in=data.X.shape[1], d_out=2, depth=depth, width=width)
    res = fit_classifier(net, train.X, train.Y, epochs=epochs, lr=3e-3, batch_size=128,
                         seed=seed, checkpoints=checkpoints)
    feats = {EASY: ev.feature(EASY), HARD: ev.feature(HARD)}
    layers = net.layer_hooks()
    parts = []
    for epoch in sorted(res.snapshots):
        net.load_state_dict(res.snapshots[epoch])
        acc = ((predict_logits(net, ev.X) > 0).float() == ev.Y).float().mean(0).numpy()
        with torch.no_grad():
            _, cache = net.run_with_cache(ev.X, names_filter=layers)
        acts = {h: cache[h] for h in layers}
        st = strength_table(acts, feats, seed=seed, on_constant="raise")
        units = strength_table(acts, feats, seed=seed, on_constant="raise", average="units")
        st["strength_units"] = units.strength.to_numpy()
        st["eval_acc"] = st.feature.map({EASY: float(acc[0]), HARD: float(acc[1])})
        for col, val in (("epoch", epoch), ("seed", seed), ("width", width),
                         ("model_depth", depth)):
            st.insert(0, col, val)
        parts.append(st)
    return pd.concat(parts, ignore_index=True)


def imbalance(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per model x epoch x layer: strengths of both features and their log ratio."""
    keys = ["model_depth", "width", "seed", "epoch", "depth"]
    wide = raw.pivot_table(index=keys, columns="feature",
                           values=["strength", "strength_units", "pc1_r2", "eval_acc"])
    wide.columns = [f"{v}_{'easy' if f == EASY else 'hard'}" for v, f in wide.columns]
    wide = wide.reset_index()
    for kind in ("strength", "strength_units"):
        wide[f"log_ratio_{kind.removeprefix('strength').strip('_') or 'pooled'}"] = np.log(
            wide[f"{kind}_easy"].clip(lower=FLOOR) / wide[f"{kind}_hard"].clip(lower=FLOOR))
    wide["layer_from_end"] = wide.model_depth - 1 - wide.depth
    return wide


def _slopes(per_model: pd.DataFrame, col: str) -> list[float]:
    """Per seed: least-squares slope of `col` against the number of hidden layers."""
    out = []
    for _, g in per_model.groupby("seed"):
        if g.model_depth.nunique() >= 2:
            out.append(float(np.polyfit(g.model_depth, g[col], 1)[0]))
    return out


def variants(wide: pd.DataFrame, main_width: int, end: int, mid: int) -> dict[str, pd.DataFrame]:
    """The depth trend under each choice of layer, measure, width and training time: one
    row per model (model_depth, seed) with a column `imb`."""
    main = wide[(wide.width == main_width) & (wide.epoch == end)]
    last = main[main.layer_from_end == 0]
    mean_all = main.groupby(["model_depth", "seed"])[["strength_easy", "strength_hard"]].mean()
    mean_all["imb"] = np.log(mean_all.strength_easy.clip(lower=FLOOR)
                             / mean_all.strength_hard.clip(lower=FLOOR))
    out = {
        "last hidden layer, pooled R^2 (the claim)": last.assign(imb=last.log_ratio_pooled),
        "last hidden layer, easy - hard strength": last.assign(
            imb=last.strength_easy - last.strength_hard),
        "last hidden layer, per-unit R^2": last.assign(imb=last.log_ratio_units),
        "first hidden layer": main[main.depth == 0].assign(imb=lambda d: d.log_ratio_pooled),
        "all hidden layers (mean strength)": mean_all.reset_index(),
    }
    for w in sorted(set(wide.width) - {main_width}):
        sub = wide[(wide.width == w) & (wide.epoch == end) & (wide.layer_from_end == 0)]
        out[f"last hidden layer, width {w}"] = sub.assign(imb=sub.log_ratio_pooled)
    for ep, label in ((mid, f"last hidden layer, epoch {mid}"), (0, "last hidden layer, init")):
        sub = wide[(wide.width == main_width) & (wide.epoch == ep) & (wide.layer_from_end == 0)]
        if len(sub) and ep != end:
            out[label] = sub.assign(imb=sub.log_ratio_pooled)
    return out


def claims(wide: pd.DataFrame, main_width: int, end: int, mid: int) -> pd.DataFrame:
    main = wide[(wide.width == main_width) & (wide.epoch == end)]
    last = main[main.layer_from_end == 0]
    rows = []
    for d, g in last.groupby("model_depth"):
        rows.append(claim_row(
            f"easy explains more variance than hard (log strength ratio), {d} layer(s)",
            g.log_ratio_pooled))
    for d, g in last.groupby("model_depth"):
        rows.append(claim_row(f"easy owns PC1 (pc1_r2 easy - hard), {d} layer(s)",
                              g.pc1_r2_easy - g.pc1_r2_hard))
    for label, per_model in variants(wide, main_width, end, mid).items():
        slopes = _slopes(per_model, "imb")
        r = claim_row(f"imbalance grows with depth (slope per layer): {label}", slopes)
        if r["verdict"] != "holds":
            r["reason"] = _depth_reason(per_model)
        rows.append(r)
    deepest = main[main.model_depth == main.model_depth.max()]
    drop = (deepest[deepest.depth == 0].set_index("seed").log_ratio_pooled
            - deepest[deepest.layer_from_end == 0].set_index("seed").log_ratio_pooled)
    rows.append(claim_row(
        f"within the {int(main.model_depth.max())}-layer model the imbalance falls from the "
        "first to the last hidden layer", drop))
    return claims_table(rows)


def _depth_reason(per_model: pd.DataFrame) -> str:
    by_depth = per_model.groupby("model_depth").imb.mean()
    trend = ", ".join(f"{v:.2f}" for v in by_depth)
    return f"mean imbalance by number of layers ({', '.join(map(str, by_depth.index))}): {trend}"


def run(args) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    torch.set_num_threads(args.threads)
    if args.quick:
        depths, seeds, widths = [1, 2], [args.seed], [16]
        kw = dict(n_train=400, n_eval=300, epochs=3)
    else:
        depths = [1, 2, 3, 4]
        seeds = [args.seed + i for i in range(args.seeds)]
        widths = args.widths
        kw = dict(n_train=3000, n_eval=1500, epochs=args.epochs)
    end = kw["epochs"]
    mid = max(1, end // 3)
    kw["checkpoints"] = sorted({0, mid, end})
    parts = []
    t0 = time.perf_counter()
    for width in widths:
        for depth in depths:
            for s in seeds:
                parts.append(one_run(depth, width, s, **kw))
            print(f"  width {width}, depth {depth}: done ({time.perf_counter() - t0:.0f}s)",
                  flush=True)
    raw = pd.concat(parts, ignore_index=True)
    wide = imbalance(raw)
    main = wide[(wide.width == widths[0]) & (wide.epoch == end) & (wide.layer_from_end == 0)]
    table = main.groupby("model_depth").agg(
        acc_easy=("eval_acc_easy", "mean"), acc_hard=("eval_acc_hard", "mean"),
        strength_easy=("strength_easy", "mean"), strength_hard=("strength_hard", "mean"),
        pc1_r2_easy=("pc1_r2_easy", "mean"), pc1_r2_hard=("pc1_r2_hard", "mean"),
        log_ratio=("log_ratio_pooled", "mean"), n_seeds=("seed", "count"),
    ).reset_index()
    # geometric mean over seeds of easy / hard: the ratio of means would let one seed decide
    table["strength_ratio"] = np.exp(table.log_ratio)
    trend = pd.DataFrame([
        dict(variant=label, **{f"depth_{d}": v for d, v in
                               per_model.groupby("model_depth").imb.mean().items()})
        for label, per_model in variants(wide, widths[0], end, mid).items()])
    return table, raw, claims(wide, widths[0], end, mid), trend


def figure(table: pd.DataFrame, wide_last: pd.DataFrame, trend: pd.DataFrame):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "strength, last hidden layer", "log(easy/hard) by layer", "log(easy/hard) vs depth"))
    for name, colour in (("easy", "#636efa"), ("hard", "#ef553b")):
        label = f"{name} ({EASY if name == 'easy' else HARD})"
        fig.add_trace(go.Bar(x=table.model_depth, y=table[f"strength_{name}"], name=label,
                             marker_color=colour), row=1, col=1)
    for d, g in wide_last.groupby("model_depth"):
        prof = g.groupby("depth").log_ratio_pooled.mean()
        fig.add_trace(go.Scatter(x=prof.index + 1, y=prof.values, mode="lines+markers",
                                 name=f"{d}-layer model"), row=1, col=2)
    cols = [c for c in trend.columns if c.startswith("depth_")]
    for _, r in trend.iterrows():
        if "easy - hard" in r.variant:
            continue  # a difference, not a log ratio: another scale
        fig.add_trace(go.Scatter(x=[int(c.split("_")[1]) for c in cols], y=r[cols].to_numpy(),
                                 mode="lines+markers", name=r.variant), row=1, col=3)
    fig.update_xaxes(title_text="hidden layers", row=1, col=1)
    fig.update_xaxes(title_text="hidden layer (1 = first)", row=1, col=2)
    fig.update_xaxes(title_text="hidden layers", row=1, col=3)
    fig.update_layout(template="plotly_white", barmode="group",
                      title="Representation bias: easy vs hard feature")
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame:
    def extra(p):
        p.add_argument("--seeds", type=int, default=5)
        p.add_argument("--epochs", type=int, default=60)
        p.add_argument("--widths", type=comma_list(int), default="64,32,128",
                       help="comma-separated; the first is the main setting")

    args = parse_args(NAME, __doc__, argv, extra)
    table, raw, claim_tab, trend = run(args)
    wide = imbalance(raw)
    main_w, end = int(raw.width.iloc[0]), int(raw.epoch.max())
    fig = figure(table, wide[(wide.width == main_w) & (wide.epoch == end)], trend)
    write_outputs(NAME, table, fig, args.out,
                  {f"{NAME}_layers": raw, f"{NAME}_trend": trend, "claims": claim_tab})
    print(to_markdown(table))
    print(to_markdown(trend))
    print(to_markdown(claim_tab))
    return table


if __name__ == "__main__":
    main()
