"""`accumulate_gram` (numba pair sums, the sparse-product reference, the dense product for
dense codes) equals ``Z^T Z``."""

from __future__ import annotations

import pytest
import torch

from featlab.kernels.gram import accumulate_gram
from tests.numerics import assert_close


def _sparse_code(n: int, f: int, l0: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pre = torch.randn(n, f, generator=g)
    keep = pre >= pre.topk(l0, dim=1).values[:, -1:]
    return torch.where(keep, pre.abs(), 0.0)


@pytest.mark.parametrize("kernels", ["auto", "torch"])
@pytest.mark.parametrize(("f", "l0"), [(200, 6), (24, 20)], ids=["sparse", "dense"])
def test_gram_equals_the_dense_product(
    kernels: str, f: int, l0: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATLAB_KERNELS", kernels)
    z = _sparse_code(300, f, l0, seed=f)
    z[7] = 0  # a row without entries
    rows, cols = z.nonzero(as_tuple=True)
    gram = torch.ones(f, f)  # accumulates onto what is there
    accumulate_gram(gram, rows, cols, z[rows, cols], 300)
    accumulate_gram(gram, rows[:0], cols[:0], z[rows, cols][:0], 300)  # nothing: no change
    want64 = 1 + z.double().T @ z.double()
    assert_close("gram", gram, want64.float(), want64, reduction=300 * l0 // f + 1)
    assert torch.equal(gram, gram.T)
