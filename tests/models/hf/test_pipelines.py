"""featlab's pipelines on every HF architecture, unchanged: a `load_model` of the tiny random
model feeds ActivationSource and train_sae, evaluate's CE-loss recovered, analyze and its
feature cards, find_circuit with edges between two residual sites, and token attribution.
One module per architecture, each step on the previous one's output (a SAE per layer 0 and
1 residual stream, trained just long enough to reconstruct better than the mean)."""

from __future__ import annotations

import math

import pytest
import torch

from featlab.models.hf.tiny import TINY_TYPES

pytestmark = pytest.mark.slow
SITES = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
# Where integrated gradients from a zero embedding does not close its completeness gap at
# 128 steps to 1e-2, and why (measured: the gap stays, or shrinks only over thousands of steps):
ROUGH_PATHS = {
    # top-k routing switches experts along the path: a gap of ~0.01 at any step count
    "qwen3_next": "MoE top-k routing",
    "kimi_linear": "MoE top-k routing",
    # the first RMS norm lifts a near-zero embedding to full scale within alpha < 1e-4 of the
    # baseline, a near-jump (Mamba2's gap: 1.5 at 128 steps, 0.1 at 512, 2e-6 at 2048)
    "mamba2": "norm of a near-zero input",
    "recurrent_gemma": "norm of a near-zero input",
}


@pytest.fixture(scope="module", params=TINY_TYPES)
def trained(request):
    from transformers import AutoModelForCausalLM

    from featlab.models import load_model
    from featlab.models.hf.tiny import tiny_config
    from featlab.sae import train_sae
    from featlab.sae.activations import ActivationSource

    torch.manual_seed(0)
    model = load_model(AutoModelForCausalLM.from_config(tiny_config(request.param)).eval())
    tokens = torch.randint(3, 256, (64, 16), generator=torch.Generator().manual_seed(0))
    saes = {}
    for i, hook in enumerate(SITES):
        source = ActivationSource(model, hook, tokens, batch_size=16, buffer_size=512, seed=i)
        saes[f"sae{i}"] = train_sae(source, kind="topk", d_sae=64, k=8, tokens=6144,
                                    batch_size=128, progress=False, seed=i)
    return request.param, model, tokens, saes


def test_sae_reconstructs_and_ce_recovered_is_defined(trained) -> None:
    from featlab.sae.metrics import evaluate

    name, model, tokens, saes = trained
    held_out = tokens[:8]
    for sae in saes.values():
        with torch.no_grad():
            _, cache = model.run_with_cache(held_out, names_filter=sae.cfg.hook_name)
        metrics = evaluate(sae, cache[sae.cfg.hook_name], model=model, tokens=held_out)
        assert metrics.fvu < 1.0, (name, sae.cfg.hook_name, metrics.fvu)  # beats the mean
        assert math.isfinite(metrics.ce_loss_recovered), name
        # splicing changes the model's loss: the SAE is really in the forward
        assert metrics.ce_sae != metrics.ce_clean, name


def test_analyze_writes_feature_cards(trained, tmp_path) -> None:
    from featlab.store import analyze, open_store

    name, model, tokens, saes = trained
    analyze(model, saes, tokens[:32], tmp_path / "store", batch_size=8, n_examples=3,
            progress=False, model_name=name)
    store = open_store(tmp_path / "store")
    assert sorted(store.saes()["hook"]) == sorted(SITES)
    feats, total = store.features("sae1", limit=64)
    assert total == 64
    live = int(feats.loc[~feats["dead"], "feature"].iloc[0])
    card = store.feature_card("sae1", live)
    assert card is not None and len(card.examples) > 0


def test_circuit_has_edges_and_attribution_is_complete(trained) -> None:
    from featlab.circuits import find_circuit, logit_metric
    from featlab.circuits.input_attribution import logit_target, token_attribution

    name, model, tokens, saes = trained
    clean, patch = tokens[:4, :8], tokens[4:8, :8]
    by_hook = {sae.cfg.hook_name: sae for sae in saes.values()}
    circuit = find_circuit(model, by_hook, clean, logit_metric(-1, 5), patch=patch,
                           node_threshold=0.0, max_nodes=4, edge_threshold=0.0,
                           ablation="patch")
    assert set(circuit.nodes["hook"]) == set(SITES), name
    assert len(circuit.edges) > 0, name
    assert math.isfinite(circuit.meta["faithfulness"]), name
    attr, gap = token_attribution(model, clean[:2], logit_target(-1, 5), steps=128)
    assert attr.shape == (2, 8) and attr.isfinite().all() and attr.abs().sum() > 0, name
    if name not in ROUGH_PATHS:  # completeness: the attributions add up to f(x) - f(0)
        assert gap.abs().max().item() < 1e-2, (name, gap)
