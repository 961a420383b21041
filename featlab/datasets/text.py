"""Token windows from text: read documents, tokenize them with the model's tokenizer, pack them
into ``context_size`` windows with SAELens's conventions, and shuffle them in bounded memory.

Sources (`read_documents`):

- a ``.txt`` file: documents separated by blank lines; a folder of ``.txt`` files: one
  document per file;
- ``.jsonl`` / ``.json`` (one JSON object per line) and ``.parquet``: the `text_column` of each
  row (Parquet is read one row group at a time);
- a Hugging Face ``datasets`` folder written by ``save_to_disk``;
- ``"hf:<name>"``: ``datasets.load_dataset(name, split=split, streaming=True)`` (needs the
  network).

Packing (`pack_windows`) follows SAELens's ``concat_and_batch_sequences``: documents are
concatenated; ``begin_batch_token_id`` (BOS when ``prepend_bos``) opens every window,
``sequence_separator_token_id`` (BOS by default, as SAELens) goes between two documents inside
a window, ``begin_sequence_token_id`` (none by default) opens every document; a document
longer than a window continues in the next one; the last partial window is dropped. Nothing
is padded, so every position is real text.

`text_windows` is the whole path to a ``[n_windows, context_size]`` tensor that
`featlab.sae.activations.ActivationSource`, ``train-sae`` and ``analyze`` take as tokens, and
`TextDataset` records what made it (the dataset, column, tokenizer and packing), which goes into
an SAE's cfg.json and the store.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

HUB_PREFIX = "hf:"


def _paragraphs(text: str) -> Iterator[str]:
    for block in text.split("\n\n"):
        if block.strip():
            yield block.strip("\n")


def _column(row: dict[str, Any], column: str, where: str) -> str:
    if column not in row:
        raise ValueError(f"{where} has no column {column!r} (columns: {sorted(row)}); pass "
                         "the column that holds the text (--text-column)")
    value = row[column]
    if not isinstance(value, str):
        raise ValueError(f"{where}: column {column!r} holds {type(value).__name__}, not text")
    return value


def read_documents(source: str | Path, text_column: str = "text",
                   split: str = "train") -> Iterator[str]:
    """Stream the documents of `source` (module doc), one string each, in file order."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        from datasets import load_dataset

        for row in load_dataset(source[len(HUB_PREFIX):], split=split, streaming=True):
            yield _column(row, text_column, source)
        return
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}; give a .txt, .jsonl, .parquet file, a "
                                "folder of .txt files or of datasets.save_to_disk, or hf:<name>")
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            yield from _saved_dataset(path, text_column, split)
            return
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ValueError(f"{path} holds no .txt files and is not a datasets.save_to_disk "
                             "folder")
        for file in files:
            text = file.read_text(encoding="utf-8", errors="replace")
            if text.strip():
                yield text
        return
    suffix = path.suffix.lower()
    if suffix == ".txt":
        yield from _paragraphs(path.read_text(encoding="utf-8", errors="replace"))
    elif suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{number} is not a JSON object ({err}); "
                                         "give one object per line") from None
                    yield _column(row, text_column, f"{path}:{number}")
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        if text_column not in table.schema_arrow.names:
            raise ValueError(f"{path} has no column {text_column!r} (columns: "
                             f"{table.schema_arrow.names}); pass --text-column")
        for group in range(table.num_row_groups):
            for value in table.read_row_group(group, columns=[text_column]).column(0):
                text = value.as_py()
                if text:
                    yield text
    else:
        raise ValueError(f"{path}: unknown text format {suffix!r}; use .txt, .jsonl, .parquet, "
                         "a folder, or hf:<name>")


def _saved_dataset(path: Path, column: str, split: str) -> Iterator[str]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        if split not in data:
            raise ValueError(f"{path} has splits {sorted(data)}, not {split!r}; pass --split")
        data = data[split]
    if column not in data.column_names:
        raise ValueError(f"{path} has no column {column!r} (columns: {data.column_names}); "
                         "pass --text-column")
    for text in data[column]:  # datasets reads it memory-mapped
        if text:
            yield text


