"""Shortcut-bias data: a core and a shortcut latent with settable predictivity and availability.

After Hermann et al., "On the Foundations of Shortcut Learning" (ICLR 2024). A label
y in {-1, +1} is drawn uniformly; each latent z_i ~ N(y mu_i, sigma^2) with
mu_i = sigma * Phi^{-1}(rho_i), so that rho_i = P(sign z_i = y) is its *predictivity*.
*Availability* is set two ways:

- amplification alpha_i scales the latent's contribution to the input;
- nesting depth eta_i passes it through eta_i random tanh layers, so that a model has to undo
  a nonlinear map before it can read the latent linearly. Each layer's pre-activations are
  normalised to an RMS of `nest_gain` over the data, so the map bends without binarising
  the latent (`LatentEmbedding.saturated_fraction` measures how much of it is flat).

The input is the sum of the two embedded latents, ``x = alpha_c g_c(z_c) + alpha_s g_s(z_s)``
with ``g_i(z) = z u_i`` (u_i a random unit vector) when eta_i = 0. Every g_i is odd, and it is
rescaled so that its output has the same RMS norm as ``z u_i`` over the data distribution; only
alpha changes the scale, so nesting and amplification stay separate knobs.

Without input noise z -> x is injective for generic random weights, so the Bayes-optimal
classifier on x is the one on z: ``sign(mu_c z_c + mu_s z_s)`` (equal variances, independent
latents). With Gaussian input noise that holds no more; for a linear embedding the rule on x is
still linear and derived in closed form (`GaussianLatents.bayes_input_logit`), for a nested one
it is not, and asking for it raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.stats import norm

from featlab.errors import UserError

if TYPE_CHECKING:
    from featlab.datasets.shortcut_images import ShortcutImageDataset

__all__ = [
    "LatentEmbedding",
    "ProbeGrid",
    "ShortcutDataset",
    "grid_axes",
    "make_shortcut_dataset",
    "probe_grid",
]

_REF_SAMPLES = 4096
# A tanh unit counts as saturated where its slope is below 10 % of the slope at 0.
_SATURATED = 0.95


@dataclass(frozen=True)
class LatentEmbedding:
    """The fixed map from one scalar latent to the input space.

    `first` ([d]) is the unit direction when `hidden` is empty, else the first tanh layer's
    input weights; `hidden` holds the ([d, d]) weights of nesting layers 2..eta; `scale`
    undoes the change of RMS norm that nesting causes.
    """

    first: np.ndarray
    hidden: tuple[np.ndarray, ...]
    depth: int
    scale: float

    def pre_activations(self, z: np.ndarray) -> list[np.ndarray]:
        """The [n, d] inputs of each tanh layer (none when depth is 0)."""
        if self.depth == 0:
            return []
        pre = [z[:, None] * self.first[None, :]]
        for w in self.hidden:
            pre.append(np.tanh(pre[-1]) @ w.T)
        return pre

    def raw(self, z: np.ndarray) -> np.ndarray:
        """[n] -> [n, d] before rescaling."""
        if self.depth == 0:
            return z[:, None] * self.first[None, :]
        return np.tanh(self.pre_activations(z)[-1])

    def saturated_fraction(self, z: np.ndarray) -> float:
        """Share of tanh units (all layers, all samples in `z`) with |tanh| > 0.95: there the
        unit is nearly flat and passes on little more than the latent's sign. 0 when flat."""
        pre = self.pre_activations(np.asarray(z, dtype=np.float64))
        if not pre:
            return 0.0
        return float(np.mean([np.mean(np.abs(np.tanh(p)) > _SATURATED) for p in pre]))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.raw(z) / self.scale


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a**2)))


def _make_embedding(
    rng: np.random.Generator, d: int, depth: int, ref: np.ndarray, gain: float
) -> LatentEmbedding:
    if depth < 0:
        raise ValueError(f"nesting depth must be >= 0, got {depth}")
    if depth == 0:
        u = rng.standard_normal(d)
        return LatentEmbedding(u / np.linalg.norm(u), (), 0, 1.0)
    # Each layer's weights are scaled so its pre-activations have RMS `gain` on the reference
    # draws: fixed raw weight scales let pre-activations grow with |z| and tanh binarise it.
    v = rng.standard_normal(d)
    first = gain * v / _rms(ref[:, None] * v[None, :])
    h = np.tanh(ref[:, None] * first[None, :])
    hidden = []
    for _ in range(depth - 1):
        w = rng.standard_normal((d, d)) / np.sqrt(d)
        w = gain * w / _rms(h @ w.T)
        hidden.append(w)
        h = np.tanh(h @ w.T)
    emb = LatentEmbedding(first, tuple(hidden), depth, 1.0)
    # Match the RMS norm of the un-nested embedding (which is RMS(z)) on reference draws.
    rms_raw = np.sqrt(np.mean(np.sum(emb.raw(ref) ** 2, axis=1)))
    rms_lin = np.sqrt(np.mean(ref**2))
    return LatentEmbedding(first, hidden, depth, float(rms_raw / rms_lin))


