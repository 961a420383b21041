"""`featlab analyze` / `analyze_run`: store ids from run folders, no silent replacement, the
model's task as the default tokens, and paths recorded for the prompt view."""

from __future__ import annotations

import pytest
import torch

from featlab.store import open_store

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def sae_runs(tiny_model, tmp_path_factory):
    """Two finished train-sae run folders on the tiny model."""
    from featlab.runs import SAERunConfig, train_sae_run

    root = tmp_path_factory.mktemp("saes")
    for name, seed in (("sae_a", 0), ("sae_b", 1)):
        train_sae_run(SAERunConfig(model=tiny_model, hook=HOOK, width=32, k=4, tokens=1024,
                                   batch_size=256, seed=seed, out=root / name, progress=False))
    return root


def _analyze(featlab, tiny_model, store, *extra):
    return featlab("analyze", "--model", tiny_model, "--store", store, "--n-seq", "24",
                   "--batch-size", "8", "--n-examples", "3", "--no-progress", *extra)


def test_ids_default_to_run_folder_names(featlab, tiny_model, sae_runs, tmp_path) -> None:
    store = tmp_path / "store"
    res = _analyze(featlab, tiny_model, store, "--sae", sae_runs / "sae_a", "--sae",
                   sae_runs / "sae_b" / "sae")  # a run folder, and the SAE dir inside one
    assert res.code == 0, res.err
    s = open_store(store)
    assert s.saes()["sae_id"].tolist() == ["sae_a", "sae_b"]
    assert int(s.saes()["n_tokens"].iloc[0]) == 24 * 16
    assert s.feature_card("sae_a", 0).examples["tokens"].iloc[0][0].startswith(("K", "V", "<"))
    from featlab.app.live import LiveFeatures

    model_dir, sae_dir = LiveFeatures(s).paths("sae_a")
    assert (model_dir.resolve(), sae_dir.resolve()) == (tiny_model.resolve(),
                                                        (sae_runs / "sae_a" / "sae").resolve())


def test_a_stored_id_is_never_replaced_silently(featlab, tiny_model, sae_runs, tmp_path) -> None:
    store = tmp_path / "store"
    assert _analyze(featlab, tiny_model, store, "--sae", sae_runs / "sae_a").code == 0
    parts = sorted(p.stat().st_mtime_ns for p in store.rglob("*.parquet"))
    same = _analyze(featlab, tiny_model, store, "--sae", sae_runs / "sae_a")
    assert same.code == 0  # the same analysis: nothing to do, nothing rewritten
    assert sorted(p.stat().st_mtime_ns for p in store.rglob("*.parquet")) == parts
    clash = _analyze(featlab, tiny_model, store, "--sae", sae_runs / "sae_b", "--id", "sae_a")
    assert clash.code == 2 and "already holds SAE id(s) ['sae_a']" in clash.err
    assert "--overwrite" in clash.err and "Traceback" not in clash.err
    assert sorted(p.stat().st_mtime_ns for p in store.rglob("*.parquet")) == parts
    both = _analyze(featlab, tiny_model, store, "--sae", sae_runs / "sae_b", "--id", "sae_a",
                    "--overwrite")
    assert both.code == 0, both.err
    fresh = _analyze(featlab, tiny_model, store, "--sae", sae_runs / "sae_b", "--id", "b2")
    assert fresh.code == 0
    assert open_store(store).saes()["sae_id"].tolist() == ["b2", "sae_a"]


def test_tokens_file_and_clear_errors(featlab, tiny_model, sae_runs, tmp_path) -> None:
    toks = torch.randint(0, 16, (10, 16), generator=torch.Generator().manual_seed(0))
    torch.save({"tokens": toks}, tmp_path / "t.pt")
    ok = _analyze(featlab, tiny_model, tmp_path / "s", "--sae", sae_runs / "sae_a", "--tokens",
                  tmp_path / "t.pt")
    assert ok.code == 0, ok.err
    assert int(open_store(tmp_path / "s").saes()["n_tokens"].iloc[0]) == 160
    two = _analyze(featlab, tiny_model, tmp_path / "s2", "--sae", sae_runs / "sae_a", "--sae",
                   sae_runs / "sae_a")
    assert two.code == 2 and "--id" in two.err
    ids = _analyze(featlab, tiny_model, tmp_path / "s3", "--sae", sae_runs / "sae_a", "--id",
                   "x", "--id", "y")
    assert ids.code == 2 and "one id per SAE" in ids.err
    torch.save(toks + 100, tmp_path / "far.pt")
    far = _analyze(featlab, tiny_model, tmp_path / "s4", "--sae", sae_runs / "sae_a",
                   "--tokens", tmp_path / "far.pt")
    assert far.code == 2 and "vocabulary" in far.err
