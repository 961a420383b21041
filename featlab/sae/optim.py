"""The optimizers `train_saes` trains with, and the learning rate each defaults to.

"adam" (the default): torch Adam under featlab's schedule (linear warm-up, linear decay to 0
over the last ``decay_frac`` of the steps), default lr 4e-3 / sqrt(max(d_sae, 1024) / 2**14):
the width scaling Gao et al. (2024) fitted for TopK, at 20x their constant, which
experiments/sae_frontier.py found best at the budgets featlab trains at (docs/sae_pipeline.md;
Gao et al. fitted theirs to billions of tokens). "signum": sign descent (the steepest descent
in the L-inf norm) made schedule-free (Defazio et al. 2024, `schedulefree.ScheduleFreeWrapper`,
momentum 0.95), the optimizer EleutherAI's sparsify trains with. "adam_sf": schedule-free AdamW
(`schedulefree.AdamWScheduleFree`, no weight decay). The schedule-free ones keep only the
warm-up and no decay: their iterate average already does what a decay does, so a run can stop
at any step. They evaluate at the averaged weights, which `finish` swaps in at the end of a run
(and which a checkpoint does not hold: it saves the training point and the optimizer state,
from which the average is recovered).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from featlab.sae.config import DEFAULT_OPTIMIZER, OPTIMIZERS

# learning rate at 2**14 latents (signum: sparsify's); each scales it by 1 / sqrt(width)
_BASE_LR = {"adam": 4e-3, "signum": 5e-3, "adam_sf": 2e-3}
_REFERENCE_WIDTH = 2**14
# ...down to 1024 latents and no further: 1 / sqrt(width) gives a 32-latent SAE 22x the lr of
# 2**14 latents, at which tiny SAEs lose most latents (at 256 latents 1x and 2x the 1024 lr
# reach the same FVU in the sweep)
_SMALLEST_SCALED_WIDTH = 1024


def check_optimizer(name: str) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def default_lr(d_sae: int, optimizer: str = DEFAULT_OPTIMIZER) -> float:
    """The optimizer's lr at 2**14 latents times sqrt(2**14 / d_sae), with d_sae taken as
    at least 1024."""
    check_optimizer(optimizer)
    width = max(d_sae, _SMALLEST_SCALED_WIDTH)
    return _BASE_LR[optimizer] / math.sqrt(width / _REFERENCE_WIDTH)


def schedule_free(optimizer: str) -> bool:
    return optimizer != "adam"


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float,
    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
) -> Any:
    """A fresh optimizer, in training mode for the schedule-free ones."""
    check_optimizer(name)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)
    import schedulefree

    if name == "signum":
        opt = schedulefree.ScheduleFreeWrapper(_SignSGD(params, lr=lr), momentum=0.95)
    else:
        # warm-up comes from featlab's own lr schedule, as for the other two
        opt = schedulefree.AdamWScheduleFree(params, lr=lr, betas=betas, eps=eps,
                                             warmup_steps=0, weight_decay=0.0)  # fmt: skip
    opt.train()
    return opt


def finish(opt: Any) -> None:
    """Leave the parameters at the point the optimizer evaluates at (the schedule-free
    average; Adam's last iterate is already there)."""
    if hasattr(opt, "eval"):
        opt.eval()


class _SignSGD(torch.optim.Optimizer):
    """p -= lr * sign(grad): Bernstein et al. (2018)'s signSGD; momentum comes from the
    schedule-free wrapper around it (together: Signum)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
