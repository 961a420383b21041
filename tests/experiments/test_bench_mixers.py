"""`experiments/bench_mixers.py --quick` writes a sane table, its Markdown and a figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from featlab.models.ops.benchmark import bench_ops

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench_mixers.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_mixers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a kaleido PNG alone takes ~8 s
def test_quick_run_writes_table_and_figure(tmp_path: Path, capsys) -> None:
    _load_script().main(["--quick", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "bench_mixers.csv")
    assert set(df["op"]) == {"gla", "delta_rule", "ssd", "kda"}
    assert sorted(set(df["length"])) == [32, 64]
    assert (df["recurrent_ms"] > 0).all() and (df["chunk_ms"] > 0).all()
    ratio = df["recurrent_ms"] / df["chunk_ms"]
    assert ((df["speedup"] - ratio).abs() <= 0.01 * ratio + 0.01).all()
    assert (df["max_abs_err"] <= 1e-5).all()
    md = (tmp_path / "bench_mixers.md").read_text()
    assert md.startswith("| op | length |") and md.count("\n") == len(df) + 2
    assert (tmp_path / "bench_mixers.html").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "speedup" in printed
    assert (tmp_path / "bench_mixers.png").exists() or "PNG not written" in printed


def test_bench_ops_rejects_unknown_op() -> None:
    with pytest.raises(ValueError, match="valid"):
        bench_ops(lengths=(8,), ops=("mamba3",), repeats=1)
