"""Gated linear attention ("gla"; Yang et al., 2024), flash-linear-attention's layout.

    q = W_q x / sqrt(d_k),  k = W_k x,  v = W_v x          (cfg.gla_use_short_conv: each of
        W_q x, W_k x, W_v x through SiLU(ShortConv(.)) first, q scaled after it)
    log_decay = logsigmoid(W_g2 W_g1 x + b_g) / 16          (per key channel, low-rank gate)
    S_t = Diag(exp(log_decay_t)) S_{t-1} + k_t v_t^T,  o_t = S_t^T q_t
    y = W_o [RMSNorm(o) * swish(W_r x)]

Design choices where the paper leaves room: the gate is low rank (16) as in the paper; the
normaliser 16 on the logsigmoid keeps the initial decay close to 1 (``exp(-log 2 / 16)``
~ 0.96 per step at a zero logit), so memory spans tens of tokens from the start; the output
norm is per head with a gain shared by heads. The paper's GLA has no short convolution;
``cfg.gla_use_short_conv`` adds flash-linear-attention's optional one (``use_short_conv``,
off by default there too): a depthwise causal convolution of width ``cfg.conv_kernel`` (fla's
``conv_size``, 4) and SiLU on the projected q, k and v, without bias, the same module and
place as Gated DeltaNet's. Zoology's GLA on MQAR has one; without it a GLA layer must find
a key's neighbour through its decayed state alone.

Hooks (`RECURRENT_HOOKS`): ``hook_q, hook_k, hook_log_decay [batch, pos, heads, d_k]``,
``hook_v, hook_out_gate [batch, pos, heads, d_v]`` (the gate after swish; q, k, v after the
convolution when there is one, as Gated DeltaNet's: there is no separate conv hook),
``hook_beta [batch, pos, heads]`` (ones: GLA has no write strength; patching it scales
writes), ``hook_state_final`` and, with ``cfg.use_state_hook``, ``hook_state``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featlab.models.config import HybridConfig
from featlab.models.layers import init_linear
from featlab.models.mixers.base import ShortConv
from featlab.models.mixers.recurrent import HeadRMSNorm, RecurrentMixer

GATE_RANK = 16
GATE_NORMALIZER = 16.0


class GLA(RecurrentMixer):
    """``[batch, pos, d_model] -> [batch, pos, d_model]``, causal."""

    name = "gla"
    op_name = "gla"

    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__(cfg)
        d, h, std = cfg.d_model, self.n_heads, cfg.init_std
        self.W_q = init_linear(nn.Linear(d, h * self.d_k, bias=False), std)
        self.W_k = init_linear(nn.Linear(d, h * self.d_k, bias=False), std)
        self.W_v = init_linear(nn.Linear(d, h * self.d_v, bias=False), std)
        self.use_short_conv = cfg.gla_use_short_conv
        if self.use_short_conv:
            self.conv_q = ShortConv(h * self.d_k, cfg.conv_kernel, activation=True)
            self.conv_k = ShortConv(h * self.d_k, cfg.conv_kernel, activation=True)
            self.conv_v = ShortConv(h * self.d_v, cfg.conv_kernel, activation=True)
        self.W_g1 = init_linear(nn.Linear(d, GATE_RANK, bias=False), std)
        self.W_g2 = init_linear(nn.Linear(GATE_RANK, h * self.d_k, bias=True), std)
        self.W_r = init_linear(nn.Linear(d, h * self.d_v, bias=False), std)
        self.W_o = init_linear(nn.Linear(h * self.d_v, d, bias=False), std)
        self.norm = HeadRMSNorm(self.d_v, cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        if self.use_short_conv:
            q, k, v = self.conv_q(q), self.conv_k(k), self.conv_v(v)
        q = self.split_heads(q) * self.d_k**-0.5
        k, v = self.split_heads(k), self.split_heads(v)
        log_decay = F.logsigmoid(self.split_heads(self.W_g2(self.W_g1(x)))) / GATE_NORMALIZER
        beta = x.new_ones(x.shape[0], x.shape[1], self.n_heads)
        o = self.recur(q, k, v, log_decay, beta)
        gate = self.hook_out_gate(F.silu(self.split_heads(self.W_r(x))))
        return self.W_o((self.norm(o) * gate).flatten(-2))
