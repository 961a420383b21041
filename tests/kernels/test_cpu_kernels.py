"""The numba CPU kernels of the sparse step (row top-k, per-latent segment sum) against
their torch references, and the dispatch that picks them."""

from __future__ import annotations

import pytest
import torch

from featlab.kernels import dispatch
from featlab.kernels.encode import select_topk, topk_encode
from featlab.kernels.segments import coo_segment_sum, segment_sum
from tests.numerics import assert_close, to_float64

pytestmark = pytest.mark.skipif(not dispatch.numba_available(), reason="numba not installed")


def test_row_topk_matches_torch_topk(poison: None) -> None:
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(70, 301, generator=g)  # continuous values: tie-free
    dead = torch.rand(301, generator=g) < 0.3
    got = select_topk(pre, 7, aux_k=11, dead_mask=dead, cpu_kernel=True)
    want = select_topk(pre, 7, aux_k=11, dead_mask=dead)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    assert dead[got.aux_indices].all()


def test_row_topk_ties_go_to_the_lower_index_and_short_rows_fill_with_minus_inf() -> None:
    pre = torch.tensor([[1.0, 3.0, 3.0, 0.5, 3.0]])
    out = select_topk(pre, 2, cpu_kernel=True)
    assert out.indices.tolist() == [[1, 2]] and out.values.tolist() == [[3.0, 3.0]]
    dead = torch.tensor([False, False, False, True, False])  # one candidate for aux_k = 3
    out = select_topk(pre, 1, aux_k=3, dead_mask=dead, cpu_kernel=True)
    assert out.aux_indices[0, 0] == 3 and len(set(out.aux_indices[0].tolist())) == 3
    assert out.aux_values[0].tolist() == [0.5, 0.0, 0.0]  # ReLU(-inf) = 0, like the reference


def test_row_topk_keeps_the_gradient_of_the_selected_values() -> None:
    pre = torch.randn(5, 40, requires_grad=True)
    select_topk(pre, 3, cpu_kernel=True).values.sum().backward()
    assert int((pre.grad != 0).sum()) == int((select_topk(pre, 3).values > 0).sum())


@pytest.mark.parametrize("nnz", [0, 1, 5000])
def test_segment_sum_matches_the_sparse_product(nnz: int, poison: None) -> None:
    g = torch.Generator().manual_seed(nnz)
    src = torch.randn(300, 24, generator=g)
    rows = torch.randint(0, 300, (nnz,), generator=g)
    cols = torch.randint(0, 90, (nnz,), generator=g)
    w = torch.randn(nnz, generator=g)
    got = segment_sum(rows, cols, w, src, 90)
    want = coo_segment_sum(rows, cols, w, src, 90).to_dense()
    want64 = coo_segment_sum(*to_float64((rows, cols, w, src)), 90).to_dense()
    # a column sums about nnz / 90 weighted rows
    assert_close("segment_sum", got, want, want64, reduction=max(1, nnz // 90))
    assert torch.equal(got, segment_sum(rows, cols, w, src, 90))  # deterministic


def test_training_step_uses_the_kernels_unless_forced_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU step with the kernels equals the forced-torch step (up to summation order)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 16, generator=g)
    W = torch.randn(16, 200, generator=g)
    b = torch.zeros(200)

    def grads(x, W, b) -> list[torch.Tensor]:
        W_, b_ = W.clone().requires_grad_(), b.clone().requires_grad_()
        out = topk_encode(x, W_, b_, 5)
        (out.values * torch.arange(5.0)).sum().backward()
        return [out.values.detach(), out.indices, W_.grad, b_.grad]

    monkeypatch.setenv("FEATLAB_KERNELS", "auto")
    fast = grads(x, W, b)
    monkeypatch.setenv("FEATLAB_KERNELS", "torch")
    slow, slow64 = grads(x, W, b), grads(*to_float64((x, W, b)))
    # values: a dot over d_in; gradients: sums over the 64 rows; indices: exact
    terms = {"values": 16, "indices": 1, "dW": 64, "db": 64}
    for (name, n), a, r, r64 in zip(terms.items(), fast, slow, slow64, strict=True):
        assert_close(name, a, r, r64, reduction=n)
