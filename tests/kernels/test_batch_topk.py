"""batch_topk_encode: the global top k*B selection, made from per-row candidates, is exact."""

from __future__ import annotations

import pytest
import torch

from featlab.kernels.batch_topk import batch_topk_encode
from tests.numerics import assert_close, to_float64

B, D_IN, D_SAE = 8, 16, 64


def _dense_selection(x, W, b, total):
    """What BatchTopK means: top ``total`` of the whole ReLU'd matrix, zeros dropped."""
    act = (x @ W + b).relu()
    mask = torch.zeros(act.numel(), dtype=torch.bool)
    mask[act.reshape(-1).topk(total).indices] = True
    return mask.view_as(act) & (act > 0), act


@pytest.mark.parametrize("loud", [1.0, 8.0])  # 8: one row keeps > 4k latents -> wider pass
def test_matches_dense_selection(backend: str, loud: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D_IN, generator=g)
    x[0] *= loud
    W = torch.randn(D_IN, D_SAE, generator=g) / D_IN**0.5
    b = torch.randn(D_SAE, generator=g) * 0.1
    k = 2
    out = batch_topk_encode(x, W, b, k)
    want, act = _dense_selection(x, W, b, k * B)
    got = torch.zeros_like(want)
    rows = torch.arange(B)[:, None].expand_as(out.indices)
    got[rows[out.selected], out.indices[out.selected]] = True
    assert torch.equal(got, want)
    if loud > 1:
        assert out.indices.shape[1] > 4 * k, "the test meant to force a wider second pass"
        assert want[0].sum() > 4 * k
    dense = torch.zeros_like(act)
    dense[rows[out.selected], out.indices[out.selected]] = out.values[out.selected]
    act64 = _dense_selection(*to_float64((x, W, b)), k * B)[1]
    assert_close("kept values", dense, act * want, act64 * want, reduction=D_IN)
    assert (out.values[~out.selected] == 0).all()


def test_gradient_only_through_selected(backend: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, D_IN, generator=g)
    W = (torch.randn(D_IN, D_SAE, generator=g) / D_IN**0.5).requires_grad_(True)
    b = torch.zeros(D_SAE, requires_grad=True)
    out = batch_topk_encode(x, W, b, 2)
    out.values.sum().backward()
    picked = torch.zeros(D_SAE, dtype=torch.bool)
    picked[out.indices[out.selected]] = True
    assert (b.grad[~picked] == 0).all() and (b.grad[picked] > 0).all()
