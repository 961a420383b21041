"""WCST-ML: which of four equally valid cues each architecture adopts.

After Scimeca et al., "Which Shortcut Cues Will DNNs Choose? A Study from the Parameter-Space
Perspective" (ICLR 2022). Sprites whose colour, scale, shape and orientation all equal the
label are the training set (the "diagonal"); for each cue an off-diagonal test set keeps only
that cue tied to the label and randomises the rest. Held-out accuracy ~1 on a cue's set and
~0.5 on the others means the model adopted that cue. Architectures: a linear classifier and a
2-hidden-layer ReLU MLP on the flattened pixels, and a small CNN (2 conv blocks, global pool).

    python experiments/wcst_ml.py            # default run (docs/probes.md)
    python experiments/wcst_ml.py --quick    # seconds, for the tests
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _claims import claim_row, claims_table  # noqa: E402
from _probe_common import parse_args, to_markdown, write_outputs  # noqa: E402

from featlab.datasets.wcst import WCST_CUES, make_wcst_dataset, wcst_test_sets  # noqa: E402
from featlab.models.cnn import HookedCNN  # noqa: E402
from featlab.models.fit import fit_classifier, predict_logits  # noqa: E402
from featlab.models.mlp import HookedMLP  # noqa: E402

NAME = "wcst_ml"


class Flat(nn.Module):
    """Feeds flattened images to a HookedMLP (kept outside the MLP so its hooks stay 2-D)."""

    def __init__(self, mlp: HookedMLP) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.flatten(1))


def make_model(arch: str, image_size: int, width: int) -> nn.Module:
    d_in = 3 * image_size * image_size
    if arch == "linear":
        return Flat(HookedMLP(d_in=d_in, d_out=2, depth=0))
    if arch == "mlp":
        return Flat(HookedMLP(d_in=d_in, d_out=2, depth=2, width=width))
    if arch == "cnn":
        return HookedCNN(in_channels=3, d_out=2, channels=(16, 32), d_hidden=width)
    raise ValueError(f"unknown architecture {arch!r}; valid: linear, mlp, cnn")


def run(args) -> tuple[pd.DataFrame, pd.DataFrame]:
    torch.set_num_threads(args.threads)
    archs = ["linear", "mlp", "cnn"]
    if args.quick:
        seeds, n_train, n_test, size, epochs, width = [args.seed], 200, 100, 16, 2, 16
    else:
        seeds = [args.seed + i for i in range(args.seeds)]
        n_train, n_test, size, epochs, width = 3000, 1000, 20, args.epochs, 64
    rows = []
    t0 = time.perf_counter()
    for s in seeds:
        train = make_wcst_dataset(n_train, split="diagonal", image_size=size, seed=s)
        tests = wcst_test_sets(n_test, image_size=size, seed=s)
        for arch in archs:
            torch.manual_seed(s)
            net = make_model(arch, size, width)
            hist = fit_classifier(net, train.X, train.y, epochs=epochs, lr=1e-3,
                                  batch_size=64, seed=s).history
            row = dict(arch=arch, seed=s, train_acc=float(hist.train_acc.iloc[-1]))
            for cue, ds in tests.items():
                pred = predict_logits(net, ds.X).argmax(-1)
                row[cue] = float((pred == ds.y).float().mean())
            row["adopted"] = max(WCST_CUES, key=lambda c: row[c])
            rows.append(row)
            print(f"  seed {s} {arch}: done ({time.perf_counter() - t0:.0f}s)", flush=True)
    raw = pd.DataFrame(rows)
    table = raw.groupby("arch", sort=False)[["train_acc", *WCST_CUES]].mean().reset_index()
    table["adopted"] = raw.groupby("arch", sort=False).adopted.agg(
        lambda a: ", ".join(f"{c} x{n}" for c, n in a.value_counts().items())).values
    return table, raw


def claims(raw: pd.DataFrame) -> pd.DataFrame:
    """Scimeca et al.'s ordering as per-seed margins (> 0 when the claim holds on that seed):
    colour is preferred first, scale next, and shape and orientation are avoided."""
    others = [c for c in WCST_CUES if c != "colour"]
    rows = []
    for arch, g in raw.groupby("arch", sort=False):
        rows.append(claim_row(f"{arch}: colour above every other cue (colour - best other)",
                              g["colour"] - g[others].max(axis=1), arch=arch))
        rows.append(claim_row(f"{arch}: scale above shape and orientation",
                              g["scale"] - g[["shape", "orientation"]].max(axis=1), arch=arch))
        rows.append(claim_row(f"{arch}: shape not adopted (best cue - shape)",
                              g[list(WCST_CUES)].max(axis=1) - g["shape"], arch=arch))
    return claims_table(rows)


def figure(table: pd.DataFrame):
    import plotly.graph_objects as go

    fig = go.Figure()
    for arch in table.arch:
        r = table[table.arch == arch].iloc[0]
        fig.add_trace(go.Bar(x=list(WCST_CUES), y=[r[c] for c in WCST_CUES], name=arch))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance")
    fig.update_layout(template="plotly_white", barmode="group", yaxis_range=[0, 1.02],
                      yaxis_title="accuracy on the cue's off-diagonal set",
                      title="WCST-ML: which cue does each architecture adopt?")
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame:
    def extra(p):
        p.add_argument("--seeds", type=int, default=5)
        p.add_argument("--epochs", type=int, default=8)

    args = parse_args(NAME, __doc__, argv, extra)
    table, raw = run(args)
    found = claims(raw)
    write_outputs(NAME, table, figure(table), args.out, {f"{NAME}_runs": raw, "claims": found})
    print(to_markdown(table))
    print(to_markdown(found))
    return table


if __name__ == "__main__":
    main()
