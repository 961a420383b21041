"""Shared plumbing for the probe experiments: arguments, and atomic table + figure output.

Each experiment writes ``<name>.csv``, ``<name>.md``, ``<name>.html`` and ``<name>.png`` (when
kaleido can render; its failure is reported, the HTML is always there) under ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from featlab._atomic import atomic_path
from featlab._tables import markdown_table


def parse_args(name: str, doc: str | None, argv: list[str] | None = None,
               extra: Any = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results") / name)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared box)")
    if extra is not None:
        extra(p)
    return p.parse_args(argv)


def comma_list(cast: Callable[[str], Any]) -> Callable[[str], list]:
    """An argparse ``type`` (and parser of a size's default) for comma-separated values:
    ``comma_list(int)("256,1024") == [256, 1024]``. On the command line a bad item is a usage
    error naming the form expected, not a traceback."""

    def parse(text: str) -> list:
        try:
            return [cast(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {cast.__name__} values separated by commas, e.g. "
                f"{_EXAMPLES.get(cast, 'a,b')}; got {text!r}"
            ) from None

    return parse


_EXAMPLES = {int: "256,1024", float: "1,0.3"}


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts such as ``--repeats``: a bad or non-positive value is a
    usage error, not an empty table and a traceback later."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1; got {text!r}")
    return value


def seeds_flag(p: argparse.ArgumentParser) -> None:
    """``--seeds`` for `parse_args(extra=...)`; None means the size's own seeds."""
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds (default: 0 1 2; with --quick 0 1)")  # fmt: skip


def print_tables(*tables: pd.DataFrame) -> None:
    """The tables on stdout, wide and three decimals, a blank line between them."""
    with pd.option_context("display.width", 220, "display.max_columns", 20,
                           "display.max_colwidth", 70):  # fmt: skip
        print("\n\n".join(t.to_string(index=False, float_format=lambda v: f"{v:.3f}")
                          for t in tables))


def to_markdown(df: pd.DataFrame) -> str:
    """The probe experiments' tables: floats to three decimals."""
    return markdown_table(df, ".3f")


def _atomic(path: Path, write: Any) -> None:
    with atomic_path(path) as tmp:
        write(str(tmp))


def write_outputs(name: str, table: pd.DataFrame, fig: Any, out: Path,
                  extra_tables: dict[str, pd.DataFrame] | None = None) -> dict[str, Path]:
    """Write the table (CSV + MD) and figure (HTML + PNG if possible) atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    tables = {name: table, **(extra_tables or {})}
    for tname, df in tables.items():
        csv, md = out / f"{tname}.csv", out / f"{tname}.md"
        _atomic(csv, lambda p, df=df: df.to_csv(p, index=False))
        _atomic(md, lambda p, df=df: Path(p).write_text(to_markdown(df)))
        paths[f"{tname}.csv"], paths[f"{tname}.md"] = csv, md
    html, png = out / f"{name}.html", out / f"{name}.png"
    _atomic(html, lambda p: fig.write_html(p, include_plotlyjs="cdn"))
    paths["html"] = html
    try:
        _atomic(png, lambda p: fig.write_image(p, format="png", width=1000, height=560))
        paths["png"] = png
    except Exception as err:  # kaleido needs a browser binary that may be missing
        print(f"PNG not written (kaleido failed: {type(err).__name__}: {err}); the HTML is there")
    return paths
