"""`experiments/bench_vs_saedashboard.py`: the per-latent agreement counts on a handcrafted
pair of tables; without sae_dashboard (outside `make bench-peers`'s venv) the script stops with
one line naming it."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from tests.experiments.scripts import load_experiment


def _table(rows: list[tuple]) -> pd.DataFrame:
    cols = ["feature", "max_act", "density", "top_seq", "top_pos", "top_logits",
            "bottom_logits"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def test_agreement_counts_each_quantity_per_latent() -> None:
    mod = load_experiment("bench_vs_saedashboard")
    n_tokens = 1000
    ours = _table([
        (0, 2.0, 0.010, 3, 7, (1, 2), (9, 8)),
        (1, 1.0, 0.020, 4, 1, (3, 4), (7, 6)),   # peak at position 1: outside the window
        (2, 0.0, 0.000, -1, -1, (5, 6), (1, 2)),  # dead in both
        (3, 5.0, 0.005, 0, 9, (7, 8), (2, 3)),
    ])  # fmt: skip
    theirs = _table([
        (0, 2.0001, 0.0101, 3, 7, (1, 2), (9, 8)),   # max within 1e-4 rel; density 10.1 -> 10
        (1, 1.0, 0.021, 5, 8, (4, 3), (7, 6)),       # density 21 != 20; top logits reordered
        (2, 0.0, 0.000, 0, 0, (5, 6), (1, 2)),
        (3, 5.01, 0.005, 1, 9, (7, 8), (2, 4)),      # max 2e-3 rel off; other seq; bottom off
    ])  # fmt: skip
    per = mod.agreement(ours, theirs, n_tokens).set_index("feature")
    assert per["max_act"].tolist() == [True, True, True, False]
    assert per["density"].tolist() == [True, False, True, True]
    assert per["top_logits"].tolist() == [True, False, True, True]
    assert per["bottom_logits"].tolist() == [True, True, True, False]
    assert per["top_example"].tolist() == [True, False, True, False]
    counts = mod.count_agreement(per.reset_index())
    assert counts == {"top_example": (2, 4), "max_act": (3, 4), "density": (3, 4),
                      "top_logits": (3, 4), "bottom_logits": (3, 4)}  # fmt: skip

    # the other side searched positions 6..10 only: latent 1 (peak at 1) is not compared
    windowed = mod.count_agreement(mod.agreement(ours, theirs, n_tokens, window=(6, 11)))
    assert windowed["top_example"] == (2, 3)
    assert windowed["max_act"] == (3, 4)


@pytest.mark.skipif(importlib.util.find_spec("sae_dashboard") is not None,
                    reason="sae_dashboard is installed here")  # fmt: skip
def test_without_sae_dashboard_the_script_says_how_to_get_it(tmp_path) -> None:
    mod = load_experiment("bench_vs_saedashboard")
    with pytest.raises(SystemExit) as exit_:
        mod.main(["--quick", "--out", str(tmp_path)])
    assert "make bench-peers" in str(exit_.value)