class GaussianLatents:
    """The latent model shared by the vector and image shortcut datasets.

    y is uniform in {-1, +1} and z_i ~ N(y mu_i, sigma^2), independently for the core and
    the shortcut latent; the input is ``embed(z_core, z_short)`` plus isotropic Gaussian noise
    of standard deviation `noise`. Subclasses are dataclasses with `mu`, `sigma` and `noise`
    fields and an `embed` method.
    """

    mu: tuple[float, float]
    sigma: float
    noise: float

    def linear_directions(self) -> np.ndarray | None:
        """[2, D] float64: the flattened inputs of a unit core and a unit shortcut latent, when
        the embedding is linear (checked at one more point); None when it is not."""
        one, zero = np.ones(1), np.zeros(1)
        u = np.stack([self.embed(one, zero).double().reshape(-1).numpy(),
                      self.embed(zero, one).double().reshape(-1).numpy()])
        probe = self.embed(np.array([2.0]), np.array([-3.0])).double().reshape(-1).numpy()
        linear = np.allclose(probe, 2.0 * u[0] - 3.0 * u[1], atol=1e-5 * np.abs(u).max())
        return u if linear else None

    def _noisy_system(self) -> tuple[np.ndarray, np.ndarray]:
        """Directions U [2, D] and M = sigma^2 U U^T + noise^2 I (2 x 2) of a linear embedding.

        x | y ~ N(y U^T mu, sigma^2 U^T U + noise^2 I); both classes share the covariance, so
        the Bayes log-odds is linear, 2 mu^T U Sigma^-1 x, and ``U Sigma^-1 = M^-1 U`` keeps
        it in two dimensions (and finite at noise 0, where Sigma is singular).
        """
        u = self.linear_directions()
        if u is None:
            raise UserError(
                f"the Bayes-optimal classifier on x has no closed form for a nested (nonlinear) "
                f"embedding with input noise {self.noise}; use noise=0 (the map z -> x is then "
                f"injective and the latent rule is optimal) or eta_core=0 and eta_short=0")
        return u, self.sigma**2 * (u @ u.T) + self.noise**2 * np.eye(2)

    def bayes_logit(self, z_core: torch.Tensor, z_short: torch.Tensor) -> torch.Tensor:
        """Log-odds of the Bayes-optimal classifier on x at the noise-free input
        ``embed(z_core, z_short)``.

        Without noise it is the latent rule 2 (mu_c z_c + mu_s z_s) / sigma^2. With noise and
        a linear embedding it is ``2 mu^T M^-1 G z`` (G = U U^T), which leans towards the
        latent that stands out more above the noise (an amplified one); with noise and nesting
        it raises.
        """
        mu = np.asarray(self.mu)
        if self.noise > 0:
            u, m = self._noisy_system()
            mu = self.sigma**2 * (u @ u.T) @ np.linalg.solve(m, mu)
        return 2.0 * (float(mu[0]) * z_core + float(mu[1]) * z_short) / self.sigma**2

    def bayes_input_logit(self, X: torch.Tensor) -> torch.Tensor:
        """Bayes log-odds from inputs X [n, ...] (noisy samples included), for a linear
        embedding: ``2 mu^T M^-1 U x``. A nested embedding raises (use `bayes_logit` on z)."""
        if self.linear_directions() is None:
            raise UserError("bayes_input_logit needs a linear embedding (eta_core=0 and "
                            "eta_short=0); for a nested one without noise use bayes_logit(z)")
        u, m = self._noisy_system()
        w = 2.0 * u.T @ np.linalg.solve(m, np.asarray(self.mu))
        X = torch.as_tensor(X)
        return X.reshape(len(X), -1).double() @ torch.as_tensor(w)

    def bayes_predict(self, z_core: torch.Tensor, z_short: torch.Tensor) -> torch.Tensor:
        """The Bayes-optimal label in {-1, +1} (ties go to +1)."""
        logit = self.bayes_logit(torch.as_tensor(z_core), torch.as_tensor(z_short))
        return torch.where(logit >= 0, 1.0, -1.0)


