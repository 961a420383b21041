"""Splicing SAEs into a hooked model: the shared machinery of nodes, edges and faithfulness.

At each chosen hook the activation x is written as x = decode(z) + err, with z = encode(x)
the SAE features and err the SAE error node (Marks et al. 2024, "Sparse Feature Circuits").
Splicing never changes the model's output: the hook returns exactly decode(z) + err.
Activations of any shape `[batch, pos, ...]` are flattened to `[batch, pos, d_in]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

Metric = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Site:
    """One hook with its SAE. `order` is the hook's index in `model.hook_dict`, which for
    TransformerLens lists `hook_resid_pre` after `hook_attn_out`; edges therefore follow the
    order in which the hooks run instead."""

    hook: str
    sae: Any
    sae_id: str
    layer: int
    order: int


def sites(model: Any, saes: Any) -> list[Site]:
    """Normalise `saes` (dict hook -> SAE, dict sae_id -> SAE, or a list with cfg.hook_name)
    into sites sorted by their hooks' order in `model.hook_dict` (see `Site`)."""
    items: list[tuple[str, str, Any]] = []
    if isinstance(saes, Mapping):
        for key, sae in saes.items():
            hook = key if key in model.hook_dict else getattr(sae.cfg, "hook_name", None)
            items.append((str(key), hook, sae))
    else:
        for sae in saes if isinstance(saes, (list, tuple)) else [saes]:
            hook = getattr(sae.cfg, "hook_name", None)
            items.append((str(hook), hook, sae))
    names = list(model.hook_dict)
    out = []
    for sae_id, hook, sae in items:
        if hook not in model.hook_dict:
            raise ValueError(
                f"SAE {sae_id!r} is at hook {hook!r}, which the model lacks; valid hooks: "
                f"{[n for n in names if 'hook_' in n]}"
            )
        parts = hook.split(".")
        layer = int(parts[1]) if parts[0] == "blocks" and len(parts) > 2 else -1
        out.append(Site(hook, sae, sae_id, layer, names.index(hook)))
    if len({s.hook for s in out}) != len(out):
        raise ValueError("two SAEs at the same hook; give one SAE per hook")
    if not out:
        raise ValueError("no SAEs given; pass a dict hook -> SAE or a list of SAEs")
    return sorted(out, key=lambda s: s.order)


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], x.shape[1], -1)


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 at least: the SAE arithmetic of a bf16 / fp16 model runs in fp32, and a
    float64 model (as the exact tests use) stays in float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def encode(sae: Any, x: torch.Tensor) -> torch.Tensor:
    """`[batch, pos, d_in]` -> `[batch, pos, d_sae]`."""
    b, p, d = x.shape
    return sae.encode(x.reshape(b * p, d)).reshape(b, p, -1)


def decode(sae: Any, z: torch.Tensor) -> torch.Tensor:
    b, p, f = z.shape
    return sae.decode(z.reshape(b * p, f)).reshape(b, p, -1)


def reduce_metric(value: torch.Tensor) -> torch.Tensor:
    """Per-example metric values `[batch]` (or a scalar) -> their mean."""
    value = upcast(value)
    return value.mean() if value.ndim else value


def run_metric(model: Any, tokens: torch.Tensor, metric: Metric, hooks: list) -> torch.Tensor:
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    return reduce_metric(metric(logits))


@torch.no_grad()
def capture(model: Any, site_list: list[Site], tokens: torch.Tensor) -> dict[str, tuple]:
    """(z `[batch, pos, d_sae]`, err `[batch, pos, d_in]`) at every site on `tokens`."""
    out: dict[str, tuple] = {}

    def make(site: Site):
        def hook(x: torch.Tensor, hook: Any) -> None:
            xf = upcast(flat(x))
            z = encode(site.sae, xf)
            out[site.hook] = (z, xf - decode(site.sae, z))

        return hook

    model.run_with_hooks(tokens, fwd_hooks=[(s.hook, make(s)) for s in site_list])
    return out


def baseline_states(
    model: Any, site_list: list[Site], clean: dict[str, tuple], patch: torch.Tensor | None,
    baseline: str,
) -> dict[str, tuple]:
    """The states nodes are patched to: a corrupted run ("patch"), zeros ("zero"), the mean
    over the batch of the clean run at each position ("mean", as Marks et al.: templated
    prompts whose positions align), or its mean over batch and positions ("mean_all", for
    prompts whose positions do not align)."""
    if baseline == "patch":
        if patch is None:
            raise ValueError("baseline='patch' needs patch tokens (the corrupted input)")
        return capture(model, site_list, patch)
    if baseline == "zero":
        return {h: (torch.zeros_like(z), torch.zeros_like(e)) for h, (z, e) in clean.items()}
    if baseline in ("mean", "mean_all"):
        dims = (0,) if baseline == "mean" else (0, 1)
        return {h: (z.mean(dims, keepdim=True).expand_as(z),
                    e.mean(dims, keepdim=True).expand_as(e)) for h, (z, e) in clean.items()}
    raise ValueError(f"unknown baseline {baseline!r}; use 'patch', 'zero', 'mean' or "
                     "'mean_all'")


# -- metrics -------------------------------------------------------------------------------------
def logit_metric(pos: torch.Tensor | int, token: torch.Tensor | int) -> Metric:
    """Logit of `token` at `pos`, per example (both may be per-example tensors `[batch]`)."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        b = torch.arange(logits.shape[0])
        return logits[b, torch.as_tensor(pos), torch.as_tensor(token)]

    return metric


def logprob_metric(pos: torch.Tensor | int, token: torch.Tensor | int) -> Metric:
    """Log-probability of `token` at `pos`, per example."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        b = torch.arange(logits.shape[0])
        return logits[b, torch.as_tensor(pos)].log_softmax(-1)[b, torch.as_tensor(token)]

    return metric


def logit_diff_metric(
    pos: torch.Tensor | int, correct: torch.Tensor | int, wrong: torch.Tensor | int
) -> Metric:
    """logit[correct] - logit[wrong] at `pos`, per example."""
    good, bad = logit_metric(pos, correct), logit_metric(pos, wrong)
    return lambda logits: good(logits) - bad(logits)
