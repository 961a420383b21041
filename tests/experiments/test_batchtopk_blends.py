"""`experiments/batchtopk_blends.py`: the blend measure on known dictionaries, and the
`--quick` run's tables, claims and figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.experiments.scripts import load_experiment


def test_blend_cosines_tell_a_pure_latent_from_a_pair_blend() -> None:
    blend_cosines = load_experiment("batchtopk_blends").blend_cosines
    truth = torch.nn.functional.normalize(torch.randn(40, 16, generator=torch.Generator()
                                                      .manual_seed(0)), dim=-1)
    live = torch.ones(3, dtype=torch.bool)
    pure = truth[[3, 7, 11]]
    single, pair = blend_cosines(pure, truth, live)
    assert single == pytest.approx(1.0) and pair == pytest.approx(1.0)
    blends = truth[[0, 2, 4]] + truth[[1, 3, 5]]  # each row the sum of two true features
    single, pair = blend_cosines(blends, truth, live)
    assert single < 0.9 and pair == pytest.approx(1.0)
    # dead latents are left out
    single, _ = blend_cosines(torch.cat([pure, blends]), truth,
                              torch.tensor([True] * 3 + [False] * 3))
    assert single == pytest.approx(1.0)


@pytest.mark.slow  # 18 tiny SAE trainings (featlab and SAELens) and a kaleido PNG
def test_quick_run_writes_sane_outputs(tmp_path: Path) -> None:
    mod = load_experiment("batchtopk_blends")
    mod.main(["--quick", "--out", str(tmp_path)])
    runs = pd.read_csv(tmp_path / "runs.csv")
    top = runs["n_features"].max()
    assert set(runs[runs["n_features"] == top]["arm"]) == {arm for arm, *_ in mod.ARMS}
    assert set(runs[runs["n_features"] < top]["arm"]) == {"topk", "batchtopk"}
    assert runs["mmcs"].between(0, 1).all() and runs["dead_frac"].between(0, 1).all()
    assert (runs["pair_cos"] >= runs["single_cos"] - 1e-9).all()  # a plane holds its line
    claims = pd.read_csv(tmp_path / "claims.csv")
    assert len(claims) == 5 and (claims["n_seeds"] == 2).all()
    assert set(claims["verdict"]) <= {"holds", "does not hold", "within noise"}
    summary = pd.read_csv(tmp_path / "batchtopk_blends.csv")
    assert (summary["n_seeds"] == 2).all()
    assert (tmp_path / "batchtopk_blends.html").stat().st_size > 1000
