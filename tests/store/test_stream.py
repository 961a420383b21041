"""What `FeatureStream` is fed: the positive entries of an SAE's code, taken from its sparse
code where it has one, equal those of its dense code, for every code layout."""

from __future__ import annotations

import pytest
import torch

from featlab.sae import build_sae, make_config
from featlab.store.analysis import _code_and_reconstruction
from featlab.store.stream import dense_entries
from tests.numerics import assert_close

from .store_helpers import MiniTopK


def _as_dense(entries, n: int, f: int) -> torch.Tensor:
    z = torch.zeros(n, f)
    z[entries.rows, entries.cols] = entries.vals
    return z


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu", "matching_pursuit", "mini"])
def test_entries_equal_the_dense_code(kind: str) -> None:
    torch.manual_seed(0)
    if kind == "mini":  # encode / decode only: read through the dense code
        sae = MiniTopK(12, 40, 4, "h")
    else:
        sae = build_sae(make_config(kind, 12, 40, 4, hook_name="h", seed=0)).eval()
    if kind == "matching_pursuit":  # an atom picked twice in a row must add up, as in encode
        with torch.no_grad():
            sae.W_dec[1:] *= 0.05
    x = torch.randn(50, 12)
    entries, x_hat = _code_and_reconstruction(sae, x)
    z = sae.encode(x)
    assert torch.equal(_as_dense(entries, 50, 40), z.relu())
    assert (entries.vals > 0).all()
    assert torch.equal(entries.rows, entries.rows.sort().values)  # sorted by token
    W_dec, b_dec = sae.W_dec.detach().double(), sae.b_dec.detach().double()
    assert_close("x_hat", x_hat.detach(), sae.decode(z).detach(), z.double() @ W_dec + b_dec,
                 reduction=40)  # fmt: skip
    dense = dense_entries(z)
    assert len(dense.rows) == len(entries.rows)
    if kind == "matching_pursuit":
        picks = sae.encode_sparse(x).idx.sort(dim=1).values
        assert (picks[:, 1:] == picks[:, :-1]).any(), "the test needs a repeated pick"
