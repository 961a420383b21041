"""The exceptions a featlab user meets, and how their messages name options.

A `UserError` is a mistake in what was asked (a bad value, a missing or corrupt file, an
unknown hook or kind, a run folder that holds other work): its message names the problem and
the fix. The fix names options as ``{opt:lr}`` or ``{opt:overwrite=True}``, and `render`
writes them in the terms of the interface in use: ``--lr`` / ``--overwrite`` on the command
line, ``lr`` / ``overwrite=True`` in Python (what ``str(err)`` gives). The CLI prints such an
error as one line and exits 2, with no traceback.

`Interrupted` means a run stopped on SIGINT / SIGTERM after writing its checkpoint;
`TrainingDiverged` means training stopped because its loss left any sensible range.
"""

from __future__ import annotations

import re
from pathlib import Path

_OPTION = re.compile(r"\{opt:([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}")


def render_options(text: str, interface: str = "python") -> str:
    """Replace every ``{opt:name}`` / ``{opt:name=value}`` in `text` by the option as
    `interface` ("cli" or "python") spells it."""
    if interface not in ("cli", "python"):
        raise ValueError(f"interface must be 'cli' or 'python', got {interface!r}")

    def spell(m: re.Match[str]) -> str:
        name, value = m[1], m[2]
        if interface == "python":
            return name if value is None else f"{name}={value}"
        flag = "--" + name.replace("_", "-")
        if value is None or value == "True":
            return flag
        if value == "False":
            return "--no-" + name.replace("_", "-")
        return f"{flag} {value}"

    return _OPTION.sub(spell, text)


class FeatlabError(Exception):
    """Base of the errors featlab raises on purpose (not bugs)."""


class UserError(FeatlabError, ValueError):
    """A mistake in the request; the message says what is wrong and how to fix it.

    A subclass of ValueError, so code that caught the library's ValueErrors still does.
    """

    def __init__(self, message: str) -> None:
        self.template = message
        super().__init__(render_options(message, "python"))

    def render(self, interface: str = "python") -> str:
        return render_options(self.template, interface)


class RunConflict(UserError):
    """A run folder (or store id) already holds a run with other settings."""


class CheckpointError(UserError):
    """A checkpoint that cannot be resumed from (unreadable, or written by other settings).
    `problem` and `path` say what is wrong; `fix` is worded for a library call, and the run
    layer replaces it with its own (start again with overwrite)."""

    def __init__(self, problem: str, path: Path, fix: str) -> None:
        self.problem, self.path = problem, path
        super().__init__(f"{problem}; {fix}")


class TrainingDiverged(UserError):
    """Training stopped: the loss became NaN / inf, or the reconstruction error stayed far
    above any useful value. Nothing was saved as a finished run."""


class Interrupted(FeatlabError):
    """A run stopped on a signal at a step boundary, after checkpointing.

    step / total: steps (or batches) done and planned. checkpoint: the file written, or None
    when the run had nowhere to checkpoint.
    """

    def __init__(self, what: str, step: int, total: int, checkpoint: Path | None,
                 signal_name: str = "SIGINT") -> None:
        self.what, self.step, self.total = what, step, total
        self.checkpoint, self.signal_name = checkpoint, signal_name
        saved = (f"checkpoint saved in {checkpoint}" if checkpoint is not None
                 else "no checkpoint was written (no checkpoint directory)")
        super().__init__(f"{what} stopped by {signal_name} after {step} of {total}; {saved}")


__all__ = [
    "CheckpointError", "FeatlabError", "Interrupted", "RunConflict", "TrainingDiverged",
    "UserError",
    "render_options",
]
