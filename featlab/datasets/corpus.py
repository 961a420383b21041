"""An English text corpus that every machine with Python already has, and a BPE tokenizer
trained on it: offline text for the demo and the tests.

The corpus is the language reference shipped in `pydoc_data.topics` (~465 kB) followed by
the docstrings of the standard library's own source files, read with `ast` (nothing is
imported, so no module's side effects run), in sorted path order, until `max_bytes`. The
same Python version gives the same bytes; `corpus_fingerprint` names them, so a cache built
from another Python is rebuilt rather than reused.

    >>> from featlab.datasets.corpus import stdlib_corpus
    >>> text = stdlib_corpus(max_bytes=200_000)
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from collections.abc import Iterator
from pathlib import Path

# documents are separated by a blank line; the tokenizer learns no special separator
SEPARATOR = "\n\n"
DEFAULT_MAX_BYTES = 4_000_000
# test and private trees hold little prose and much repetition
_SKIP_PARTS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3"}


def _topics() -> Iterator[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name].strip()


def _docstrings(root: Path) -> Iterator[str]:
    """Module, class and function docstrings of every stdlib source file under `root`."""
    for path in sorted(root.rglob("*.py")):
        if _SKIP_PARTS.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few files are deliberately invalid (tests of the parser)
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 80:  # one-liners are mostly "Return x."
                    yield doc.strip()


def stdlib_corpus(max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The corpus text, at most `max_bytes` UTF-8 bytes, cut at a document boundary."""
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    size = 0
    for doc in (*_topics(), *_docstrings(root)):
        n = len(doc.encode("utf-8")) + len(SEPARATOR)
        if size + n > max_bytes:
            break
        parts.append(doc)
        size += n
    return SEPARATOR.join(parts)


def corpus_fingerprint(text: str) -> str:
    """A short content hash of the corpus: what caches and stores record."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def train_bpe_tokenizer(text: str, directory: str | Path, vocab_size: int = 4096) -> Path:
    """Train a byte-level BPE tokenizer on `text` and save it to `directory` so that
    ``transformers.AutoTokenizer.from_pretrained(directory)`` loads it (GPT-2's conventions:
    byte-level, no normaliser, one special token ``<|endoftext|>`` serving as BOS, EOS and
    padding). Deterministic for the same text and vocab_size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = "<|endoftext|>"
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[special], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(text.split(SEPARATOR), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=special,
                                   eos_token=special, pad_token=special)
    directory = Path(directory)
    fast.save_pretrained(str(directory))
    return directory


def default_cache_dir() -> Path:
    """``$FEATLAB_CACHE`` or ``$XDG_CACHE_HOME/featlab`` (``~/.cache/featlab``)."""
    import os

    if os.environ.get("FEATLAB_CACHE"):
        return Path(os.environ["FEATLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "featlab"


def offline_text(cache_dir: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 vocab_size: int = 4096) -> tuple[Path, Path]:
    """The corpus file and its tokenizer folder, built on first use (~20 s) and cached under
    ``<cache_dir>/text/<fingerprint>-v<vocab_size>/``: ``corpus.txt`` and ``tokenizer/``.

    The folder is named by the corpus's content, so another Python (other docstrings) builds
    its own and never reads a stale tokenizer; each file is written atomically, so an
    interrupted build is redone, not half-read."""
    import os
    import shutil
    import tempfile

    from featlab._atomic import atomic_write_text

    text = stdlib_corpus(max_bytes)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / "text" / f"{corpus_fingerprint(text)}-v{vocab_size}"
    corpus, tokenizer = folder / "corpus.txt", folder / "tokenizer"
    if not corpus.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(corpus, text)
    if not (tokenizer / "tokenizer.json").is_file():
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".tokenizer."))
        try:
            train_bpe_tokenizer(text, tmp, vocab_size)
            shutil.rmtree(tokenizer, ignore_errors=True)  # a folder left without its json
            os.replace(tmp, tokenizer)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return corpus, tokenizer
