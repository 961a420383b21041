"""`experiments/auxk_revival.py --quick` writes the dead-fraction table, claims and a figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.experiments.scripts import load_experiment


@pytest.mark.slow  # 48 tiny SAE trainings (12 arms x 2 data x 2 seeds) and a kaleido PNG
def test_quick_run_writes_sane_outputs(tmp_path: Path) -> None:
    mod = load_experiment("auxk_revival")
    mod.main(["--quick", "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "auxk_revival.csv")
    assert set(table["data"]) == {"rank8", "superposition"}
    arms = set(mod.AUX_ARMS) | set(mod.FC_ARMS)
    for _, group in table.groupby("data"):
        assert set(group["arm"]) == arms and len(group) == 12
    assert table["dead_frac"].between(0, 1).all() and (table["n_seeds"] == 2).all()
    assert (table["window"] == 128).all(), "the run-scaled window: a tenth, at least a batch"
    assert (table["fvu"] > 0).all()
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 2 * 2 * 12
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert curves["dead_frac"].between(0, 1).all() and curves["tokens"].max() == 1024
    # AuxK takes part in the AuxK arms once latents die (aux > 0 somewhere), never without
    aux = curves[curves["kind"] != "feature_choice"].groupby("arm")["aux"].max()
    assert aux["no AuxK"] == 0
    claims = pd.read_csv(tmp_path / "claims.csv")
    assert claims["claim"].str.startswith("AuxK reduces dead latents").sum() == 12
    assert set(claims["verdict"]) <= {"holds", "does not hold", "within noise"}
    assert (tmp_path / "auxk_revival.html").stat().st_size > 1000
