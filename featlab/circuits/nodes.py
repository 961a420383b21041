"""Node indirect effects of SAE features and error terms (Marks et al. 2024).

The indirect effect of node a is IE(a) = m(a := a_patch) - m(clean). Two estimates:

- "atp" (attribution patching): IE ~ dm/da |clean . (a_patch - a_clean), one forward and one
  backward pass for every node at once. Upstream gradients pass the SAE straight through
  (d x_out / d x = I), as in the reference implementation.
- "ig" (integrated gradients): the gradient is averaged along the straight path from clean to
  patch at each hook separately (other hooks left to run normally), with Gauss-Legendre
  quadrature of `steps` points, so the effects of one hook sum to m(hook patched) - m(clean).

Effects are means over the batch, per position (`per_position=True`) or summed over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from featlab.circuits.splice import (
    Metric,
    Site,
    baseline_states,
    capture,
    decode,
    encode,
    flat,
    reduce_metric,
    sites,
    upcast,
)

METHODS = ("atp", "ig")


@dataclass
class NodeEffects:
    """Effects and the gradients they were computed with, per hook.

    effect_z[hook]: `[pos, d_sae]` (or `[d_sae]` summed over positions); effect_err[hook]:
    `[pos]` (or scalar). grad_z / grad_err: dm/dz `[batch, pos, d_sae]` and dm/derr
    `[batch, pos, d_in]`, on the clean run ("atp") or averaged over the hook's integrated-
    gradients path ("ig"), so effect = grad . delta; edges reuse them as the downstream
    gradient. delta_z / delta_err: patch - clean.
    """

    sites: list[Site]
    effect_z: dict[str, torch.Tensor]
    effect_err: dict[str, torch.Tensor]
    grad_z: dict[str, torch.Tensor] = field(default_factory=dict)
    grad_err: dict[str, torch.Tensor] = field(default_factory=dict)
    delta_z: dict[str, torch.Tensor] = field(default_factory=dict)
    delta_err: dict[str, torch.Tensor] = field(default_factory=dict)
    per_position: bool = True
    method: str = "atp"
    m_clean: float = float("nan")

    def frame(self) -> pd.DataFrame:
        """One row per node: node_id, hook, layer, sae_id, feature (-1 = error), pos
        (-1 = summed), kind, effect."""
        rows = []
        for s in self.sites:
            ez, ee = self.effect_z[s.hook], self.effect_err[s.hook]
            if self.per_position:
                pos, feat = np.meshgrid(np.arange(ez.shape[0]), np.arange(ez.shape[1]),
                                        indexing="ij")
                rows.append(_rows(s, feat.ravel(), pos.ravel(), ez.reshape(-1).numpy(), "feature"))
                rows.append(_rows(s, np.full(ee.shape[0], -1), np.arange(ee.shape[0]),
                                  ee.numpy(), "error"))
            else:
                rows.append(_rows(s, np.arange(ez.shape[0]), np.full(ez.shape[0], -1),
                                  ez.numpy(), "feature"))
                rows.append(_rows(s, np.array([-1]), np.array([-1]),
                                  np.array([float(ee)]), "error"))
        return pd.concat(rows, ignore_index=True)


def node_id(hook: str, feature: int, pos: int) -> str:
    name = "err" if feature < 0 else str(feature)
    return f"{hook}/{name}" + ("" if pos < 0 else f"@{pos}")


def _rows(s: Site, feat: np.ndarray, pos: np.ndarray, eff: np.ndarray, kind: str) -> pd.DataFrame:
    return pd.DataFrame({
        "node_id": [node_id(s.hook, int(f), int(p)) for f, p in zip(feat, pos, strict=True)],
        "hook": s.hook, "layer": s.layer, "sae_id": s.sae_id, "feature": feat.astype(np.int64),
        "pos": pos.astype(np.int64), "kind": kind, "effect": eff.astype(np.float64),
    })


def node_effects(
    model: Any,
    saes: Any,
    clean: torch.Tensor,
    metric: Metric,
    *,
    patch: torch.Tensor | None = None,
    baseline: str | None = None,
    method: str = "atp",
    steps: int = 10,
    per_position: bool = True,
) -> NodeEffects:
    """Indirect effects of every SAE feature and error node at the SAEs' hooks.

    clean / patch: token ids `[batch, pos]`. baseline: "patch" (default when `patch` is
    given), "zero" (default otherwise), "mean" (per position) or "mean_all" (see
    `splice.baseline_states`). metric: logits `[batch, pos, d_vocab]` -> per-example values
    `[batch]` (averaged). steps: IG quadrature points.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    site_list = sites(model, saes)
    baseline = baseline or ("patch" if patch is not None else "zero")
    states = capture(model, site_list, clean)
    base = baseline_states(model, site_list, states, patch, baseline)
    delta_z = {h: base[h][0] - states[h][0] for h in states}
    delta_e = {h: base[h][1] - states[h][1] for h in states}
    if method == "ig":
        grads_z, grads_e = {}, {}
        for s in site_list:
            grads_z[s.hook], grads_e[s.hook] = _ig_gradients(model, s, clean, metric,
                                                             states[s.hook], base[s.hook], steps)
        with torch.no_grad():
            m_clean = float(reduce_metric(metric(model(clean))))
    else:
        grads_z, grads_e, m_clean = clean_gradients(model, site_list, clean, metric)
    eff_z, eff_e = {}, {}
    for s in site_list:
        h = s.hook
        ez = (grads_z[h] * delta_z[h]).sum(0)  # [pos, d_sae]; grads already carry the 1/batch
        ee = (grads_e[h] * delta_e[h]).sum((0, 2))  # [pos]
        eff_z[h], eff_e[h] = (ez, ee) if per_position else (ez.sum(0), ee.sum(0))
    return NodeEffects(site_list, eff_z, eff_e, grads_z, grads_e, delta_z, delta_e,
                       per_position, method, m_clean)


