"""Shared output helpers of the SAE experiments (tables as CSV + Markdown, figures as HTML + PNG).

pandas' `to_markdown` needs `tabulate`, which featlab does not depend on, so tables are
rendered here. Every file is written beside its target and renamed over it, so a reader never
sees half a table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from featlab._atomic import atomic_path
from featlab._tables import markdown_table


def write_table(df: pd.DataFrame, out: Path, name: str) -> None:
    with atomic_path(out / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(out / f"{name}.md") as tmp:
        tmp.write_text(markdown_table(df, nan=""))


def write_figure(fig: Any, out: Path, name: str) -> str | None:
    """Write `name`.html and (via kaleido) `name`.png; returns a note if the PNG failed."""
    with atomic_path(out / f"{name}.html") as tmp:
        fig.write_html(tmp, include_plotlyjs="cdn")
    try:
        with atomic_path(out / f"{name}.png") as tmp:
            fig.write_image(tmp, format="png")
    except Exception as err:  # kaleido needs a headless browser; report instead of failing
        return f"PNG not written for {name} ({type(err).__name__}: {err})"
    return None


def seed_summary(df: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    """One row per `by` group: n_seeds and, for each of `cols`, its mean and the half-width
    of the Student-t 95 % interval over the seeds (``<col>_ci``; NaN with one seed)."""
    from _claims import mean_ci

    rows = []
    for key, g in df.groupby(by, sort=False, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row["n_seeds"] = int(g["seed"].nunique())
        for c in cols:
            if c in g and g[c].notna().any():
                m, lo, hi = mean_ci(g[c])
                row[c], row[f"{c}_ci"] = m, (hi - lo) / 2
        rows.append(row)
    return pd.DataFrame(rows)


def gao_lr(d_sae: int) -> float:
    """featlab 0.1's default Adam lr, Gao et al.'s 2e-4 / sqrt(d_sae / 2**14): the experiments
    documented before the sae_frontier sweep raised the default pin it, so they reproduce."""
    return 2e-4 / (d_sae / 2**14) ** 0.5


def endless_batches(x: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    """Consecutive ``batch``-row slices of ``x``, cycling forever: the same order for every
    library a benchmark trains side by side."""
    n = len(x) // batch
    i = 0
    while True:
        yield x[(i % n) * batch : (i % n + 1) * batch]
        i += 1


def heldout_fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over held-out rows, in float64: one
    formula for every library a benchmark compares."""
    x64, e = x.double(), (x - x_hat).double()
    return float(e.pow(2).sum() / (x64 - x64.mean(0)).pow(2).sum())
