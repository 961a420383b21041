"""`experiments/bench_activation_store.py --quick` runs both stores on one HF model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench_activation_store.py"


@pytest.mark.slow
def test_quick_run_writes_its_table(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_activation_store", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(["--quick", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "bench_activation_store.csv")
    assert len(df) == 1 and (df["featlab_tokens_per_s"] > 0).all()
    assert (df["saelens_tokens_per_s"] > 0).all()
