"""BatchTopK SAE (Bussmann et al. 2024), the same selection as Mutual Choice (Ayonrinde 2024).

Training keeps the k*B largest entries of the whole ``[B, d_sae]`` matrix of ReLU'd
pre-activations, so a token may use more or fewer than k latents while the batch mean is k.
Inference cannot see a batch, so it uses a JumpReLU with one global threshold theta, an EMA of
the smallest activation kept in each training batch: z = ReLU(pre) * (pre > theta). That is
exactly SAELens's "jumprelu" architecture with threshold = theta for every latent, which is how
`save_sae` exports it. Until a threshold has been learnt (an untrained SAE) the inference path
falls back to the batch selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from featlab.kernels import sparse_decode as kernel_decode
from featlab.kernels.batch_topk import batch_topk_encode
from featlab.sae.base import SparseAutoencoder, SparseCode, TrainOutput, auxk_loss, mse_rows
from featlab.sae.config import (
    ENCODER_INIT_NORM,
    SAEConfig,
    check_dead_tokens,
    check_encoder_init_norm,
)
from featlab.sae.sparse import row_offsets


@dataclass(frozen=True)
class BatchTopKHparams:
    """aux_coef / k_aux / dead_tokens / aux_normalize / encoder_init_norm: as in TopK.
    threshold_decay: EMA decay of the inference threshold."""

    aux_coef: float = 1.0 / 32.0
    k_aux: int | None = None
    dead_tokens: int | None = None
    threshold_decay: float = 0.99
    aux_normalize: bool = True
    encoder_init_norm: float = ENCODER_INIT_NORM

    def __post_init__(self) -> None:
        check_dead_tokens(self.dead_tokens)
        check_encoder_init_norm(self.encoder_init_norm)


def batch_topk_select(pre: Tensor, k_total: int) -> tuple[Tensor, Tensor, Tensor]:
    """Global top ``k_total`` of ReLU'd ``pre`` ``[N, d_sae]``, row-sorted, zeros dropped.

    Returns (values ``[nnz]``, rows ``[nnz]``, cols ``[nnz]``), nnz <= k_total.
    """
    n, d_sae = pre.shape
    k_total = min(k_total, n * d_sae)
    flat_pre = pre.reshape(-1)
    # the k_total-th largest value by selection (kthvalue) is about 2x cheaper on CPU than a
    # topk of k_total, and the mask's nonzero() comes out row-sorted for embedding_bag
    thr = flat_pre.kthvalue(flat_pre.numel() - k_total + 1).values
    mask = (pre >= thr) & (pre > 0)
    if int(mask.sum()) <= k_total:
        rows, cols = mask.nonzero(as_tuple=True)
        return pre[rows, cols], rows, cols
    # ties at the threshold: fall back to an exact topk
    vals, flat = flat_pre.topk(k_total, sorted=False)
    keep = vals > 0
    vals, flat = vals[keep], flat[keep]
    flat, order = flat.sort()
    return vals[order], flat // d_sae, flat % d_sae


class BatchTopKSAE(SparseAutoencoder):
    kind = "batchtopk"
    Hparams = BatchTopKHparams

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae, dtype=self.W_dec.dtype))
        self.register_buffer("threshold_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("stat_updates", torch.zeros((), dtype=torch.int64))

    def _pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def _code(self, x: Tensor) -> SparseCode:
        pre = self._pre(x)
        n = x.shape[0]
        if not bool(self.threshold_ready):
            vals, rows, cols = batch_topk_select(pre.relu(), self.cfg.k * n)
            return SparseCode(vals, cols, n, rows, row_offsets(rows, n))
        mask = (pre > self.threshold) & (pre > 0)
        rows, cols = mask.nonzero(as_tuple=True)
        return SparseCode(pre[rows, cols], cols, n, rows, row_offsets(rows, n))

    def training_loss(self, x: Tensor) -> TrainOutput:
        # featlab.kernels: the batch selection made from per-row candidates of the fused
        # encoder (exact; see batch_topk_encode), AuxK candidates from the same pass, sparse
        # decoder, deterministic sparse backward; on CPU their torch reference.
        n = x.shape[0]
        k_aux, dead = 0, None
        if self.hp.aux_coef > 0:
            dead = self.dead_mask()
            k_aux = self.k_aux(dead)
        out = batch_topk_encode(
            x, self.W_enc, self.b_enc, self.cfg.k, b_dec=self.b_dec, aux_k=k_aux, dead_mask=dead
        )
        x_hat = kernel_decode(out.values, out.indices, self.W_dec, self.b_dec).to(x.dtype)
        mse = mse_rows(x_hat, x)
        aux = x.new_zeros(())
        if k_aux > 0:  # AuxK: fit the residual from the top k_aux dead latents
            e_hat = kernel_decode(out.aux_values, out.aux_indices, self.W_dec).to(x.dtype)
            aux = auxk_loss(e_hat, (x - x_hat).detach(), x, self.hp.aux_normalize)
        with torch.no_grad():
            cols = out.indices[out.selected]
            pre_sel = out.values[out.selected].to(x.dtype)
            counts = torch.bincount(cols, minlength=self.d_sae).to(x.dtype)
            extra = {"threshold": pre_sel.min() if pre_sel.numel() else x.new_zeros(())}
        return TrainOutput(
            mse + self.hp.aux_coef * aux, mse, aux, x_hat.detach(), counts, cols.numel() / n, extra
        )

    def _update_extra(self, extra: dict[str, Tensor], counts: Tensor, n_tokens: int) -> None:
        t = extra["threshold"].to(self.threshold.dtype)
        d = ema_decay(self.hp.threshold_decay, int(self.stat_updates))
        self.threshold.mul_(d).add_((1 - d) * t)
        self.threshold_ready.fill_(True)
        self.stat_updates += 1


def ema_decay(decay: float, updates: int) -> float:
    """Decay for the EMA's update number ``updates`` (0-based): min(decay, (1+t)/(10+t)).

    The warm-up (as in TensorFlow's ExponentialMovingAverage) makes the first update a copy and
    lets the average follow the fast drift of early training; a fixed 0.99 lags by ~100 steps,
    which on short runs left the BatchTopK threshold far above the batch's k*B-th value.
    """
    return min(decay, (1.0 + updates) / (10.0 + updates)) if updates else 0.0
