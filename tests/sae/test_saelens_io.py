"""SAELens directories: featlab -> real sae-lens and back, and bad directories.

(Named test_saelens_io.py, not test_io.py, because tests/models/test_io.py exists and the test
folders are not packages.)
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from featlab.sae import build_sae, load_sae, make_config, save_sae, train_sae


def _data(d: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, d, generator=g)
    on = (torch.rand(2048, 40, generator=g) < 0.08).float()
    return (on * torch.rand(2048, 40, generator=g)) @ feats + 0.5


SPECS = {
    "relu": {"l1_coef": 0.01},
    "topk": {},
    "batchtopk": {},
    "matching_pursuit": {"residual_tol": 0.3, "inference_steps": 6},
    "gated": {"l1_coef": 0.02},
}


@pytest.fixture(scope="module")
def trained():
    data = _data()
    return data, {
        kind: train_sae(
            data, kind=kind, d_sae=48, k=4, tokens=4096, batch_size=256, progress=False, **hp
        )  # fmt: skip
        for kind, hp in SPECS.items()
    }


@pytest.mark.parametrize("kind", list(SPECS))
def test_saelens_loads_featlab_output_with_the_same_reconstruction(kind, trained, tmp_path):
    from sae_lens import SAE

    data, saes = trained
    sae = saes[kind]
    save_sae(sae, tmp_path / kind)
    names = {p.name for p in (tmp_path / kind).iterdir()}
    assert {"cfg.json", "sae_weights.safetensors", "sparsity.safetensors"} <= names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SAE.load_from_disk(tmp_path / kind)
    x = data[:300]
    with torch.no_grad():
        ours = sae(x)
        assert (theirs(x) - ours.x_hat).abs().max() < 1e-5
        assert (theirs.encode(x) - ours.z).abs().max() < 1e-5
        assert (theirs.encode(x) != 0).any()
    # and SAELens's own save loads back into featlab with the same kind and outputs
    theirs.save_model(tmp_path / f"{kind}_sl")
    back = load_sae(tmp_path / f"{kind}_sl")
    assert back.kind == sae.kind
    with torch.no_grad():
        assert (back(x).x_hat - ours.x_hat).abs().max() < 1e-5


def test_cfg_json_says_what_featlab_knows_and_nothing_else(tmp_path):
    from sae_lens import SAE

    sae = train_sae(_data(), kind="topk", d_sae=24, k=2, tokens=512, batch_size=256,
                    progress=False, hook_name="blocks.1.hook_resid_post", model_name="runs/m",
                    context_size=64, dataset_path="featlab:mqar")  # fmt: skip
    save_sae(sae, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"], cfg["k"]) == ("topk", 12, 24, 2)
    assert (cfg["dtype"], cfg["device"], cfg["apply_b_dec_to_input"]) == ("float32", "cpu", True)
    assert cfg["rescale_acts_by_decoder_norm"] is False
    assert cfg["metadata"] == {
        "sae_lens_version": "6.54.0", "sae_lens_training_version": None,
        "model_name": "runs/m", "hook_name": "blocks.1.hook_resid_post", "hook_head_index": None,
        "context_size": 64, "prepend_bos": False, "dataset_path": "featlab:mqar",
    }  # fmt: skip
    assert cfg["featlab"] == sae.cfg.to_dict()
    assert load_sae(tmp_path / "s").cfg == sae.cfg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = SAE.load_from_disk(tmp_path / "s").cfg.metadata
    assert (meta.context_size, meta.prepend_bos, meta.dataset_path) == (64, False, "featlab:mqar")
    # unknown stays unknown: no context size or dataset is made up; the dtype is the weights'
    plain = build_sae(make_config("gated", 6, 10, dtype="float64"))
    save_sae(plain, tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "cfg.json").read_text())
    assert cfg["architecture"] == "gated" and cfg["dtype"] == "float64" and "k" not in cfg
    assert cfg["metadata"]["context_size"] is None and cfg["metadata"]["dataset_path"] is None
    assert cfg["metadata"]["prepend_bos"] is False and cfg["metadata"]["model_name"] is None
    with pytest.raises(ValueError, match="context_size must be positive"):
        make_config("topk", 6, 10, 2, context_size=0)


def test_matching_pursuit_duplicate_support_rule_matches_saelens(tmp_path):
    from sae_lens import SAE

    sae = build_sae(make_config("matching_pursuit", 10, 30, 12,
                                stop_on_duplicate_support=True, residual_tol=0.05))  # fmt: skip
    save_sae(sae, tmp_path / "mp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SAE.load_from_disk(tmp_path / "mp")
    assert theirs.cfg.stop_on_duplicate_support and theirs.cfg.max_iterations == 12
    x = torch.randn(200, 10)
    sae.eval()
    with torch.no_grad():
        assert (theirs(x) - sae(x).x_hat).abs().max() < 1e-5


def test_feature_choice_round_trip_in_featlab(tmp_path):
    data = _data()
    sae = train_sae(data, kind="feature_choice", d_sae=48, k=4, tokens=2048, batch_size=256,
                    progress=False, zipf_s=0.5)  # fmt: skip
    save_sae(sae, tmp_path / "fc")
    cfg = json.loads((tmp_path / "fc" / "cfg.json").read_text())
    assert cfg["architecture"] == "featlab_feature_choice"
    back = load_sae(tmp_path / "fc")
    assert back.cfg == sae.cfg
    for name, t in sae.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name
    torch.testing.assert_close(back(data[:50]).x_hat, sae(data[:50]).x_hat)


def test_bad_directories_give_clear_errors_and_nothing_is_overwritten(tmp_path):
    sae = build_sae(make_config("topk", 6, 10, 2))
    # a non-SAE directory is never overwritten
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not an SAE directory"):
        save_sae(sae, other)
    assert (other / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"], "no temp dir left behind"

    good = save_sae(sae, tmp_path / "good")
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    # partial: weights missing
    partial = tmp_path / "partial"
    save_sae(sae, partial)
    (partial / "sae_weights.safetensors").unlink()
    with pytest.raises(ValueError, match="missing sae_weights.safetensors"):
        load_sae(partial)
    # corrupt: truncated weights, garbage config
    corrupt = tmp_path / "corrupt"
    save_sae(sae, corrupt)
    w = corrupt / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[:40])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_sae(corrupt)
    (corrupt / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match="cfg.json is corrupt"):
        load_sae(corrupt)
    with pytest.raises(FileNotFoundError):
        load_sae(tmp_path / "absent")
    # inconsistent shapes name both
    wide = build_sae(make_config("topk", 6, 12, 2))
    save_sae(wide, tmp_path / "wide")
    cfg = json.loads((tmp_path / "wide" / "cfg.json").read_text())
    cfg["featlab"]["d_sae"] = 10
    (tmp_path / "wide" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"shape \(6, 12\) but cfg.json implies \(6, 10\)"):
        load_sae(tmp_path / "wide")
    # the good directory was untouched by all of this, and re-saving replaces it atomically
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    sae2 = build_sae(make_config("topk", 6, 10, 2, seed=5))
    save_sae(sae2, good)
    torch.testing.assert_close(load_sae(good).W_dec, sae2.W_dec)


def test_describe_and_cli_sae_info(tmp_path):
    from typer.testing import CliRunner

    from featlab.cli import app
    from featlab.sae.io import describe_sae

    sae = train_sae(_data(), kind="topk", d_sae=24, k=2, tokens=1024, batch_size=256,
                    progress=False, hook_name="blocks.0.hook_resid_post")  # fmt: skip
    save_sae(sae, tmp_path / "s")
    info = describe_sae(tmp_path / "s")
    assert info["kind"] == "topk" and info["saelens_architecture"] == "topk"
    assert info["hook_name"] == "blocks.0.hook_resid_post"
    expected_dead = float((sae.feature_density() == 0).float().mean())
    assert info["dead_frac"] == pytest.approx(expected_dead)
    res = CliRunner().invoke(app, ["sae-info", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["d_sae"] == 24
