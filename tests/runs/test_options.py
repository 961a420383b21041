"""Run configs are the CLI: flags from fields, checks named in the interface's terms."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from featlab.errors import UserError, render_options
from featlab.runs.options import (
    check_options,
    cli_command,
    coerce_fields,
    option,
    result_settings,
)


@dataclass(frozen=True)
class Toy:
    """A toy run."""

    model: Path = option(help="Model folder.")
    layers: tuple[str, ...] = option(("a", "b"), "Comma-separated.")
    inputs: tuple[Path, ...] = option((), "Repeatable.")
    lr: float | None = option(None, "Learning rate.", gt=0)
    k: int = option(8, "Active latents.", ge=1, le=64)
    mode: str = option("x", "Mode.", choices=("x", "y"))
    out: Path = option(Path("runs/toy"), "Folder.", result=False)
    progress: bool = option(True, "Bars.", result=False)

    def __post_init__(self) -> None:
        coerce_fields(self)


def test_render_options_per_interface() -> None:
    text = "lower {opt:lr} or pass {opt:overwrite=True} ({opt:resume=False}, {opt:k=4})"
    assert render_options(text, "cli") == "lower --lr or pass --overwrite (--no-resume, --k 4)"
    assert render_options(text) == "lower lr or pass overwrite=True (resume=False, k=4)"
    assert str(UserError("{opt:d_sae} must be > 0")) == "d_sae must be > 0"
    assert UserError("{opt:d_sae} must be > 0").render("cli") == "--d-sae must be > 0"


def test_checks_name_the_field() -> None:
    check_options(Toy(model=Path("m")))
    for bad, word in (({"lr": -1.0}, "--lr must be > 0"), ({"k": 0}, "--k must be >= 1"),
                      ({"k": 65}, "--k must be <= 64"), ({"mode": "z"}, "--mode must be one of"),
                      ({"lr": float("nan")}, "--lr must be a finite number")):
        with pytest.raises(UserError) as err:
            check_options(Toy(model=Path("m"), **bad))
        assert word in err.value.render("cli")


def test_coercion_and_result_settings() -> None:
    toy = Toy(model="m", layers=["c"], inputs=["p", "q"], out="o")  # type: ignore[arg-type]
    assert toy.model == Path("m") and toy.out == Path("o")
    assert toy.layers == ("c",) and toy.inputs == (Path("p"), Path("q"))
    settings = result_settings(toy)
    assert "out" not in settings and "progress" not in settings
    assert settings["model"] == "m" and settings["inputs"] == ["p", "q"]


def test_cli_command_builds_flags_from_fields() -> None:
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    seen = []
    cli_command(app, "toy", Toy, seen.append)
    cli_command(app, "other", Toy, seen.append)  # two commands, so "toy" is a subcommand
    res = CliRunner().invoke(app, ["toy", "--model", "m", "--layers", "c, d", "--inputs", "p",
                                   "--inputs", "q", "--lr", "0.5", "--no-progress"])
    assert res.exit_code == 0, res.output
    (toy,) = seen
    assert toy == Toy(model=Path("m"), layers=("c", "d"), inputs=(Path("p"), Path("q")),
                      lr=0.5, progress=False)
    res = CliRunner().invoke(app, ["toy", "--help"])
    assert "Active latents" in res.output and "--layers" in res.output
    res = CliRunner().invoke(app, ["toy", "--model", "m", "--k", "0"])
    assert isinstance(res.exception, UserError)  # the entry point turns it into exit 2
