"""The peer libraries featlab is measured against, each trained the way its own trainer does.

sparsify (EleutherAI, `eai-sparsify` on PyPI) and SAEDashboard pin transformer-lens /
transformers versions featlab cannot share, so they live in the venv `make bench-peers`
builds (`.venv-peers`, which reuses featlab's packages and adds the peers with ``--no-deps``).
`require(module)` turns a missing peer into one line naming that target.

`train_sparsify` is sparsify 1.3.3's `Trainer.fit` inner loop for one SAE fed flat activation
batches, with its defaults (trainer.py, "signum" branch and the step body):
`SparseCoder(d_in, SparseCoderConfig(num_latents, k))` seeded by ``torch.manual_seed``,
``b_dec`` set to the first batch's mean, the decoder renormalised before every forward, the
FVU loss (``out.fvu``; AuxK off, ``auxk_alpha=0``), the decoder gradient's parallel component
removed, then ``ScheduleFreeWrapper(SignSGD, momentum=0.95)`` at lr ``5e-3 / sqrt(d_sae /
2**14)`` with no schedule, and the optimizer switched to ``eval()`` (the averaged weights) at
the end, as its `save` does. The Trainer drives this loop from hooks on a language model;
feeding the activations directly removes the model, not a step of the SAE's training.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch

PEERS_HINT = "run `make bench-peers` and use .venv-peers/bin/python"


def installed(module: str) -> bool:
    """Whether a peer library can be imported here (without importing it)."""
    return importlib.util.find_spec(module) is not None


def require(module: str) -> Any:
    """Import a peer library or exit with one line saying how to get it."""
    if module == "sparsify":
        # its Triton decoder needs a GPU; on CPU sparsify's own eager embedding_bag path runs
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        sys.exit(f"{module} is not installed in this environment ({err}); {PEERS_HINT}")


def sparsify_lr(d_sae: int) -> float:
    """sparsify's default signum learning rate (trainer.py)."""
    return 5e-3 / (d_sae / 2**14) ** 0.5


@torch.no_grad()
def sparsify_heldout(sae: Any, x_eval: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction ``[n, d_in]``, live ``[d_sae]`` bool: latents firing on some row) of a
    trained sparsify SparseCoder on held-out rows."""
    out = sae(x_eval)
    live = torch.zeros(sae.W_dec.shape[0], dtype=torch.bool)
    live[out.latent_indices[out.latent_acts > 0].unique()] = True
    return out.sae_out, live


def train_sparsify(
    batches: Iterator[torch.Tensor], d_in: int, d_sae: int, k: int, steps: int, seed: int,
    lr: float | None = None,
) -> tuple[float, Any]:
    """Train sparsify's TopK SparseCoder as its Trainer does; returns (seconds, sae)."""
    sparsify = require("sparsify")
    from schedulefree import ScheduleFreeWrapper
    from sparsify.sign_sgd import SignSGD

    torch.manual_seed(seed)
    cfg = sparsify.SparseCoderConfig(num_latents=d_sae, k=k)
    sae = sparsify.SparseCoder(d_in, cfg, torch.device("cpu"), dtype=torch.float32)
    opt = ScheduleFreeWrapper(
        SignSGD([{"params": sae.parameters(), "lr": lr or sparsify_lr(d_sae)}]), momentum=0.95
    )
    opt.train()
    t0 = time.perf_counter()
    for step in range(steps):
        x = next(batches)
        if step == 0:
            sae.b_dec.data = x.mean(0).to(sae.dtype)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x, dead_mask=None)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
    opt.eval()
    return time.perf_counter() - t0, sae


def sparsify_recon(sae: Any) -> Any:
    def recon(x: torch.Tensor) -> torch.Tensor:
        return sae(x).sae_out

    return recon
