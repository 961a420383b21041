"""`experiments/profile_sae_step.py`: op names fall into the phases, and the --quick run
writes a row per library whose phases sum to its total."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.experiments.scripts import load_experiment


def test_ops_fall_into_their_phase() -> None:
    phase_of = load_experiment("profile_sae_step").phase_of
    assert phase_of("aten::addmm") == "encoder product"
    assert phase_of("TopKEncode") == "selection" and phase_of("aten::topk") == "selection"
    assert phase_of("TopKEncodeBackward") == "backward"  # backward before selection
    assert phase_of("aten::_embedding_bag") == "decode"
    assert phase_of("Optimizer.step#Adam.step") == "optimizer"
    assert phase_of("aten::copy_") == "bookkeeping"


@pytest.mark.slow  # two profiled tiny trainings and a kaleido PNG
def test_quick_profile_phases_sum_to_total(tmp_path: Path) -> None:
    mod = load_experiment("profile_sae_step")
    mod.main(["--quick", "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "profile_sae_step.csv")
    assert "featlab" in set(table["library"])
    phases = table[list(mod.PHASES)]
    assert (phases >= 0).all().all()
    assert phases.sum(axis=1).to_numpy() == pytest.approx(table["total"].to_numpy())
