"""Fixtures for the run-layer tests: a tiny saved model that records its MQAR task, and a
way to run the `featlab` command in this process (exit status, stdout, stderr)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

D_MODEL, VOCAB, SEQ = 16, 16, 16


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture()
def featlab(capsys: pytest.CaptureFixture[str]):
    """`featlab(*args)` runs the CLI in-process and returns its `CliResult`."""
    from featlab.cli import run

    def call(*args: object) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return call


def save_tiny_model(out: Path, *, layers: tuple[str, ...] = ("conv", "attn"), seed: int = 0,
                    task: bool = True) -> Path:
    """An untrained hybrid saved as `featlab train-model` saves one (task recorded)."""
    import torch

    from featlab.datasets import MQARConfig
    from featlab.models import HookedHybrid, HybridConfig, save_model
    from featlab.runs.tasks import mqar_task

    torch.manual_seed(seed)
    model = HookedHybrid(HybridConfig(layers=layers, d_model=D_MODEL, n_heads=2, d_vocab=VOCAB,
                                      n_ctx=SEQ, seed=seed))
    mqar = MQARConfig(vocab_size=VOCAB, seq_len=SEQ, num_kv_pairs=2)
    return save_model(model, out, task=mqar_task(mqar) if task else None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("runs") / "model")
