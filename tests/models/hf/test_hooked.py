"""`HookedHFModel` on a tiny random model of every architecture featlab wraps: HF's own
logits without hooks, the residual hook algebra, identity patches that change nothing,
patches that propagate (and only forward in time), stop_at_layer, and the round trip
through a folder with `load_model` / `save_model`."""

from __future__ import annotations

import pytest
import torch

from featlab.models.hf.tiny import TINY_TYPES, tiny_config
from tests.numerics import normwise_error

pytestmark = pytest.mark.slow


def _hf(model_type: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(model_type)).eval()


def _tokens(n: int = 2, pos: int = 32) -> torch.Tensor:
    return torch.randint(3, 256, (n, pos), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module", params=TINY_TYPES)
def pair(request):
    from featlab.models import HookedHFModel

    hf = _hf(request.param)
    with torch.no_grad():
        ref = hf(input_ids=_tokens(), use_cache=False).logits
    return request.param, HookedHFModel(hf), ref


def _residual(name: str) -> bool:
    """Hooks outside the mixers: observing them leaves HF's own forward running."""
    return ".mixer." not in name


def test_no_hooks_gives_hf_logits(pair) -> None:
    _, model, ref = pair
    with torch.no_grad():
        assert torch.equal(model(_tokens()), ref)
        logits, cache = model.run_with_cache(_tokens(), names_filter=_residual)
        assert torch.equal(logits, ref)  # caching residual hooks observes, changes nothing
        # observing a mixer's insides runs featlab's op there: equal to fp32 rounding
        everything, cache = model.run_with_cache(_tokens())
    assert normwise_error(everything, ref.double()) < 1e-5
    assert set(cache.keys()) == set(model.hook_dict)


def test_residual_hooks_add_up(pair) -> None:
    model_type, model, _ = pair
    with torch.no_grad():
        _, cache = model.run_with_cache(_tokens(), names_filter=_residual)
    for layer, block in enumerate(model.blocks):
        pre, mid = cache[f"blocks.{layer}.hook_resid_pre"], cache[f"blocks.{layer}.hook_resid_mid"]
        assert torch.equal(mid, pre + cache[f"blocks.{layer}.hook_mixer_out"]), model_type
        post = cache[f"blocks.{layer}.hook_resid_post"]
        if hasattr(block, "hook_mlp_out"):
            assert torch.equal(post, mid + cache[f"blocks.{layer}.hook_mlp_out"]), model_type
        else:
            assert torch.equal(post, mid), model_type
        if layer:
            assert torch.equal(pre, cache[f"blocks.{layer - 1}.hook_resid_post"])
    attention = [i for i, kind in enumerate(model.cfg.mixer_kinds)
                 if "attn" in kind.split("+") or "swa" in kind.split("+")]
    assert attention == [i for i, b in enumerate(model.blocks) if hasattr(b, "hook_attn_out")]


def test_identity_patches_change_nothing(pair) -> None:
    model_type, model, ref = pair
    hooks = [(name, lambda x, hook: x.clone()) for name in model.hook_dict]
    with torch.no_grad():
        patched = model.run_with_hooks(_tokens(), fwd_hooks=hooks)
    # a replaced resid_mid goes back in as (mid - pre): rounding-level at most
    assert normwise_error(patched, ref.double()) < 1e-6, model_type


@pytest.mark.parametrize("site", ["hook_resid_mid", "hook_mixer_out", "hook_resid_pre"])
def test_patches_propagate_forward_in_time_only(pair, site: str) -> None:
    model_type, model, ref = pair
    t = 20

    def bump(x: torch.Tensor, hook) -> torch.Tensor:
        # random, not constant: a LayerNorm would remove a constant shift
        noise = torch.randn(x[:, t:].shape, generator=torch.Generator().manual_seed(3))
        x = x.clone()
        x[:, t:] += 0.5 * noise
        return x

    with torch.no_grad():
        patched = model.run_with_hooks(_tokens(), fwd_hooks=[(f"blocks.0.{site}", bump)])
    assert torch.equal(patched[:, :t], ref[:, :t]), f"{model_type}: {site} leaked backwards"
    assert (patched[:, t:] - ref[:, t:]).abs().max() > 1e-4, f"{model_type}: {site} had no effect"


def test_stop_at_layer_returns_the_residual_stream(pair) -> None:
    _, model, _ = pair
    with torch.no_grad():
        _, cache = model.run_with_cache(_tokens(), names_filter=_residual)
        for k in range(1, model.cfg.n_layers + 1):
            assert torch.equal(model(_tokens(), stop_at_layer=k),
                               cache[f"blocks.{k - 1}.hook_resid_post"])


@pytest.mark.parametrize("model_type", ["llama", "qwen3_next", "falcon_h1"])
def test_folder_round_trip_through_load_and_save(model_type: str, tmp_path) -> None:
    from featlab.models import HookedHFModel, load_model, read_model_info, save_model

    hf = _hf(model_type)
    hf.save_pretrained(tmp_path / "hf")
    assert read_model_info(tmp_path / "hf")["hooks"] is None  # plain HF: featlab knows none
    loaded = load_model(str(tmp_path / "hf"))
    assert isinstance(loaded, HookedHFModel)
    with torch.no_grad():
        assert torch.equal(loaded(_tokens()), hf(input_ids=_tokens(), use_cache=False).logits)
    save_model(loaded, tmp_path / "again", task={"name": "mqar", "vocab_size": 256})
    info = read_model_info(tmp_path / "again")
    assert info["format"] == "hf" and set(info["hooks"]) == set(loaded.hook_dict)
    assert info["task"]["name"] == "mqar"
    assert isinstance(load_model(hf), HookedHFModel)  # an in-memory HF model is wrapped


def test_one_wrapper_per_hf_model() -> None:
    from featlab.models import HookedHFModel, load_model

    hf = _hf("llama")
    first = load_model(hf)
    assert load_model(hf) is first  # the hooks already sit on its modules: reuse them
    with pytest.raises(ValueError, match="already wrapped"):
        HookedHFModel(hf)
