"""Feature Choice SAE (Ayonrinde 2024, "Adaptive sparse allocation with mutual choice and
feature choice sparse autoencoders").

Each latent i keeps its top m_i tokens of the batch (columns choose rows, the transpose of
TopK). Capacities sum to k*B and follow a Zipf law m_i proportional to rank_i^(-s), ranks from
the running (EMA) density order; s = 0 gives the uniform m = k*B/d_sae. Decision where the
paper leaves room (``floor``, default on): every latent gets a capacity of at least one token
per batch, so no latent can be starved by rounding, and the k*B - d_sae remaining slots are
split by the Zipf weights with largest-remainder rounding, capped at B per latent. A latent
still fires only where its pre-activation is positive, so the floor makes dead latents rare,
not impossible. With ``floor=False`` all k*B slots follow the Zipf weights, so at s > 0 the
tail latents get capacity 0: they cannot fire, keep density 0 and hence the last ranks, and
stay dead (at s = 0 capacities are uniform and the floor changes nothing unless k*B < d_sae).

Inference uses a per-latent JumpReLU threshold, an EMA of the m_i-th largest activation.
aux_zipf: an AuxK-style loss (top k_aux per token among "starved" latents, those whose running
density is below ``aux_frac`` of their Zipf-expected density m_i/B, fitting the residual).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from featlab.kernels import column_topk
from featlab.sae.base import SparseAutoencoder, SparseCode, TrainOutput, aux_topk_loss, mse_rows
from featlab.sae.batchtopk import ema_decay
from featlab.sae.config import ENCODER_INIT_NORM, SAEConfig, check_encoder_init_norm
from featlab.sae.sparse import row_offsets, selected_preacts, sparse_decode


@dataclass(frozen=True)
class FeatureChoiceHparams:
    """zipf_s: Zipf exponent of the capacities (0: uniform). floor: every latent gets a
    capacity of at least one token per batch (see the module docstring). aux_coef / k_aux: the
    aux_zipf loss (k_aux None: d_in // 2). aux_frac: starved below this fraction of the
    expected density. aux_normalize: that loss normalised as TopK's AuxK. density_decay /
    threshold_decay: EMA decays of running density and inference thresholds.
    encoder_init_norm: as in TopK."""

    zipf_s: float = 0.0
    aux_coef: float = 1.0 / 32.0
    k_aux: int | None = None
    aux_frac: float = 0.1
    density_decay: float = 0.99
    threshold_decay: float = 0.99
    floor: bool = True
    aux_normalize: bool = True
    encoder_init_norm: float = ENCODER_INIT_NORM

    def __post_init__(self) -> None:
        check_encoder_init_norm(self.encoder_init_norm)


def zipf_capacities(
    density: Tensor, total: int, n_rows: int, s: float, floor: bool = True
) -> Tensor:
    """Integer capacities ``[d_sae]`` summing to ``total`` (each in [1, n_rows], or [0, n_rows]
    without the ``floor``).

    density ``[d_sae]`` orders the latents (densest gets rank 1; ties by index).
    """
    d_sae = density.shape[0]
    if floor and total < d_sae:
        raise ValueError(
            f"Feature Choice needs k * batch_size >= d_sae so every latent gets a token; got "
            f"k*B={total} < d_sae={d_sae}; raise k or the batch size, or pass floor=False"
        )
    total = min(total, d_sae * n_rows)
    order = torch.sort(density, descending=True, stable=True).indices
    ranks = torch.empty(d_sae, dtype=torch.float64)
    ranks[order] = torch.arange(1, d_sae + 1, dtype=torch.float64)
    weights = ranks.pow(-s)
    m = torch.ones(d_sae, dtype=torch.int64) if floor else torch.zeros(d_sae, dtype=torch.int64)
    free = torch.ones(d_sae, dtype=torch.bool)
    while True:  # proportional split of the remaining slots; loops only when a cap binds
        rest = total - int(m.sum())
        if rest <= 0:
            return m
        w = torch.where(free, weights, torch.zeros_like(weights))
        raw = w / w.sum() * rest
        add = raw.floor().to(torch.int64)
        short = rest - int(add.sum())
        if short > 0:  # largest remainder; ties go to the denser latent
            frac = (raw - add).masked_fill(~free, -1.0)[order]
            add[order[torch.sort(frac, descending=True, stable=True).indices[:short]]] += 1
        m = m + add
        over = m > n_rows
        if not over.any():
            return m
        m = m.clamp(max=n_rows)
        free &= ~over & (m < n_rows)


class FeatureChoiceSAE(SparseAutoencoder):
    kind = "feature_choice"
    Hparams = FeatureChoiceHparams

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        dt = self.W_dec.dtype
        self.register_buffer("threshold", torch.zeros(cfg.d_sae, dtype=dt))
        self.register_buffer("density_ema", torch.zeros(cfg.d_sae, dtype=torch.float64))
        self.register_buffer("stats_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("stat_updates", torch.zeros((), dtype=torch.int64))

    def _pre(self, x: Tensor) -> Tensor:
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def capacities(self, n_rows: int) -> Tensor:
        """Current per-latent capacities ``[d_sae]`` for a batch of ``n_rows`` tokens."""
        return zipf_capacities(
            self.density_ema, self.cfg.k * n_rows, n_rows, self.hp.zipf_s, self.hp.floor
        )

    def _code(self, x: Tensor) -> SparseCode:
        pre = self._pre(x)
        mask = (pre > self.threshold) & (pre > 0)
        rows, cols = mask.nonzero(as_tuple=True)
        return SparseCode(pre[rows, cols], cols, x.shape[0], rows, row_offsets(rows, x.shape[0]))

    def training_loss(self, x: Tensor) -> TrainOutput:
        n = x.shape[0]
        m = self.capacities(n).to(x.device)
        with torch.no_grad():
            pre = self._pre(x)
            act = pre.relu()
            # each latent's top m_i tokens and its m_i-th largest activation (featlab.kernels)
            chosen, kth = column_topk(act, m, return_threshold=True)
            rows, cols = (chosen & (act > 0)).nonzero(as_tuple=True)  # row-sorted
            pre_sel = pre[rows, cols]
        vals = selected_preacts(x, self.b_dec, self.W_enc, self.b_enc, cols, pre_sel, rows)
        x_hat = sparse_decode(vals, cols, self.W_dec, row_offsets(rows, n)) + self.b_dec
        mse = mse_rows(x_hat, x)
        aux = x.new_zeros(())
        if self.hp.aux_coef > 0 and bool(self.stats_ready):
            starved = self.density_ema < self.hp.aux_frac * m.to(torch.float64) / n
            aux = aux_topk_loss(
                self, x, pre, (x - x_hat).detach(), starved, self.k_aux(starved),
                self.hp.aux_normalize,
            )  # fmt: skip
        with torch.no_grad():
            counts = torch.bincount(cols, minlength=self.d_sae).to(x.dtype)
        return TrainOutput(
            mse + self.hp.aux_coef * aux,
            mse,
            aux,
            x_hat.detach(),
            counts,
            cols.numel() / n,
            {"kth": kth},
        )

    def _update_extra(self, extra: dict[str, Tensor], counts: Tensor, n_tokens: int) -> None:
        kth = extra["kth"].to(self.threshold.dtype)
        dens = counts.to(torch.float64) / n_tokens
        t = int(self.stat_updates)
        d = ema_decay(self.hp.threshold_decay, t)
        dd = ema_decay(self.hp.density_decay, t)
        # a latent of capacity 0 (floor off) has kth = inf: it stays off at inference until it
        # is first chosen, and then starts its average afresh instead of staying at inf
        ema = self.threshold * d + (1 - d) * kth
        self.threshold.copy_(torch.where(torch.isinf(self.threshold), kth, ema))
        self.density_ema.mul_(dd).add_((1 - dd) * dens)
        self.stats_ready.fill_(True)
        self.stat_updates += 1
