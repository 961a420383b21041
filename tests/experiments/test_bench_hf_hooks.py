"""`experiments/bench_hf_hooks.py --quick` times every architecture and writes its table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "bench_hf_hooks.py"


@pytest.mark.slow
def test_quick_run_writes_a_row_per_architecture(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_hf_hooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(["--quick", "--out", str(tmp_path)])
    from featlab.models.hf.tiny import TINY_TYPES

    df = pd.read_csv(tmp_path / "bench_hf_hooks.csv")
    assert sorted(df["model_type"]) == sorted(TINY_TYPES)
    assert (df["hf_ms"] > 0).all() and (df["hooked_x"] > 0).all()
    assert (tmp_path / "bench_hf_hooks.md").is_file()
