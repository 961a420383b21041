"""The `featlab` CLI: --help on every subcommand; the run commands are in tests/runs/."""

from __future__ import annotations

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from featlab.cli import app

runner = CliRunner()


def _command_paths() -> list[list[str]]:
    """Every (sub)command as the argument list that reaches it."""
    paths: list[list[str]] = []

    def walk(group: object, prefix: list[str]) -> None:
        for name, cmd in getattr(group, "commands", {}).items():
            paths.append([*prefix, name])
            walk(cmd, [*prefix, name])

    walk(get_command(app), [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_help_works_everywhere(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_demo_and_train_model_are_registered() -> None:
    names = {p[0] for p in _command_paths()}
    assert {"demo", "train-model"} <= names


def test_typer_app_type() -> None:
    assert isinstance(app, typer.Typer)
