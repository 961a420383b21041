"""Frozen configuration of one sparse autoencoder, serialised to JSON next to its weights.

`SAEConfig` holds what every kind shares (width, k, hook, dtype, seed); the hyperparameters
that only one kind understands live in `hparams`, validated against that kind's own frozen
`Hparams` dataclass. That split is what lets `train_sae(..., kind="topk", k_aux=64)` take each
kind's hyperparameters as plain keyword arguments and still reject a misspelt one with the
list of valid names.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

_DTYPES = ("float32", "float64", "bfloat16", "float16")
# the optimizers of `featlab.sae.optim`, here so the CLI can offer them without importing torch
OPTIMIZERS = ("adam", "signum", "adam_sf")
# Adam, not sign descent: a sign step turns the float noise of a different summation order
# (another CPU, another rank count) into a full step wherever a gradient is near zero, so
# Signum runs do not agree across machines even to float noise
DEFAULT_OPTIMIZER = "adam"

# Gao et al. (2024) call a latent dead after 10M tokens without firing. CPU-sized runs see
# 60k-1M tokens in all, so a fixed 10M (or the former 1M) never flags one and AuxK never
# ran; the window is a fixed share of the run instead, capped at Gao's value.
DEAD_TOKENS_CAP = 10_000_000
DEAD_TOKENS_FRACTION = 0.1


# The encoder starts as the decoder's transpose times this (decoder rows stay unit norm): the
# TopK family's "encoder_init_norm" hyperparameter. experiments/encoder_init.py measured 1, 0.3
# and 0.1 (Anthropic's April 2024 init, SAELens's decoder_init_norm) over three seeds: at 0.3
# TopK k 32 reaches MMCS 0.49 (1: 0.44, 0.1: 0.52; sparsify 0.46) and AuxK still revives
# latents; at 0.1, in the dying regime of `encoder_init.py --regime surplus` (tests/sae/
# test_topk.py's AuxK test), AuxK no longer lowers the dead fraction (0.235 with it, 0.218
# without; 0.3: 0.055 and 0.145).
ENCODER_INIT_NORM = 0.3


def check_encoder_init_norm(norm: float) -> None:
    """The Hparams check of an ``encoder_init_norm`` field."""
    if isinstance(norm, bool) or not (isinstance(norm, int | float) and 0 < norm < float("inf")):
        raise ValueError(
            f"encoder_init_norm={norm!r}: the encoder starts as the decoder's transpose scaled "
            "by this, so it must be a positive finite number (1.0: the plain transpose)"
        )


def default_dead_tokens(run_tokens: int | None, batch_size: int = 1) -> int:
    """The dead-latent window of a run of ``run_tokens`` tokens: DEAD_TOKENS_FRACTION of it,
    at least one batch, at most DEAD_TOKENS_CAP (the cap itself when the run length is
    unknown, e.g. a bare ``training_loss`` call outside `train_sae`)."""
    if run_tokens is None:
        return DEAD_TOKENS_CAP
    return min(DEAD_TOKENS_CAP, max(int(run_tokens * DEAD_TOKENS_FRACTION), batch_size, 1))


def check_dead_tokens(dead_tokens: int | None) -> None:
    """The Hparams check of a ``dead_tokens`` field (None: set from the run length)."""
    if dead_tokens is not None and (isinstance(dead_tokens, bool) or dead_tokens <= 0):
        raise ValueError(
            f"dead_tokens={dead_tokens!r}: a latent counts as dead after this many tokens "
            "without firing, so it must be a positive int; pass None to scale it with the run"
        )


@dataclass(frozen=True)
class SAEConfig:
    """Everything needed to rebuild an SAE of any kind (weights aside).

    kind: registry name ("relu", "topk", "batchtopk", "feature_choice", "matching_pursuit",
    "gated"). d_in / d_sae: input width and number of latents. k: active latents per token
    (TopK, BatchTopK mean, Feature Choice mean, Matching Pursuit steps); None for the kinds
    without one ("relu", "gated"). hparams: the kind's own hyperparameters (see each kind's
    ``Hparams`` dataclass).

    What the SAE was trained on, as far as the caller knows it (written to SAELens's cfg.json
    metadata; nothing in featlab's maths reads them): model_name, hook_name; context_size:
    tokens per sequence the activations came from (None: unknown); dataset_path: where the
    tokens came from, e.g. a file path or "featlab:mqar" for a featlab task (None: unknown);
    prepend_bos: whether each sequence started with a BOS token the caller added (False for
    token ids used as given; True for featlab's text windows; None: unknown, e.g. a SAELens
    directory that did not say); tokenizer_name: the tokenizer that made the tokens from text
    (its name or folder and a hash of its vocabulary; None: no text, or unknown).
    """

    kind: str
    d_in: int
    d_sae: int
    k: int | None = None
    hook_name: str | None = None
    model_name: str | None = None
    dtype: str = "float32"
    seed: int = 0
    hparams: dict[str, Any] = field(default_factory=dict)
    context_size: int | None = None
    dataset_path: str | None = None
    prepend_bos: bool | None = False
    tokenizer_name: str | None = None

    def __post_init__(self) -> None:
        if self.context_size is not None and self.context_size <= 0:
            raise ValueError(f"context_size must be positive or None, got {self.context_size}")
        if self.d_in <= 0 or self.d_sae <= 0:
            raise ValueError(
                f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}"
            )
        if self.dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: {', '.join(_DTYPES)}")
        if self.k is not None:
            if self.k <= 0:
                raise ValueError(f"k must be positive, got k={self.k}")
            if self.k > self.d_sae and self.kind != "matching_pursuit":
                raise ValueError(
                    f"k={self.k} is larger than the SAE width d_sae={self.d_sae}; "
                    "choose k <= d_sae or a wider SAE"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SAEConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> SAEConfig:
        return cls.from_dict(json.loads(text))


def validate_hparams(kind: str, hparams_cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults of `hparams_cls` and reject names it does not define.

    Returns a plain dict (JSON-ready) with every field of the kind's hyperparameters.
    """
    valid = [f.name for f in dataclasses.fields(hparams_cls)]
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise TypeError(
            f"unknown hyperparameter(s) {unknown} for SAE kind {kind!r}; "
            f"valid for this kind: {valid or 'none'}"
        )
    return dataclasses.asdict(hparams_cls(**given))


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the trainer shared by every SAE trained on one activation stream.

    tokens: total training tokens (steps = tokens // batch_size). batch_size: global batch
    (split evenly over ranks under torch.distributed). warmup_steps: linear LR warm-up
    (None: 1% of the steps, at least 1). decay_frac: final fraction of the steps over which
    the LR decays linearly to 0. b_dec_init: "geometric_median", "mean" or "zeros", computed on
    the first batch.
    """

    tokens: int
    batch_size: int
    seed: int = 0
    warmup_steps: int | None = None
    decay_frac: float = 0.2
    b_dec_init: str = "geometric_median"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.tokens < self.batch_size:
            raise ValueError(
                f"tokens={self.tokens} is less than one batch (batch_size={self.batch_size})"
            )
        if self.b_dec_init not in ("geometric_median", "mean", "zeros"):
            raise ValueError(
                f"b_dec_init={self.b_dec_init!r}; valid: 'geometric_median', 'mean', 'zeros'"
            )
        if not 0.0 <= self.decay_frac <= 1.0:
            raise ValueError(f"decay_frac must lie in [0, 1], got {self.decay_frac}")

    @property
    def n_steps(self) -> int:
        return self.tokens // self.batch_size

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d
