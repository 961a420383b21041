"""topk_encode: both backends against the dense reference (Triton runs in the interpreter)."""

from __future__ import annotations

import pytest
import torch

from featlab.kernels import (
    sparse_decode_reference,
    topk_encode,
    topk_encode_reference,
)
from tests.numerics import assert_close, assert_same_sets, to_float64

B, D_IN, D_SAE = 6, 20, 80  # tiny: the interpreter is slow; 6, 20 and 80 exercise the masks
# rounded terms behind one gradient element: the encoder's dot over d_in, the decoder's
# backward dot over d_in and dW's sum over the batch
GRAD_TERMS = 2 * D_IN + B


def _inputs(seed: int = 0, dead_frac: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D_IN, generator=g)
    W = torch.randn(D_IN, D_SAE, generator=g) / D_IN**0.5
    b = torch.randn(D_SAE, generator=g) * 0.1
    dead = torch.rand(D_SAE, generator=g) < dead_frac
    return x, W, b, dead


def _loss(out, W_dec):
    """A loss touching values and AuxK values with different weights per slot."""
    x_hat = sparse_decode_reference(out.values, out.indices, W_dec)
    loss = (x_hat.sin() * torch.arange(x_hat.shape[1])).sum()
    if out.aux_values is not None:
        e_hat = sparse_decode_reference(out.aux_values, out.aux_indices, W_dec)
        loss = loss + (e_hat**2).sum() / 32
    return loss


def _grads(fn, x, W, b, **kw):
    x, W, b = (t.clone().requires_grad_(True) for t in (x, W, b))
    W_dec = torch.linspace(-1, 1, D_SAE * D_IN, dtype=x.dtype).reshape(D_SAE, D_IN)
    out = fn(x, W, b, **kw)
    _loss(out, W_dec).backward()
    return out, (x.grad, W.grad, b.grad)


# k=20 pads to 32 = the interpreter's tile width: the single-selection merge; smaller k merge twice.
@pytest.mark.parametrize("k,aux_k", [(1, 0), (5, 0), (8, 6), (20, 0)])
def test_forward_matches_reference(backend: str, poison: None, k: int, aux_k: int) -> None:
    x, W, b, dead = _inputs()
    ref = topk_encode_reference(x, W, b, k, aux_k=aux_k, dead_mask=dead)
    ref64 = topk_encode_reference(*to_float64((x, W, b)), k, aux_k=aux_k, dead_mask=dead)
    out = topk_encode(x, W, b, k, aux_k=aux_k, dead_mask=dead)
    assert out.values.shape == (B, k) and out.indices.dtype == torch.int64
    # Random inputs are tie-free, so the selected latents are the same sets (same order too).
    assert_same_sets("indices", out.indices, ref.indices)
    assert_close("values", out.values, ref.values, ref64.values, reduction=D_IN)
    if aux_k:
        assert_same_sets("aux_indices", out.aux_indices, ref.aux_indices)
        assert_close("aux_values", out.aux_values, ref.aux_values, ref64.aux_values,
                     reduction=D_IN)
        assert dead[out.aux_indices].all(), "AuxK picked a live latent"
    else:
        assert out.aux_values is None and out.aux_indices is None


def test_values_sorted_and_relu(backend: str) -> None:
    x, W, b, _ = _inputs()
    b = b - 2.0  # many negative pre-activations: some rows keep zeros after the ReLU
    out = topk_encode(x, W, b, 8)
    assert (out.values >= 0).all()
    assert (out.values[:, :-1] >= out.values[:, 1:]).all()
    assert (out.values == 0).any(), "test meant to exercise the ReLU"


