"""The one resume rule: a run folder records the fingerprint of what makes its result.

``<out>/run.json`` holds the command that owns the folder, its result-changing settings,
their fingerprint and a status ("running" or "done"). Claiming a folder for a run:

- a new or empty folder is taken (status running);
- the same command with the same fingerprint resumes an unfinished run, or finds a
  finished one to load;
- anything else is refused with a `RunConflict` that lists the settings that differ and
  names the two ways out: overwrite (which clears the folder) or another folder. A non-empty
  folder without ``run.json`` is never cleared: it is not featlab's to delete.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featlab._atomic import atomic_write_text
from featlab._fingerprint import settings_fingerprint
from featlab.errors import RunConflict

RUN_FILE = "run.json"
FORMAT = "featlab-run"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_run(path: str | Path) -> dict[str, Any] | None:
    """The run record of folder `path`, or None if it has none (or it is unreadable)."""
    file = Path(path) / RUN_FILE
    try:
        record = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def settings_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """'name: old -> new' for every setting that differs; nested settings as 'a.b'."""
    missing = "(unset)"
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out


@dataclass
class RunFolder:
    """A folder owned by one run of `command` with `settings` (JSON-serialisable)."""

    path: Path
    command: str
    settings: dict[str, Any]

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def fingerprint(self) -> str:
        return settings_fingerprint({"command": self.command, "settings": self.settings})

    def check(self, *, overwrite: bool = False) -> str:
        """What `claim` would do, without writing anything: "new", "resume" or "done";
        raises `RunConflict` when the folder holds something else. Runs call it before
        loading their inputs, so a refused command changes no file."""
        if self.path.exists() and not self.path.is_dir():
            raise RunConflict(f"{self.path} is a file, not a folder; choose another {{opt:out}}")
        record = read_run(self.path)
        same = record is not None and record.get("command") == self.command and (
            record.get("fingerprint") == self.fingerprint)
        if same and not overwrite:
            return "done" if record.get("status") == "done" else "resume"
        if self.path.exists() and any(self.path.iterdir()):
            ours = (self.path / RUN_FILE).exists()
            if not overwrite or not ours:
                raise self._conflict(record)
        return "new"

    def claim(self, *, overwrite: bool = False) -> str:
        """Take the folder for this run: "new" (cleared first when overwriting), "resume"
        (same run, unfinished; says so on stderr) or "done" (same run, finished)."""
        status = self.check(overwrite=overwrite)
        if status == "resume":
            import sys

            print(f"featlab {self.command}: resuming the unfinished run in {self.path}",
                  file=sys.stderr, flush=True)
        if status == "new":
            if self.path.exists():
                self._clear()
            self._write("running")
        return status

    def finish(self, **summary: Any) -> None:
        """Mark the run done; `summary` (JSON-serialisable) is kept in the record."""
        self._write("done", summary)

    def summary(self) -> dict[str, Any]:
        return dict((read_run(self.path) or {}).get("summary") or {})

    # -- internals ---------------------------------------------------------------------
    def _write(self, status: str, summary: dict[str, Any] | None = None) -> None:
        old = read_run(self.path) or {}
        record = {
            "format": FORMAT, "command": self.command, "fingerprint": self.fingerprint,
            "status": status, "settings": self.settings,
            "created_at": old.get("created_at") if status == "done" else _now(),
            "finished_at": _now() if status == "done" else None,
            "summary": summary or {},
        }
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / RUN_FILE,
                          json.dumps(record, indent=2, default=str) + "\n")

    def _clear(self) -> None:
        for child in self.path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _conflict(self, record: dict[str, Any] | None) -> RunConflict:
        where = f"{self.path}"
        if record is None:
            if (self.path / RUN_FILE).exists():
                return RunConflict(
                    f"{where}/{RUN_FILE} is unreadable; pass {{opt:overwrite=True}} to start "
                    "the run again there, or choose another {opt:out}")
            return RunConflict(
                f"{where} is not empty and is not a featlab run folder (no {RUN_FILE}); "
                "choose another {opt:out} (featlab never deletes a folder it did not make)")
        if record.get("command") != self.command:
            return RunConflict(
                f"{where} holds a `{record.get('command')}` run, not a `{self.command}` run; "
                "choose another {opt:out}, or pass {opt:overwrite=True} to replace it")
        changed = settings_diff(record.get("settings") or {}, self.settings)
        state = "finished" if record.get("status") == "done" else "unfinished"
        return RunConflict(
            f"{where} holds a {state} `{self.command}` run with other settings "
            f"({'; '.join(changed) or 'fingerprint differs'}); pass {{opt:overwrite=True}} to "
            "replace it, or choose another {opt:out}")
