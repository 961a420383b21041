"""The language-model recipe: train a `HookedHybrid` on text in a run folder.

Behind `featlab train-lm`. Documents come from ``--dataset`` (any source
`featlab.datasets.text` reads) or, by default, from the offline corpus of Python's own
documentation (`featlab.datasets.corpus`), tokenized by ``--tokenizer`` or by a byte-level
BPE trained on that corpus. Every 20th document is held out, so the held-out windows share
no text with the training ones. The folder holds ``run.json``, ``train_state.pt`` and, once
finished, the model with its tokenizer (``tokenizer/``) and its task record
``{"name": "text", "dataset": ..., ...}``, from which ``train-sae`` and ``analyze`` draw text
windows when they are given no tokens.

Reported on the held-out windows: loss in nats per token and bits per byte (the loss summed
over predicted tokens, over ln 2 times the UTF-8 bytes those tokens decode to).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featlab.errors import UserError
from featlab.runs.options import check_options, coerce_fields, option, result_settings

COMMAND = "train-lm"
HELD_OUT_EVERY = 20  # every 20th document is held out


@dataclass(frozen=True)
class TextModelConfig:
    """Train a HookedHybrid language model on text in OUT (resumes an interrupted run;
    refuses other settings in OUT unless --overwrite); print its held-out loss."""

    layers: tuple[str, ...] = option(("gdn", "attn", "gdn", "attn"),
                                     "Comma-separated mixers, e.g. gdn,attn,gdn,attn.")
    d_model: int = option(128, "Residual width.", gt=0)
    n_heads: int = option(4, "Heads per mixer.", gt=0)
    dataset: str | None = option(None, "Text: a .txt/.jsonl/.parquet file, a folder or "
                                 "hf:<name> (default: the offline corpus of Python's docs).")
    text_column: str = option("text", "The --dataset column that holds the text.")
    tokenizer: Path | None = option(None, "A tokenizer folder (AutoTokenizer; default: a BPE "
                                    "trained on the offline corpus, --vocab-size).")
    vocab_size: int = option(4096, "Vocabulary of the default tokenizer.", gt=257)
    context_size: int = option(128, "Tokens per training window.", gt=1)
    corpus_bytes: int = option(2_500_000, "Size of the default corpus.", gt=10_000)
    steps: int = option(1_500, "Optimizer steps.", gt=0)
    batch_size: int = option(32, "Windows per step.", gt=0)
    lr: float = option(3e-3, "Peak AdamW learning rate.", gt=0, le=10)
    seed: int = option(0, "Seed for init, data order and training.", ge=0)
    out: Path = option(Path("runs/lm"), "The run folder (model, tokenizer, checkpoint).",
                       result=False)
    overwrite: bool = option(False, "Replace a run with other settings in OUT.", result=False)
    checkpoint_every: int = option(200, "Checkpoint every N steps.", gt=0, result=False)
    checkpoint_seconds: float = option(60.0, "...and at least every S seconds.", gt=0,
                                       result=False)
    progress: bool = option(True, "Show a progress bar.", result=False)

    def __post_init__(self) -> None:
        coerce_fields(self)

    def check(self) -> None:
        from featlab.runs import checks

        check_options(self)
        checks.check_dataset(self.dataset, "dataset")
        if self.tokenizer is not None and not Path(self.tokenizer).is_dir():
            raise UserError(f"{{opt:tokenizer}}: no tokenizer folder at {self.tokenizer}")
        try:
            self.hybrid_config(self.vocab_size)
        except ValueError as err:
            raise UserError(str(err)) from None

    def hybrid_config(self, d_vocab: int) -> Any:
        from featlab.models.config import HybridConfig

        return HybridConfig(layers=self.layers, d_model=self.d_model, n_heads=self.n_heads,
                            d_vocab=d_vocab, n_ctx=self.context_size, seed=self.seed)


@dataclass
class TextModelRun:
    """What `train_text_model` returns. status: "new", "resume" or "done" (loaded)."""

    model: Any
    metrics: dict[str, Any]
    out: Path
    status: str


def _identity(config: TextModelConfig) -> dict[str, Any]:
    from featlab.runs.checks import dataset_identity

    settings = result_settings(config)
    if config.dataset is not None:
        settings["dataset"] = dataset_identity(config.dataset)
    if config.tokenizer is not None:
        settings["tokenizer"] = dataset_identity(str(config.tokenizer))
    return settings


def _documents(config: TextModelConfig) -> tuple[list[str], str, Any]:
    """(documents, the dataset as recorded, the tokenizer)."""
    from transformers import AutoTokenizer

    from featlab.datasets.text import read_documents

    if config.dataset is None:
        from featlab.datasets.corpus import offline_text

        corpus, tokenizer_dir = offline_text(max_bytes=config.corpus_bytes,
                                             vocab_size=config.vocab_size)
        dataset = str(corpus)
    else:
        tokenizer_dir, dataset = None, config.dataset
    from featlab.runs.checks import user_errors

    with user_errors("dataset"):
        docs = list(read_documents(dataset, config.text_column))
    with user_errors("tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(str(config.tokenizer or tokenizer_dir))
    if tokenizer.bos_token_id is None:
        raise UserError("{opt:tokenizer} has no BOS token to open each window with")
    return docs, dataset, tokenizer


def _windows(docs: list[str], tokenizer: Any, context_size: int) -> Any:
    import torch

    from featlab.datasets.text import pack_windows

    bos = tokenizer.bos_token_id
    ids = (tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs)
    windows = list(pack_windows(ids, context_size, begin_batch_token_id=bos,
                                sequence_separator_token_id=bos))
    return torch.tensor(windows, dtype=torch.long).reshape(-1, context_size)


def held_out_metrics(model: Any, windows: Any, tokenizer: Any,
                     batch_size: int = 32) -> dict[str, Any]:
    """Loss (nats / token) and bits per byte of `model` on `windows` (module doc)."""
    import torch

    from featlab.models.hybrid import lm_cross_entropy

    nats, n_tokens, n_bytes = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows[start:start + batch_size]
            nll = lm_cross_entropy(model(batch), batch, per_token=True)
            nats += float(nll.double().sum())
            n_tokens += nll.numel()
            for row in batch:  # the bytes of the predicted tokens (BOS / separators: none)
                n_bytes += len(tokenizer.decode(row[1:].tolist(),
                                                skip_special_tokens=True).encode("utf-8"))
    return {"held_out_windows": len(windows), "held_out_tokens": n_tokens,
            "loss_nats_per_token": nats / n_tokens,
            "bits_per_byte": nats / math.log(2) / max(n_bytes, 1)}


def train_text_model(config: TextModelConfig | None = None) -> TextModelRun:
    """Train (or load, or resume) the language model `config` describes (module doc)."""
    from featlab._interrupt import stop_on_signals
    from featlab.runs.checks import checkpoint_errors
    from featlab.runs.folder import RunFolder

    config = config or TextModelConfig()
    config.check()
    folder = RunFolder(config.out, COMMAND, _identity(config))
    status = folder.check(overwrite=config.overwrite)
    from featlab.models import load_model, save_model, train_model

    if status == "done":
        summary = folder.summary()
        return TextModelRun(load_model(config.out), summary.get("metrics", {}),
                            Path(config.out), status)
    docs, dataset, tokenizer = _documents(config)
    train_docs = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY]
    held_docs = [d for i, d in enumerate(docs) if not i % HELD_OUT_EVERY]
    train, held = (_windows(d, tokenizer, config.context_size) for d in (train_docs, held_docs))
    if len(train) < config.batch_size or not len(held):
        raise UserError(f"{{opt:dataset}} gives {len(train)} training and {len(held)} "
                        f"held-out windows of {config.context_size} tokens; give more text "
                        "or a smaller {opt:context_size}")
    folder.claim(overwrite=config.overwrite)
    t0 = time.perf_counter()
    with stop_on_signals(), checkpoint_errors():
        result = train_model(
            config.hybrid_config(len(tokenizer)), train, steps=config.steps,
            batch_size=config.batch_size, lr=config.lr, warmup=min(100, config.steps // 10 + 1),
            seed=config.seed, checkpoint_dir=config.out, checkpoint_every=config.checkpoint_every,
            checkpoint_seconds=config.checkpoint_seconds, progress=config.progress,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    model = result.model.eval()
    model.tokenizer = tokenizer
    metrics = {"train_windows": len(train), "train_tokens_seen": config.steps
               * config.batch_size * config.context_size,
               **held_out_metrics(model, held, tokenizer), "train_seconds": round(seconds, 1)}
    task = {"name": "text", "dataset": dataset, "text_column": config.text_column,
            "context_size": config.context_size, "prepend_bos": True,
            "held_out_every": HELD_OUT_EVERY}
    save_model(model, config.out, task=task)
    folder.finish(metrics=metrics, resumed_from=result.resumed_from)
    return TextModelRun(model, metrics, Path(config.out), status)


__all__ = ["TextModelConfig", "TextModelRun", "held_out_metrics", "train_text_model"]