def test_large_aux_k_on_dead_columns(backend: str, poison: None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A large aux_k is selected by a product over the dead columns, not in the kernel;
    shrink the kernel's limit so the tiny test takes that path."""
    if backend == "triton":
        from featlab.kernels import _triton_encode

        monkeypatch.setattr(_triton_encode, "MAX_FUSED_AUX", 2)
    x, W, b, dead = _inputs(seed=4)
    kw = dict(k=3, aux_k=5, dead_mask=dead)
    out, g = _grads(topk_encode, x, W, b, **kw)
    ref, g_ref = _grads(topk_encode_reference, x, W, b, **kw)
    ref64, g_ref64 = _grads(topk_encode_reference, *to_float64((x, W, b)), **kw)
    assert_same_sets("aux_indices", out.aux_indices, ref.aux_indices)
    assert_close("aux_values", out.aux_values, ref.aux_values, ref64.aux_values, reduction=D_IN)
    for name, a, r, r64 in zip(("dx", "dW_enc", "db_enc"), g, g_ref, g_ref64, strict=True):
        assert_close(name, a, r, r64, reduction=GRAD_TERMS)


def test_aux_with_few_dead_latents(backend: str) -> None:
    """Fewer dead latents than aux_k: the extra slots hold zeros and valid indices."""
    x, W, b, _ = _inputs()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[[3, 50]] = True
    out = topk_encode(x, W, b, 4, aux_k=4, dead_mask=dead)  # in-kernel AuxK (4 <= limit)
    assert not out.aux_values.isnan().any()
    assert ((out.aux_indices >= 0) & (out.aux_indices < D_SAE)).all()
    ref = topk_encode_reference(x, W, b, 4, aux_k=4, dead_mask=dead)
    ref64 = topk_encode_reference(*to_float64((x, W, b)), 4, aux_k=4, dead_mask=dead)
    assert_close("aux_values", out.aux_values, ref.aux_values, ref64.aux_values, reduction=D_IN)
    for row in range(B):  # the two dead latents are in every row's candidates (when > 0)
        live = set(out.aux_indices[row][out.aux_values[row] > 0].tolist())
        assert live <= {3, 50}


@pytest.mark.parametrize("aux_k", [0, 6])
def test_gradients_match_reference(backend: str, poison: None, aux_k: int) -> None:
    """The fp32 reference is itself off from float64 by more than the kernel (summation
    order): both are measured against float64, normwise (tests/numerics.py)."""
    x, W, b, dead = _inputs(seed=1)
    kw = dict(k=5, aux_k=aux_k, dead_mask=dead)
    _, g = _grads(topk_encode, x, W, b, **kw)
    _, g_ref = _grads(topk_encode_reference, x, W, b, **kw)
    _, g_ref64 = _grads(topk_encode_reference, *to_float64((x, W, b)), **kw)
    for name, a, r, r64 in zip(("dx", "dW_enc", "db_enc"), g, g_ref, g_ref64, strict=True):
        assert_close(name, a, r, r64, reduction=GRAD_TERMS)


def test_gradient_touches_only_selected_latents(backend: str) -> None:
    x, W, b, _ = _inputs(seed=2)
    out, (_, dW, db) = _grads(topk_encode, x, W, b, k=3)
    untouched = torch.ones(D_SAE, dtype=torch.bool)
    untouched[out.indices.flatten()] = False
    assert untouched.any()
    assert (dW[:, untouched] == 0).all() and (db[untouched] == 0).all()


def test_backward_is_bit_identical(backend: str) -> None:
    x, W, b, dead = _inputs(seed=3)
    _, g1 = _grads(topk_encode, x, W, b, k=6, aux_k=4, dead_mask=dead)
    _, g2 = _grads(topk_encode, x, W, b, k=6, aux_k=4, dead_mask=dead)
    for a, c in zip(g1, g2, strict=True):
        assert torch.equal(a, c)


def test_bad_input() -> None:
    x, W, b, dead = _inputs()
    with pytest.raises(ValueError, match=r"k=81 must lie in \[1, d_sae=80\]"):
        topk_encode(x, W, b, D_SAE + 1)
    with pytest.raises(ValueError, match=r"\(6, 19\).*\(20, 80\)"):
        topk_encode(x[:, :-1], W, b, 4)
    with pytest.raises(ValueError, match=r"b_enc has shape \(79,\)"):
        topk_encode(x, W, b[:-1], 4)
    with pytest.raises(TypeError, match="x has dtype torch.int64"):
        topk_encode(x.long(), W, b, 4)
    with pytest.raises(ValueError, match="needs dead_mask"):
        topk_encode(x, W, b, 4, aux_k=2)
    with pytest.raises(TypeError, match="bool"):
        topk_encode(x, W, b, 4, aux_k=2, dead_mask=dead.float())
    with pytest.raises(ValueError, match=r"\[batch, d_in\]"):
        topk_encode(x[None], W, b, 4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-2), (torch.bfloat16, 5e-2)])
def test_gpu_large(dtype: torch.dtype, tol: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large shapes on the GPU: tf32 / bf16 arithmetic, so values agree to a tolerance and the
    index sets agree except where two pre-activations are closer than that tolerance."""
    monkeypatch.setenv("FEATLAB_KERNELS", "auto")
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4096, 768, device="cuda", generator=g).to(dtype)
    W = (torch.randn(768, 32768, device="cuda", generator=g) / 768**0.5).to(dtype)
    b = torch.zeros(32768, device="cuda", dtype=dtype)
    out = topk_encode(x, W, b, 64)
    ref = topk_encode_reference(x, W, b, 64)
    torch.testing.assert_close(out.values, ref.values, rtol=tol, atol=tol)
    overlap = (out.indices.sort(1).values == ref.indices.sort(1).values).float().mean()
    assert overlap > 0.95
