"""The offline corpus and its BPE tokenizer (`featlab.datasets.corpus`)."""

from __future__ import annotations

import pytest

from featlab.datasets.corpus import (
    SEPARATOR,
    corpus_fingerprint,
    offline_text,
    stdlib_corpus,
    train_bpe_tokenizer,
)

pytestmark = pytest.mark.slow


def test_corpus_is_english_prose_within_its_budget() -> None:
    text = stdlib_corpus(max_bytes=300_000)
    assert 250_000 < len(text.encode("utf-8")) <= 300_000  # cut at a document boundary
    assert text.startswith('The "assert" statement')  # pydoc_data.topics, sorted by topic
    words = text.split()
    common = sum(w.lower() in {"the", "a", "of", "to", "is", "and", "in"} for w in words)
    assert common / len(words) > 0.1  # prose, not code
    assert stdlib_corpus(max_bytes=300_000) == text  # deterministic
    with pytest.raises(ValueError, match="max_bytes"):
        stdlib_corpus(0)


def test_tokenizer_loads_with_autotokenizer_and_round_trips(tmp_path) -> None:
    from transformers import AutoTokenizer

    text = stdlib_corpus(max_bytes=200_000)
    train_bpe_tokenizer(text, tmp_path / "a", vocab_size=512)
    train_bpe_tokenizer(text, tmp_path / "b", vocab_size=512)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json").read_bytes()
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert len(tok) == 512 and tok.bos_token == tok.eos_token == "<|endoftext|>"
    sample = text.split(SEPARATOR)[3]
    ids = tok(sample)["input_ids"]
    assert tok.decode(ids) == sample  # byte-level: lossless
    assert len(sample.encode("utf-8")) / len(ids) > 2.0  # merges learned


def test_offline_text_is_built_once_and_keyed_by_content(tmp_path) -> None:
    corpus, tokenizer = offline_text(tmp_path, max_bytes=100_000, vocab_size=300)
    text = corpus.read_text()
    assert corpus_fingerprint(text) in str(corpus.parent.name)
    stamp = (tokenizer / "tokenizer.json").stat().st_mtime_ns
    again = offline_text(tmp_path, max_bytes=100_000, vocab_size=300)
    assert again == (corpus, tokenizer)
    assert (tokenizer / "tokenizer.json").stat().st_mtime_ns == stamp  # cached, not rebuilt
    assert not [p for p in corpus.parent.iterdir() if p.name.startswith(".")]  # no temp left
