"""Matching Pursuit's kernels: the pick, the Gram pick loop and the value replay, each
against its torch reference (the numba CPU kernels are the path ``FEATLAB_KERNELS=auto``
takes on CPU; ``torch`` forces the references)."""

from __future__ import annotations

import pytest
import torch

from featlab.kernels import dispatch
from featlab.kernels.pursuit import (
    argmax_rows,
    gram_select,
    gram_select_reference,
    pursuit_pick,
    pursuit_replay,
    pursuit_replay_reference,
)
from tests.numerics import assert_close

needs_numba = pytest.mark.skipif(not dispatch.numba_available(), reason="numba not installed")


def _dictionary(d_sae: int, d_in: int, seed: int, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_sae, d_in, generator=g, dtype=dtype)
    return W / W.norm(dim=1, keepdim=True), g


def test_pick_matches_argmax(backend: str, poison: None) -> None:
    W, g = _dictionary(72, 20, 0)
    r = torch.randn(10, 20, generator=g)
    j, v = pursuit_pick(r, W)
    c, c64 = r @ W.T, r.double() @ W.double().T
    assert torch.equal(j, c.argmax(1))
    assert_close("picked value", v, c.amax(1).relu(), c64.amax(1).relu(), reduction=20)


def test_ties_go_to_the_lower_index(backend: str) -> None:
    W = torch.eye(4).repeat(2, 1)  # atoms 0..3 repeated as 4..7: every max is tied
    r = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    j, v = pursuit_pick(r, W)
    assert j.tolist() == [1, 3] and v.tolist() == [2.0, 3.0]


def test_argmax_rows_equals_argmax() -> None:
    torch.manual_seed(5)
    for shape in ((7, 512), (3, 100), (9, 4096)):
        c = torch.randn(shape)
        assert torch.equal(argmax_rows(c), c.argmax(1))
    c = torch.zeros(4, 512)
    c[:, 300] = 1.0
    c[:, 400] = 1.0
    assert torch.equal(argmax_rows(c), torch.full((4,), 300))


def test_cpu_kernels_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    x32, x64 = torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.float64)
    monkeypatch.setenv("FEATLAB_KERNELS", "torch")
    assert not dispatch.cpu_kernels_for(x32)
    monkeypatch.setenv("FEATLAB_KERNELS", "auto")
    assert dispatch.cpu_kernels_for(x32) == dispatch.numba_available()
    assert not dispatch.cpu_kernels_for(x32, x64)  # mixed precision: the reference
    assert not dispatch.cpu_kernels_for(x32.half())


@needs_numba
@pytest.mark.parametrize(("n", "d_sae", "steps"), [(300, 1000, 6), (5, 37, 1), (130, 64, 9)])
def test_gram_select_kernel_matches_reference(
    n: int, d_sae: int, steps: int, poison: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tie-free random data: the same atoms at every step; d_sae not a multiple of the
    kernel's 8 lanes and n split over threads unevenly."""
    W, g = _dictionary(d_sae, 24, 1)
    c0 = torch.randn(n, 24, generator=g) @ W.T
    G = W @ W.T
    want = gram_select_reference(c0.clone(), G, steps)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    got = gram_select(c0.clone(), G, steps)
    assert got.dtype == torch.int64 and torch.equal(got, want)


@needs_numba
def test_gram_select_ties_and_negative_rows_match_argmax() -> None:
    """Exact ties across lanes resolve to the lower index; an all-negative row picks its
    maximum and leaves the correlations unchanged (v = 0)."""
    c = torch.full((2, 40), -3.0)
    c[0, [13, 21, 29]] = 2.0  # lanes 5, 5, 5 and a tie across positions
    c[0, 6] = 2.0  # lane 6, lower index: wins
    c[1, 39] = -1.0  # tail element beyond the last full group of 8
    G = torch.eye(40)
    got = gram_select(c.clone(), G, 2)
    want = gram_select_reference(c.clone(), G, 2)
    assert torch.equal(got, want)
    assert got[0, 0] == 6 and got[1].tolist() == [39, 39]


def test_gram_select_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="Gram matrix"):
        gram_select(torch.zeros(3, 8), torch.zeros(8, 7), 2)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        gram_select(torch.zeros(3, 8), torch.zeros(8, 8), 0)


def _replay_case(dtype: torch.dtype, n: int = 150, d_sae: int = 40, d_in: int = 12, T: int = 5):
    W, g = _dictionary(d_sae, d_in, 3, dtype)
    r0 = torch.randn(n, d_in, generator=g, dtype=dtype)
    chosen = torch.randint(0, d_sae, (n, T), generator=g)
    chosen[:, 0] = (r0 @ W.T).argmin(1)  # clearly negative correlations: ReLU gives 0
    return r0, W, chosen, g


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_replay_kernel_matches_reference_values_and_gradients(
    dtype: torch.dtype, poison: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    r0, W, chosen, g = _replay_case(dtype)
    w_vals = torch.randn(chosen.shape, generator=g, dtype=dtype)
    w_r = torch.randn(r0.shape, generator=g, dtype=dtype)

    def run(fn, as_dtype=dtype):
        a, b = (t.to(as_dtype, copy=True).requires_grad_() for t in (r0, W))
        vals, r = fn(a, b, chosen)
        ((vals * w_vals).sum() + (r * w_r).sum() + r.pow(2).sum()).backward()
        return vals.detach(), r.detach(), a.grad, b.grad

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    got = run(pursuit_replay)
    want = run(pursuit_replay_reference)
    want64 = run(pursuit_replay_reference, torch.float64)  # `want` itself for float64
    (n, steps), (d_sae, d_in) = chosen.shape, W.shape
    terms = steps * d_in + n * steps // d_sae  # the steps' dots; grad W: the rows per atom
    names = ("values", "residual", "grad r0", "grad W")
    for name, a, b, b64 in zip(names, got, want, want64, strict=True):
        assert_close(name, a, b, b64, reduction=terms)
    assert (got[0][:, 0] == 0).all() and (got[0][:, 1:] > 0).any()


@needs_numba
def test_replay_gradients_pass_gradcheck() -> None:
    r0, W, chosen, _ = _replay_case(torch.float64, n=6, d_sae=9, d_in=4, T=3)
    r0.requires_grad_()
    W.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: pursuit_replay(a, b, chosen), (r0, W))


@needs_numba
def test_replay_gradients_are_bit_identical_across_runs() -> None:
    r0, W, chosen, _ = _replay_case(torch.float32, n=400, d_sae=16)  # many rows per atom

    def grads():
        b = W.clone().requires_grad_()
        pursuit_replay(r0, b, chosen)[1].pow(2).sum().backward()
        return b.grad

    assert torch.equal(grads(), grads())


def test_replay_rejects_out_of_range_atoms() -> None:
    r0, W, chosen, _ = _replay_case(torch.float32, n=4)
    with pytest.raises(IndexError, match="indices must lie in"):
        pursuit_replay(r0, W, chosen + 100)
