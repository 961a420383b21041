"""featlab._interrupt: inside stop_on_signals a SIGINT or SIGTERM only asks the loop to stop;
the trainers then checkpoint at the step boundary and raise Interrupted."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from featlab._interrupt import stop_on_signals, stop_requested
from featlab.errors import Interrupted


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_becomes_a_request(sig: int) -> None:
    with stop_on_signals():
        os.kill(os.getpid(), sig)
        assert stop_requested() == signal.Signals(sig).name
    assert stop_requested() is None  # cleared, and the old handlers are back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_interrupts_at_once() -> None:
    with stop_on_signals(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)


def test_train_model_checkpoints_then_raises(tmp_path) -> None:
    from featlab.models import HybridConfig, train_model

    cfg = HybridConfig(layers=("conv",), d_model=8, n_heads=1, d_vocab=8, n_ctx=8)
    data = torch.randint(0, 8, (32, 8), generator=torch.Generator().manual_seed(0))

    def sigterm_at_7(step: int, loss: float) -> None:
        if step == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    with stop_on_signals(), pytest.raises(Interrupted) as err:
        train_model(cfg, data, steps=50, batch_size=4, checkpoint_dir=tmp_path,
                    checkpoint_every=1000, progress=False, callback=sigterm_at_7)
    # the callback runs after step 7's checkpoint check, so the stop lands at step 8
    assert (err.value.step, err.value.total, err.value.signal_name) == (8, 50, "SIGTERM")
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert state["step"] == 8


def test_train_saes_checkpoints_then_raises(tmp_path) -> None:
    from featlab.sae import train_sae

    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))

    def sigint_at_3(step: int, saes, logs) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with stop_on_signals(), pytest.raises(Interrupted) as err:
        train_sae(x, kind="topk", d_sae=16, k=2, tokens=4096, batch_size=128,
                  checkpoint_dir=tmp_path, progress=False, callback=sigint_at_3)
    assert (err.value.step, err.value.total) == (4, 32)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 4
