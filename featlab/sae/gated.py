"""Gated SAE (Rajamanoharan et al. 2024, "Improving dictionary learning with gated sparse
autoencoders"), SAELens's "gated" architecture.

Two paths share the encoder matrix W_enc ``[d_in, d_sae]`` (the paper's W_gate):

    pi_gate = (x - b_dec) W_enc + b_gate                   which latents fire
    pi_mag  = (x - b_dec) (W_enc * exp(r_mag)) + b_mag     how strongly (W_mag = W_gate e^r_mag)
    z       = 1[pi_gate > 0] * ReLU(pi_mag)

Loss, as in the paper: ||x - x_hat||^2 + l1_coef * sum_j ReLU(pi_gate)_j ||W_dec_j|| +
aux_coef * ||x - x_hat_frozen(ReLU(pi_gate))||^2, where x_hat_frozen decodes with detached
copies of W_dec and b_dec. The step 1[.] has no gradient, so the gate learns only through the
L1 and auxiliary terms, and the auxiliary term keeps the gate's pre-activations meaningful
without pulling the decoder toward the gate's (shrunk) reconstruction. Parameter names are
SAELens's (W_enc, b_gate, r_mag, b_mag, W_dec, b_dec; no b_enc), so a save is a SAELens
"gated" directory as it is. Start: W_enc = W_dec^T, b_gate = b_mag = r_mag = 0 (both paths
equal), the unit-norm decoder of every featlab kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from featlab.sae.base import SparseAutoencoder, SparseCode, TrainOutput, mse_rows
from featlab.sae.config import SAEConfig
from featlab.sae.sparse import row_offsets


@dataclass(frozen=True)
class GatedHparams:
    """l1_coef: weight of the L1 penalty on ReLU(pi_gate) (in units of squared input norm, as
    the ReLU kind's; sweep it). aux_coef: weight of the frozen-decoder reconstruction from the
    gate path (the paper: 1; 0 disables it)."""

    l1_coef: float = 1.0
    aux_coef: float = 1.0


class GatedSAE(SparseAutoencoder):
    kind = "gated"
    Hparams = GatedHparams
    uses_k = False

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)  # its reset_parameters (below) already dropped b_enc
        for name in ("b_gate", "r_mag", "b_mag"):
            self.register_parameter(name, nn.Parameter(self.b_dec.new_zeros(cfg.d_sae)))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The base's start (random unit-norm W_dec, W_enc = W_dec^T, b_dec = 0), then zero
        b_gate, r_mag, b_mag. The base also zeroes a b_enc, which this layout has not: it gets
        one for the call."""
        if "b_enc" not in self._parameters:
            self.b_enc = nn.Parameter(self.b_dec.new_zeros(self.d_sae))
        super().reset_parameters()
        del self.b_enc
        for name in ("b_gate", "r_mag", "b_mag"):
            if name in self._parameters:
                self._parameters[name].zero_()

    def _paths(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(pi_gate, pi_mag), each ``[N, d_sae]``, of raw inputs ``x`` ``[N, d_in]`` (written
        as SAELens writes them, so the gate's sign agrees with it to the last bit we can)."""
        xc = x - self.b_dec
        pi_gate = xc @ self.W_enc + self.b_gate
        pi_mag = xc @ (self.W_enc * self.r_mag.exp()) + self.b_mag
        return pi_gate, pi_mag

    def _code(self, x: Tensor) -> SparseCode:
        pi_gate, pi_mag = self._paths(x)
        rows, cols = ((pi_gate > 0) & (pi_mag > 0)).nonzero(as_tuple=True)
        n = x.shape[0]
        return SparseCode(pi_mag[rows, cols], cols, n, rows, row_offsets(rows, n))

    def training_loss(self, x: Tensor) -> TrainOutput:
        pi_gate, pi_mag = self._paths(x)
        z = (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()
        x_hat = z @ self.W_dec + self.b_dec
        mse = mse_rows(x_hat, x)
        gate = pi_gate.relu()
        l1 = (gate * self.W_dec.norm(dim=-1)).sum(-1).mean()
        loss = mse + self.hp.l1_coef * l1
        aux = x.new_zeros(())
        if self.hp.aux_coef > 0:  # the gate path alone, through the frozen decoder
            aux = mse_rows(gate @ self.W_dec.detach() + self.b_dec.detach(), x)
            loss = loss + self.hp.aux_coef * aux
        with torch.no_grad():
            active = z > 0
            counts = active.sum(0).to(x.dtype)
            l0 = float(active.sum()) / x.shape[0]
        return TrainOutput(loss, mse, aux, x_hat.detach(), counts, l0)
