from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from featlab.complexity import importance
from featlab.models.mlp import HookedMLP
from tests.numerics import assert_close


class _Shifted(HookedRootModule):
    """tanh net whose hooked layer carries a constant `shift`, removed again right after it:
    the same function and the same dy/dh for any shift; only the layer's offset moves."""

    def __init__(self, shift: torch.Tensor) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1, self.w2 = torch.randn(3, 5, generator=g), torch.randn(5, 4, generator=g)
        self.w3 = torch.randn(4, 2, generator=g)
        self.shift = shift
        self.hook_h = HookPoint()
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook_h(torch.tanh(x @ self.w1) + self.shift)
        return torch.tanh((h - self.shift) @ self.w2) @ self.w3


def test_importance_matches_hand_computed_gradient_times_value() -> None:
    torch.manual_seed(0)
    m = HookedMLP(d_in=3, depth=2, width=5, act="tanh")
    X = torch.randn(40, 3)
    dirs = np.eye(5)[:2]
    raw = importance(m, X, "layers.1.hook_post", dirs, names=["u0", "u1"], batch_size=16,
                     zero="raw")
    centred = importance(m, X, "layers.1.hook_post", dirs, batch_size=16)
    # By hand: the output is unembed(h), so dy/dh = unembed.weight, constant.
    _, cache = m.run_with_cache(X)
    h = cache["layers.1.hook_post"][:, :2]
    w = m.unembed.weight[0].detach()[:2]
    # normwise against float64, bounded by the fp32 reference's own error (tests/numerics):
    # importance sums its batches in another order than this full-batch reference
    for name, got, want in [
        ("raw importance", raw.importance, lambda h, w: (h * w).abs().mean(0)),
        ("centred importance", centred.importance,
         lambda h, w: ((h - h.mean(0)) * w).abs().mean(0)),
        ("z_offset", centred.z_offset, lambda h, w: h.mean(0)),
    ]:
        assert_close(name, torch.as_tensor(np.asarray(got, dtype=np.float32)), want(h, w),
                     want(h.double(), w.double()), reduction=len(X))
    assert list(raw.feature) == ["u0", "u1"] and (raw.z_offset == 0).all()


def test_importance_ignores_a_constant_offset_along_the_direction() -> None:
    X = torch.randn(300, 3, generator=torch.Generator().manual_seed(1))
    d = np.eye(5)[[0, 3]] + 0.3  # two directions, not orthogonal to the shift
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    shift = torch.as_tensor(4.0 * d[0], dtype=torch.float32)
    base, moved = _Shifted(torch.zeros(5)), _Shifted(shift)
    torch.testing.assert_close(base(X), moved(X))  # the same model
    a = importance(base, X, "hook_h", d, batch_size=64)
    b = importance(moved, X, "hook_h", d, batch_size=64)
    np.testing.assert_allclose(b.importance, a.importance, rtol=1e-4)
    np.testing.assert_allclose(b.z_offset - a.z_offset, 4.0 * d @ d[0], rtol=1e-4)
    # Measured from the raw zero the same model's scores move with the offset.
    ra = importance(base, X, "hook_h", d, zero="raw").importance
    rb = importance(moved, X, "hook_h", d, zero="raw").importance
    assert (rb > 2 * ra).all()


def test_codes_and_errors() -> None:
    m = HookedMLP(d_in=3, depth=1, width=4)
    X = torch.randn(10, 3)
    codes = np.zeros((10, 1))
    df = importance(m, X, "layers.0.hook_post", np.ones(4), codes=codes)
    assert df.importance[0] == 0.0  # codes keep their own zero (an SAE latent that is off)
    on = importance(m, X, "layers.0.hook_post", np.ones(4), codes=np.ones((10, 1)))
    assert on.importance[0] > 0 and on.z_offset[0] == 0
    with pytest.raises(KeyError, match="valid names"):
        importance(m, X, "blocks.0.hook_resid_post", np.ones(4))
    with pytest.raises(ValueError, match="wide"):
        importance(m, X, "layers.0.hook_post", np.ones(7))
    with pytest.raises(ValueError, match="zero must be one of"):
        importance(m, X, "layers.0.hook_post", np.ones(4), zero="median")
