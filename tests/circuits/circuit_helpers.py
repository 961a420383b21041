"""Helpers of the circuit tests: a toy hooked model that is linear in its hooks, linear and
TopK SAEs, and brute-force direct effects for checking edges."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedRootModule import HookedRootModule


@dataclass(frozen=True)
class Cfg:
    kind: str
    d_in: int
    d_sae: int
    hook_name: str
    k: int | None = None


class LinearSAE(nn.Module):
    """z = (x - b_dec) W_enc (no nonlinearity), so every node is linear in the input."""

    def __init__(self, d_in: int, d_sae: int, hook: str, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_enc = nn.Parameter(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
        self.W_dec = nn.Parameter(torch.randn(d_sae, d_in, generator=g) / d_sae**0.5)
        self.b_dec = nn.Parameter(torch.randn(d_in, generator=g) * 0.1)
        self.cfg = Cfg("linear", d_in, d_sae, hook)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec


class TopKSAE(LinearSAE):
    def __init__(self, d_in: int, d_sae: int, k: int, hook: str, seed: int = 0) -> None:
        super().__init__(d_in, d_sae, hook, seed)
        self.cfg = Cfg("topk", d_in, d_sae, hook, k)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(super().encode(x))
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values)


class Block(nn.Module):
    def __init__(self, d: int, g: torch.Generator) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(d, d, generator=g) / d**0.5)
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mixes positions linearly too (causal cumulative mean) so positions interact
        mixed = x.cumsum(1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1)
        return self.hook_resid_post(x + mixed @ self.W)


class LinearToy(HookedRootModule):
    """Embedding -> 2 linear blocks -> linear unembedding: linear in every hook."""

    def __init__(self, d_vocab: int = 11, d: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_E = nn.Parameter(torch.randn(d_vocab, d, generator=g))
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList([Block(d, g), Block(d, g)])
        self.W_U = nn.Parameter(torch.randn(d, d_vocab, generator=g) / d**0.5)
        self.setup()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.hook_embed(self.W_E[tokens])
        for block in self.blocks:
            x = block(x)
        return x @ self.W_U


def direct_response(model, saes, tokens, states, up, node, step, down, hold):
    """Brute-force direct effect: (z, err) at `down` with upstream `node` = (feature, pos) of
    hook `up` moved by `step` x (patch - clean) (`states` = (clean, patch) captures), every hook
    in `hold` pinned to its clean activation, and the rest of the model running normally."""
    clean, patch = states
    feature, pos = node
    z, e = (t.clone() for t in clean[up])
    if feature < 0:
        e[:, pos] += step * (patch[up][1][:, pos] - e[:, pos])
    else:
        z[:, pos, feature] += step * (patch[up][0][:, pos, feature] - z[:, pos, feature])
    out = {}

    def set_up(x, hook):
        return (saes[up].decode(z) + e).reshape(x.shape)

    def pin(x, hook):
        zh, eh = clean[hook.name]
        return (saes[hook.name].decode(zh) + eh).reshape(x.shape)

    def read(x, hook):
        out["z"] = saes[down].encode(x)
        out["e"] = x - saes[down].decode(out["z"])

    hooks = [(up, set_up), (down, read)] + [(h, pin) for h in hold]
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=hooks)
    return out["z"], out["e"]


def edge_values(grad_z, grad_err, dz, de):
    """sum over the batch of dm/dd * (change of d), per downstream node: `[pos, d_sae + 1]`
    with the error node last (the layout `edge_matrix` reads edges into)."""
    return torch.cat([(grad_z * dz).sum(0), (grad_err * de).sum((0, 2))[:, None]], dim=1)


def edge_matrix(edges, src, down, n_pos, d_sae):
    """Edges from node id `src` into every node of hook `down`, as `[pos, d_sae + 1]` (NaN
    where no edge was computed)."""
    out = torch.full((n_pos, d_sae + 1), float("nan"), dtype=torch.float64)  # effects are float64
    rows = edges[(edges["src"] == src) & edges["dst"].str.startswith(down + "/")]
    for dst, value in zip(rows["dst"], rows["effect"], strict=True):
        name, pos = dst.rsplit("/", 1)[1].split("@")
        out[int(pos), d_sae if name == "err" else int(name)] = value
    return out
