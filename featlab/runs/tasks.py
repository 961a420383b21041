"""Tasks a model was trained on, as recorded in its folder, and fresh data drawn from them.

`featlab.models.save_model(model, dir, task=...)` keeps the task (``{"name": "mqar", ...}``
with the `MQARConfig` fields) in the model's ``config.json``; `train-sae` and `analyze` then
draw new sequences of the same task when no tokens file is given, with held-out seeds for
evaluation.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from featlab.errors import UserError


def mqar_task(config: Any) -> dict[str, Any]:
    """The task record of an `MQARConfig`."""
    return {"name": "mqar", **asdict(config)}


def task_config(task: dict[str, Any]) -> Any:
    """The config object a task record describes (only MQAR so far)."""
    name = task.get("name")
    if name == "mqar":
        from featlab.datasets.mqar import MQARConfig

        return MQARConfig(**{k: v for k, v in task.items() if k != "name"})
    raise UserError(f"the model folder records a task {name!r} that featlab cannot draw data "
                    "for; pass a tokens file ({opt:tokens_file})")


def task_tokens(task: dict[str, Any], n_seq: int, seed: int, tokenizer: Any = None,
                part: str = "train") -> Any:
    """`[n_seq, seq_len]` inputs of `task`: fresh MQAR sequences, or windows of the text a
    language model was trained on (`part` "train" or "held_out": its documents, split as
    `featlab train-lm` split them), read with the model's `tokenizer`."""
    return task_sequences(task, n_seq, seed, tokenizer, part)[0]


def task_sequences(task: dict[str, Any], n_seq: int, seed: int, tokenizer: Any = None,
                   part: str = "train") -> tuple[Any, Any]:
    """(`task_tokens(...)`, the `[n_seq, seq_len]` targets they are scored against): MQAR's
    labels (the value at each query position, -100 elsewhere), so CE-loss recovered measures
    the recall the model was trained for, not the unpredictable filler; None for text, which
    is scored on the next token at every position."""
    if task.get("name") == "text":
        from featlab.datasets.text import text_windows

        if tokenizer is None:
            raise UserError("the model records a text task but carries no tokenizer; pass "
                            "{opt:tokens_file}")
        windows, _ = text_windows(
            task["dataset"], tokenizer, n_seq, int(task["context_size"]),
            text_column=task.get("text_column", "text"),
            prepend_bos=bool(task.get("prepend_bos", True)), seed=seed,
            held_out_every=task.get("held_out_every"), part=part)
        return windows, None
    from featlab.datasets.mqar import make_mqar

    data = make_mqar(task_config(task), n_seq, seed=seed)
    return data.inputs, data.labels


def task_vocab(task: dict[str, Any] | None) -> list[str] | None:
    """Readable token names of the task (MQAR: K1.., V1..), or None."""
    if task is None or task.get("name") != "mqar":
        return None
    from featlab.datasets.mqar import token_names

    return token_names(task_config(task))
