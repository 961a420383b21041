"""Evaluation of a trained SAE: reconstruction, sparsity, density, splicing into the model,
and agreement with known ground-truth features.

FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the evaluation set. L0 = active latents
per token. A latent is dead when it never fires on the evaluation set and dense when it fires
on more than ``dense_threshold`` of the tokens. CE-loss recovered splices the SAE's
reconstruction into the model at its hook (`run_with_hooks`) and compares with the clean run
and with zero ablation: (CE_zero - CE_sae) / (CE_zero - CE_clean). By default the CE is the
next-token loss over every position (text); with ``labels`` it is the loss against those
targets at the labelled positions only (MQAR: the value at each query position, the loss the
model was trained on; its other positions hold unpredictable filler).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from featlab.errors import UserError
from featlab.sae.base import SparseAutoencoder
from featlab.sae.evaluation import SAEMetrics

IGNORE_INDEX = -100  # as featlab.datasets.mqar and torch's cross_entropy


@torch.no_grad()
def evaluate(
    sae: SparseAutoencoder,
    x: Tensor,
    *,
    model: Any = None,
    tokens: Tensor | None = None,
    labels: Tensor | None = None,
    true_features: Tensor | None = None,
    batch_size: int = 4096,
    dense_threshold: float = 0.1,
    n_bins: int = 30,
) -> SAEMetrics:
    """Metrics of ``sae`` on activations ``x`` ``[n, d_in]`` (or ``[n, pos, d_in]``).

    Returns an :class:`~featlab.sae.SAEMetrics`: fvu, mse (mean squared error summed over
    d_in), l0 (mean), l0_std, l0_quantiles ({0.05, 0.5, 0.95}), dead_frac, dense_frac, and
    the arrays feature_density (tensor ``[d_sae]``), l0_hist (counts, bin edges) and
    density_hist (counts, log10 bin edges over the live latents). With ``model`` and
    ``tokens``: the :func:`ce_loss_recovered` entries (at the positions ``labels`` scores,
    when given). With ``true_features``
    ``[n_true, d_in]``: mmcs and hungarian_cosine. ``print(evaluate(...))`` shows the
    scalars as a table; ``.to_dict()`` gives them JSON-ready.
    """
    was_training = sae.training
    sae.eval()
    try:
        rows = sae._flat(x)[0]
        n = rows.shape[0]
        if n == 0:
            raise ValueError("evaluate needs at least one activation row")
        sq_err = torch.zeros((), dtype=torch.float64)
        fired = torch.zeros(sae.d_sae, dtype=torch.float64)
        l0s = []
        for lo in range(0, n, batch_size):
            xb = rows[lo : lo + batch_size]
            code = sae.encode_sparse(xb)
            x_hat = sae.decode_sparse(code)
            sq_err += (xb - x_hat).to(torch.float64).pow(2).sum().cpu()
            nz = code.vals != 0
            if code.rows is None:
                r = torch.arange(xb.shape[0], device=xb.device)[:, None].expand_as(code.idx)
            else:
                r = code.rows
            pairs = torch.unique(r[nz] * sae.d_sae + code.idx[nz]).cpu()  # repeats count once
            fired += torch.bincount(pairs % sae.d_sae, minlength=sae.d_sae).to(torch.float64)
            l0s.append(torch.bincount(pairs // sae.d_sae, minlength=xb.shape[0]))
        x64 = rows.to(torch.float64).cpu()
        var = (x64 - x64.mean(0)).pow(2).sum()
        l0 = torch.cat(l0s).to(torch.float64)
        density = fired / n
        live = density[density > 0]
        d_counts, d_edges = np.histogram(
            np.log10(live.numpy()) if live.numel() else np.zeros(0), bins=n_bins
        )
        l_counts, l_edges = np.histogram(l0.numpy(), bins=n_bins)
        extra: dict[str, float] = {}
        if model is not None and tokens is not None:
            extra.update(ce_loss_recovered(model, sae, tokens, labels=labels))
        if true_features is not None:
            extra["mmcs"] = mmcs(sae.W_dec, true_features)
            extra["hungarian_cosine"] = hungarian_cosine(sae.W_dec, true_features)
        return SAEMetrics(
            fvu=float(sq_err / var.clamp(min=1e-30)),
            mse=float(sq_err / n),
            l0=float(l0.mean()),
            l0_std=float(l0.std()) if n > 1 else 0.0,
            dead_frac=float((density == 0).to(torch.float64).mean()),
            dense_frac=float((density > dense_threshold).to(torch.float64).mean()),
            n_rows=int(n),
            l0_quantiles={q: float(torch.quantile(l0, q)) for q in (0.05, 0.5, 0.95)},
            feature_density=density,
            l0_hist=(l_counts.tolist(), l_edges.tolist()),
            density_hist=(d_counts.tolist(), d_edges.tolist()),
            dense_threshold=float(dense_threshold),
            **extra,
        )
    finally:
        sae.train(was_training)


def _targets(tokens: Tensor, labels: Tensor | None) -> Tensor:
    """``[batch, pos]`` target of the logits at each position, -100 where nothing is scored:
    the next token (the last position scores nothing), or ``labels`` as given."""
    if labels is None:
        nxt = torch.full_like(tokens, IGNORE_INDEX)
        nxt[:, :-1] = tokens[:, 1:]
        return nxt
    if labels.shape != tokens.shape:
        raise UserError(
            f"labels of shape {tuple(labels.shape)} must match tokens of shape "
            f"{tuple(tokens.shape)}: one target per position, -100 where nothing is scored"
        )
    if not bool((labels != IGNORE_INDEX).any()):
        raise UserError(
            "labels score no position (all -100); pass the task's labels (MQAR: "
            "make_mqar(...).labels) or {opt:labels=None} for next-token loss at every position"
        )
    return labels.to(tokens.device)


def _ce(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits ``[batch, pos, vocab]`` over the scored targets."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )  # fmt: skip


def _kl(clean: Tensor, other: Tensor, scored: Tensor) -> Tensor:
    """Mean over the ``scored`` positions of KL(clean || other), logits ``[batch, pos, vocab]``."""
    lp = clean.float().log_softmax(-1)
    lq = other.float().log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum(-1)[scored].mean()


@torch.no_grad()
def ce_loss_recovered(
    model: Any,
    sae: SparseAutoencoder,
    tokens: Tensor,
    hook_name: str | None = None,
    *,
    labels: Tensor | None = None,
) -> dict[str, float]:
    """Splice ``sae`` into ``model`` at ``hook_name`` (default: the SAE's own hook).

    model: any TransformerLens-style hooked model whose forward returns logits
    ``[batch, pos, vocab]`` and that has ``run_with_hooks``. tokens: ``[batch, pos]``.
    labels: ``[batch, pos]`` target of the logits at each position, -100 where nothing is
    scored (`featlab.datasets.mqar` labels: the query positions only); None scores the next
    token at every position. Returns ce_clean, ce_sae, ce_zero, ce_loss_recovered =
    (ce_zero - ce_sae) / (ce_zero - ce_clean), kl_sae and kl_zero (KL from the clean
    distribution), all over the scored positions.
    """
    targets = _targets(tokens, labels)
    # KL needs no target: without labels it covers every position, the last one included
    scored = targets != IGNORE_INDEX if labels is not None else torch.ones_like(tokens).bool()
    hook = hook_name if hook_name is not None else sae.cfg.hook_name
    if hook is None:
        raise ValueError("the SAE records no hook_name; pass hook_name= to ce_loss_recovered")
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is not None and hook not in hook_dict:
        raise ValueError(
            f"hook {hook!r} is not a hook of this model; valid hooks: {', '.join(hook_dict)}"
        )
    was_training = sae.training
    sae.eval()
    try:

        def splice(act: Tensor, hook: Any) -> Tensor:
            return sae(act).x_hat.to(act.dtype)

        def zero(act: Tensor, hook: Any) -> Tensor:
            return torch.zeros_like(act)

        clean = model(tokens)
        spliced = model.run_with_hooks(tokens, fwd_hooks=[(hook, splice)])
        zeroed = model.run_with_hooks(tokens, fwd_hooks=[(hook, zero)])
    finally:
        sae.train(was_training)
    ce_clean, ce_sae, ce_zero = (float(_ce(lg, targets)) for lg in (clean, spliced, zeroed))
    denom = ce_zero - ce_clean
    return {
        "ce_clean": ce_clean,
        "ce_sae": ce_sae,
        "ce_zero": ce_zero,
        "ce_loss_recovered": (ce_zero - ce_sae) / denom if abs(denom) > 1e-12 else float("nan"),
        "kl_sae": float(_kl(clean, spliced, scored)),
        "kl_zero": float(_kl(clean, zeroed, scored)),
    }


def _cosines(W_dec: Tensor, true_features: Tensor) -> Tensor:
    """``[n_true, d_sae]`` cosine similarities between true features and decoder rows."""
    W = W_dec.detach().to(torch.float64)
    T = true_features.detach().to(torch.float64)
    if W.shape[-1] != T.shape[-1]:
        raise ValueError(
            f"true_features of shape {tuple(T.shape)} and W_dec of shape {tuple(W.shape)} "
            "must share their last dimension (d_in)"
        )
    W = W / W.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    T = T / T.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return T @ W.T


def mmcs(W_dec: Tensor, true_features: Tensor) -> float:
    """Mean over true features ``[n_true, d_in]`` of the best cosine with a decoder row
    (W_dec ``[d_sae, d_in]``)."""
    return float(_cosines(W_dec, true_features).max(dim=1).values.mean())


def hungarian_cosine(W_dec: Tensor, true_features: Tensor) -> float:
    """Mean cosine of the one-to-one matching of true features to decoder rows that maximises
    the total cosine (scipy ``linear_sum_assignment``); min(n_true, d_sae) pairs."""
    from scipy.optimize import linear_sum_assignment

    cos = _cosines(W_dec, true_features).numpy()
    r, c = linear_sum_assignment(cos, maximize=True)
    return float(cos[r, c].mean())
