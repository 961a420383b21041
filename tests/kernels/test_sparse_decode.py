"""sparse_decode and the segment reductions behind every backward pass."""

from __future__ import annotations

import pytest
import torch

from featlab.kernels import sparse_decode, sparse_decode_reference
from featlab.kernels.segments import sort_segments
from tests.numerics import assert_close, to_float64

B, K, D_SAE, D_IN = 12, 5, 80, 24
# rounded terms behind one gradient element: the forward sum over k, the backward dot over
# d_in (d values) or the sum over the batch (dW_dec, db_dec)
GRAD_TERMS = K + D_IN + B


def _inputs(seed: int = 0, repeats: bool = False):
    g = torch.Generator().manual_seed(seed)
    if repeats:  # a latent may appear twice in one row: the sums must still be right
        idx = torch.randint(0, D_SAE // 4, (B, K), generator=g)
    else:
        idx = torch.stack([torch.randperm(D_SAE, generator=g)[:K] for _ in range(B)])
    values = torch.rand(B, K, generator=g)
    W_dec = torch.randn(D_SAE, D_IN, generator=g)
    b_dec = torch.randn(D_IN, generator=g)
    return values, idx, W_dec, b_dec


def _grads(fn, values, idx, W_dec, b_dec):
    leaves = [t.clone().requires_grad_(True) for t in (values, W_dec, b_dec)]
    out = fn(leaves[0], idx, leaves[1], leaves[2])
    weight = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape)
    ((out * weight).sum() + (out**2).sum()).backward()
    return out, [t.grad for t in leaves]


@pytest.mark.parametrize("repeats", [False, True])
def test_forward_and_backward_match_reference(backend: str, poison: None, repeats: bool) -> None:
    values, idx, W_dec, b_dec = _inputs(repeats=repeats)
    out, g = _grads(sparse_decode, values, idx, W_dec, b_dec)
    out_ref, g_ref = _grads(sparse_decode_reference, values, idx, W_dec, b_dec)
    out_ref64, g_ref64 = _grads(sparse_decode_reference, *to_float64((values, idx, W_dec, b_dec)))
    assert_close("x_hat", out, out_ref, out_ref64, reduction=K)
    for name, a, r, r64 in zip(("dvalues", "dW_dec", "db_dec"), g, g_ref, g_ref64, strict=True):
        assert_close(name, a, r, r64, reduction=GRAD_TERMS)


def test_no_bias_and_untouched_rows(backend: str) -> None:
    values, idx, W_dec, _ = _inputs(seed=1)
    W = W_dec.clone().requires_grad_(True)
    out = sparse_decode(values, idx, W)
    ref64 = sparse_decode_reference(*to_float64((values, idx, W_dec)))
    assert_close("x_hat", out, sparse_decode_reference(values, idx, W_dec), ref64, reduction=K)
    out.sum().backward()
    untouched = torch.ones(D_SAE, dtype=torch.bool)
    untouched[idx.flatten()] = False
    assert untouched.any() and (W.grad[untouched] == 0).all()
    assert (W.grad[~untouched] != 0).any()


def test_backward_is_bit_identical(backend: str) -> None:
    args = _inputs(seed=2, repeats=True)
    _, g1 = _grads(sparse_decode, *args)
    _, g2 = _grads(sparse_decode, *args)
    for a, c in zip(g1, g2, strict=True):
        assert torch.equal(a, c)


def test_sort_segments() -> None:
    idx = torch.tensor([[3, 1], [1, 0], [3, 3]])
    seg = sort_segments(idx, n_latents=5)
    assert seg.offsets.tolist() == [0, 1, 3, 3, 6, 6]
    assert seg.latent.tolist() == [0, 1, 1, 3, 3, 3]
    # Stable: within a latent, flat positions stay in row-major order.
    assert seg.order.tolist() == [3, 1, 2, 0, 4, 5]


def test_bad_input() -> None:
    values, idx, W_dec, b_dec = _inputs()
    msg = r"values has shape \(12, 5\).*indices has shape \(12, 4\)"
    with pytest.raises(ValueError, match=msg):
        sparse_decode(values, idx[:, :4], W_dec, b_dec)
    with pytest.raises(ValueError, match=r"b_dec has shape \(23,\).*\(80, 24\)"):
        sparse_decode(values, idx, W_dec, b_dec[:-1])
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 80\)"):
        sparse_decode(values, idx + D_SAE, W_dec, b_dec)
    with pytest.raises(TypeError, match="expected int64"):
        sparse_decode(values, idx.float(), W_dec, b_dec)
    with pytest.raises(TypeError, match="W_dec has dtype torch.int64"):
        sparse_decode(values, idx, W_dec.long(), b_dec)


@pytest.mark.gpu
def test_gpu_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATLAB_KERNELS", "auto")
    g = torch.Generator(device="cuda").manual_seed(0)
    idx = torch.randint(0, 32768, (8192, 64), device="cuda", generator=g)
    values = torch.rand(8192, 64, device="cuda", generator=g)
    W_dec = torch.randn(32768, 768, device="cuda", generator=g).bfloat16()
    out = sparse_decode(values, idx, W_dec)
    ref = sparse_decode_reference(values, idx, W_dec)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("transposed", [False, True])
def test_segment_outer_torch_matches_naive_sum(transposed: bool) -> None:
    """The torch path (a sparse matmul over the nonzero weights) against a plain loop: repeated
    latents, zero weights (dropped first) and latents never indexed."""
    from featlab.kernels.segments import segment_outer

    values, idx, _, _ = _inputs(seed=3, repeats=True)
    values[::3, 1] = 0.0  # BatchTopK's unselected slots and ReLU zeros
    src = torch.randn(B, D_IN, generator=torch.Generator().manual_seed(4))
    want = torch.zeros(D_SAE, D_IN, dtype=torch.float64)
    want_sum = torch.zeros(D_SAE, dtype=torch.float64)
    for b in range(B):
        for s in range(K):
            want[idx[b, s]] += values[b, s].double() * src[b].double()
            want_sum[idx[b, s]] += values[b, s].double()
    out, sums = segment_outer(src, values, idx, D_SAE, transposed=transposed, backend="torch",
                              with_sum=True)
    assert out.shape == ((D_IN, D_SAE) if transposed else (D_SAE, D_IN))
    got = out.t() if transposed else out
    # the float64 loop is the reference; at most B * K terms meet in one latent
    assert_close("segment_outer", got, want, reduction=B * K)
    assert_close("segment sums", sums, want_sum, reduction=B * K)
    again, _ = segment_outer(src, values, idx, D_SAE, transposed=transposed, backend="torch")
    assert torch.equal(out, again)
