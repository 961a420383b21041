"""`experiments/bench_vs_sparsify.py`: the per-seed speed ratio and the seed summary; without
sparsify (outside `make bench-peers`'s venv) the script stops with one line naming it."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from tests.experiments.scripts import load_experiment


def test_summary_divides_each_seed_by_sparsifys_run_of_that_seed() -> None:
    mod = load_experiment("bench_vs_sparsify")
    rows = []
    for seed, (ours, theirs) in enumerate([(300.0, 100.0), (500.0, 250.0)]):
        for arm, speed in (("featlab", ours), ("sparsify", theirs)):
            rows.append(dict(arm=arm, d_sae=64, k=4, seed=seed, samples_per_s=speed,
                             fvu=0.2, mmcs=0.9, seconds=1.0))  # fmt: skip
    table = mod.summary(pd.DataFrame(rows)).set_index("arm")
    assert table.loc["featlab", "speed_vs_sparsify"] == pytest.approx(2.5)  # mean of 3 and 2
    assert table.loc["sparsify", "speed_vs_sparsify"] == pytest.approx(1.0)
    assert table.loc["featlab", "n_seeds"] == 2


@pytest.mark.skipif(importlib.util.find_spec("sparsify") is not None,
                    reason="sparsify is installed here")  # fmt: skip
def test_without_sparsify_the_script_says_how_to_get_it(tmp_path) -> None:
    mod = load_experiment("bench_vs_sparsify")
    with pytest.raises(SystemExit) as exit_:
        mod.main(["--quick", "--out", str(tmp_path)])
    assert "make bench-peers" in str(exit_.value)
