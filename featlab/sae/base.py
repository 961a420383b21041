"""`SparseAutoencoder`: parameters, constraints and bookkeeping shared by every SAE kind.

Shapes: ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``
(the SAELens layout). Inputs may be ``[batch, d_in]`` or ``[batch, pos, d_in]``; leading
dimensions are flattened for the work and restored on the way out.

A kind subclasses this and implements `_code` (inference: sparse code of centred inputs) and
`training_loss` (one training batch). Everything else lives here: decoder rows kept at unit
norm with the parallel gradient component removed (Bricken et al. 2023), encoder initialised
as the decoder transpose, b_dec from the geometric median of a sample, and dead-latent
tracking counted in tokens (Gao et al. 2024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from featlab.sae.config import SAEConfig, default_dead_tokens
from featlab.sae.sparse import selected_preacts, sparse_decode, to_dense, topk_select

_TORCH_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass
class SAEOutput:
    """x_hat: reconstruction ``[..., d_in]``; z: dense code ``[..., d_sae]``."""

    x_hat: Tensor
    z: Tensor


@dataclass
class SparseCode:
    """A sparse code of ``n_rows`` inputs: fixed-k (``vals/idx [N, k]``, ``rows`` None) or
    row-sorted COO (``vals/idx/rows [nnz]`` with ``offsets [N]``)."""

    vals: Tensor
    idx: Tensor
    n_rows: int
    rows: Tensor | None = None
    offsets: Tensor | None = None


@dataclass
class TrainOutput:
    """One training batch: loss (scalar, what backward runs on), mse (mean over rows of the
    squared error summed over d_in), aux (auxiliary loss, 0 when unused), x_hat ``[N, d_in]``
    (detached), counts ``[d_sae]`` (tokens each latent fired on in this batch), l0 (mean),
    extra (batch statistics such as a threshold candidate, averaged over ranks before
    `update_stats` sees them)."""

    loss: Tensor
    mse: Tensor
    aux: Tensor
    x_hat: Tensor
    counts: Tensor
    l0: float
    extra: dict[str, Tensor] = field(default_factory=dict)


class SparseAutoencoder(nn.Module):
    """Base class of every featlab SAE (see the module docstring)."""

    kind: ClassVar[str] = ""
    Hparams: ClassVar[type]
    tied: ClassVar[bool] = False  # Matching Pursuit: W_enc is W_dec.T, no b_enc

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hp = self.Hparams(**cfg.hparams)
        dtype = _TORCH_DTYPES[cfg.dtype]
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=dtype))
        if not self.tied:
            self.W_enc = nn.Parameter(torch.empty(d_in, d_sae, dtype=dtype))
            self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        # statistics are buffers so that checkpoints and resume carry them exactly
        self.register_buffer("tokens_since_fired", torch.zeros(d_sae, dtype=torch.int64))
        self.register_buffer("fire_count", torch.zeros(d_sae, dtype=torch.float64))
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.int64))
        self.reset_parameters()

    # -- construction ------------------------------------------------------------------

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Uniform random unit-norm decoder rows; encoder = decoder transpose (times the kind's
        ``encoder_init_norm``, where it has one); zero biases."""
        gen = torch.Generator().manual_seed(self.cfg.seed)
        bound = 1.0 / math.sqrt(self.d_in)
        w = (torch.rand(self.d_sae, self.d_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        w = w / w.norm(dim=-1, keepdim=True)
        self.W_dec.copy_(w)
        self.b_dec.zero_()
        if not self.tied:
            self.W_enc.copy_(w.T * getattr(self.hp, "encoder_init_norm", 1.0))
            self.b_enc.zero_()

    def init_from_sample(self, sample: Tensor, b_dec_init: str = "geometric_median") -> None:
        """Data-dependent initialisation from the first training batch ``sample``
        ``[n, d_in]`` (the same rows on every rank): b_dec; kinds may add more."""
        self.init_b_dec(sample, b_dec_init)

    @torch.no_grad()
    def init_b_dec(self, sample: Tensor, method: str = "geometric_median") -> None:
        """Set b_dec from ``sample`` ``[n, d_in]``: "geometric_median" (Weiszfeld), "mean" or
        "zeros"."""
        sample = self._flat(sample)[0].to(torch.float64)
        if method == "zeros":
            self.b_dec.zero_()
        elif method == "mean":
            self.b_dec.copy_(sample.mean(0))
        else:
            self.b_dec.copy_(geometric_median(sample))

    # -- shapes ------------------------------------------------------------------------

    def _flat(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        if x.ndim < 1 or x.shape[-1] != self.d_in:
            raise ValueError(
                f"input of shape {tuple(x.shape)} does not fit this SAE: its last dimension "
                f"must be d_in={self.d_in} (expected [batch, {self.d_in}] or "
                f"[batch, pos, {self.d_in}]); pass activations from the hook it was trained on"
            )
        return x.reshape(-1, self.d_in).to(self.W_dec.dtype), tuple(x.shape[:-1])

    # -- inference ---------------------------------------------------------------------

    def _code(self, x: Tensor) -> SparseCode:
        """Sparse code of raw inputs ``x`` ``[N, d_in]`` (inference path). Kinds override."""
        raise NotImplementedError

    def encode_sparse(self, x: Tensor) -> SparseCode:
        """Sparse code of ``x`` ``[..., d_in]``, rows flattened."""
        return self._code(self._flat(x)[0])

    def decode_sparse(self, code: SparseCode) -> Tensor:
        """``[N, d_in]`` reconstruction of a sparse code."""
        return sparse_decode(code.vals, code.idx, self.W_dec, code.offsets) + self.b_dec

    def encode(self, x: Tensor) -> Tensor:
        """x ``[..., d_in]`` -> dense code z ``[..., d_sae]``."""
        x2, lead = self._flat(x)
        code = self._code(x2)
        z = to_dense(code.vals, code.idx, code.n_rows, self.d_sae, code.rows)
        return z.reshape(*lead, self.d_sae)

    def decode(self, z: Tensor) -> Tensor:
        """z ``[..., d_sae]`` -> reconstruction ``[..., d_in]``."""
        if z.shape[-1] != self.d_sae:
            raise ValueError(
                f"code of shape {tuple(z.shape)} does not fit this SAE: last dimension must be "
                f"d_sae={self.d_sae}"
            )
        return z.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> SAEOutput:
        """x ``[..., d_in]`` -> SAEOutput(x_hat ``[..., d_in]``, z ``[..., d_sae]``)."""
        x2, lead = self._flat(x)
        code = self._code(x2)
        x_hat = self.decode_sparse(code)
        z = to_dense(code.vals, code.idx, code.n_rows, self.d_sae, code.rows)
        return SAEOutput(x_hat.reshape(*lead, self.d_in), z.reshape(*lead, self.d_sae))

    # -- training ----------------------------------------------------------------------

    def training_loss(self, x: Tensor) -> TrainOutput:
        """Loss and statistics of one training batch ``x`` ``[N, d_in]``. Kinds override."""
        raise NotImplementedError

    def dead_window(self) -> int:
        """Tokens without firing after which a latent counts as dead: the kind's resolved
        ``dead_tokens`` (`train_sae` sets it from the run length), else the default."""
        window = getattr(self.hp, "dead_tokens", None)
        return int(window) if window is not None else default_dead_tokens(None)

    def dead_mask(self, dead_tokens: int | None = None) -> Tensor:
        """``[d_sae]`` bool: latents that have not fired for at least ``dead_tokens`` tokens
        (None: `dead_window`)."""
        window = self.dead_window() if dead_tokens is None else dead_tokens
        return self.tokens_since_fired >= window

    def k_aux(self, dead: Tensor) -> int:
        """AuxK latents per token: the kind's ``k_aux`` (None: d_in // 2), at most the number
        of ``dead`` latents."""
        k_aux = self.hp.k_aux if self.hp.k_aux is not None else max(self.d_in // 2, 1)
        return min(k_aux, int(dead.sum()))

    @torch.no_grad()
    def update_stats(
        self, counts: Tensor, n_tokens: int, extra: dict[str, Tensor] | None = None
    ) -> None:
        """Record one batch: counts ``[d_sae]`` tokens each latent fired on, n_tokens in it,
        extra the kind's own batch statistics (see `TrainOutput`)."""
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[counts > 0] = 0
        self.fire_count += counts.to(torch.float64)
        self.tokens_seen += n_tokens
        if extra:
            self._update_extra(extra, counts, n_tokens)

    def _update_extra(self, extra: dict[str, Tensor], counts: Tensor, n_tokens: int) -> None:
        """Kinds with running thresholds or densities override this."""

    def feature_density(self) -> Tensor:
        """``[d_sae]`` fraction of training tokens on which each latent fired."""
        return self.fire_count / self.tokens_seen.clamp(min=1)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the gradient component along each decoder row so steps stay on the sphere."""
        g = self.W_dec.grad
        if g is not None:
            g -= (g * self.W_dec).sum(-1, keepdim=True) * self.W_dec

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, d_in={self.d_in}, d_sae={self.d_sae}, k={self.cfg.k}"


def geometric_median(points: Tensor, n_iter: int = 100, tol: float = 1e-7) -> Tensor:
    """Weiszfeld's algorithm on ``points`` ``[n, d]`` -> ``[d]`` (float64 inside)."""
    pts = points.to(torch.float64)
    y = pts.mean(0)
    for _ in range(n_iter):
        dist = (pts - y).norm(dim=-1).clamp(min=1e-12)
        w = 1.0 / dist
        y_new = (w[:, None] * pts).sum(0) / w.sum()
        if (y_new - y).norm() <= tol * (1.0 + y.norm()):
            return y_new
        y = y_new
    return y


def mse_rows(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean over rows of the squared error summed over ``d_in`` (scalar)."""
    return (x_hat - x).pow(2).sum(-1).mean()


def auxk_loss(e_hat: Tensor, residual: Tensor, x: Tensor, normalize: bool) -> Tensor:
    """AuxK's fit of ``residual`` ``[N, d_in]`` (x - x_hat, detached) by ``e_hat``.

    Unnormalised: `mse_rows` (squared error summed over d_in, mean over rows). Normalised (Gao
    et al. 2024, openai/sparse_autoencoder's ``normalized_mse``): that error over the
    residual's batch variance about its mean, times the batch variance of ``x``. Gao's loss is
    FVU + aux_coef * NMSE; featlab's main term is the unnormalised MSE = Var(x) * FVU, so
    the factor Var(x) keeps Gao's ratio of the two terms (Adam does not see the common
    scale). Both variances are constants of the batch (no gradient); a residual of zero
    variance gives 0.
    """
    err = mse_rows(e_hat, residual)
    if not normalize:
        return err
    with torch.no_grad():
        var_e = (residual - residual.mean(0)).pow(2).sum(-1).mean()
        var_x = (x - x.mean(0)).pow(2).sum(-1).mean()
        scale = var_x / var_e if float(var_e) > 0 else torch.zeros_like(var_e)
    return err * scale


def aux_topk_loss(
    sae: SparseAutoencoder,
    x: Tensor,
    pre: Tensor,
    residual: Tensor,
    candidates: Tensor,
    k_aux: int,
    normalize: bool = False,
) -> Tensor:
    """AuxK (Gao et al. 2024): reconstruct the main residual from the top ``k_aux``
    pre-activations among ``candidates`` (``[d_sae]`` bool, e.g. dead latents).

    x ``[N, d_in]`` raw input; pre ``[N, d_sae]`` pre-activations computed without grad;
    residual ``[N, d_in]`` = x - x_hat (detached). Returns `auxk_loss` of the residual fit
    (0 when there is no candidate).
    """
    n_cand = int(candidates.sum())
    if n_cand == 0:
        return x.new_zeros(())
    k = min(k_aux, n_cand)
    with torch.no_grad():
        masked = pre.masked_fill(~candidates, float("-inf"))
        vals, idx = topk_select(masked, k)
    vals = selected_preacts(x, sae.b_dec, sae.W_enc, sae.b_enc, idx, vals).relu()
    e_hat = sparse_decode(vals, idx, sae.W_dec)
    return auxk_loss(e_hat, residual, x, normalize)
