"""The shared tolerance helper: rounding-level noise passes, real errors fail readably."""

from __future__ import annotations

import pytest
import torch

from tests.numerics import (
    SAFETY,
    assert_close,
    assert_same_sets,
    normwise_error,
    to_float64,
)

N = 500  # terms per sum


def _sums(seed: int = 0, rows: int = 64):
    """The same row sums three ways: in a permuted order (the candidate), in torch's order
    (the fp32 reference) and in float64."""
    x = torch.randn(rows, N, generator=torch.Generator().manual_seed(seed)) * 100
    permuted = x[:, torch.randperm(N, generator=torch.Generator().manual_seed(seed + 1))]
    return x, permuted.sum(1), x.sum(1), x.double().sum(1)


def _left_to_right(x: torch.Tensor) -> torch.Tensor:
    """A sequential fp32 sum over the last dim (torch's own sum is pairwise/vectorised)."""
    acc = torch.zeros(x.shape[:-1])
    for j in range(x.shape[-1]):
        acc = acc + x[..., j]
    return acc


def test_another_summation_order_passes() -> None:
    x, permuted, ref, ref64 = _sums()
    assert not torch.equal(permuted, ref), "the test meant to change the rounding"
    assert_close("permuted sum", permuted, ref, ref64, reduction=N)
    assert_close("sequential sum", _left_to_right(x), ref, ref64, reduction=N)
    # torch.float32 matmul against a float64-accumulated product rounded to fp32
    a, b = x[:, :40], x[:40, :50] / 100
    assert_close("matmul", a @ b, (a.double() @ b.double()).float(), a.double() @ b.double(),
                 reduction=40)


def test_ill_conditioned_sums_pass_when_no_worse_than_the_reference() -> None:
    """Sums that cancel to ~1 from terms ~100: fp32 itself is off by far more than the bound,
    and a candidate as inaccurate as the reference still passes."""
    x, _, _, _ = _sums(seed=2)
    x = x - x.mean(1, keepdim=True) + 1.0 / N  # every row now sums to ~1
    ref64 = x.double().sum(1)
    permuted = x[:, torch.randperm(N)].sum(1)
    assert normwise_error(x.sum(1), ref64) > SAFETY * torch.finfo(torch.float32).eps * N**0.5
    assert_close("cancelling sum", permuted, x.sum(1), ref64, reduction=N)
    with pytest.raises(AssertionError, match="8 x the fp32 reference's"):
        assert_close("cancelling sum", ref64.float() + 1e-2, x.sum(1), ref64, reduction=N)


@pytest.mark.parametrize("bug", ["scaled by 1.001", "wrong index", "one element off"])
def test_real_errors_fail(bug: str) -> None:
    _, permuted, ref, ref64 = _sums()
    if bug == "scaled by 1.001":
        bad = permuted * 1.001
    elif bug == "wrong index":
        bad = permuted[torch.arange(len(permuted)).roll(1)]
    else:
        bad = permuted.clone()
        bad[7] += 0.05 * ref64.norm().item()
    with pytest.raises(AssertionError, match="normwise error"):
        assert_close("sums", bad, ref, ref64, reduction=N)


def test_failure_message_says_what_it_saw() -> None:
    ref64 = torch.arange(1.0, 13.0, dtype=torch.float64).reshape(3, 4)
    bad = ref64.float()
    bad[2, 1] += 0.5
    with pytest.raises(AssertionError) as info:
        assert_close("dW_enc", bad, ref64.float(), ref64, reduction=20)
    msg = str(info.value)
    for part in ("dW_enc", "normwise error 1.96e-02", "reference's 0.00e+00",
                 "bound 8.53e-06 for reduction=20", "max |diff| 5.00e-01 at (2, 1)",
                 "got 10.5", "float64 10"):
        assert part in msg, msg


def test_nan_in_the_candidate_fails_loudly() -> None:
    _, permuted, ref, ref64 = _sums()
    permuted[5] = float("nan")
    with pytest.raises(AssertionError, match=r"1 non-finite elements.*first at \(5,\)"):
        assert_close("sums", permuted, ref, ref64, reduction=N)


def test_non_finite_elements_must_match_the_reference() -> None:
    ref64 = torch.tensor([1.0, float("-inf"), 3.0], dtype=torch.float64)
    assert_close("padded", ref64.float(), ref64.float(), ref64)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close("padded", torch.tensor([1.0, 0.0, 3.0]), ref64.float(), ref64)


def test_zero_reference_needs_an_exact_zero() -> None:
    zeros = torch.zeros(4, 3)
    assert_close("untouched gradient", zeros, zeros, zeros.double())
    with pytest.raises(AssertionError, match="normwise error"):
        assert_close("untouched gradient", zeros + 1e-30, zeros, zeros.double())


def test_integers_are_exact_and_sets_ignore_order() -> None:
    idx = torch.tensor([[3, 1, 7], [0, 2, 5]])
    assert_close("indices", idx, idx.clone())
    assert_same_sets("indices", idx.flip(1), idx)
    with pytest.raises(AssertionError, match=r"1 of 6 elements differ; first at \(1, 2\)"):
        assert_same_sets("indices", torch.tensor([[3, 1, 7], [0, 2, 6]]), idx)


def test_float64_reference_stands_for_itself_and_fp32_needs_one() -> None:
    x = torch.randn(10, 30, dtype=torch.float64)
    assert_close("float64 sum", _left_to_right(x.float()), x.sum(1), reduction=30)
    with pytest.raises(TypeError, match="pass the float64 reference"):
        assert_close("sum", x.float().sum(1), x.float().sum(1))


def test_to_float64_keeps_structure() -> None:
    out = to_float64({"a": torch.ones(2), "idx": torch.arange(2), "none": None,
                      "pair": (torch.ones(1), 3)})
    assert out["a"].dtype == torch.float64 and out["idx"].dtype == torch.int64
    assert out["none"] is None and out["pair"][0].dtype == torch.float64 and out["pair"][1] == 3
