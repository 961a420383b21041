"""SAELens's own SAEs (built and saved by the real sae-lens) -> featlab `load_sae`: equal codes
and reconstructions, with SAELens's options folded exactly or refused with the option named.

Weights are random (decoder rows of random norms, so decoder-norm rescaling matters), inputs
random; codes are compared elementwise and their supports must be identical. float64 shows
that the folds are exact algebra (differences ~1e-13); float32 that they hold at working
precision.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from featlab.sae import load_sae

D_IN, D_SAE, K = 12, 40, 5


def _saelens(name: str, dtype: str = "float32", **cfg):
    from sae_lens.saes import batchtopk_sae, gated_sae, jumprelu_sae, standard_sae, topk_sae

    classes = {
        "standard": (standard_sae.StandardSAE, standard_sae.StandardSAEConfig),
        "topk": (topk_sae.TopKSAE, topk_sae.TopKSAEConfig),
        # SAELens's training class: rescale_acts_by_decoder_norm on by default
        "topk_training": (topk_sae.TopKTrainingSAE, topk_sae.TopKTrainingSAEConfig),
        "gated": (gated_sae.GatedSAE, gated_sae.GatedSAEConfig),
        "gated_training": (gated_sae.GatedTrainingSAE, gated_sae.GatedTrainingSAEConfig),
        "jumprelu": (jumprelu_sae.JumpReLUSAE, jumprelu_sae.JumpReLUSAEConfig),
        "jumprelu_training": (jumprelu_sae.JumpReLUTrainingSAE,
                              jumprelu_sae.JumpReLUTrainingSAEConfig),
        "batchtopk_training": (batchtopk_sae.BatchTopKTrainingSAE,
                               batchtopk_sae.BatchTopKTrainingSAEConfig),
    }  # fmt: skip
    cls, cfg_cls = classes[name]
    if "topk" in name:
        cfg.setdefault("k", K)
    sae = cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, dtype=dtype, **cfg))
    g = torch.Generator().manual_seed(len(name))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=g, dtype=sae.W_dec.dtype) * 2 + 0.2)
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(D_SAE, generator=g) * 0.3)
        if hasattr(sae, "topk_threshold"):
            sae.topk_threshold = torch.tensor(0.3, dtype=torch.float64)
    return sae.eval()


def _x(dtype=torch.float32) -> torch.Tensor:
    return torch.randn(400, D_IN, generator=torch.Generator().manual_seed(7), dtype=dtype) * 2


def _compare(theirs, ours, x):
    """(max |code diff|, max |reconstruction diff|) after asserting equal supports."""
    with torch.no_grad():
        z = theirs.encode(x)
        z = z.to_dense() if z.is_sparse else z
        x_hat = theirs.decode(z)
        out = ours(x)
    assert torch.equal(z != 0, out.z != 0), "the set of active latents differs"
    assert (z != 0).any() and (z == 0).any()
    return float((z - out.z).abs().max()), float((x_hat - out.x_hat).abs().max())


CASES = [  # (SAELens class, its options, featlab kind)
    ("standard", {}, "relu"),
    ("standard", {"apply_b_dec_to_input": False}, "relu"),
    ("topk", {}, "topk"),
    ("topk", {"rescale_acts_by_decoder_norm": True}, "topk"),
    ("topk", {"rescale_acts_by_decoder_norm": True, "apply_b_dec_to_input": False}, "topk"),
    ("topk_training", {}, "topk"),
    ("gated", {}, "gated"),
    ("gated", {"apply_b_dec_to_input": False}, "gated"),
    ("gated_training", {"l1_coefficient": 3.0}, "gated"),
    ("jumprelu", {}, "batchtopk"),
    ("jumprelu", {"apply_b_dec_to_input": False}, "batchtopk"),
    ("jumprelu_training", {"jumprelu_sparsity_loss_mode": "tanh"}, "batchtopk"),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "opts", "kind"), CASES)
def test_saelens_save_model_loads_into_featlab_with_equal_codes(name, opts, kind, dtype, tmp_path):
    theirs = _saelens(name, dtype, **opts)
    theirs.save_model(tmp_path / "sl")
    ours = load_sae(tmp_path / "sl")
    assert ours.kind == kind and ours.W_dec.dtype == getattr(torch, dtype)
    x = _x(getattr(torch, dtype))
    code_diff, recon_diff = _compare(theirs, ours, x)
    # relative to the sizes involved (codes up to ~10, reconstructions up to ~50)
    tol = 1e-12 if dtype == "float64" else 2e-5
    assert code_diff < tol * 10 and recon_diff < tol * 50, (code_diff, recon_diff)
    if opts.get("rescale_acts_by_decoder_norm") or name == "topk_training":
        # folded: unit-norm decoder rows, as featlab's TopK keeps them
        norms = ours.W_dec.norm(dim=-1)
        torch.testing.assert_close(norms, torch.ones_like(norms))


def test_topk_rescale_changes_the_selection_so_the_fold_is_needed(tmp_path):
    """With random decoder norms, SAELens's rescaled selection differs from the plain top k of
    the unscaled pre-activations: loading without the fold would give other latents."""
    theirs = _saelens("topk", "float64", rescale_acts_by_decoder_norm=True)
    theirs.save_model(tmp_path / "sl")
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    cfg["rescale_acts_by_decoder_norm"] = False
    (tmp_path / "sl" / "cfg.json").write_text(json.dumps(cfg))
    unfolded = load_sae(tmp_path / "sl")
    x = _x(torch.float64)
    with torch.no_grad():
        assert not torch.equal(theirs.encode(x) != 0, unfolded.encode(x) != 0)


def test_batchtopk_training_save_loads_as_its_jumprelu_export(tmp_path):
    """SAELens's BatchTopK training class saves architecture "batchtopk" (decoder-norm
    rescaling on, a scalar topk_threshold); SAELens's own inference export of it is a
    "jumprelu" SAE. featlab loads the training save and equals that export."""
    from sae_lens import SAE

    theirs = _saelens("batchtopk_training", "float64")
    theirs.save_model(tmp_path / "train")
    theirs.save_inference_model(tmp_path / "inference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export = SAE.load_from_disk(tmp_path / "inference")
    ours = load_sae(tmp_path / "train")
    assert ours.kind == "batchtopk" and ours.cfg.k == K
    code_diff, recon_diff = _compare(export, ours, _x(torch.float64))
    assert code_diff < 1e-11 and recon_diff < 1e-11


@pytest.mark.parametrize("centre", [True, False])
def test_matching_pursuit_with_and_without_b_dec_on_the_input(centre, tmp_path):
    """apply_b_dec_to_input=False: SAELens's pursuit neither centres nor adds b_dec, which is
    featlab's pursuit with b_dec = 0 (unit-norm atoms, as both train them)."""
    from sae_lens.saes.matching_pursuit_sae import MatchingPursuitSAE, MatchingPursuitSAEConfig

    theirs = MatchingPursuitSAE(MatchingPursuitSAEConfig(
        d_in=D_IN, d_sae=D_SAE, residual_threshold=0.5, max_iterations=6,
        apply_b_dec_to_input=centre))  # fmt: skip
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        w = torch.randn(D_SAE, D_IN, generator=g)
        theirs.W_dec.copy_(w / w.norm(dim=-1, keepdim=True))
        theirs.b_dec.copy_(torch.randn(D_IN, generator=g))
    theirs.save_model(tmp_path / "sl")
    ours = load_sae(tmp_path / "sl")
    assert ours.kind == "matching_pursuit" and bool(ours.b_dec.any()) == centre
    code_diff, recon_diff = _compare(theirs, ours, _x())
    assert code_diff < 1e-5 and recon_diff < 1e-5, (code_diff, recon_diff)


