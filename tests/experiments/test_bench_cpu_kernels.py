"""`experiments/bench_cpu_kernels.py --quick` times every CPU kernel beside its reference and
writes its table. Not a speed assertion: the numbers are measured by hand (docs/kernels.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from featlab.kernels.dispatch import numba_available

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench_cpu_kernels.py"


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_quick_run_writes_a_row_per_kernel(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_cpu_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cpu_kernels"] = module
    spec.loader.exec_module(module)
    df = module.main(["--quick", "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "bench_cpu_kernels.csv")
    assert len(table) == len(df) == 4
    assert (table["numba_ms"] > 0).all() and (table["torch_ms"] > 0).all()
    assert (tmp_path / "bench_cpu_kernels.md").read_text().count("\n") >= 5