def latent_means(rho_core: float, rho_short: float, sigma: float) -> tuple[float, float]:
    """mu_i = sigma * Phi^{-1}(rho_i), so that P(sign z_i = y) = rho_i."""
    _check_rho("rho_core", rho_core)
    _check_rho("rho_short", rho_short)
    return float(sigma * norm.ppf(rho_core)), float(sigma * norm.ppf(rho_short))


def sample_latents(
    rng: np.random.Generator, n: int, mu: tuple[float, float], sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``y [n]`` in {-1, +1} and latents ``z [n, 2]`` (core, short)."""
    y = rng.choice([-1.0, 1.0], size=n)
    z = y[:, None] * np.asarray(mu)[None, :] + sigma * rng.standard_normal((n, 2))
    return y, z


def latent_pair(z_core: np.ndarray, z_short: np.ndarray, dtype: type) -> tuple[np.ndarray, ...]:
    """Both latents as 1-D arrays of equal length, or a ValueError naming both shapes."""
    z_core = np.asarray(z_core, dtype=dtype)
    z_short = np.asarray(z_short, dtype=dtype)
    if z_core.shape != z_short.shape or z_core.ndim != 1:
        raise ValueError(
            f"z_core and z_short must be 1-D of equal length, got {z_core.shape} and "
            f"{z_short.shape}"
        )
    return z_core, z_short


@dataclass
class ShortcutDataset(GaussianLatents):
    """Samples and the generative model that made them.

    X: [n, d] float32 inputs; y: [n] float32 labels in {-1, +1}; z: [n, 2] latents with
    columns (core, short); mu: (mu_core, mu_short); the embeddings map latents to inputs.
    """

    X: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor
    mu: tuple[float, float]
    sigma: float
    alpha: tuple[float, float]
    embed_core: LatentEmbedding
    embed_short: LatentEmbedding
    params: dict = field(default_factory=dict)
    noise: float = 0.0

    def __len__(self) -> int:
        return self.X.shape[0]

    def embed(self, z_core: np.ndarray, z_short: np.ndarray) -> torch.Tensor:
        """Map latents ([n] each) through this dataset's embedding -> [n, d] float32."""
        z_core, z_short = latent_pair(z_core, z_short, np.float64)
        x = self.alpha[0] * self.embed_core(z_core) + self.alpha[1] * self.embed_short(z_short)
        return torch.as_tensor(x, dtype=torch.float32)

    def split(self, n_train: int) -> tuple[ShortcutDataset, ShortcutDataset]:
        """First `n_train` samples and the rest, sharing the embedding."""
        if not 0 < n_train < len(self):
            raise ValueError(f"n_train must be in (0, {len(self)}), got {n_train}")
        a, b = slice(0, n_train), slice(n_train, None)
        common = dict(
            mu=self.mu, sigma=self.sigma, alpha=self.alpha, embed_core=self.embed_core,
            embed_short=self.embed_short, params=self.params, noise=self.noise,
        )
        return (
            ShortcutDataset(self.X[a], self.y[a], self.z[a], **common),
            ShortcutDataset(self.X[b], self.y[b], self.z[b], **common),
        )


def _check_rho(name: str, rho: float) -> None:
    if not 0.5 <= rho < 1.0:
        raise ValueError(f"{name} must be in [0.5, 1) (0.5 = no signal), got {rho}")


def make_shortcut_dataset(
    n: int,
    *,
    rho_core: float = 0.9,
    rho_short: float = 0.9,
    alpha_core: float = 1.0,
    alpha_short: float = 1.0,
    eta_core: int = 0,
    eta_short: int = 0,
    d: int = 20,
    sigma: float = 1.0,
    noise: float = 0.0,
    nest_gain: float = 1.0,
    seed: int = 0,
    embed_seed: int | None = None,
) -> ShortcutDataset:
    """Draw `n` samples of the core/shortcut task.

    `embed_seed` fixes the random embedding (unit vectors and tanh layers) separately from the
    samples, so two calls with the same `embed_seed` and different `seed` give a train and a
    test set of the same task; by default it equals `seed`. `noise` adds isotropic Gaussian
    input noise of that standard deviation (0 keeps z -> x injective, so the Bayes-optimal
    classifier on x is the one on z). `nest_gain` is the RMS of every nesting layer's
    pre-activations over the data: 1 bends the latent (tanh(1) = 0.76) with few saturated
    units, 3 and more makes the nested latent nearly binary.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if d < 2:
        raise ValueError(f"d must be >= 2 so both latents get their own direction, got {d}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if noise < 0:
        raise ValueError(f"noise is a standard deviation and must be >= 0, got {noise}")
    if nest_gain <= 0:
        raise ValueError(f"nest_gain must be positive (1 is mildly nonlinear), got {nest_gain}")
    mu = latent_means(rho_core, rho_short, sigma)

    erng = np.random.default_rng(seed if embed_seed is None else embed_seed)
    ref_y = erng.choice([-1.0, 1.0], size=_REF_SAMPLES)
    ref_c = ref_y * mu[0] + sigma * erng.standard_normal(_REF_SAMPLES)
    ref_s = ref_y * mu[1] + sigma * erng.standard_normal(_REF_SAMPLES)
    embed_core = _make_embedding(erng, d, eta_core, ref_c, nest_gain)
    embed_short = _make_embedding(erng, d, eta_short, ref_s, nest_gain)

    rng = np.random.default_rng([seed, 1])
    y, z = sample_latents(rng, n, mu, sigma)
    ds = ShortcutDataset(
        X=torch.empty(0),
        y=torch.as_tensor(y, dtype=torch.float32),
        z=torch.as_tensor(z, dtype=torch.float32),
        mu=mu,
        sigma=float(sigma),
        alpha=(float(alpha_core), float(alpha_short)),
        embed_core=embed_core,
        embed_short=embed_short,
        params=dict(
            rho_core=rho_core, rho_short=rho_short, alpha_core=alpha_core,
            alpha_short=alpha_short, eta_core=eta_core, eta_short=eta_short, d=d,
            sigma=sigma, noise=noise, nest_gain=nest_gain, seed=seed, embed_seed=embed_seed,
        ),
        noise=float(noise),
    )
    X = ds.embed(z[:, 0], z[:, 1])
    if noise > 0:
        X = X + noise * torch.as_tensor(rng.standard_normal(X.shape), dtype=torch.float32)
    ds.X = X
    return ds


@dataclass(frozen=True)
class ProbeGrid:
    """A grid over (z_short, z_core) and its inputs, with no point on an axis or a diagonal.

    X: [m*m, ...] inputs; z_core, z_short: [m*m] latent values. Each axis is symmetric about 0,
    so every sign quadrant holds the same number of points, and the two axes interleave so
    that |z_core| = |z_short| nowhere (see `grid_axes`).
    """

    X: torch.Tensor
    z_core: torch.Tensor
    z_short: torch.Tensor


def grid_axes(n_per_axis: int, extent: float) -> tuple[np.ndarray, np.ndarray]:
    """The core and shortcut axes ([n_per_axis] each) of the probe grid over [-extent, extent].

    The magnitudes are the centres of n_per_axis equal slots in (0, extent], dealt to the axes
    in the pattern core, short, short, core, ...: no grid point lies on the diagonals
    |z_core| = |z_short|, where the Bayes boundary sits when rho_core = rho_short (a point there
    would flip with any tilt of the boundary, a jump of 2 / n_points), and |z_short| > |z_core|
    exactly as often as the reverse, so the Bayes reliance is exactly 0 at equal rho.
    """
    if n_per_axis < 4 or n_per_axis % 4:
        raise ValueError(
            f"n_per_axis must be a multiple of 4 (core and shortcut magnitudes interleave in "
            f"blocks of 4), got {n_per_axis}; use e.g. {max(4, 4 * round(n_per_axis / 4))}")
    slots = (np.arange(n_per_axis) + 0.5) * extent / n_per_axis
    core = slots[np.isin(np.arange(n_per_axis) % 4, (0, 3))]
    short = slots[np.isin(np.arange(n_per_axis) % 4, (1, 2))]
    return np.r_[-core[::-1], core], np.r_[-short[::-1], short]


def probe_grid(
    dataset: ShortcutDataset | ShortcutImageDataset,
    *,
    n_per_axis: int = 64,
    extent: float | None = None,
) -> ProbeGrid:
    """The grid over both latents in [-extent, extent]^2, mapped through `dataset`'s embedding.

    `extent` defaults to ``max(mu) + 2 sigma``, which covers the bulk of the data. Any dataset
    with `embed(z_core, z_short)`, `mu` and `sigma` works (the image variant too).
    """
    if extent is None:
        extent = max(dataset.mu) + 2.0 * dataset.sigma
    core, short = grid_axes(n_per_axis, extent)
    zs, zc = np.meshgrid(short, core, indexing="ij")
    zs, zc = zs.ravel(), zc.ravel()
    X = dataset.embed(zc, zs)
    return ProbeGrid(
        X=X,
        z_core=torch.as_tensor(zc, dtype=torch.float32),
        z_short=torch.as_tensor(zs, dtype=torch.float32),
    )
