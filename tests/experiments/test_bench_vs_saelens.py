"""`experiments/bench_vs_saelens.py --quick` runs both libraries and prints the ratios.

Not a speed assertion: timings on a shared CI machine say nothing; the benchmark's numbers
are measured by hand and pasted into docs/sae_pipeline.md.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.experiments.scripts import load_experiment


@pytest.mark.slow  # imports sae_lens and trains 4 + 4 tiny SAEs
def test_quick_run_prints_ratios(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    load_experiment("bench_vs_saelens").main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "topk: featlab/saelens samples/s ratio" in out
    assert "matching_pursuit: featlab/saelens samples/s ratio" in out
    df = pd.read_csv(tmp_path / "bench_vs_saelens.csv")
    runs = df[df["library"] != "ratio featlab/saelens"]
    assert set(zip(runs["kind"], runs["library"], strict=True)) == {
        (kind, lib) for kind in ("topk", "matching_pursuit") for lib in ("featlab", "saelens")
    }
    assert (runs["samples_per_s"] > 0).all() and (runs["seconds"] > 0).all()
    assert runs["fvu"].between(0, 10).all()
    ratios = df[df["library"] == "ratio featlab/saelens"].set_index("kind")
    for kind in ("topk", "matching_pursuit"):
        row = runs[runs["kind"] == kind].set_index("library")
        want = row.loc["featlab", "samples_per_s"] / row.loc["saelens", "samples_per_s"]
        assert ratios.loc[kind, "samples_per_s"] == pytest.approx(want, rel=1e-6)
    assert (tmp_path / "bench_vs_saelens.md").is_file()
    assert (tmp_path / "bench_vs_saelens.html").is_file()
