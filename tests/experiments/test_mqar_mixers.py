"""`experiments/mqar_mixers.py --quick`: the lr sweep, the seeds at each arm's best lr, the
claims paired by seed, a table (CSV + Markdown) and a figure; a cut-short run resumes."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "mqar_mixers.py"
VERDICTS = {"holds", "does not hold", "within noise"}


def _load_script():
    spec = importlib.util.spec_from_file_location("mqar_mixers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # nine tiny trainings, twice, plus a kaleido PNG
def test_quick_run_sweeps_picks_best_lr_and_pairs_claims(tmp_path: Path) -> None:
    module = _load_script()
    real, calls = module.train_one, []

    def interrupted(*args, **kwargs):
        calls.append(args[:3])
        if len(calls) == 4:
            raise RuntimeError("cut short")  # after three finished runs
        return real(*args, **kwargs)

    module.train_one = interrupted
    with pytest.raises(RuntimeError, match="cut short"):
        module.main(["--quick", "--out", str(tmp_path)])
    calls.clear()
    module.train_one = lambda *a, **k: calls.append(a[:3]) or real(*a, **k)
    module.main(["--quick", "--out", str(tmp_path)])
    # 3 arms x 2 lrs (seed 0) + 3 arms x seed 1 at the best lr = 9 runs; 3 were kept.
    assert len(calls) == 6
    assert not (tmp_path / "mqar_mixers_runs.partial.csv").exists()

    runs = pd.read_csv(tmp_path / "mqar_mixers_runs.csv")
    summary = pd.read_csv(tmp_path / "mqar_mixers.csv")
    claims = pd.read_csv(tmp_path / "mqar_mixers_claims.csv")
    assert len(runs) == 9 and runs["accuracy"].between(0, 1).all()
    assert list(summary["model"]) == ["gla x2", "gla_conv x2", "gdn x2"]
    assert (summary["n_seeds"] == 2).all()
    assert (summary["ci_low"] <= summary["accuracy"]).all()
    assert (summary["accuracy"] <= summary["ci_high"]).all()
    for _, row in summary.iterrows():
        arm = row["model"].removesuffix(" x2")
        sweep = runs[(runs["arm"] == arm) & (runs["seed"] == 0)]
        ranked = sweep.assign(val=sweep["val accuracy"].clip(upper=0.995)).sort_values(
            ["val", "steps", "lr"], ascending=[False, True, True])
        assert row["best lr"] == ranked["lr"].iloc[0]  # best on validation, ties: smaller lr
        at_best = runs[(runs["arm"] == arm) & (runs["lr"] == row["best lr"])]
        assert sorted(at_best["seed"]) == [0, 1]
        assert math.isclose(row["accuracy"], at_best["accuracy"].mean())
    # GLA's short conv adds parameters, not state.
    params = dict(zip(summary["model"], summary["params"], strict=True))
    state = dict(zip(summary["model"], summary["state floats / seq"], strict=True))
    assert params["gla_conv x2"] > params["gla x2"] and state["gla_conv x2"] == state["gla x2"]

    assert list(claims["claim"]) == ["gla_conv beats gla (test accuracy)",
                                     "gdn beats gla_conv (test accuracy)"]
    assert set(claims["verdict"]) <= VERDICTS and (claims["n_seeds"] == 2).all()
    best = dict(zip(summary["model"].str.removesuffix(" x2"), summary["best lr"], strict=True))
    acc = {(r.arm, r.seed): r.accuracy for r in runs.itertuples() if r.lr == best[r.arm]}
    paired = [acc[("gla_conv", s)] - acc[("gla", s)] for s in (0, 1)]
    assert math.isclose(claims["mean"].iloc[0], sum(paired) / 2)

    assert (tmp_path / "mqar_mixers.md").read_text().startswith("| model | best lr")
    assert (tmp_path / "mqar_mixers.html").stat().st_size > 1000


def test_solved_runs_tie_and_the_fastest_wins() -> None:
    best_lr = _load_script().best_lr
    row = lambda lr, val, steps: {"lr": lr, "val accuracy": val, "steps": steps}  # noqa: E731
    # 1e-2 stopped a hair further past the target, but 1e-3 got there in fewer steps
    assert best_lr([row(1e-3, 0.996, 300), row(1e-2, 0.998, 900)], 0.995) == 1e-3
    assert best_lr([row(1e-3, 0.990, 1200), row(1e-2, 0.996, 900)], 0.995) == 1e-2
    assert best_lr([row(1e-3, 0.40, 1200), row(3e-3, 0.40, 1200)], 0.995) == 1e-3
    assert best_lr([row(1e-3, 0.30, 1200), row(3e-3, 0.52, 1200)], 0.995) == 3e-3


def test_bad_arm_and_bad_lrs_are_named() -> None:
    module = _load_script()
    with pytest.raises(ValueError, match="unknown mixer.*foo"):
        module.main(["--quick", "--only", "gla,foo", "--out", "/nonexistent/never-written"])
    with pytest.raises(SystemExit):
        module.main(["--lrs", "fast"])
