from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from featlab.complexity import importance
from featlab.models.mlp import HookedMLP


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
    np.testing.assert_allclose(raw.importance, (h * w).abs().mean(0).numpy(), rtol=1e-5)
    want = ((h - h.mean(0)) * w).abs().mean(0).numpy()
    np.testing.assert_allclose(centred.importance, want, rtol=1e-5)
    np.testing.assert_allclose(centred.z_offset, h.mean(0).numpy(), rtol=1e-5)
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
