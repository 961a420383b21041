"""Portable comparison of a kernel or chunked form with its reference.

Two fp32 results of the same sum differ by rounding, and by how much depends on the summation
order (SIMD width, BLAS, thread count), so an elementwise fp32-vs-fp32 check at a fixed 1e-5
passes on one CPU and fails on another (issue #11). Instead the candidate *and* the fp32
reference are measured against a float64 reference, normwise as flash-linear-attention's tests
do::

    err(a) = ||a - ref64|| / max(||ref64||, tiny)

and the candidate passes when ``err(candidate) <= max(bound, WORSE_FACTOR * err(reference))``
with ``bound = SAFETY * eps * sqrt(reduction)``. ``eps * sqrt(n)`` is the typical relative
error of a sum of ``n`` rounded terms (rounding errors add like a random walk; the worst case
``n * eps`` is not met in practice). Every comparison in these tests measures at most
``0.5 * eps * sqrt(n)``, for the kernels and for the fp32 references alike; ``SAFETY = 16``
leaves 30x room for another machine's summation order, yet keeps the bound below 4e-5 for
every reduction here, so an error of 1e-3 (a gradient scaled by 1.001, half-precision
accumulation) or O(1) (a wrong index) fails. The second term accepts a problem where fp32
itself is inaccurate, but only if the candidate is not much worse than the fp32 reference.
"""

from __future__ import annotations

import math

import torch

SAFETY = 16.0
WORSE_FACTOR = 8.0


def to_float64(obj):
    """float64 copies of the floating tensors in ``obj`` (nested in dicts, lists, tuples);
    everything else is returned as it is, so the reference can be run on the result."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().double() if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {key: to_float64(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [to_float64(value) for value in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


def normwise_error(a: torch.Tensor, ref64: torch.Tensor) -> float:
    """``||a - ref64|| / ||ref64||`` in float64; a zero reference divides by ``tiny``, so
    only an exactly zero ``a`` matches it."""
    scale = max(ref64.norm().item(), torch.finfo(torch.float64).tiny)
    return (a.double() - ref64).norm().item() / scale


def _where(flat_index: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), shape))


def assert_equal(name: str, got: torch.Tensor, want: torch.Tensor) -> None:
    """Exact equality, for indices, masks and counts: they have no rounding."""
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    differs = (got != want).flatten()
    if differs.any():
        at = _where(int(differs.nonzero()[0]), got.shape)
        raise AssertionError(f"{name}: {int(differs.sum())} of {got.numel()} elements differ; "
                             f"first at {at}: {got[at].item()} != {want[at].item()}")


def assert_same_sets(name: str, got: torch.Tensor, want: torch.Tensor) -> None:
    """Each row of ``got`` holds the same indices as ``want``'s, in any order (exact: on
    tie-free inputs every backend selects the same set)."""
    assert_equal(name, got.sort(-1).values, want.sort(-1).values)


def assert_close(name: str, got: torch.Tensor, ref: torch.Tensor,
                 ref64: torch.Tensor | None = None, *, reduction: int = 1) -> None:
    """``got`` (kernel, chunked form) agrees with ``ref64`` as well as fp32 can, given the
    fp32 reference ``ref``; the rule is in the module docstring.

    ``reduction``: how many rounded terms go into one element (a dot product's length, the
    steps of a recurrence; along a chain of sums, roughly their total). Integer or bool
    outputs are compared exactly. A float64 ``ref`` may stand for ``ref64``. Non-finite
    elements must sit where the reference has the same ones: a NaN left by a poisoned
    ``torch.empty`` fails, however small its share of the norm.
    """
    if not got.is_floating_point():
        assert_equal(name, got, ref)
        return
    if ref64 is None:
        if ref.dtype != torch.float64:
            raise TypeError(f"{name}: pass the float64 reference for a {ref.dtype} reference")
        ref64 = ref
    assert got.shape == ref.shape == ref64.shape, (
        f"{name}: shapes {tuple(got.shape)}, {tuple(ref.shape)}, {tuple(ref64.shape)}")
    got64, ref64 = got.detach().double(), ref64.detach().double()
    finite = ref64.isfinite()
    unlike = ~finite & ~((got64 == ref64) | (got64.isnan() & ref64.isnan()))
    unlike |= finite & ~got64.isfinite()
    if unlike.any():
        at = _where(int(unlike.flatten().nonzero()[0]), got.shape)
        raise AssertionError(f"{name}: {int(unlike.sum())} non-finite elements where the "
                             f"float64 reference differs, first at {at}: {got[at].item()} vs "
                             f"{ref64[at].item()} (an unwritten output or an overflow)")
    got64, ref32, ref64 = got64[finite], ref.detach()[finite], ref64[finite]
    err, ref_err = normwise_error(got64, ref64), normwise_error(ref32, ref64)
    bound = SAFETY * torch.finfo(got.dtype).eps * math.sqrt(max(reduction, 1))
    allowed = max(bound, WORSE_FACTOR * ref_err if math.isfinite(ref_err) else 0.0)
    if err > allowed:
        diff = (got64 - ref64).abs()
        i = int(diff.argmax())
        at = _where(int(finite.flatten().nonzero()[i]), got.shape)
        raise AssertionError(
            f"{name}: normwise error {err:.2e} vs float64 exceeds {allowed:.2e} "
            f"= max(bound {bound:.2e} for reduction={reduction}, {WORSE_FACTOR:g} x the fp32 "
            f"reference's {ref_err:.2e}); max |diff| {diff[i].item():.2e} at {at}: "
            f"got {got64[i].item():.8g}, float64 {ref64[i].item():.8g}, "
            f"fp32 reference {ref32[i].item():.8g}")
