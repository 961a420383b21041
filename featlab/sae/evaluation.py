"""The result of :func:`featlab.sae.evaluate`: scalars to read and print, arrays to plot.

>>> m = evaluate(sae, x)
>>> print(m)                  # a short table of the scalars
>>> m.fvu, m.l0, m.dead_frac  # attributes
>>> json.dumps(m.to_dict())   # JSON-ready scalars (arrays left out)
>>> m.to_series()             # the same as a pandas Series, e.g. to build a table of runs
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the dataclass needs no torch at import (featlab.sae imports lazily)
    from torch import Tensor

__all__ = ["SAEMetrics"]

# Printed after each scalar: what it measures, in a few words.
_MEANING = {
    "fvu": "fraction of variance unexplained",
    "mse": "squared error per row, summed over d_in",
    "l0": "active latents per row (mean)",
    "l0_std": "active latents per row (std)",
    "l0_q05": "L0, 5% quantile",
    "l0_q50": "L0, median",
    "l0_q95": "L0, 95% quantile",
    "dead_frac": "latents that never fire on these rows",
    "dense_frac": "latents firing on more than {dense} of rows",
    "ce_clean": "CE (next token or labels), clean model",
    "ce_sae": "CE (next token or labels), SAE spliced in",
    "ce_zero": "CE (next token or labels), hook zero-ablated",
    "ce_loss_recovered": "(ce_zero - ce_sae) / (ce_zero - ce_clean)",
    "kl_sae": "KL(clean || SAE spliced in)",
    "kl_zero": "KL(clean || zero-ablated)",
    "mmcs": "mean best cosine of true features to decoder rows",
    "hungarian_cosine": "mean cosine, one-to-one matching",
}

_OPTIONAL = ("ce_clean", "ce_sae", "ce_zero", "ce_loss_recovered", "kl_sae", "kl_zero",
             "mmcs", "hungarian_cosine")  # fmt: skip


@dataclass(frozen=True, repr=False)
class SAEMetrics:
    """Metrics of an SAE on a set of activation rows (see :func:`featlab.sae.evaluate`).

    Scalars: fvu, mse, l0, l0_std, dead_frac, dense_frac, n_rows; l0_quantiles maps
    0.05 / 0.5 / 0.95 to L0 quantiles. Optional scalars are None unless computed: the CE /
    KL entries (with ``model`` and ``tokens``; next-token loss at every position, or at the
    positions ``labels`` scores) and mmcs / hungarian_cosine (with
    ``true_features``). Arrays, left out of the printout and of :meth:`to_dict`:
    feature_density ``[d_sae]`` (fraction of rows each latent fires on), l0_hist and
    density_hist, each ``(counts, bin_edges)`` (density bins are log10, over live latents).
    """

    fvu: float
    mse: float
    l0: float
    l0_std: float
    dead_frac: float
    dense_frac: float
    n_rows: int
    l0_quantiles: dict[float, float]
    feature_density: Tensor = field(compare=False)
    l0_hist: tuple[list[int], list[float]] = field(compare=False)
    density_hist: tuple[list[int], list[float]] = field(compare=False)
    ce_clean: float | None = None
    ce_sae: float | None = None
    ce_zero: float | None = None
    ce_loss_recovered: float | None = None
    kl_sae: float | None = None
    kl_zero: float | None = None
    mmcs: float | None = None
    hungarian_cosine: float | None = None
    dense_threshold: float = 0.1  # the setting dense_frac was counted with

    @property
    def d_sae(self) -> int:
        return int(self.feature_density.shape[0])

    def _scalars(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"n_rows": int(self.n_rows)}
        for name in ("fvu", "mse", "l0", "l0_std"):
            out[name] = float(getattr(self, name))
        for q, v in sorted(self.l0_quantiles.items()):
            out[f"l0_q{round(100 * q):02d}"] = float(v)
        out["dead_frac"] = float(self.dead_frac)
        out["dense_frac"] = float(self.dense_frac)
        for name in _OPTIONAL:
            v = getattr(self, name)
            if v is not None:
                out[name] = float(v)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The scalars, ready for ``json.dumps``: quantiles as l0_q05 / l0_q50 / l0_q95,
        metrics that were not computed left out, NaN (e.g. ce_loss_recovered when zero
        ablation changes nothing) as None."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self._scalars().items()}  # fmt: skip

    def to_series(self) -> Any:
        """The scalars as a float ``pandas.Series`` named "metrics" (NaN kept as NaN)."""
        import pandas as pd

        return pd.Series(self._scalars(), name="metrics", dtype=float)

    def __repr__(self) -> str:
        rows = self._scalars()
        del rows["n_rows"]  # in the heading
        width = max(len(k) for k in rows)
        lines = [f"SAEMetrics on {self.n_rows} rows, d_sae {self.d_sae}"]
        for k, v in rows.items():
            val = str(v) if isinstance(v, int) else f"{v:.4g}"
            meaning = _MEANING.get(k, "").format(dense=f"{self.dense_threshold:.0%}")
            lines.append(f"  {k:<{width}}  {val:>9}  {meaning}".rstrip())
        return "\n".join(lines)

    __str__ = __repr__
