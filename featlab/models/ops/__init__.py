"""Linear recurrences under the recurrent mixers, each as a step-by-step reference and a
chunked parallel form that tests hold equal.

Shapes: ``q, k [batch, pos, heads, d_k]``, ``v [batch, pos, heads, d_v]``, ``log_decay``
``[batch, pos, heads, d_k]`` (GLA) or ``[batch, pos, heads]`` (delta rule, SSD),
``beta [batch, pos, heads]``, state ``[batch, heads, d_k, d_v]``, read-out ``o_t = S_t^T q_t``.

>>> from featlab.models.ops import OPS
>>> op = OPS["delta_rule"]
>>> o, final = op.chunk(q, k, v, log_decay, beta, chunk_size=16)        # doctest: +SKIP
>>> o_ref, final_ref, states = op.recurrent(q, k, v, log_decay, beta,
...                                         output_states=True)         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from featlab.models.ops.common import StepFn, scan
from featlab.models.ops.delta_rule import (
    delta_rule_chunk,
    delta_rule_recurrent,
    delta_rule_step,
)
from featlab.models.ops.gla import gla_chunk, gla_recurrent, gla_step
from featlab.models.ops.kda import kda_chunk, kda_recurrent, kda_step
from featlab.models.ops.ssd import ssd_chunk, ssd_recurrent, ssd_step


@dataclass(frozen=True)
class RecurrentOp:
    """One recurrence: its reference, its chunked form and its single step (used to replay
    the recurrence with patched states)."""

    name: str
    recurrent: Callable[..., Any]
    chunk: Callable[..., Any]
    step: StepFn
    per_channel_decay: bool


OPS: dict[str, RecurrentOp] = {
    "gla": RecurrentOp("gla", gla_recurrent, gla_chunk, gla_step, per_channel_decay=True),
    "delta_rule": RecurrentOp(
        "delta_rule", delta_rule_recurrent, delta_rule_chunk, delta_rule_step,
        per_channel_decay=False,
    ),
    "ssd": RecurrentOp("ssd", ssd_recurrent, ssd_chunk, ssd_step, per_channel_decay=False),
    "kda": RecurrentOp("kda", kda_recurrent, kda_chunk, kda_step, per_channel_decay=True),
}

__all__ = [
    "OPS",
    "RecurrentOp",
    "delta_rule_chunk",
    "delta_rule_recurrent",
    "delta_rule_step",
    "gla_chunk",
    "gla_recurrent",
    "gla_step",
    "kda_chunk",
    "kda_recurrent",
    "kda_step",
    "scan",
    "ssd_chunk",
    "ssd_recurrent",
    "ssd_step",
]
