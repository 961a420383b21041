"""The run layer on Hugging Face folders: train-sae and analyze take an HF
`save_pretrained` folder as --model, and the store's feature cards come out as for featlab's
own models."""

from __future__ import annotations

import pytest
import torch

from featlab.store import open_store

pytestmark = pytest.mark.slow
HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module", params=["llama", "qwen3_next", "mamba2"])
def hf_folder(request, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from featlab.models.hf.tiny import tiny_config

    root = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config(request.param)).save_pretrained(root / "hf")
    tokens = torch.randint(3, 256, (160, 16), generator=torch.Generator().manual_seed(0))
    torch.save(tokens, root / "tokens.pt")
    return root


def test_train_sae_then_analyze_an_hf_folder(featlab, hf_folder) -> None:
    run = featlab("train-sae", "--model", hf_folder / "hf", "--hook", HOOK, "--width", "64",
                  "--k", "4", "--tokens", "4096", "--batch-size", "256", "--tokens-file",
                  hf_folder / "tokens.pt", "--n-eval-seqs", "32", "--out", hf_folder / "sae",
                  "--no-progress")
    assert run.code == 0, run.err
    assert "ce_loss_recovered" in run.out
    res = featlab("analyze", "--model", hf_folder / "hf", "--sae", hf_folder / "sae",
                  "--tokens", hf_folder / "tokens.pt", "--n-seq", "32", "--batch-size", "8",
                  "--n-examples", "3", "--store", hf_folder / "store", "--no-progress")
    assert res.code == 0, res.err
    store = open_store(hf_folder / "store")
    assert store.saes()["hook"].tolist() == [HOOK]
    feats, total = store.features("sae", limit=64)
    assert total == 64
    live = int(feats.loc[~feats["dead"], "feature"].iloc[0])
    card = store.feature_card("sae", live)
    assert card is not None and len(card.examples) > 0


def test_a_hook_typo_on_an_hf_folder_is_one_line(featlab, hf_folder) -> None:
    res = featlab("train-sae", "--model", hf_folder / "hf", "--hook", "blocks.0.hook_resid_pst",
                  "--tokens-file", hf_folder / "tokens.pt", "--out", hf_folder / "typo")
    assert res.code == 2 and "blocks.0.hook_resid_post" in res.err
    assert "Traceback" not in res.err
