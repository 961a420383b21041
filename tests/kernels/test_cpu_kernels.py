"""The numba CPU kernels of the sparse step (row top-k with AuxK, per-latent segment sums,
gathered dot products, the blocked encoder) against their torch references, and the dispatch
that picks them."""

from __future__ import annotations

import pytest
import torch

from featlab.kernels import dispatch, encode
from featlab.kernels.encode import select_topk, topk_encode
from featlab.kernels.segments import coo_segment_sum, gather_dot, segment_outer, segment_sum
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


@pytest.mark.parametrize("width", [7, 40, 1000])
def test_row_topk_of_constant_and_infinite_rows(width: int) -> None:
    """The floor's bisection meets rows of one value (every block maximum equal) and rows
    holding infinities (no finite midpoint) and still selects as a stable sort does."""
    g = torch.Generator().manual_seed(width)
    pre = torch.randn(4, width, generator=g)
    pre[0] = 2.0
    pre[1, ::3] = float("-inf")
    pre[2, 1::5] = float("inf")
    pre[3] = float("-inf")
    pre[3, width // 2] = 1.0
    k = 5
    got = select_topk(pre, k, cpu_kernel=True)
    order = torch.sort(pre, dim=1, descending=True, stable=True).indices[:, :k]
    assert torch.equal(got.indices[:3], order[:3])
    assert got.indices[0].tolist() == list(range(k))
    assert torch.equal(got.values, pre.gather(1, order).relu())
    assert got.indices[3, 0] == width // 2 and len(set(got.indices[3].tolist())) == k


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


@pytest.mark.parametrize(
    ("width", "k"),
    [(15, 4), (48, 5), (40, 8), (600, 40), (16 * 64 + 7, 8), (16 * 200 + 3, 32), (3000, 64)],
    ids=["partial-block", "k-above-blocks", "k-equal-blocks", "shallow-blocks", "one-chunk",
         "chunks", "big-k"],
)  # fmt: skip
def test_row_topk_across_block_and_chunk_boundaries(width: int, k: int) -> None:
    """The kernel scans blocks of 16 (stripes of columns) in chunks of 64 blocks and the columns
    past the last full stripe on their own; rows whose width or k sit at those
    edges select exactly what torch.topk selects, ties included. Rows with no more blocks of 16
    than k (shallow-blocks: the main top 40 of 600 and AuxK's 21 of about 240) take shallower
    stripes."""
    g = torch.Generator().manual_seed(width)
    # few distinct values: ties everywhere, resolved to the lower index on both sides
    pre = torch.randint(-50, 50, (40, width), generator=g).float()
    pre[:5] = torch.linspace(-1, 1, width).flip(0)  # descending rows: the top k come first
    dead = torch.rand(width, generator=g) < 0.4
    got = select_topk(pre, k, aux_k=k // 2 + 1, dead_mask=dead, cpu_kernel=True)
    vals, _ = pre.topk(k, dim=1)
    assert torch.equal(got.values, vals.relu())
    # ties to the lower index: the reference is a stable descending sort
    order = torch.sort(pre, dim=1, descending=True, stable=True).indices[:, :k]
    assert torch.equal(got.indices, order)
    masked = pre.masked_fill(~dead, float("-inf"))
    aux_order = torch.sort(masked, dim=1, descending=True, stable=True).indices[:, : k // 2 + 1]
    assert torch.equal(got.aux_indices, aux_order)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("with_sum", [False, True])
def test_segment_outer_kernel_matches_the_sparse_product(
    transposed: bool, with_sum: bool, poison: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = torch.Generator().manual_seed(7)
    src = torch.randn(200, 24, generator=g)
    idx = torch.randint(0, 150, (200, 9), generator=g)  # latents >= 150 of 160 never indexed
    w = torch.randn(200, 9, generator=g).relu()  # about half the weights are zero: skipped

    def run(src, w):
        return segment_outer(src, w, idx, 160, transposed=transposed, backend="torch",
                             with_sum=with_sum, out_dtype=src.dtype)  # fmt: skip

    got, got_sum = run(src, w)
    monkeypatch.setenv("FEATLAB_KERNELS", "torch")
    want, want_sum = run(src, w)
    want64, want64_sum = run(*to_float64((src, w)))
    assert got.shape == ((24, 160) if transposed else (160, 24))
    assert_close("segment_outer", got, want, want64, reduction=200 * 9 // 150)
    if with_sum:
        assert_close("sums", got_sum, want_sum, want64_sum, reduction=200 * 9 // 150)
    else:
        assert got_sum is None
    monkeypatch.setenv("FEATLAB_KERNELS", "auto")
    assert torch.equal(run(src, w)[0], got)  # deterministic


def test_gather_dot_kernel_matches_embedding_bag(
    poison: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = torch.Generator().manual_seed(8)
    grad = torch.randn(70, 33, generator=g)
    W = torch.randn(120, 33, generator=g)
    idx = torch.randint(0, 120, (70, 6), generator=g)
    got = gather_dot(grad, idx, W, transposed=False, backend="torch")
    monkeypatch.setenv("FEATLAB_KERNELS", "torch")
    want = gather_dot(grad, idx, W, transposed=False, backend="torch")
    want64 = gather_dot(*to_float64((grad,)), idx, W.double(), transposed=False, backend="torch")
    assert_close("gather_dot", got, want, want64, reduction=33)


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
@pytest.mark.parametrize("aux_k", [0, 6])
def test_blocked_encoder_equals_the_dense_reference(
    aux_k: int, ties: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU forward computes pre-activations a block of rows at a time; with blocks of 64
    rows, 150 rows take three blocks (the last one short) and select what one dense product
    selects. With AuxK it orders the encoder's columns live, then dead; with small integer
    weights (ties everywhere) the selection still breaks ties to the lower column, as a
    stable sort of the dense pre-activations does."""
    monkeypatch.setattr(encode, "_BLOCK_BYTES", 1)  # the 64-row minimum decides
    g = torch.Generator().manual_seed(9)
    x = torch.randn(150, 20, generator=g, dtype=torch.float64)
    W = torch.randn(20, 300, generator=g, dtype=torch.float64)
    b_enc = torch.randn(300, generator=g, dtype=torch.float64)
    b_dec = torch.randn(20, generator=g, dtype=torch.float64)
    if ties:  # exact small integers: every product and sum is exact in fp64
        x, W, b_enc = x.sign(), W.mul(2).round(), b_enc.round()
        b_dec = torch.zeros_like(b_dec)
    dead = torch.rand(300, generator=g) < 0.2
    got = encode.encode_select_blocked(x, W, b_enc, b_dec, 7, aux_k, dead if aux_k else None)
    want = encode.topk_encode_reference(x, W, b_enc, 7, b_dec=b_dec, aux_k=aux_k,
                                        dead_mask=dead if aux_k else None)  # fmt: skip
    if ties:  # torch.topk does not promise an order among ties: a stable sort does
        pre = encode.preacts_reference(x, W, b_enc, b_dec)
        order = torch.sort(pre, dim=1, descending=True, stable=True).indices[:, :7]
        assert torch.equal(got.indices, order)
        if aux_k:
            masked = pre.masked_fill(~dead, float("-inf"))
            order = torch.sort(masked, dim=1, descending=True, stable=True).indices[:, :aux_k]
            assert torch.equal(got.aux_indices, order)
        want = want._replace(indices=got.indices, aux_indices=got.aux_indices)
    for name, a, b in zip(got._fields, got, want, strict=True):
        if b is None:
            assert a is None, name
        elif b.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
        else:
            assert torch.equal(a, b), name
