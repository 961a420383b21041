"""Multi-query associative recall (MQAR), as in Zoology (Arora et al., 2023).

A sequence starts with ``num_kv_pairs`` key-value pairs ``k1 v1 k2 v2 ...`` (keys from the
lower half of the vocabulary, values from the upper half, no key repeated), then every key
appears once more as a query, at power-law distributed gaps (short gaps likelier); all other
positions hold random filler tokens. The target at a query position is the value that
followed that key in the context; every other position is labelled ``-100`` (ignored).

Token 0 is never a key (Zoology keeps it as the blank between queries before filling).
Filler comes from the value half by default (``filler="values"``), so no filler token
repeats a key and every query has one answer; ``filler="any"`` fills from the whole
vocabulary exactly as Zoology does.

The repeated-context variant (``repeat_context=True``) shows the key-value block twice
before the queries ("just read twice"), which lets a fixed-size recurrent state decide what
to keep on the second pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class MQARConfig:
    """Shape of an MQAR task. ``seq_len`` counts input tokens per example."""

    vocab_size: int = 64
    seq_len: int = 64
    num_kv_pairs: int = 4
    power_a: float = 0.01
    random_non_queries: bool = True
    repeat_context: bool = False
    # Where filler tokens come from: "values" (upper half, so no filler repeats a key and each
    # query is unambiguous) or "any" (the whole vocabulary, exactly as Zoology fills).
    filler: str = "values"

    def __post_init__(self) -> None:
        if self.filler not in ("values", "any"):
            raise ValueError(f"filler={self.filler!r}; use 'values' or 'any'")
        key_vocab = self.vocab_size // 2 - 1  # keys are 1 .. vocab/2 - 1
        if self.num_kv_pairs < 1:
            raise ValueError(f"num_kv_pairs must be >= 1, got {self.num_kv_pairs}")
        if key_vocab < self.num_kv_pairs:
            raise ValueError(
                f"vocab_size={self.vocab_size} leaves {key_vocab} keys for "
                f"num_kv_pairs={self.num_kv_pairs}; raise vocab_size to at least "
                f"{2 * self.num_kv_pairs + 2}"
            )
        if self.query_space < self.num_kv_pairs:
            raise ValueError(
                f"seq_len={self.seq_len} leaves room for {self.query_space} queries after a "
                f"context of {self.context_len} tokens; raise seq_len to at least "
                f"{self.context_len + 2 * self.num_kv_pairs}"
            )

    @property
    def context_len(self) -> int:
        """Tokens before the first query (the key-value block, twice if repeated)."""
        return 2 * self.num_kv_pairs * (2 if self.repeat_context else 1)

    @property
    def query_space(self) -> int:
        """Number of slots (every other position after the context) a query can take."""
        return (self.seq_len - self.context_len) // 2

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class MQARData:
    """``inputs`` and ``labels`` LongTensors ``[n, seq_len]``; ``labels[i, t]`` is the target
    of the logits at position ``t`` (``-100`` off the query positions)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    cfg: MQARConfig

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs, self.labels


def _choice_without_replacement(
    rng: np.random.Generator, logits: np.ndarray, n_rows: int, k: int
) -> np.ndarray:
    """``[n_rows, k]`` draws without replacement with probabilities softmax(logits), via the
    Gumbel-top-k trick (equivalent to sequential sampling without replacement)."""
    gumbel = rng.gumbel(size=(n_rows, logits.shape[-1]))
    return np.argsort(-(logits + gumbel), axis=-1)[:, :k]


def make_mqar(cfg: MQARConfig, n: int, seed: int = 0) -> MQARData:
    """`n` MQAR examples; the same `cfg`, `n` and `seed` always give the same tensors."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    kv, half = cfg.num_kv_pairs, cfg.vocab_size // 2
    # Keys from 1 .. half-1, values from half .. vocab-1; distinct keys within an example.
    keys = 1 + _choice_without_replacement(rng, np.zeros(half - 1), n, kv)
    values = half + rng.integers(0, cfg.vocab_size - half, size=(n, kv))
    context = np.empty((n, 2 * kv), dtype=np.int64)
    context[:, 0::2], context[:, 1::2] = keys, values
    if cfg.repeat_context:
        context = np.concatenate([context, context], axis=1)

    # Power-law gaps p(g) ~ g^(a-1) over the query slots, as Zoology draws them.
    space = cfg.query_space
    log_p = (cfg.power_a - 1) * np.log(np.arange(1, space + 1))
    gaps = _choice_without_replacement(rng, log_p, n, kv)
    query_pos = cfg.context_len + 2 * gaps  # [n, kv]

    rest = np.zeros((n, cfg.seq_len - cfg.context_len), dtype=np.int64)
    inputs = np.concatenate([context, rest], axis=1)
    labels = np.full((n, cfg.seq_len), IGNORE_INDEX, dtype=np.int64)
    np.put_along_axis(inputs, query_pos, keys, axis=1)
    np.put_along_axis(labels, query_pos, values, axis=1)
    if cfg.random_non_queries:
        blank = inputs == 0
        blank[:, : cfg.context_len] = False
        low = half if cfg.filler == "values" else 0
        filler = rng.integers(low, cfg.vocab_size, size=inputs.shape)
        inputs[blank] = filler[blank]
    import torch  # here, so the config (and the CLI's checks of it) need no torch

    return MQARData(torch.from_numpy(inputs), torch.from_numpy(labels), cfg)


__all__ = ["IGNORE_INDEX", "MQARConfig", "MQARData", "make_mqar"]


def token_names(cfg: MQARConfig) -> list[str]:
    """Readable names of the vocabulary: ``<pad>`` for 0, ``K*`` for keys, ``V*`` for values."""
    half = cfg.vocab_size // 2
    keys = [f"K{i}" for i in range(1, half)]
    values = [f"V{i - half}" for i in range(half, cfg.vocab_size)]
    return ["<pad>", *keys, *values]


def recall_pairs(
    cfg: MQARConfig, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor]:
    """Clean / corrupt pairs for patching the first query (at position P = context length).

    Returns ``clean [n, pos]``, ``corrupt [n, pos]``, ``P``, ``answer [n]`` and
    ``other [n]``: the corrupt copy replaces the queried key's value in the context by
    another value, so ``logit(answer) - logit(other)`` at P measures recall of that value.
    """
    import torch

    p = cfg.context_len
    data = make_mqar(cfg, 50 * n, seed=seed + 11)
    keep = (data.labels[:, p] >= 0).nonzero().squeeze(1)[:n]
    if len(keep) == 0:
        raise RuntimeError("no MQAR example has a query at the first query slot")
    clean, answer = data.inputs[keep], data.labels[keep, p]
    key = clean[:, p]
    g = torch.Generator().manual_seed(seed)
    half = cfg.vocab_size // 2
    shift = 1 + torch.randint(0, half - 1, (len(keep),), generator=g)
    other = half + (answer - half + shift) % (cfg.vocab_size - half)
    corrupt = clean.clone()
    for i in range(len(keep)):
        slot = (clean[i, :p:2] == key[i]).nonzero()[0, 0] * 2 + 1  # the key's value slot
        corrupt[i, slot] = other[i]
    return clean, corrupt, p, answer, other
