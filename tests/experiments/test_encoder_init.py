"""`experiments/encoder_init.py`: the --quick run's arms and table, and the summary's
interval over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.experiments.scripts import load_experiment


def test_summary_gives_each_arm_its_mean_and_interval() -> None:
    mod = load_experiment("encoder_init")
    base = dict(regime="superposition", kind="topk", d_sae=64, k=4, steps=6, live_frac=1.0)
    cells = pd.DataFrame([
        {**base, "seed": 0, "arm": "a", "fvu": 0.2, "mmcs": 0.5},
        {**base, "seed": 1, "arm": "a", "fvu": 0.4, "mmcs": 0.7},
        {**base, "seed": 0, "arm": "b", "fvu": 0.1, "mmcs": 0.9},
    ])  # fmt: skip
    table = mod.summary(cells).set_index("arm")
    assert table.loc["a", "fvu"] == pytest.approx(0.3) and table.loc["a", "n_seeds"] == 2
    # two seeds: the t interval's half-width is t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.1
    assert table.loc["a", "fvu_ci"] == pytest.approx(12.706 * 0.1, rel=1e-3)
    assert pd.isna(table.loc["b", "fvu_ci"])  # one seed: no interval


@pytest.mark.slow  # two tiny SAEs (three with sparsify) and a kaleido PNG
def test_quick_run_trains_every_norm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mod = load_experiment("encoder_init")
    mod.main(["--quick", "--out", str(tmp_path)])
    runs = pd.read_csv(tmp_path / "encoder_init_runs.csv")
    featlab = runs[runs["arm"].str.startswith("featlab")]
    assert sorted(featlab["arm"]) == [
        "featlab, encoder_init_norm 0.1", "featlab, encoder_init_norm 0.1, AuxK off",
        "featlab, encoder_init_norm 1", "featlab, encoder_init_norm 1, AuxK off",
    ]  # fmt: skip
    assert featlab["fvu"].between(0, 2).all() and featlab["mmcs"].between(0, 1).all()
    assert featlab["dead_frac"].between(0, 1).all()
    assert (tmp_path / "encoder_init.md").is_file() and (tmp_path / "encoder_init.html").is_file()
    if not mod.installed("sparsify"):
        assert "sparsify is not installed" in capsys.readouterr().err

