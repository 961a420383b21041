"""Per-token activations at the scored positions, as the probes and V-information take them.

A sequence model's cache holds ``[batch, pos, d]`` per hook, but a task scores only some
positions (MQAR labels are ``-100`` off the query positions). :func:`scored_positions` keeps
the scored rows of every hook, in one row order, together with the targets at those rows:

>>> acts, y = scored_positions(cache, data.labels[:256], layers=hooks)
>>> probe_layers(acts, y)                       # or feature_complexity(acts, z), ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from featlab.probes._layers import select_names, to_numpy_2d

__all__ = ["scored_positions"]


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or array [batch, pos], got {type(a)}") from err


def _hooks(cache: Any, layers: Sequence[str] | None) -> list[str]:
    if not (isinstance(cache, dict) or hasattr(cache, "keys")):
        raise TypeError(
            "expected an ActivationCache (from model.run_with_cache) or a dict hook -> "
            f"[batch, pos, d] tensor, got {type(cache).__name__}"
        )
    return select_names(list(cache.keys()), layers, "hook")


def scored_positions(
    cache: Any,
    labels: Any,
    *,
    layers: Sequence[str] | None = None,
    target: Any = None,
    ignore_index: int | None = -100,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Activations ``{hook: [n, d]}`` (float64) and targets ``[n]`` at the scored positions.

    cache: an ``ActivationCache`` from ``model.run_with_cache`` or a dict hook -> tensor
    ``[batch, pos, ...]`` (trailing dims are flattened into d).
    labels: ``[batch, pos]``; integer labels score the positions that are not
    `ignore_index` (``-100`` as :func:`featlab.datasets.make_mqar` writes) and are the
    targets there; float labels (real targets) score every position; a bool mask scores
    where it is True and needs `target`.
    layers: the hooks to keep, in order (default: every hook in the cache; each must be
    ``[batch, pos, ...]``, so pass ``layers=`` for a full cache with patterns or states).
    target: optional ``[batch, pos]`` values to return instead of the labels (e.g. the token
    ids, or per-position values of a latent), taken at the same positions.

    Rows run over batch then position (``labels[b, p]`` in row-major order) for every hook.
    """
    lab = _as_tensor(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(
            f"labels must be [batch, pos], got shape {tuple(lab.shape)}; for [n] targets "
            "over already-flattened rows, pass the activations to the probes directly"
        )
    if lab.dtype == torch.bool:
        mask = lab
        if target is None:
            raise ValueError(
                "labels is a bool mask: it says which positions to keep but not what to "
                "predict there; pass target=[batch, pos] values (or integer labels with -100)"
            )
    elif lab.dtype.is_floating_point or ignore_index is None:
        mask = torch.ones_like(lab, dtype=torch.bool)
    else:
        mask = lab != ignore_index
    if target is None:
        tgt = lab
    else:
        tgt = _as_tensor(target, "target")
        if tuple(tgt.shape) != tuple(lab.shape):
            raise ValueError(
                f"target has shape {tuple(tgt.shape)} but labels has {tuple(lab.shape)}; "
                "both must be [batch, pos]"
            )
    if not bool(mask.any()):
        what = "True" if lab.dtype == torch.bool else f"!= {ignore_index}"
        raise ValueError(
            f"no position is scored: no entry of labels {tuple(lab.shape)} is {what}; "
            "pass the labels that go with these inputs"
        )
    names = _hooks(cache, layers)
    acts: dict[str, np.ndarray] = {}
    for h in names:
        a = cache[h]
        shape = tuple(a.shape)
        if len(shape) < 2 or shape[:2] != tuple(lab.shape):
            raise ValueError(
                f"activations at {h!r} have shape {shape} but labels have "
                f"{tuple(lab.shape)}; the first two dims must be [batch, pos] and match "
                "(run the model on the inputs these labels belong to, or pass layers= to "
                "leave out hooks without a position dim)"
            )
        a = a.detach().cpu() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
        acts[h] = to_numpy_2d(a[mask], name=f"activations at {h!r}")
    return acts, tgt[mask].to(torch.float64).numpy()
