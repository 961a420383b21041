"""Configuration of a hooked hybrid sequence model."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Mixer names accepted in `HybridConfig.layers`; the registry in `featlab.models.mixers`
# maps each to its class. Kept here so a config can be validated without importing torch.
MIXER_NAMES = ("attn", "swa", "gla", "gdn", "deltanet", "ssd", "conv")


@dataclass(frozen=True)
class HybridConfig:
    """A hybrid stack: one sequence mixer per layer, each optionally followed by an MLP.

    `layers` names the mixer of every layer, e.g. ``["gdn", "attn"]``. Heads share
    `d_model` evenly (`d_head = d_model // n_heads`); linear-recurrent mixers use `d_head`
    for both key and value width unless `d_state` overrides the key width (SSD: the state
    width N per head).
    """

    layers: tuple[str, ...] = ("gdn", "attn")
    d_model: int = 64
    n_heads: int = 2
    d_vocab: int = 256
    n_ctx: int = 128
    d_state: int | None = None
    d_mlp: int | None = None  # default 4 * d_model
    use_mlp: bool = True
    chunk_size: int = 16
    conv_kernel: int = 4
    # GLA's short causal convolution (+ SiLU) on q, k, v, as flash-linear-attention's
    # GatedLinearAttention(use_short_conv=..., conv_size=conv_kernel); off by default, as there.
    gla_use_short_conv: bool = False
    window: int | None = None  # sliding-window width of "swa" layers (default n_ctx // 4)
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    # Materialise every recurrent state through `hook_state` ([batch, pos, heads, d_k, d_v]);
    # off by default because it costs pos * heads * d_k * d_v memory per layer.
    use_state_hook: bool = False
    mixer_mode: str = "chunk"  # "chunk" or "recurrent" for mixers that have both
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept lists from JSON or user code but store an immutable tuple.
        object.__setattr__(self, "layers", tuple(self.layers))
        unknown = [name for name in self.layers if name not in MIXER_NAMES]
        if unknown:
            raise ValueError(
                f"unknown mixer name(s) {unknown} in layers={list(self.layers)}; "
                f"valid names are {list(MIXER_NAMES)}"
            )
        if not self.layers:
            raise ValueError("layers is empty; give at least one mixer name, e.g. ['attn']")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "choose n_heads that divides d_model"
            )
        if self.mixer_mode not in ("chunk", "recurrent"):
            raise ValueError(f"mixer_mode={self.mixer_mode!r}; use 'chunk' or 'recurrent'")
        if not isinstance(self.gla_use_short_conv, bool):
            raise ValueError(
                f"gla_use_short_conv={self.gla_use_short_conv!r}; use True or False"
            )
        for name in ("d_model", "n_heads", "d_vocab", "n_ctx", "chunk_size", "conv_kernel"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_key(self) -> int:
        return self.d_state if self.d_state is not None else self.d_head

    @property
    def mlp_width(self) -> int:
        return self.d_mlp if self.d_mlp is not None else 4 * self.d_model

    @property
    def window_size(self) -> int:
        return self.window if self.window is not None else max(1, self.n_ctx // 4)

    def replace(self, **changes: Any) -> HybridConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HybridConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown HybridConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> HybridConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
