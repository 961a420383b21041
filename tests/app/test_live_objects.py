"""The prompt view takes models and SAEs already in memory: a HookedTransformer or a raw
Hugging Face model (wrapped on the way in), and SAE objects, not only folders."""

from __future__ import annotations

import pytest
import torch

from featlab.app.live import LiveFeatures
from featlab.store import analyze, open_store

HOOK = "blocks.0.hook_resid_post"


def _sae(d_in: int):
    from featlab.sae import build_sae, make_config

    return build_sae(make_config("topk", d_in, 32, 4, hook_name=HOOK)).eval()


def _hooked_transformer():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=16, d_head=8, n_heads=2,
                                  d_vocab=32, act_fn="relu", d_mlp=32, seed=0, device="cpu")
    return HookedTransformer(cfg).eval()


def _hf_llama():
    from transformers import AutoModelForCausalLM

    from featlab.models.hf.tiny import tiny_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config("llama")).eval()


@pytest.mark.parametrize("make, d_in", [(_hooked_transformer, 16), (_hf_llama, 32)])
def test_prompt_view_runs_objects(make, d_in: int, tmp_path) -> None:
    model, sae = make(), _sae(d_in)
    from featlab.models import load_model

    hooked = load_model(model)
    tokens = torch.randint(3, 32, (8, 16), generator=torch.Generator().manual_seed(0))
    analyze(hooked, {"a": sae}, tokens, tmp_path / "s", batch_size=4, n_examples=2,
            progress=False)
    live = LiveFeatures(open_store(tmp_path / "s"), model=model, saes={"a": sae})
    top = live.top_features("a", "3 4 5 6 7")
    assert set(top["pos"]) <= set(range(5)) and len(top) > 0 and (top["act"] > 0).all()
    with torch.no_grad():
        _, cache = hooked.run_with_cache(torch.tensor([[3, 4, 5, 6, 7]]), names_filter=[HOOK])
        z = sae.encode(cache[HOOK][0])
    first = top[top["pos"] == 0].sort_values("act", ascending=False).iloc[0]
    assert int(first["feature"]) == int(z[0].argmax())
