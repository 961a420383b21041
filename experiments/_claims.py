"""Seeds -> mean, 95 % interval and a verdict: the one way every experiment reports a claim.

A claim is a signed quantity that the paper says is positive (BatchTopK's FVU gain over
TopK, a model's shortcut bias, ...). Measured over seeds, it *holds* when the whole interval
is above zero, *does not hold* when the whole interval is at or below zero, and is *within
noise* when the interval straddles zero. Intervals are Student-t on the seed values (paired
differences when both sides share seeds), so three seeds give wide, honest intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

HOLDS, FAILS, NOISE = "holds", "does not hold", "within noise"


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a Student-t interval; (x, nan, nan) for one value."""
    from scipy import stats

    v = np.asarray([float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def verdict(low: float, high: float) -> str:
    """holds / does not hold / within noise for a quantity the claim says is > 0."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return NOISE
    if low > 0:
        return HOLDS
    if high <= 0:
        return FAILS
    return NOISE


def claim_row(claim: str, values: Iterable[float], reason: str = "", **extra: object) -> dict:
    """One row of a claims table: claim, n_seeds, mean, ci_low, ci_high, verdict, reason."""
    vals = [float(x) for x in values]
    m, lo, hi = mean_ci(vals)
    return {"claim": claim, "n_seeds": len(vals), "mean": m, "ci_low": lo, "ci_high": hi,
            "verdict": verdict(lo, hi), **extra, "reason": reason}


def claims_table(rows: Iterable[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))
