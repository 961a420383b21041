"""`experiments/sae_variants.py --quick`: sane tables over two seeds, claims, figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.experiments.scripts import load_experiment

KINDS = {"relu", "topk", "batchtopk", "feature_choice", "matching_pursuit"}
SWEPT = {"topk", "batchtopk", "matching_pursuit"}


@pytest.mark.slow  # ~34 tiny SAE trainings (two seeds), a tiny hybrid and two kaleido PNGs
def test_quick_run_writes_sane_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    load_experiment("sae_variants").main(["--quick", "--seeds", "0,1", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "sae_variants.csv")
    assert set(df["dataset"]) == {"superposition", "hierarchical", "mqar_gdn_attn_resid0"}
    assert set(df["seed"]) == {0, 1}
    for (_, ds, k), group in df.groupby(["seed", "dataset", "k"]):
        # the superposition sweep runs every kind at the middle k only
        swept = ds == "superposition" and k != 3
        assert set(group["kind"]) == (SWEPT if swept else KINDS)
    assert (df["fvu"] > 0).all() and df["fvu"].notna().all()
    assert (df["l0"] > 0).all() and df["dead_pct"].between(0, 100).all()
    assert (df["samples_per_s"] > 0).all() and (df["cpu_s"] >= 0).all()
    truth = df[df["dataset"] != "mqar_gdn_attn_resid0"]
    assert truth["mmcs"].between(0, 1).all()
    # TopK and Matching Pursuit never exceed k active latents per token
    capped = df[df["kind"].isin(["topk", "matching_pursuit"])]
    assert (capped["l0"] <= capped["k"] + 1e-6).all()
    model = df[df["dataset"] == "mqar_gdn_attn_resid0"]
    assert model[["ce_recovered_all", "ce_recovered_query"]].notna().all().all()
    # the query-position CE scores fewer positions, so it is a different number
    assert (model["ce_recovered_all"] != model["ce_recovered_query"]).any()
    tree = df[df["dataset"] == "hierarchical"]
    assert tree[["mmcs_children", "mmcs_parents"]].notna().all().all()

    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == len(df) // 2 and (summary["n_seeds"] == 2).all()
    assert (summary["fvu_ci"] >= 0).all()

    claims = pd.read_csv(tmp_path / "claims.csv")
    # per dataset: fewest dead + lowest FVU; BatchTopK at equal k and matched L0 per k; MP
    # children; CE (all and query positions)
    assert len(claims) == 3 * 2 + 2 * 2 + 1 + 2
    assert set(claims["verdict"]) <= {"holds", "does not hold", "within noise"}
    assert (claims["n_seeds"] == 2).all() and claims["reason"].notna().all()
    inside = claims.dropna(subset=["ci_low"])
    assert ((inside["ci_low"] <= inside["mean"]) & (inside["mean"] <= inside["ci_high"])).all()

    gap = pd.read_csv(tmp_path / "mmcs_gap.csv")
    assert sorted(gap["kind"]) == ["batchtopk", "batchtopk", "topk", "topk"]
    assert gap["found_frac"].between(0, 1).all() and (gap["duplicates"] >= 0).all()
    assert gap.loc[gap["kind"] == "batchtopk", "fvu_batch_mode"].notna().all()
    curve = pd.read_csv(tmp_path / "mmcs_curve.csv")
    assert {"topk", "batchtopk"} <= set(curve["kind"]) and curve["mmcs"].between(0, 1).all()

    assert (tmp_path / "sae_variants.md").read_text().startswith("| seed | dataset | kind")
    for fig in ("fvu_vs_l0", "mmcs_vs_steps"):
        assert (tmp_path / f"{fig}.html").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "Matching Pursuit matches child features" in out
