"""BaseConv: y = conv(u) * (W u + b) + u with a short causal depthwise convolution."""

from __future__ import annotations

import copy

import pytest
import torch

from featlab.models import HookedHybrid, HybridConfig
from featlab.models.mixers.conv import BaseConv
from tests.numerics import assert_close


def cfg(**kw: object) -> HybridConfig:
    return HybridConfig(layers=("conv",), d_model=16, n_heads=2, d_vocab=32, n_ctx=40, **kw)


@pytest.mark.parametrize("pos", [1, 3, 17])
def test_parallel_equals_recurrent(pos: int) -> None:
    mixer = BaseConv(cfg())
    mixer64 = copy.deepcopy(mixer).double()
    x = torch.randn(2, pos, 16)
    with torch.no_grad():
        want, want64 = mixer.recurrent_forward(x), mixer64.recurrent_forward(x.double())
        # the gate's projection over d_model = 16 times a convolution over the kernel
        assert_close("parallel", mixer(x), want, want64, reduction=16 + mixer.cfg.conv_kernel)


def test_formula_from_hooks() -> None:
    model = HookedHybrid(cfg()).eval()
    _, cache = model.run_with_cache(torch.randint(0, 32, (2, 9)))
    u = cache["blocks.0.ln1.hook_normalized"]
    v, gate = cache["blocks.0.mixer.hook_v"], cache["blocks.0.mixer.hook_out_gate"]
    assert v.shape == gate.shape == (2, 9, 16)
    torch.testing.assert_close(cache["blocks.0.hook_mixer_out"], v * gate + u)


@pytest.mark.parametrize("kernel", [2, 4])
def test_receptive_field_is_the_kernel(kernel: int) -> None:
    """Input t reaches the mixer output at t .. t+kernel-1 and nowhere else."""
    mixer = BaseConv(cfg(conv_kernel=kernel))
    x = torch.randn(1, 12, 16)
    y = x.clone()
    y[:, 5] += 1.0
    with torch.no_grad():
        diff = (mixer(x) - mixer(y)).abs().amax(-1)[0]
    changed = (diff > 1e-7).nonzero().flatten().tolist()
    assert changed == list(range(5, 5 + kernel))