def pack_windows(token_docs: Iterable[list[int]], context_size: int, *,
                 begin_batch_token_id: int | None = None,
                 begin_sequence_token_id: int | None = None,
                 sequence_separator_token_id: int | None = None) -> Iterator[list[int]]:
    """Concatenate tokenized documents into windows of exactly `context_size` ids (module doc).
    A special id already in place (a document that starts with BOS) is not doubled."""
    if context_size <= 1:
        raise ValueError(f"context_size must be > 1, got {context_size}")
    window: list[int] = []
    for doc in token_docs:
        if not doc:
            continue
        doc = list(doc)
        if begin_sequence_token_id is not None and doc[0] != begin_sequence_token_id:
            doc.insert(0, begin_sequence_token_id)
        offset = 0
        while offset < len(doc):
            if not window:
                if begin_batch_token_id is not None and doc[offset] != begin_batch_token_id:
                    window.append(begin_batch_token_id)
            elif offset == 0 and sequence_separator_token_id is not None \
                    and doc[0] != sequence_separator_token_id:
                window.append(sequence_separator_token_id)
                if len(window) == context_size:
                    yield window
                    window = []
                    continue
            take = context_size - len(window)
            window.extend(doc[offset:offset + take])
            offset += take
            if len(window) == context_size:
                yield window
                window = []


def shuffle_buffer(items: Iterable[Any], size: int, seed: int = 0) -> Iterator[Any]:
    """Items in a random order, holding at most `size` of them (reservoir-style: each new item
    replaces a random held one, which is emitted); `size` 1 keeps the order."""
    if size < 1:
        raise ValueError(f"shuffle buffer size must be >= 1, got {size}")
    rng = random.Random(seed)
    held: list[Any] = []
    for item in items:
        if len(held) < size:
            held.append(item)
            continue
        i = rng.randrange(size)
        yield held[i]
        held[i] = item
    rng.shuffle(held)
    yield from held


@dataclass(frozen=True)
class TextDataset:
    """What a tensor of text windows was made from: enough to make it again."""

    dataset: str
    text_column: str = "text"
    split: str = "train"
    tokenizer: str = ""
    context_size: int = 128
    prepend_bos: bool = True
    sequence_separator: str | None = "bos"
    shuffle_buffer: int = 1000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenizer_identity(tokenizer: Any) -> str:
    """``<name or folder>#<hash of the vocabulary>``: the same name with another vocabulary
    (a retrained tokenizer in the same folder) is another tokenizer."""
    import hashlib

    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()[:12]
    return f"{getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__}#{digest}"


def _token_id(tokenizer: Any, which: str | None) -> int | None:
    if which is None:
        return None
    value = getattr(tokenizer, f"{which}_token_id", None)
    if value is None:
        raise ValueError(f"the tokenizer has no {which} token; pass sequence_separator=None "
                         "or a tokenizer that has one")
    return int(value)


def text_windows(source: str | Path, tokenizer: Any, n_windows: int, context_size: int = 128,
                 *, text_column: str = "text", split: str = "train", prepend_bos: bool = True,
                 sequence_separator: str | None = "bos", shuffle: int = 1000,
                 seed: int = 0, held_out_every: int | None = None,
                 part: str = "all") -> tuple[torch.Tensor, TextDataset]:
    """The first `n_windows` packed windows of `source` after a window shuffle buffer of
    `shuffle` (1: none), as ``[n, context_size]`` int64, and the `TextDataset` that says how.

    Documents are tokenized one at a time without special tokens; BOS is the packer's
    business (``prepend_bos``, as SAELens's ``prepend_bos``). Memory: the buffer's windows.

    held_out_every / part: with ``held_out_every = n``, document i is held out when
    ``i % n == 0``; `part` "train" reads the others, "held_out" those, "all" every one (the
    split a language model trained by `featlab train-lm` records, so an SAE is evaluated and
    analysed on text the model never saw)."""
    if n_windows < 1:
        raise ValueError(f"n_windows must be >= 1, got {n_windows}")
    if part not in ("all", "train", "held_out"):
        raise ValueError(f"part must be all, train or held_out, got {part!r}")
    bos = _token_id(tokenizer, "bos") if prepend_bos else None
    separator = _token_id(tokenizer, sequence_separator)
    docs: Iterable[str] = read_documents(source, text_column, split)
    if held_out_every and part != "all":
        held = part == "held_out"
        docs = (d for i, d in enumerate(docs) if (i % held_out_every == 0) == held)
    ids = (tokenizer(doc, add_special_tokens=False)["input_ids"] for doc in docs)
    windows = pack_windows(ids, context_size, begin_batch_token_id=bos,
                           sequence_separator_token_id=separator)
    out: list[list[int]] = []
    for window in shuffle_buffer(windows, shuffle, seed):
        out.append(window)
        if len(out) == n_windows:
            break
    if not out:
        raise ValueError(f"{source} gave no window of {context_size} tokens; give more text "
                         "or a smaller context size")
    identity = TextDataset(
        dataset=str(source), text_column=text_column, split=split,
        tokenizer=tokenizer_identity(tokenizer),
        context_size=context_size, prepend_bos=prepend_bos,
        sequence_separator=sequence_separator, shuffle_buffer=shuffle, seed=seed,
    )
    return torch.tensor(out, dtype=torch.long), identity
