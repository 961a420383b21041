"""Benchmark: chunked vs recurrent forms of the linear-recurrent ops, forward + backward.

Times each op of `featlab.models.ops` (gla, delta_rule, ssd, kda) at lengths 64..1024 (batch 4,
2 heads, d 32, chunk 16) and writes ``bench_mixers.csv``, ``bench_mixers.md`` and a figure
(``bench_mixers.html`` / ``.png``) to `--out`. Run::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/bench_mixers.py
    featlab bench mixers            # the same, through the CLI
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from featlab._atomic import atomic_write_text
from featlab._tables import markdown_table
from featlab.models.ops.benchmark import DEFAULT_LENGTHS, bench_ops

NAME = "bench_mixers"


def _small_floats(x: float) -> str:
    return f"{x:.2e}" if 0 < abs(x) < 1e-3 else str(x)


def figure(df: pd.DataFrame):
    """Time per forward+backward against length, log-log, one colour per op."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for op, rows in df.groupby("op", sort=False):
        for form, dash in (("recurrent", "dot"), ("chunk", "solid")):
            fig.add_trace(go.Scatter(
                x=rows["length"], y=rows[f"{form}_cpu_ms"], mode="lines+markers",
                name=f"{op} {form}", line={"dash": dash},
            ))
    fig.update_layout(
        title="forward + backward, batch 4, 2 heads, d 32 (CPU)",
        xaxis={"title": "sequence length", "type": "log"},
        yaxis={"title": "CPU ms (median)", "type": "log"},
    )
    return fig


def run(
    out: Path, quick: bool = False, seed: int = 0, repeats: int | None = None
) -> pd.DataFrame:
    """Run the benchmark and write its table and figure under `out`; returns the table."""
    lengths = (32, 64) if quick else DEFAULT_LENGTHS
    repeats = repeats if repeats is not None else (1 if quick else 5)
    df = bench_ops(lengths=lengths, repeats=repeats, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{NAME}.csv", df.to_csv(index=False))
    atomic_write_text(out / f"{NAME}.md", markdown_table(df, _small_floats))
    fig = figure(df)
    atomic_write_text(out / f"{NAME}.html", fig.to_html(include_plotlyjs="cdn"))
    try:
        fig.write_image(out / f"{NAME}.png")
    except Exception as err:  # kaleido needs a browser binary that may be missing
        print(f"PNG not written (kaleido failed: {type(err).__name__}: {err}); HTML is there")
    return df


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="lengths 32 and 64, one repeat (smoke test)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per cell")
    parser.add_argument("--out", type=Path, default=Path("results") / NAME)
    args = parser.parse_args(argv)
    df = run(args.out, quick=args.quick, seed=args.seed, repeats=args.repeats)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
