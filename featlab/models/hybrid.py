"""`HookedHybrid`: a pre-norm residual stack of sequence mixers (and MLPs) built from a
`HybridConfig`, exposing every intermediate through TransformerLens hook points.

Hook names (``l`` is the block index)::

    hook_embed
    blocks.{l}.hook_resid_pre        [batch, pos, d_model]
    blocks.{l}.ln1.hook_normalized   mixer input
    blocks.{l}.mixer.hook_*          the mixer's schema (see featlab.models.mixers.base)
    blocks.{l}.hook_mixer_out        [batch, pos, d_model]
    blocks.{l}.hook_attn_out         attention layers only, same tensor as hook_mixer_out
    blocks.{l}.hook_resid_mid        after the mixer's residual add
    blocks.{l}.ln2.hook_normalized, blocks.{l}.mlp.hook_pre / hook_post [batch, pos, d_mlp],
    blocks.{l}.hook_mlp_out          only with cfg.use_mlp
    blocks.{l}.hook_resid_post
    ln_final.hook_normalized
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedRootModule import HookedRootModule

from featlab.models.config import HybridConfig
from featlab.models.layers import MLP, Embed, RMSNorm, Unembed
from featlab.models.mixers import ATTENTION_MIXERS, CONV_MIXERS, get_mixer
from featlab.models.protocol import check_fwd_hooks, check_names_filter

ReturnType = Literal["logits", "loss", "both"] | None


class HybridBlock(nn.Module):
    """Pre-norm block: ``x + mixer(ln1(x))`` then ``+ mlp(ln2(.))``; ``[batch, pos, d_model]``."""

    def __init__(self, cfg: HybridConfig, layer: int) -> None:
        super().__init__()
        self.kind = cfg.layers[layer]
        self.is_attention = self.kind in ATTENTION_MIXERS
        self.ln1 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = get_mixer(self.kind)(cfg)
        self.hook_resid_pre = HookPoint()
        self.hook_mixer_out = HookPoint()
        if self.is_attention:
            self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        if cfg.use_mlp:
            self.ln2 = RMSNorm(cfg.d_model, cfg.norm_eps)
            self.mlp = MLP(cfg.d_model, cfg.mlp_width, cfg.init_std)
            self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        out = self.hook_mixer_out(self.mixer(self.ln1(x)))
        if self.is_attention:
            out = self.hook_attn_out(out)
        x = self.hook_resid_mid(x + out)
        if hasattr(self, "mlp"):
            x = x + self.hook_mlp_out(self.mlp(self.ln2(x)))
        return self.hook_resid_post(x)


class HookedHybrid(HookedRootModule):
    """A hybrid sequence model; ``tokens [batch, pos] -> logits [batch, pos, d_vocab]``.

    >>> model = HookedHybrid(HybridConfig(layers=["conv", "attn"], d_model=32, n_heads=2))
    >>> logits, cache = model.run_with_cache(torch.randint(0, 256, (2, 16)))
    """

    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        if not isinstance(cfg, HybridConfig):
            raise TypeError(f"HookedHybrid needs a HybridConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.tokenizer = None  # synthetic tasks only; SAELens checks for the attribute
        # Seed the init so that the same config always gives the same weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.embed = Embed(cfg.d_vocab, cfg.d_model, cfg.init_std)
            self.hook_embed = HookPoint()
            self.blocks = nn.ModuleList(HybridBlock(cfg, i) for i in range(cfg.n_layers))
            self.ln_final = RMSNorm(cfg.d_model, cfg.norm_eps)
            self.unembed = Unembed(cfg.d_model, cfg.d_vocab, cfg.init_std)
        self.setup()

    # -- TransformerLens-style accessors --------------------------------------------------
    @property
    def W_E(self) -> torch.Tensor:
        return self.embed.W_E

    @property
    def W_U(self) -> torch.Tensor:
        return self.unembed.W_U

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    def to_tokens(self, text: str | list[str], prepend_bos: bool = True) -> torch.Tensor:
        """Token ids ``[batch, pos]`` of `text` with the model's tokenizer (set when the model
        was trained on text and loaded from its folder); BOS first, as the text windows it
        trained on open (`featlab.datasets.text`)."""
        from featlab.models.tokenize import to_tokens

        return to_tokens(self.tokenizer, text, prepend_bos, self.device, "HookedHybrid")

    # -- input checks ------------------------------------------------------------------------
    def _check_tokens(self, tokens: Any) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(
                f"HookedHybrid takes token ids as a LongTensor [batch, pos], got "
                f"{type(tokens).__name__}; for text use model.to_tokens(text) (a model trained "
                "on text carries its tokenizer)"
            )
        if tokens.ndim == 1:
            tokens = tokens[None]
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be integer ids, got dtype {tokens.dtype}")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"sequence length {tokens.shape[1]} exceeds n_ctx={self.cfg.n_ctx}; "
                "truncate the input or build the model with a larger HybridConfig.n_ctx"
            )
        if tokens.numel():
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or hi >= self.cfg.d_vocab:
                raise ValueError(
                    f"token ids must lie in [0, d_vocab={self.cfg.d_vocab}), got min {lo} and "
                    f"max {hi}; check the data or raise HybridConfig.d_vocab"
                )
        return tokens.to(self.device)

    # -- forward -----------------------------------------------------------------------------
    def forward(
        self,
        tokens: torch.Tensor,
        return_type: ReturnType = "logits",
        loss_per_token: bool = False,
        stop_at_layer: int | None = None,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
    ) -> Any:
        """Run the model.

        Args:
            tokens: ``[batch, pos]`` integer ids (``[pos]`` is read as batch 1).
            return_type: "logits" ``[batch, pos, d_vocab]``, "loss" (next-token cross-entropy),
                "both" ``(logits, loss)`` or None.
            loss_per_token: return the loss as ``[batch, pos - 1]`` instead of its mean.
            stop_at_layer: run only ``blocks[:stop_at_layer]`` and return the residual stream
                ``[batch, pos, d_model]`` (TransformerLens semantics; SAELens passes it).
            prepend_bos, padding_side: accepted for SAELens/TransformerLens compatibility and
                ignored: tokens are already ids and no BOS is ever added.
        """
        del prepend_bos, padding_side
        if return_type not in ("logits", "loss", "both", None):
            raise ValueError(
                f"return_type={return_type!r}; use 'logits', 'loss', 'both' or None"
            )
        tokens = self._check_tokens(tokens)
        x = self.hook_embed(self.embed(tokens))
        blocks = self.blocks if stop_at_layer is None else self.blocks[:stop_at_layer]
        for block in blocks:
            x = block(x)
        if stop_at_layer is not None:
            return x
        return lm_output(self.unembed(self.ln_final(x)), tokens, return_type, loss_per_token)

    # -- hook-name checks over TransformerLens's machinery ---------------------------------
    def run_with_cache(self, *model_args: Any, names_filter: Any = None, **kwargs: Any) -> Any:
        """`HookedRootModule.run_with_cache`, with unknown names in `names_filter` rejected."""
        check_names_filter(self, names_filter)
        return super().run_with_cache(*model_args, names_filter=names_filter, **kwargs)

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks: list[tuple[Any, Any]] | None = None,
        bwd_hooks: list[tuple[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """`HookedRootModule.run_with_hooks`, with unknown hook names rejected."""
        fwd_hooks, bwd_hooks = list(fwd_hooks or []), list(bwd_hooks or [])
        check_fwd_hooks(self, fwd_hooks)
        check_fwd_hooks(self, bwd_hooks)
        return super().run_with_hooks(
            *model_args, fwd_hooks=fwd_hooks, bwd_hooks=bwd_hooks, **kwargs
        )

    # -- sizes ---------------------------------------------------------------------------------
    def state_floats(self, seq_len: int) -> int:
        """Floats one sequence of length `seq_len` must carry to decode its next token.

        Attention: its KV cache (``2 * kept_positions * d_model``); linear-recurrent mixers:
        ``hook_state_final`` plus nothing else counted; the gated convolution: its last
        ``conv_kernel - 1`` inputs. The short convolutions inside recurrent mixers are
        ignored (small against the state)."""
        total = 0
        for l, block in enumerate(self.blocks):
            mixer = block.mixer
            if block.kind in ATTENTION_MIXERS:
                window = getattr(mixer, "window", None)
                kept = seq_len if window is None else min(seq_len, window)
                total += 2 * kept * self.cfg.d_model
            elif block.kind in CONV_MIXERS:
                total += (self.cfg.conv_kernel - 1) * self.cfg.d_model
            else:
                name = f"blocks.{l}.mixer.hook_state_final"
                probe = torch.zeros(1, min(seq_len, self.cfg.n_ctx), dtype=torch.long)
                with torch.no_grad():
                    _, cache = self.run_with_cache(
                        probe, names_filter=[name], stop_at_layer=l + 1
                    )
                total += cache[name][0].numel()
        return total


def lm_cross_entropy(
    logits: torch.Tensor, tokens: torch.Tensor, per_token: bool = False
) -> torch.Tensor:
    """Next-token loss of ``logits [batch, pos, vocab]`` on ``tokens [batch, pos]``:
    a scalar, or ``[batch, pos - 1]``."""
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -log_probs.gather(-1, tokens[:, 1:, None].long())[..., 0]
    return nll if per_token else nll.mean()


def lm_output(logits: torch.Tensor, tokens: torch.Tensor, return_type: str | None,
              per_token: bool = False) -> Any:
    """TransformerLens's `return_type`: None, "logits", "loss" or "both" (logits, loss)."""
    if return_type is None:
        return None
    if return_type == "logits":
        return logits
    loss = lm_cross_entropy(logits, tokens, per_token=per_token)
    return loss if return_type == "loss" else (logits, loss)


__all__ = ["HookedHybrid", "HybridBlock", "lm_cross_entropy", "lm_output"]
