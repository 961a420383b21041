"""The text flags that `train-sae` and `analyze` share (``--dataset``, ``--text-column``,
``--context-size``, ``--prepend-bos``): declared once here, read once here."""

from __future__ import annotations

import math
from typing import Any

from featlab.errors import UserError
from featlab.runs.options import option


def dataset_field() -> Any:
    return option(None, "Text: a .txt/.jsonl/.parquet file, a folder (.txt files or "
                  "datasets.save_to_disk) or hf:<name>; tokenized with the model's tokenizer.")


def text_column_field() -> Any:
    return option("text", "The --dataset column that holds the text.")


def context_size_field() -> Any:
    return option(128, "Tokens per --dataset window.", gt=1)


def prepend_bos_field() -> Any:
    return option(True, "Open every --dataset window with the BOS token (SAELens's "
                  "prepend_bos).")


def dataset_windows(config: Any, model: Any, n_windows: int, seed: int) -> Any:
    """``[n, context_size]`` windows of ``config.dataset`` read with the model's tokenizer,
    as a `UserError` naming the flag when the text or the model cannot give them."""
    from featlab.datasets.text import text_windows
    from featlab.runs.checks import user_errors

    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise UserError(f"the model in {config.model} has no tokenizer to read "
                        "{opt:dataset} with; save it with one (save_pretrained) or pass "
                        "token ids instead")
    with user_errors("dataset"):
        windows, _ = text_windows(config.dataset, tokenizer, n_windows, config.context_size,
                                  text_column=config.text_column,
                                  prepend_bos=config.prepend_bos, seed=seed)
    return windows


def windows_for_tokens(tokens: int, context_size: int) -> int:
    """Windows needed for `tokens` activation rows."""
    return math.ceil(tokens / context_size)
