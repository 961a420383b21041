"""Edge effects between nodes of SAE sites (Marks et al. 2024, linearised).

For an upstream node u and a downstream node d, IE(u -> d) = (dm/dd) . (dd/du) . (u_patch -
u_clean): how much of u's effect on the metric flows through d. dm/dd is the gradient the
node effects used (clean run for "atp", averaged over d's integrated-gradients path for
"ig", as in the reference implementation); dd/du is taken on the clean run.

dd/du is the *direct* derivative: the features and error of every site strictly between u
and d are held fixed (stop-gradient), so the edge is the part of u's effect on d that no
other node of the graph mediates. Hence edges join each site to every later site it reaches
without passing another one: with residual-stream sites only, successive sites; with
resid_{l-1}, attn_l, mlp_l, resid_l, the edges resid -> attn / mlp / resid, attn -> mlp /
resid and mlp -> resid of Marks et al. A pair with no direct path gives no rows.

One clean forward serves every pair: each site returns its detached activation plus zero
leaves for its features and error, so gradients stop at every site and a site's leaves
carry exactly its direct influence downstream. Then one backward pass per kept downstream
node reaches the leaves of all earlier sites at once.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from featlab.circuits.nodes import NodeEffects
from featlab.circuits.splice import Site, decode, encode, flat, upcast
from featlab.errors import UserError


def edge_effects(
    model: Any,
    effects: NodeEffects,
    clean: torch.Tensor,
    keep: pd.DataFrame,
) -> pd.DataFrame:
    """Edges (src, dst, effect) between the kept nodes of every pair of sites joined by a
    direct path (see the module docstring).

    keep: node rows (from `NodeEffects.frame()`, typically thresholded) to connect.
    """
    rows: list[tuple[str, str, float]] = []
    kept_hooks = set(keep["hook"])
    leaves, targets, order = _forward(model, effects.sites, clean)
    for i, down in enumerate(order):
        ups = [h for h in order[:i] if h in kept_hooks]
        down_nodes = keep[keep["hook"] == down]
        if down_nodes.empty or not ups:
            continue
        z_d, e_d = targets[down]
        inputs = [t for h in ups for t in leaves[h]]
        up_nodes = {h: keep[keep["hook"] == h] for h in ups}
        for dst, f, p in zip(down_nodes["node_id"], down_nodes["feature"], down_nodes["pos"],
                             strict=True):
            f, p = int(f), int(p)
            sel = slice(None) if p < 0 else slice(p, p + 1)
            if f < 0:
                y = (effects.grad_err[down][:, sel] * e_d[:, sel]).sum()
            else:
                y = (effects.grad_z[down][:, sel, f] * z_d[:, sel, f]).sum()
            grads = torch.autograd.grad(y, inputs, retain_graph=True, allow_unused=True)
            for j, up in enumerate(ups):
                gz, ge = grads[2 * j], grads[2 * j + 1]
                if gz is None and ge is None:
                    continue  # every path from `up` to `down` passes another site
                rows.extend(_edge_rows(effects, up, up_nodes[up], str(dst), gz, ge,
                                       leaves[up]))
    return pd.DataFrame(rows, columns=["src", "dst", "effect"])


def _edge_rows(effects: NodeEffects, up: str, up_nodes: pd.DataFrame, dst: str,
               gz: torch.Tensor | None, ge: torch.Tensor | None,
               leaves: tuple[torch.Tensor, torch.Tensor]) -> list[tuple[str, str, float]]:
    """(src, dst, effect) for every kept node of site `up` into one downstream node."""
    gz = torch.zeros_like(leaves[0]) if gz is None else gz
    ge = torch.zeros_like(leaves[1]) if ge is None else ge
    w_z = (gz * effects.delta_z[up]).sum(0)  # [pos, d_sae] (grads carry 1/batch)
    w_e = (ge * effects.delta_err[up]).sum((0, 2))  # [pos]
    if not effects.per_position:
        w_z, w_e = w_z.sum(0, keepdim=True), w_e.sum(0, keepdim=True)
    # summed nodes have pos -1, which indexes the single row
    uf = torch.tensor(up_nodes["feature"].to_numpy(dtype="int64"))
    up_pos = torch.tensor(up_nodes["pos"].to_numpy(dtype="int64")).clamp_min(0)
    vals = torch.where(uf < 0, w_e[up_pos], w_z[up_pos, uf.clamp_min(0)])
    return list(zip(up_nodes["node_id"], [dst] * len(vals), vals.tolist(), strict=True))


def _forward(model: Any, site_list: list[Site], tokens: torch.Tensor):
    """Clean forward with the features/error of every site kept in the graph as targets and
    zero leaves added after a stop-gradient. Returns (leaves, targets, hooks in the order
    they ran): the order of the forward pass, which `model.hook_dict` need not follow."""
    leaves: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    targets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    order: list[str] = []

    def make(site: Site):
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            xf = upcast(flat(x))
            z = encode(site.sae, xf)
            targets[site.hook] = (z, xf - decode(site.sae, z))
            dz = torch.zeros_like(z, requires_grad=True)
            de = torch.zeros_like(xf, requires_grad=True)
            leaves[site.hook] = (dz, de)
            order.append(site.hook)
            # value is exactly x; only the leaves carry gradient on to later sites
            zc = z.detach()
            out = xf.detach() + (decode(site.sae, zc + dz) - decode(site.sae, zc)) + de
            return out.to(x.dtype).reshape(x.shape)

        return hook

    with torch.enable_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(s.hook, make(s)) for s in site_list])
    if len(order) != len(set(order)):
        raise UserError(f"an SAE hook ran more than once in one forward pass ({order}); "
                        "edges need each site to run once: put the SAE at a hook that does")
    return leaves, targets, order