def test_metadata_becomes_the_featlab_config(tmp_path):
    theirs = _saelens("topk")
    theirs.cfg.metadata.model_name = "gpt2"
    theirs.cfg.metadata.hook_name = "blocks.3.hook_resid_post"
    theirs.cfg.metadata.context_size = 128
    theirs.cfg.metadata.prepend_bos = True
    theirs.cfg.metadata.dataset_path = "monology/pile-uncopyrighted"
    theirs.save_model(tmp_path / "sl")
    cfg = load_sae(tmp_path / "sl").cfg
    assert (cfg.model_name, cfg.hook_name, cfg.context_size, cfg.prepend_bos, cfg.dataset_path) == (
        "gpt2", "blocks.3.hook_resid_post", 128, True, "monology/pile-uncopyrighted")  # fmt: skip
    bare = _saelens("standard")
    bare.save_model(tmp_path / "bare")
    cfg = load_sae(tmp_path / "bare").cfg
    assert cfg.prepend_bos is None and cfg.context_size is None and cfg.dataset_path is None


def _edit(path, **changes):
    cfg = json.loads((path / "cfg.json").read_text())
    for key, val in changes.items():
        if key.startswith("meta_"):
            cfg["metadata"][key[5:]] = val
        else:
            cfg[key] = val
    (path / "cfg.json").write_text(json.dumps(cfg))


REFUSED = [
    ({"normalize_activations": "layer_norm"}, r"normalize_activations='layer_norm'.*no fixed"),
    ({"normalize_activations": "constant_norm_rescale"}, r"constant_norm_rescale"),
    (
        {"normalize_activations": "expected_average_only_in"},
        r"expected_average_only_in.*fold_activation_norm_scaling_factor",
    ),
    ({"normalize_activations": "covariance_whitening"}, r"fold_activation_whitening"),
    ({"reshape_activations": "hook_z"}, r"reshape_activations='hook_z'"),
    ({"meta_hook_head_index": 3}, r"hook_head_index=3"),
    ({"architecture": "abstopk"}, r"'abstopk'.*signs"),
    ({"architecture": "jumprelu_transcoder"}, r"transcoder"),
    ({"architecture": "temporal"}, r"'temporal'"),
    ({"architecture": "featlab_feature_choice"}, r"needs the 'featlab' entry"),
    ({"architecture": "made_up"}, r"'made_up' has no featlab kind; loadable: standard"),
]


@pytest.mark.parametrize(("changes", "match"), REFUSED)
def test_unsupported_saelens_options_are_refused_by_name(changes, match, tmp_path):
    _saelens("topk").save_model(tmp_path / "sl")
    _edit(tmp_path / "sl", **changes)
    with pytest.raises(ValueError, match=match):
        load_sae(tmp_path / "sl")


def test_rescale_with_a_zero_decoder_row_is_refused(tmp_path):
    theirs = _saelens("topk", rescale_acts_by_decoder_norm=True)
    with torch.no_grad():
        theirs.W_dec[7] = 0
    theirs.save_model(tmp_path / "sl")
    with pytest.raises(ValueError, match=r"decoder row\(s\) \[7\] have zero norm"):
        load_sae(tmp_path / "sl")
