"""train-sae on text: --dataset is read with the model's own tokenizer, packed into
--context-size windows, and the SAE's cfg.json says so."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """A tiny HF Llama saved with a BPE tokenizer trained on the offline corpus, and a text
    file to read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from featlab.datasets.corpus import stdlib_corpus, train_bpe_tokenizer
    from featlab.models.hf.tiny import tiny_config

    root = tmp_path_factory.mktemp("text")
    text = stdlib_corpus(max_bytes=120_000)
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(train_bpe_tokenizer(text, root / "tok", 512))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", vocab_size=512)).eval()
    model.save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    return root


def test_train_sae_on_a_text_file(featlab, text_model) -> None:
    root = text_model
    run = featlab("train-sae", "--model", root / "hf", "--hook", "blocks.0.hook_resid_post",
                  "--dataset", root / "corpus.txt", "--context-size", "32", "--width", "64",
                  "--tokens", "4096", "--batch-size", "256", "--n-eval-seqs", "16",
                  "--out", root / "sae", "--no-progress")
    assert run.code == 0, run.err
    assert "text" in run.out or "ce_loss_recovered" in run.out
    cfg = json.loads((root / "sae" / "sae" / "cfg.json").read_text())
    cfg = cfg["metadata"]  # SAELens keeps these under metadata
    assert cfg["dataset_path"] == str(root / "corpus.txt")
    assert cfg["context_size"] == 32 and cfg["prepend_bos"] is True
    name, _, digest = cfg["tokenizer_name"].rpartition("#")
    assert name == str(root / "hf") and len(digest) == 12  # the tokenizer, by vocabulary hash
    # the same command again loads the finished run; another dataset is another run
    again = featlab("train-sae", "--model", root / "hf", "--hook", "blocks.0.hook_resid_post",
                    "--dataset", root / "corpus.txt", "--context-size", "32", "--width", "64",
                    "--tokens", "4096", "--batch-size", "256", "--n-eval-seqs", "16",
                    "--out", root / "sae", "--no-progress")
    assert again.code == 0, again.err
    (root / "other.txt").write_text((root / "corpus.txt").read_text()[:60_000])
    other = featlab("train-sae", "--model", root / "hf", "--hook", "blocks.0.hook_resid_post",
                    "--dataset", root / "other.txt", "--context-size", "32", "--width", "64",
                    "--tokens", "4096", "--batch-size", "256", "--n-eval-seqs", "16",
                    "--out", root / "sae", "--no-progress")
    assert other.code == 2 and "dataset" in other.err and "--overwrite" in other.err
    from featlab.store import open_store

    res = featlab("analyze", "--model", root / "hf", "--sae", root / "sae", "--dataset",
                  root / "corpus.txt", "--context-size", "32", "--n-seq", "16",
                  "--batch-size", "8", "--n-examples", "3", "--store", root / "store",
                  "--no-progress")
    assert res.code == 0, res.err
    store = open_store(root / "store")
    vocab = store.vocab().sort_values("token_id")["token"].tolist()
    assert sum(t.startswith(" ") for t in vocab) > 50  # the tokenizer's strings


def test_dataset_mistakes_are_one_line(featlab, text_model, tmp_path) -> None:
    root = text_model
    base = ("train-sae", "--model", root / "hf", "--hook", "blocks.0.hook_resid_post",
            "--out", tmp_path / "x")
    missing = featlab(*base, "--dataset", tmp_path / "nope.txt")
    assert missing.code == 2 and "--dataset" in missing.err and "no dataset at" in missing.err
    both = featlab(*base, "--dataset", root / "corpus.txt", "--tokens-file", root / "x.pt")
    assert both.code == 2 and "not both" in both.err
    (tmp_path / "rows.jsonl").write_text('{"body": "some text"}\n')
    column = featlab(*base, "--dataset", tmp_path / "rows.jsonl")
    assert column.code == 2 and "--text-column" in column.err
    assert "Traceback" not in missing.err + both.err + column.err
    assert not (tmp_path / "x").exists()  # a refused command writes nothing


def test_language_model_chain_reads_as_text(featlab, tmp_path) -> None:
    """train-lm on the offline corpus -> train-sae from the model's recorded text (no token
    flags) -> analyze on held-out documents: the store's examples are readable text."""
    from featlab.models import load_model
    from featlab.store import open_store

    lm = featlab("train-lm", "--layers", "gdn,attn", "--d-model", "32", "--n-heads", "2",
                 "--vocab-size", "512", "--corpus-bytes", "150000", "--context-size", "32",
                 "--steps", "30", "--batch-size", "8", "--out", tmp_path / "lm", "--no-progress")
    assert lm.code == 0, lm.err
    assert "bits_per_byte" in lm.out
    model = load_model(tmp_path / "lm")
    assert model.tokenizer is not None and len(model.tokenizer) == model.cfg.d_vocab
    ids = model.to_tokens("def f(x):")
    assert ids[0, 0] == model.tokenizer.bos_token_id
    sae = featlab("train-sae", "--model", tmp_path / "lm", "--hook", "blocks.1.hook_resid_post",
                  "--width", "64", "--k", "4", "--tokens", "2048", "--batch-size", "256",
                  "--n-eval-seqs", "8", "--out", tmp_path / "sae", "--no-progress")
    assert sae.code == 0, sae.err
    assert "held-out documents" in sae.out
    cfg = json.loads((tmp_path / "sae" / "sae" / "cfg.json").read_text())["metadata"]
    assert cfg["prepend_bos"] is True and cfg["context_size"] == 32
    assert cfg["dataset_path"].endswith("corpus.txt")
    assert cfg["tokenizer_name"].startswith(str(tmp_path / "lm" / "tokenizer") + "#")
    res = featlab("analyze", "--model", tmp_path / "lm", "--sae", tmp_path / "sae",
                  "--n-seq", "16", "--batch-size", "8", "--n-examples", "3",
                  "--store", tmp_path / "store", "--no-progress")
    assert res.code == 0, res.err
    store = open_store(tmp_path / "store")
    vocab = store.vocab().sort_values("token_id")["token"].tolist()
    assert vocab[model.tokenizer.bos_token_id] == "<|endoftext|>"
    assert sum(t.startswith(" ") for t in vocab) > 50  # word pieces, not ids
    feats, _ = store.features("sae", limit=64)
    live = int(feats.loc[~feats["dead"], "feature"].iloc[0])
    card = store.feature_card("sae", live)
    words = "".join(card.examples["tokens"].iloc[0])
    assert any(c.isalpha() for c in words)


def test_train_lm_mistakes_are_one_line(featlab, tmp_path) -> None:
    missing = featlab("train-lm", "--dataset", tmp_path / "nope.txt", "--out", tmp_path / "x")
    assert missing.code == 2 and "--dataset" in missing.err and "Traceback" not in missing.err
    (tmp_path / "tiny.txt").write_text("too little text\n")
    small = featlab("train-lm", "--dataset", tmp_path / "tiny.txt", "--tokenizer",
                    tmp_path / "nope", "--out", tmp_path / "y")
    assert small.code == 2 and "--tokenizer" in small.err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
