"""Run settings as dataclasses whose fields are also the command line's options.

A run's config class is the one home of its defaults, help texts and simple checks
(sparsify's idea): `option(...)` declares a field with its help, its bounds and whether it
changes the result (the fingerprint); `cli_command` turns the class into a typer command
whose flags are the field names (``d_model`` -> ``--d-model``), and `check_options`
validates the values before anything heavy is imported. Messages name fields as
``{opt:name}`` (`featlab.errors`), so the same check reads ``--lr`` on the command line and
``lr`` in Python.

Everything here imports only the standard library (typer inside `cli_command`), so building
the CLI and checking its arguments stays fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from featlab.errors import UserError

REQUIRED = dataclasses.MISSING


def option(default: Any = REQUIRED, help: str = "", *, gt: float | None = None,  # noqa: A002
           ge: float | None = None, le: float | None = None, result: bool = True,
           choices: tuple[str, ...] | None = None, repeat: bool = False) -> Any:
    """A config field: its default (omit for a required one), its help text, bounds checked
    by `check_options`, and `result=False` for settings that do not change the result
    (output folder, checkpoint interval): those stay out of the run's fingerprint. A
    ``tuple[str, ...]`` field is one comma-separated flag unless `repeat` (the flag given
    once per value); other tuples are always repeated flags."""
    meta = {"help": help, "gt": gt, "ge": ge, "le": le, "result": result, "choices": choices,
            "repeat": repeat}
    return dataclasses.field(default=default, metadata=meta)


def coerce_fields(config: Any) -> None:
    """Called from a config's `__post_init__`: strings given for Path fields become Paths
    and lists given for tuple fields become tuples, so a notebook may pass either."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        if isinstance(value, str) and Path in args:
            object.__setattr__(config, f.name, Path(value))
        elif isinstance(value, list) and any(typing.get_origin(a) is tuple for a in args):
            inner = typing.get_args(next(a for a in args if typing.get_origin(a) is tuple))
            conv = Path if inner and inner[0] is Path else (lambda v: v)
            object.__setattr__(config, f.name, tuple(conv(v) for v in value))


def result_settings(config: Any) -> dict[str, Any]:
    """The fields that change the result, JSON-ready (paths as strings, tuples as lists)."""
    out = {}
    for f in dataclasses.fields(config):
        if f.metadata.get("result", True):
            out[f.name] = _jsonable(getattr(config, f.name))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def check_options(config: Any) -> None:
    """Raise `UserError` for the first field outside its declared bounds or choices."""
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if value is None or isinstance(value, bool):
            continue
        if meta.get("choices") and value not in meta["choices"]:
            raise UserError(f"{{opt:{f.name}}} must be one of {', '.join(meta['choices'])}; "
                            f"got {value!r}")
        if not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{{opt:{f.name}}} must be a finite number, got {value}")
        for key, ok, word in (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
                              ("le", lambda v, b: v <= b, "<=")):
            bound = meta.get(key)
            if bound is not None and not ok(value, bound):
                raise UserError(f"{{opt:{f.name}}} must be {word} {bound:g}, got {value:g}")


# -- the command line ----------------------------------------------------------------------
def _cli_type(hint: Any, repeat: bool = False) -> tuple[Any, Callable[[Any], Any]]:
    """(type typer sees, conversion back to the field's type) for a field's type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args[1:] == (Ellipsis,):
        if args[0] is str and not repeat:  # one comma-separated option
            return str, lambda v: tuple(s.strip() for s in v.split(",") if s.strip())
        return list[args[0]], lambda v: tuple(v or ())  # repeated option
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            typ, convert = _cli_type(inner[0], repeat)
            return typing.Optional[typ], lambda v: None if v is None else convert(v)  # noqa: UP007
    return hint, lambda v: v


def cli_command(app: Any, name: str, config_cls: type, run: Callable[[Any], Any],
                help: str | None = None) -> None:  # noqa: A002
    """Register `name` on the typer `app`: its options are `config_cls`'s fields; the
    command builds the config, checks it and calls `run(config)`."""
    import typer

    hints = typing.get_type_hints(config_cls)
    params, converters = [], {}
    for f in dataclasses.fields(config_cls):
        typ, converters[f.name] = _cli_type(hints[f.name], f.metadata.get("repeat", False))
        flag = "--" + f.name.replace("_", "-")
        default = ... if f.default is REQUIRED else f.default
        if isinstance(default, tuple):
            default = ",".join(default) if typ is str else list(default)
        elif isinstance(default, Path):
            default = str(default)
        decls = [f"{flag}/--no-{flag[2:]}"] if default is True else [flag]
        info = typer.Option(default, *decls, help=f.metadata.get("help", ""),
                            show_default=default not in (None, ...))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=info, annotation=typ))

    def command(**values: Any) -> Any:
        config = config_cls(**{k: converters[k](v) for k, v in values.items()})
        check_options(config)
        return run(config)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = " ".join((help or config_cls.__doc__ or "").split())  # one paragraph
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)
