"""`experiments/hf_equivalence.py --quick`: a row per architecture, and the properties it
reports hold even at the smoke-test size."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "hf_equivalence.py"


@pytest.mark.slow
def test_quick_run_reports_every_architecture(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("hf_equivalence", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(["--quick", "--types", "llama", "mamba2", "lfm2", "kimi_linear",
                 "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "equivalence.csv").set_index("architecture")
    assert list(df.index) == ["llama", "mamba2", "lfm2", "kimi_linear"]
    assert (df["no hook (max abs)"] == 0).all()
    assert (df["resid_mid patch: before t"] == 0).all()
    assert (df["resid_mid patch: min from t"] > 0).all()
    mixers = df.loc[["mamba2", "lfm2", "kimi_linear"]]
    assert (mixers["mixer hooks (normwise)"] < 1e-5).all()
    stateful = df.loc[["mamba2", "kimi_linear"]]
    assert (stateful["state vs decode (normwise)"] < 1e-5).all()
    assert (stateful["state patch: before t"] == 0).all()
    assert (stateful["state patch: min from t"] > 0).all()
    assert pd.isna(df.loc["llama", "mixer hooks (normwise)"])  # no adapter: a blank
    assert pd.isna(df.loc["lfm2", "state vs decode (normwise)"])  # no recurrent state
    assert (tmp_path / "equivalence.md").is_file() and (tmp_path / "equivalence.html").is_file()
