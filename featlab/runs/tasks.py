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


def task_tokens(task: dict[str, Any], n_seq: int, seed: int) -> Any:
    """`[n_seq, seq_len]` fresh inputs of `task`."""
    from featlab.datasets.mqar import make_mqar

    return make_mqar(task_config(task), n_seq, seed=seed).inputs


def task_vocab(task: dict[str, Any] | None) -> list[str] | None:
    """Readable token names of the task (MQAR: K1.., V1..), or None."""
    if task is None or task.get("name") != "mqar":
        return None
    from featlab.datasets.mqar import token_names

    return token_names(task_config(task))
