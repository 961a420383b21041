"""Backend choice: CUDA -> Triton, CPU -> torch, FEATLAB_KERNELS overrides; imports stay light."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

import featlab.kernels.dispatch as dispatch
from featlab.kernels import segments, topk_encode
from tests.numerics import assert_close


def test_default_on_cpu_is_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATLAB_KERNELS", raising=False)
    assert dispatch.requested_backend() == "auto"
    assert dispatch.backend_for(torch.zeros(2)) == "torch"
    assert dispatch.backend_for() == "torch"


@pytest.mark.parametrize("value,expected", [("torch", "torch"), ("triton", "triton"),
                                            (" Triton ", "triton"), ("", "torch")])
def test_env_forces_backend(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("FEATLAB_KERNELS", value)
    assert dispatch.backend_for(torch.zeros(2), None) == expected


def test_bad_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATLAB_KERNELS", "cuda")
    with pytest.raises(ValueError, match="auto, torch, triton"):
        dispatch.backend_for(torch.zeros(2))


@pytest.mark.parametrize("forced", ["torch", "triton"])
def test_ops_take_the_forced_path(monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
    """The Triton modules are reached exactly when the Triton backend is chosen."""
    monkeypatch.setenv("FEATLAB_KERNELS", forced)
    calls: list[str] = []
    real = dispatch.load_triton

    def spy(module: str, *tensors: torch.Tensor | None):
        calls.append(module)
        return real(module, *tensors)

    monkeypatch.setattr(segments, "load_triton", spy)
    monkeypatch.setattr("featlab.kernels.encode.load_triton", spy)
    x = torch.randn(4, 8, requires_grad=True)
    out = topk_encode(x, torch.randn(8, 16), torch.zeros(16), 2)
    out.values.sum().backward()
    if forced == "triton":
        assert calls == ["_triton_encode", "_triton_sparse"]
    else:
        assert calls == []


def test_next_pow2() -> None:
    assert [dispatch.next_pow2(n) for n in (0, 1, 2, 3, 5, 64, 65)] == [1, 1, 2, 4, 8, 64, 128]


def test_import_is_light() -> None:
    code = "import sys, featlab.kernels; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "import featlab.kernels pulled in triton"


@pytest.mark.parametrize("kind,hp", [("topk", {"dead_tokens": 1}),
                                     ("batchtopk", {"dead_tokens": 1}),
                                     ("feature_choice", {})])
def test_sae_training_step_same_on_both_backends(monkeypatch: pytest.MonkeyPatch, kind: str,
                                                 hp: dict) -> None:
    """The SAEs run their inner loop through these ops: the Triton path (interpreter) and the
    torch path give the same loss and gradients on one training step."""
    from featlab.sae import build_sae, make_config

    sae = build_sae(make_config(kind, 16, 64, 4, **hp))
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-0.2, 0.1, 64))
    if kind != "feature_choice":
        sae.tokens_since_fired[::3] = 5  # some dead latents: AuxK takes part
    x = torch.randn(24, 16, generator=torch.Generator().manual_seed(0))  # k*B >= d_sae for FC
    sae64 = copy.deepcopy(sae).double()  # the float64 reference, taken before a step runs

    def step(model, forced: str, x: torch.Tensor):
        monkeypatch.setenv("FEATLAB_KERNELS", forced)
        model.zero_grad(set_to_none=True)
        out = model.training_loss(x)
        out.loss.backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters()}

    ref, g_ref = step(sae, "torch", x)
    out, g = step(sae, "triton", x)
    ref64, g_ref64 = step(sae64, "torch", x.double())
    if kind != "feature_choice":
        assert float(ref.aux.detach()) > 0, "the test meant to exercise AuxK"
    assert_close("loss", out.loss, ref.loss, ref64.loss, reduction=x.numel())
    assert torch.equal(out.counts, ref.counts)
    for name in g_ref:  # a gradient sums over the batch after the encoder's dot over d_in
        assert_close(f"d{name}", g[name], g_ref[name], g_ref64[name], reduction=24 + 2 * 16)


@pytest.mark.skipif(not dispatch.numba_available(), reason="needs numba")
def test_numba_start_keeps_torch_thread_count() -> None:
    """Starting numba's OpenMP layer resets the shared team to numba's pool size; a caller
    that asked torch for one thread must still have one (a fresh process: the layer starts
    once per process)."""
    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from featlab.kernels.dispatch import sync_numba_threads\n"
        "sync_numba_threads(); print(torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "1"
