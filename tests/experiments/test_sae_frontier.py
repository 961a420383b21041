"""`experiments/sae_frontier.py`: the --quick sweep's cells and best settings, resuming a
finished cell, and the sparsify-less environment saying so."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.experiments.scripts import load_experiment


def test_best_settings_pick_each_optimizers_lowest_fvu() -> None:
    mod = load_experiment("sae_frontier")
    base = dict(data="superposition", kind="topk", d_sae=64, k=4, library="featlab", lr=0.0,
                mmcs=0.5, live_frac=1.0)
    cells = pd.DataFrame([
        {**base, "optimizer": "adam", "lr_mult": 1.0, "fvu": 0.30},
        {**base, "optimizer": "adam", "lr_mult": 2.0, "fvu": 0.20},
        {**base, "optimizer": "signum", "lr_mult": 1.0, "fvu": 0.25},
    ])  # fmt: skip
    best = mod.best_settings(cells)
    assert list(best["optimizer"]) == ["adam", "signum"]  # sorted by FVU within the cell
    assert list(best["lr_mult"]) == [2.0, 1.0]


@pytest.mark.slow  # 2 cells of 7 tiny SAEs and a kaleido PNG
def test_quick_sweep_writes_every_arm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mod = load_experiment("sae_frontier")
    mod.main(["--quick", "--out", str(tmp_path)])
    cells = pd.read_csv(tmp_path / "sae_frontier.csv")
    featlab = cells[cells["library"] == "featlab"]
    assert len(featlab) == 2 * len(mod.arms([1.0]))  # topk and matching_pursuit
    assert featlab["fvu"].between(0, 2).all() and featlab["mmcs"].between(0, 1).all()
    best = pd.read_csv(tmp_path / "best.csv")
    assert set(best["optimizer"]) >= {"adam", "signum", "adam_sf"}
    assert (tmp_path / "sae_frontier.html").is_file()
    if not mod.installed("sparsify"):
        assert "sparsify is not installed" in capsys.readouterr().err


def test_done_matches_a_cell_on_every_key() -> None:
    mod = load_experiment("sae_frontier")
    cells = pd.DataFrame([dict(data="mqar", kind="topk", d_sae=256, k=8, seed=0, steps=400)])
    key = dict(data="mqar", kind="topk", d_sae=256, k=8, seed=0, steps=400)
    assert mod._done(cells, key)
    assert not mod._done(cells, {**key, "k": 32})
    assert not mod._done(pd.DataFrame(), key)
