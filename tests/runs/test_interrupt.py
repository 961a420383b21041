"""No lost work: Ctrl-C (SIGINT) checkpoints and exits 130 with a line saying how to resume,
kill -9 loses at most one checkpoint interval, and the resumed run ends bit-identical to one
that never stopped. One chain per run command, each in real `featlab` processes:

    reference run  |  run -> SIGINT -> rerun -> kill -9 -> rerun to the end  |  compare
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow
HOOK = "blocks.0.hook_resid_post"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # one summation order


def _start(args: list[object]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "featlab.cli", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _stop_after_checkpoint(args: list[object], checkpoint: Path, sig: int) -> tuple[int, str]:
    """Start a run, wait until `checkpoint` is (re)written, then send `sig`."""
    before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    proc = _start(args)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists() and checkpoint.stat().st_mtime_ns != before:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be stopped: {_finish(proc)}"
    os.kill(proc.pid, sig)
    return _finish(proc)


def _chain(args: list[object], out_flag: str, out: Path, reference: Path,
           checkpoint: Path) -> None:
    ref = _start([*args, out_flag, reference])
    code, err = _stop_after_checkpoint([*args, out_flag, out], checkpoint, signal.SIGINT)
    assert code == 130, err
    assert "interrupted by SIGINT" in err and "Run the same command again to resume" in err
    assert "Traceback" not in err and checkpoint.exists()
    code, err = _stop_after_checkpoint([*args, out_flag, out], checkpoint, signal.SIGKILL)
    assert code == -signal.SIGKILL
    code, err = _finish(_start([*args, out_flag, out]))
    assert code == 0, err
    if out_flag == "--out":  # a run folder says that it resumes
        assert "resuming the unfinished run" in err
    assert _finish(ref)[0] == 0


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _assert_bit_identical(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after the interrupted run"


def test_train_model_resumes_bit_identical(tmp_path) -> None:
    args = ["train-model", "--layers", "conv,attn", "--d-model", "16", "--seq-len", "16",
            "--vocab-size", "16", "--num-kv-pairs", "2", "--steps", "300", "--batch-size",
            "8", "--n-train", "256", "--n-test", "16", "--checkpoint-every", "10",
            "--no-progress"]
    _chain(args, "--out", tmp_path / "run", tmp_path / "ref", tmp_path / "run" /
           "train_state.pt")
    _assert_bit_identical(_tensors(tmp_path / "run" / "model.safetensors"),
                          _tensors(tmp_path / "ref" / "model.safetensors"))


def test_train_sae_resumes_bit_identical(tmp_path) -> None:
    from .conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    args = ["train-sae", "--model", model, "--hook", HOOK, "--width", "32", "--k", "4",
            "--tokens", str(256 * 300), "--batch-size", "256", "--checkpoint-every", "10",
            "--no-progress"]
    _chain(args, "--out", tmp_path / "run", tmp_path / "ref",
           tmp_path / "run" / "checkpoints" / "checkpoint.pt")
    _assert_bit_identical(_tensors(tmp_path / "run" / "sae" / "sae_weights.safetensors"),
                          _tensors(tmp_path / "ref" / "sae" / "sae_weights.safetensors"))


def _store_tables(store: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for table in ("features", "examples", "neighbours", "logits"):
        df = pd.concat([pd.read_parquet(p) for p in sorted((store / table).glob("*.parquet"))])
        out[table] = df.reset_index(drop=True)
    saes = pd.read_parquet(next((store / "saes").glob("*.parquet")))
    out["saes"] = saes.drop(columns=["created_at", "config"])
    return out


def test_analyze_resumes_bit_identical(tmp_path) -> None:
    from featlab.runs import SAERunConfig, train_sae_run

    from .conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    train_sae_run(SAERunConfig(model=model, hook=HOOK, width=32, k=4, tokens=2048,
                               batch_size=256, out=tmp_path / "sae", progress=False))
    args = ["analyze", "--model", model, "--sae", tmp_path / "sae", "--n-seq", "1200",
            "--batch-size", "4", "--n-examples", "3", "--checkpoint-every", "10",
            "--no-progress"]
    store = tmp_path / "run"
    state = store / ".analyze"
    # The checkpoint's name depends only on the SAE ids (featlab.store.ids.run_key).
    from featlab.store.ids import run_key

    _chain(args, "--store", store, tmp_path / "ref", state / f"{run_key({'sae': 0})}.pt")
    assert not list(state.glob("*.pt"))  # finished: the checkpoint is gone
    run, ref = _store_tables(store), _store_tables(tmp_path / "ref")
    for table in run:
        pd.testing.assert_frame_equal(run[table], ref[table], check_exact=True, obj=table)
