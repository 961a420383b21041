"""Each probe experiment runs with --quick into a tmp dir and writes sane tables and figures.

The scripts are loaded in-process (not as subprocesses) so torch and transformer_lens are
imported once for the whole file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2] / "experiments"


def _run(name: str, out: Path) -> pd.DataFrame:
    spec = importlib.util.spec_from_file_location(f"_exp_{name}", ROOT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    table = mod.main(["--quick", "--out", str(out)])
    for ext in ("csv", "md", "html"):
        assert (out / f"{name}.{ext}").stat().st_size > 0, ext
    # the PNG needs kaleido and a browser; when it fails the script says so and goes on
    assert not list(out.glob(".*")), "a temporary file was left behind"
    back = pd.read_csv(out / f"{name}.csv")
    assert len(back) == len(table)
    assert (out / f"{name}.md").read_text().startswith("| ")
    return back


def test_shortcut_bias_quick(tmp_path: Path) -> None:
    t = _run("shortcut_bias", tmp_path)
    assert set(t.sweep) == {"amplification", "nesting"}
    assert t.bias.between(-2, 2).all() and t.test_acc.between(0, 1).all()
    assert (t.bayes_acc > 0.9).all()  # rho = 0.9 on both latents: Bayes beats either alone
    nest = t[t.sweep == "nesting"]
    assert nest.vs_family.notna().all() and nest.saturated.between(0, 1).all()
    assert (nest[nest.value == 0].saturated == 0).all()
    assert (t.bias_lo <= t.bias).all() and (t.bias <= t.bias_hi).all()
    claims = pd.read_csv(tmp_path / "claims.csv")
    assert set(claims.verdict) <= {"holds", "does not hold", "within noise"}
    assert (claims.n_seeds == 2).all() and claims["mean"].notna().all()
    assert claims.claim.str.contains("best in family").any()


def _claims(out: Path) -> pd.DataFrame:
    c = pd.read_csv(out / "claims.csv")
    assert (out / "claims.md").read_text().startswith("| ")
    assert set(c.verdict) <= {"holds", "does not hold", "within noise"}
    return c


def test_feature_complexity_quick(tmp_path: Path) -> None:
    t = _run("feature_complexity", tmp_path)
    assert len(t) == 5
    assert t.K_gaussian.between(0, 1).all() and t.K_logistic.between(0, 1).all()
    assert (t.importance >= 0).all()
    temporal = pd.read_csv(tmp_path / "feature_complexity_temporal.csv")
    assert set(temporal.checkpoint) == {0, 1, 3}
    assert set(temporal.family) == {"gaussian", "logistic"}
    c = _claims(tmp_path)
    assert len(c) == 8 and (c.n_seeds == 1).all()  # one seed: no interval, so no verdict
    assert (c.verdict == "within noise").all()


def test_representation_bias_quick(tmp_path: Path) -> None:
    t = _run("representation_bias", tmp_path)
    assert list(t.model_depth) == [1, 2]
    for c in ("strength_easy", "strength_hard", "pc1_r2_easy", "pc1_r2_hard"):
        assert (t[c] <= 1.0).all(), c
    assert t.pc1_r2_easy.between(0, 1).all()
    assert (t.strength_ratio > 0).all()
    layers = pd.read_csv(tmp_path / "representation_bias_layers.csv")
    assert set(layers.epoch) == {0, 1, 3}  # init, mid-training, end
    c = _claims(tmp_path)
    assert c.claim.str.startswith("imbalance grows with depth").sum() >= 5


def test_wcst_ml_quick(tmp_path: Path) -> None:
    t = _run("wcst_ml", tmp_path)
    assert list(t.arch) == ["linear", "mlp", "cnn"]
    for cue in ("colour", "scale", "shape", "orientation"):
        assert t[cue].between(0, 1).all()
    found = pd.read_csv(tmp_path / "claims.csv")
    assert len(found) == 9  # three claims per architecture
    # one seed in --quick: no interval, so no claim may be called settled
    assert set(found.verdict) == {"within noise"}