def clean_gradients(
    model: Any, site_list: list[Site], tokens: torch.Tensor, metric: Metric
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """dm/dz and dm/derr at every site on the clean run (total derivatives, SAEs passed
    straight through on the way upstream)."""
    leaves: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def make(site: Site):
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            xf = flat(x)
            xw = upcast(xf.detach())
            z = encode(site.sae, xw)
            dz = torch.zeros_like(z, requires_grad=True)
            de = torch.zeros_like(xw, requires_grad=True)
            leaves[site.hook] = (dz, de)
            # value is exactly x; d/dx = I (straight through), d/ddz = decoder, d/dde = I
            out = xf + (decode(site.sae, z + dz) - decode(site.sae, z)) + de
            return out.to(x.dtype).reshape(x.shape)

        return hook

    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(s.hook, make(s)) for s in site_list])
        m = reduce_metric(metric(logits))
        m.backward()
    gz = {h: dz.grad.detach() for h, (dz, _) in leaves.items()}
    ge = {h: de.grad.detach() for h, (_, de) in leaves.items()}
    return gz, ge, float(m.detach())


def gauss_legendre(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature points and weights on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(steps)
    return torch.tensor((x + 1) / 2, dtype=torch.float64), torch.tensor(w / 2)


def _ig_gradients(
    model: Any, site: Site, tokens: torch.Tensor, metric: Metric, clean: tuple, base: tuple,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Path-averaged gradients at one site between its clean and baseline states."""
    (zc, ec), (zb, eb) = clean, base
    alphas, weights = gauss_legendre(steps)
    gz, ge = torch.zeros_like(zc), torch.zeros_like(ec)
    for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
        z = (zc + a * (zb - zc)).requires_grad_(True)
        e = (ec + a * (eb - ec)).requires_grad_(True)

        def hook(x: torch.Tensor, hook: Any, z: torch.Tensor = z, e: torch.Tensor = e):
            return (decode(site.sae, z) + e).to(x.dtype).reshape(x.shape)

        with torch.enable_grad():
            m = reduce_metric(metric(model.run_with_hooks(tokens, fwd_hooks=[(site.hook, hook)])))
            dz, de = torch.autograd.grad(m, [z, e])
        gz += w * dz
        ge += w * de
    return gz, ge


@torch.no_grad()
def exact_node_effects(
    model: Any, saes: Any, clean: torch.Tensor, metric: Metric, *,
    patch: torch.Tensor | None = None, baseline: str | None = None,
    nodes: list[tuple[str, int, int]] | None = None,
) -> pd.DataFrame:
    """Ground truth by activation patching: one forward pass per node (hook, feature, pos),
    feature -1 for the error node. Slow; meant for tests and small checks."""
    site_list = sites(model, saes)
    by_hook = {s.hook: s for s in site_list}
    baseline = baseline or ("patch" if patch is not None else "zero")
    states = capture(model, site_list, clean)
    base = baseline_states(model, site_list, states, patch, baseline)
    m0 = reduce_metric(metric(model(clean)))
    if nodes is None:
        nodes = [(s.hook, f, p) for s in site_list for p in range(clean.shape[1])
                 for f in range(-1, states[s.hook][0].shape[-1])]
    rows = []
    for hook_name, feature, pos in nodes:
        site = by_hook[hook_name]
        z, e = (t.clone() for t in states[hook_name])
        if feature < 0:
            e[:, pos] = base[hook_name][1][:, pos]
        else:
            z[:, pos, feature] = base[hook_name][0][:, pos, feature]

        def hook(x, hook, z=z, e=e, site=site):
            return (decode(site.sae, z) + e).to(x.dtype).reshape(x.shape)

        m = reduce_metric(metric(model.run_with_hooks(clean, fwd_hooks=[(hook_name, hook)])))
        rows.append({"node_id": node_id(hook_name, feature, pos), "hook": hook_name,
                     "feature": feature, "pos": pos, "effect": float(m - m0)})
    return pd.DataFrame(rows)
