"""TopK SAE with the AuxK loss (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

z = ReLU(TopK_k(W_enc^T (x - b_dec) + b_enc)): the k largest pre-activations are kept, then
ReLU'd (the SAELens "topk" order, so a negative value among the top k becomes 0). AuxK: the
residual x - x_hat is reconstructed from the top k_aux pre-activations of latents dead for at
least ``dead_tokens`` tokens; that loss, times ``aux_coef``, is added to the MSE. By default
the loss is normalised as Gao et al.'s (see `featlab.sae.base.auxk_loss`), and the window
scales with the run (`featlab.sae.config.default_dead_tokens`, resolved by `train_sae`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from featlab.kernels import sparse_decode, topk_encode
from featlab.sae.base import SparseAutoencoder, SparseCode, TrainOutput, auxk_loss, mse_rows
from featlab.sae.config import ENCODER_INIT_NORM, check_dead_tokens, check_encoder_init_norm


@dataclass(frozen=True)
class TopKHparams:
    """aux_coef: weight of AuxK (Gao et al.: 1/32; 0 disables). k_aux: latents AuxK may use
    (None: d_in // 2). dead_tokens: tokens without firing after which a latent counts as dead
    (None: `train_sae` sets a tenth of the run, capped at Gao et al.'s 10M, and stores it).
    aux_normalize: AuxK's error over the residual's variance as Gao et al. (False: the plain
    squared error, the form featlab used before). encoder_init_norm: the encoder starts as the
    decoder's transpose times this (`featlab.sae.config.ENCODER_INIT_NORM`)."""

    aux_coef: float = 1.0 / 32.0
    k_aux: int | None = None
    dead_tokens: int | None = None
    aux_normalize: bool = True
    encoder_init_norm: float = ENCODER_INIT_NORM

    def __post_init__(self) -> None:
        check_dead_tokens(self.dead_tokens)
        check_encoder_init_norm(self.encoder_init_norm)


class TopKSAE(SparseAutoencoder):
    kind = "topk"
    Hparams = TopKHparams

    def _k(self) -> int:
        if self.cfg.k is None:
            raise ValueError("kind 'topk' needs k (active latents per token)")
        return self.cfg.k

    def _pre(self, x: Tensor) -> Tensor:
        """Dense pre-activations ``[N, d_sae]`` of raw inputs ``[N, d_in]``."""
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def _code(self, x: Tensor) -> SparseCode:
        out = topk_encode(x, self.W_enc, self.b_enc, self._k(), b_dec=self.b_dec)
        return SparseCode(out.values.to(self.W_dec.dtype), out.indices, x.shape[0])

    def training_loss(self, x: Tensor) -> TrainOutput:
        # featlab.kernels: fused encoder + top-k (+ AuxK candidates in the same pass) and a
        # sparse decoder, with sparse deterministic backward; on CPU their torch reference.
        k = self._k()
        k_aux, dead = 0, None
        if self.hp.aux_coef > 0:
            dead = self.dead_mask()
            k_aux = self.k_aux(dead)
        out = topk_encode(
            x, self.W_enc, self.b_enc, k, b_dec=self.b_dec, aux_k=k_aux, dead_mask=dead
        )
        vals, idx = out.values, out.indices
        x_hat = sparse_decode(vals, idx, self.W_dec, self.b_dec).to(x.dtype)
        mse = mse_rows(x_hat, x)
        aux = x.new_zeros(())
        if k_aux > 0:  # AuxK: fit the residual from the top k_aux dead latents
            e_hat = sparse_decode(out.aux_values, out.aux_indices, self.W_dec).to(x.dtype)
            aux = auxk_loss(e_hat, (x - x_hat).detach(), x, self.hp.aux_normalize)
        with torch.no_grad():
            active = vals > 0
            counts = torch.bincount(idx[active], minlength=self.d_sae).to(x.dtype)
            l0 = float(active.sum()) / x.shape[0]
        return TrainOutput(mse + self.hp.aux_coef * aux, mse, aux, x_hat.detach(), counts, l0)
