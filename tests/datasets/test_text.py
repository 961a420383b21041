"""Text windows (`featlab.datasets.text`): every source format, SAELens's packing, the
shuffle buffer, and the whole path with a real tokenizer."""

from __future__ import annotations

import json
import random

import pytest
import torch

from featlab.datasets.text import (
    pack_windows,
    read_documents,
    shuffle_buffer,
    text_windows,
)

DOCS = ["The first document.\nIt has two lines.", "Second: short.", "Third, with ünïcode ✓."]


def _random_docs(seed: int, n: int = 40) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 50) for _ in range(rng.randrange(0, 30))] for _ in range(n)]


@pytest.mark.parametrize("options", [
    {}, {"begin_batch_token_id": 1}, {"begin_batch_token_id": 1, "sequence_separator_token_id": 1},
    {"sequence_separator_token_id": 2}, {"begin_sequence_token_id": 1},
    {"begin_batch_token_id": 1, "begin_sequence_token_id": 1, "sequence_separator_token_id": 2},
])
@pytest.mark.parametrize("context_size", [2, 7, 16])
@pytest.mark.parametrize("seed", [0, 1])
def test_packing_equals_saelens(options, context_size, seed) -> None:
    from sae_lens.tokenization_and_batching import concat_and_batch_sequences

    docs = _random_docs(seed)
    docs[3] = [1] + docs[3]  # a document that already starts with BOS is not given another
    ours = list(pack_windows(docs, context_size, **options))
    theirs = [w.tolist() for w in concat_and_batch_sequences(
        (torch.tensor(d, dtype=torch.long) for d in docs if d), context_size, **options)]
    assert ours == theirs
    assert ours and all(len(w) == context_size for w in ours)


def test_packing_keeps_every_token_in_order() -> None:
    docs = _random_docs(3)
    flat = [t for d in docs for t in d]
    windows = list(pack_windows(docs, 8))
    got = [t for w in windows for t in w]
    assert got == flat[: len(got)] and len(flat) - len(got) < 8  # only the tail is dropped
    with pytest.raises(ValueError, match="context_size"):
        list(pack_windows(docs, 1))


def test_shuffle_buffer_is_a_seeded_permutation() -> None:
    items = list(range(100))
    a = list(shuffle_buffer(items, 10, seed=0))
    assert sorted(a) == items and a != items
    assert a == list(shuffle_buffer(items, 10, seed=0))
    assert a != list(shuffle_buffer(items, 10, seed=1))
    assert list(shuffle_buffer(items, 1)) == items
    # bounded: item i cannot come out before position i - size (it enters the buffer at i)
    assert all(pos >= item - 10 for pos, item in enumerate(a))


def test_every_source_format_reads_the_same_documents(tmp_path) -> None:
    from datasets import Dataset, DatasetDict

    (tmp_path / "docs.txt").write_text("\n\n".join(DOCS) + "\n", encoding="utf-8")
    (tmp_path / "docs.jsonl").write_text(
        "".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS)))
    Dataset.from_dict({"text": DOCS}).to_parquet(str(tmp_path / "docs.parquet"))
    Dataset.from_dict({"body": DOCS}).save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"train": Dataset.from_dict({"text": DOCS})}).save_to_disk(str(tmp_path / "dd"))
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, d in enumerate(DOCS):
        (folder / f"{i}.txt").write_text(d, encoding="utf-8")
    assert list(read_documents(tmp_path / "docs.txt")) == DOCS
    assert list(read_documents(tmp_path / "docs.jsonl")) == DOCS
    assert list(read_documents(tmp_path / "docs.parquet")) == DOCS
    assert list(read_documents(tmp_path / "saved", text_column="body")) == DOCS
    assert list(read_documents(tmp_path / "dd")) == DOCS
    assert list(read_documents(folder)) == DOCS


def test_bad_sources_say_what_to_do(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no dataset at"):
        list(read_documents(tmp_path / "missing.txt"))
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="--text-column"):
        list(read_documents(tmp_path / "a.jsonl"))
    (tmp_path / "b.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="b.jsonl:1 is not a JSON object"):
        list(read_documents(tmp_path / "b.jsonl"))
    (tmp_path / "c.csv").write_text("text\nx\n")
    with pytest.raises(ValueError, match="unknown text format"):
        list(read_documents(tmp_path / "c.csv"))


@pytest.mark.slow
def test_text_windows_with_the_offline_tokenizer(tmp_path) -> None:
    from transformers import AutoTokenizer

    from featlab.datasets.corpus import SEPARATOR, stdlib_corpus, train_bpe_tokenizer

    text = stdlib_corpus(max_bytes=150_000)
    tok = AutoTokenizer.from_pretrained(train_bpe_tokenizer(text, tmp_path / "tok", 512))
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    windows, identity = text_windows(tmp_path / "corpus.txt", tok, n_windows=64,
                                     context_size=32, shuffle=16)
    assert windows.shape == (64, 32) and windows.dtype == torch.long
    assert (windows[:, 0] == tok.bos_token_id).all()  # prepend_bos: every window opens with BOS
    assert identity.context_size == 32 and identity.prepend_bos
    assert identity.tokenizer.startswith(str(tmp_path / "tok") + "#")
    # the text survives: a window decodes to a piece of the corpus
    piece = tok.decode(windows[0, 1:].tolist())
    assert any(piece[:40] in doc for doc in text.split(SEPARATOR))
    again, _ = text_windows(tmp_path / "corpus.txt", tok, n_windows=64, context_size=32,
                            shuffle=16)
    assert torch.equal(windows, again)
