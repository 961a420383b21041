"""Building blocks shared by the hybrid stack: RMSNorm, MLP, embed, unembed, rotary helper.

Parameter names follow TransformerLens (`W_E`, `W_U`, `b_U`, `W_in`, `W_out`, `w`) so code
written against a `HookedTransformer` reads the same on a `HookedHybrid`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain: ``[..., d] -> [..., d]``.

    Fires ``hook_normalized`` on the output (after the gain), as TransformerLens's
    `ln_final.hook_normalized`.
    """

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d))
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.hook_normalized(x * scale * self.w)


class MLP(nn.Module):
    """Two-layer GELU MLP ``[batch, pos, d_model] -> [batch, pos, d_model]``.

    GELU rather than SwiGLU: one hidden activation per neuron (``hook_post``) keeps the
    neuron basis TransformerLens-shaped (``hook_pre``/``hook_post`` are
    ``[batch, pos, d_mlp]``), which the probe and SAE code compare against.
    """

    def __init__(self, d_model: int, d_mlp: int, init_std: float) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.randn(d_model, d_mlp) * init_std)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.randn(d_mlp, d_model) * init_std)
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        post = self.hook_post(F.gelu(pre))
        return post @ self.W_out + self.b_out


class Embed(nn.Module):
    """Token embedding ``[batch, pos] -> [batch, pos, d_model]`` (no positional embedding:
    attention layers use RoPE and the recurrent mixers are order-aware by construction)."""

    def __init__(self, d_vocab: int, d_model: int, init_std: float) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.randn(d_vocab, d_model) * init_std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # Not self.W_E[tokens]: that backward accumulates with atomic adds across CPU
        # threads, so two runs with the same seed train different models; embedding's
        # backward sums each row in a fixed order.
        return F.embedding(tokens, self.W_E)


class Unembed(nn.Module):
    """Readout ``[batch, pos, d_model] -> [batch, pos, d_vocab]``."""

    def __init__(self, d_model: int, d_vocab: int, init_std: float) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.randn(d_model, d_vocab) * init_std)
        self.b_U = nn.Parameter(torch.zeros(d_vocab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_U + self.b_U


def rotary_cos_sin(
    n_pos: int, d_head: int, base: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos and sin tables ``[pos, d_head]`` for rotate-half RoPE (GPT-NeoX layout)."""
    if d_head % 2:
        raise ValueError(f"rotary embedding needs an even d_head, got {d_head}; change n_heads")
    inv_freq = base ** (-torch.arange(0, d_head, 2, device=device, dtype=torch.float32) / d_head)
    angles = torch.arange(n_pos, device=device, dtype=torch.float32)[:, None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [batch, pos, heads, d_head]`` by position with tables ``[pos, d_head]``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def init_linear(layer: nn.Linear, std: float) -> nn.Linear:
    """Normal(0, std) weights, zero bias: the same init as the TransformerLens-style params."""
    nn.init.normal_(layer.weight, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


__all__ = ["MLP", "Embed", "RMSNorm", "Unembed", "apply_rotary", "init_linear", "rotary_cos_sin"]
