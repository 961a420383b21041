"""Predictive V-information, estimated on held-out data.

Xu et al., "A Theory of Usable Information under Computational Constraints" (ICLR 2020):
``I_V(X -> Y) = H_V(Y) - H_V(Y | X)``, where H_V is the smallest cross-entropy a member of the
predictive family V achieves. Both terms here are *held-out* cross-entropies of a model fitted
on a training split, so the estimate can come out slightly negative when X carries nothing
usable (it is reported as is; `normalised` clips to [0, 1]).

Families:

``"gaussian"`` (real targets): V = { y ~ N(w.x + b, 1/2) }, Gaussians with a linear mean and
  the variance *fixed* at 1/2. The cross-entropy of such a member is
  ``0.5 ln(pi) + MSE`` nats, so the constant cancels and
  ``I_V = MSE_0 - MSE_1`` nats, where MSE_0 is the held-out error of the best constant and
  MSE_1 that of the linear fit (trained on the training split). The best constant is taken on
  the held-out split itself (its mean: one parameter, nothing to overfit) and the target is
  standardised by the held-out standard deviation, so MSE_0 = 1 and ``I_V = 1 - MSE_1`` is
  exactly the held-out R^2 (scikit-learn's ``r2_score`` on the test split). That is why the
  default unit for this family is nats: one "nat" here is one unit of explained variance of
  the standardised target. (A learnt-variance family would give ``-0.5 ln(1 - R^2)`` instead,
  which is unbounded; the fixed-variance one keeps the scale of R^2.)
``"logistic"`` (labels): V = multinomial logistic regressions. H_V(Y) is the held-out
  cross-entropy of the training class frequencies, H_V(Y|X) that of the fitted logistic
  regression; the default unit is bits, so a balanced binary label that X determines gives
  about 1 bit.

``units="bits"`` divides nats by ln 2 for either family.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from featlab.probes._layers import ConstantTargetError, as_1d_target, to_numpy_2d

__all__ = ["FAMILIES", "VInfo", "v_information", "v_information_details"]

FAMILIES = ("gaussian", "logistic")


@dataclass(frozen=True)
class VInfo:
    """One held-out estimate. `i_v`, `h_y`, `h_y_given_x` are in `units`; `normalised` is
    ``i_v / h_y`` for the logistic family and ``i_v / MSE_0`` (= held-out R^2) for the
    Gaussian one, clipped to [0, 1]. For the Gaussian family `h_y` and
    `h_y_given_x` are the MSEs (the V-entropies less their common constant)."""

    i_v: float
    h_y: float
    h_y_given_x: float
    normalised: float
    family: str
    units: str
    n_train: int
    n_test: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split(n: int, test_size: float, seed: int, stratify: np.ndarray | None):
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    idx = np.arange(n)
    try:
        return train_test_split(idx, test_size=test_size, random_state=seed, stratify=stratify)
    except ValueError:  # a class too rare to stratify: fall back to a plain split
        return train_test_split(idx, test_size=test_size, random_state=seed)


def v_information_details(
    X: Any,
    y: Any,
    family: str = "gaussian",
    *,
    test_size: float = 0.25,
    seed: int = 0,
    units: str = "auto",
    standardize: bool = True,
    ridge: float = 1e-3,
    C: float = 10.0,
    max_iter: int = 500,
    name: str = "y",
) -> VInfo:
    """Held-out I_V(X -> y) with all its parts. X: [n, ...] (flattened); y: [n].

    `units`: "auto" (nats for "gaussian", so the value reads as R^2; bits for "logistic"),
    "nats" or "bits". `standardize` scales the Gaussian target by its held-out std
    (without it I_V is in squared target units: explained variance, not R^2).
    `ridge` is the L2 penalty of the linear fit (per sample, so it does not grow with n);
    `C` the inverse penalty of the logistic one. `name` is what error messages call y (a
    target constant on all rows, or on the train or test split, raises
    :class:`~featlab.probes.ConstantTargetError`).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid: {list(FAMILIES)}")
    if units not in ("auto", "bits", "nats"):
        raise ValueError(f"units must be 'auto', 'bits' or 'nats', got {units!r}")
    Xa = to_numpy_2d(X, name="X")
    ya = as_1d_target(y, n=Xa.shape[0], name=name)
    units = ("nats" if family == "gaussian" else "bits") if units == "auto" else units
    scale = 1.0 / math.log(2.0) if units == "bits" else 1.0

    if family == "gaussian":
        tr, te = _split(len(ya), test_size, seed, None)
        m_tr, s_tr = ya[tr].mean(), ya[tr].std()
        m_te, s_te = ya[te].mean(), ya[te].std()
        if s_tr == 0 or s_te == 0:
            split, part = ("training", ya[tr]) if s_tr == 0 else ("test", ya[te])
            n_other = int(np.sum(ya != part[0]))
            raise ConstantTargetError(
                f"{name} is constant ({part[0]:g}) on the {split} split of {len(part)} rows: "
                f"only {n_other} of {len(ya)} rows differ from it; use more rows (or another "
                "seed / test_size)"
            )
        sx = StandardScaler().fit(Xa[tr])
        reg = Ridge(alpha=ridge * len(tr)).fit(sx.transform(Xa[tr]), (ya[tr] - m_tr) / s_tr)
        pred = reg.predict(sx.transform(Xa[te])) * s_tr + m_tr
        # The constant member's infimum is taken on the held-out data itself (one parameter:
        # nothing to overfit), so the standardised target has MSE_0 = 1 exactly and I_V is the
        # held-out R^2 as scikit-learn's r2_score defines it.
        unit = s_te if standardize else 1.0
        mse0 = float(np.mean(((ya[te] - m_te) / unit) ** 2))
        mse1 = float(np.mean(((ya[te] - pred) / unit) ** 2))
        i_v = mse0 - mse1
        norm = i_v / mse0 if mse0 > 0 else 0.0
        h0, h1 = mse0, mse1
    else:
        classes, yi = np.unique(ya, return_inverse=True)
        if len(classes) > 0.5 * len(ya):
            raise ValueError(
                f"{name} has {len(classes)} distinct values for {len(ya)} rows; the logistic "
                "family is for labels: use family='gaussian' for real-valued targets"
            )
        tr, te = _split(len(yi), test_size, seed, yi)
        counts = np.bincount(yi[tr], minlength=len(classes)) + 1.0  # add-one: no log(0)
        prior = counts / counts.sum()
        h0 = float(-np.mean(np.log(prior[yi[te]])))
        sx = StandardScaler().fit(Xa[tr])
        present = np.unique(yi[tr])
        if len(present) < 2:
            raise ConstantTargetError(
                f"{name} has a single class on the training split of {len(tr)} rows; use more "
                "rows (or another seed / test_size)"
            )
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(sx.transform(Xa[tr]), yi[tr])
        proba = np.full((len(te), len(classes)), 1e-12)
        proba[:, clf.classes_] = clf.predict_proba(sx.transform(Xa[te]))
        proba /= proba.sum(axis=1, keepdims=True)
        h1 = float(-np.mean(np.log(np.clip(proba[np.arange(len(te)), yi[te]], 1e-12, None))))
        i_v = h0 - h1
        norm = i_v / h0 if h0 > 0 else 0.0
    return VInfo(
        i_v=float(i_v * scale),
        h_y=float(h0 * scale),
        h_y_given_x=float(h1 * scale),
        normalised=float(min(max(norm, 0.0), 1.0)),
        family=family,
        units=units,
        n_train=len(tr),
        n_test=len(te),
    )


def v_information(
    X: Any,
    y: Any,
    family: str = "gaussian",
    *,
    test_size: float = 0.25,
    seed: int = 0,
    units: str = "auto",
    **kwargs: Any,
) -> float:
    """Held-out I_V(X -> y) as a float (see :func:`v_information_details` for the parts).

    >>> I = v_information(X, y, family="gaussian")     # ~ held-out R^2 of standardised y
    >>> I = v_information(X, labels, family="logistic")  # bits
    """
    return v_information_details(
        X, y, family, test_size=test_size, seed=seed, units=units, **kwargs
    ).i_v
